//! `--print-config`: the resolved settings as TOML, in the table's order,
//! each value that is not the default followed by its source. The output
//! is a valid `-c` file that gives the same settings again (a round trip):
//! settings with no value are written as comments, and those only a
//! command line can carry (`config`, `print_config`, `check_config`) and
//! the server hooks are left out.

use std::fmt::Write as _;

use super::resolve::{Resolved, Source, Value};
use super::table::{Kind, Support};

/// The text of `--print-config`.
pub fn render(r: &Resolved) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ferrocorn {}: the resolved settings. Use this file with -c FILE.",
        env!("CARGO_PKG_VERSION")
    );
    for (s, value, source) in r.iter() {
        if s.kind == Kind::Hook || matches!(s.name, "config" | "print_config" | "check_config") {
            continue;
        }
        if matches!(s.support, Support::Refused { .. }) && matches!(source, Source::Default) {
            continue;
        }
        let note = match source {
            Source::Default => String::new(),
            other => format!("  # from {other}"),
        };
        match value {
            None => {
                let _ = writeln!(out, "# {} is not set{note}", s.name);
            }
            Some(Value::Table(t)) => {
                // An inline table keeps the file's keys in order, one line each.
                let _ = writeln!(out, "{} = {}{note}", s.name, inline_table(t));
            }
            // A file mode reads best in octal, which TOML has.
            Some(Value::Integer(mode)) if s.kind == Kind::Mode => {
                let _ = writeln!(out, "{} = 0o{mode:o}{note}", s.name);
            }
            Some(v) => {
                let _ = writeln!(out, "{} = {}{note}", s.name, value_text(v));
            }
        }
    }
    out
}

/// A value as TOML source (`3`, `"a"`, `["a", "b"]`, `0o22` is written as `18`).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Table(t) => inline_table(t),
        other => other.to_string(),
    }
}

/// A scalar as plain text (a string without quotes); other values as TOML.
pub fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => value_text(other),
    }
}

fn inline_table(t: &toml::Table) -> String {
    let items: Vec<String> = t
        .iter()
        .map(|(k, v)| format!("{} = {}", key(k), value_text(v)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// A bare key when TOML allows it, else a quoted one.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}
