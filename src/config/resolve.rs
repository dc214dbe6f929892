//! Layering the sources of settings (DESIGN §7), lowest first: each
//! setting's default (or the environment variable that overrides it, e.g.
//! `WEB_CONCURRENCY`) → the configuration file → `FERROCORN_CMD_ARGS` (or
//! Gunicorn's `GUNICORN_CMD_ARGS`) → the command line. A later source
//! replaces a value as a whole (a list too), as Gunicorn does.
//!
//! Values are kept as TOML values, typed by the table's [`Kind`], so that
//! `--print-config` writes them back as they were read. Each remembers its
//! [`Source`], which `--print-config` and error messages name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::table::{self, DefaultValue as Default, Kind, SETTINGS, Setting};
use super::{ConfigError, bad};

/// A setting's value, shaped by its [`Kind`]: a boolean, an integer, a
/// string, an array of strings or a table.
pub type Value = toml::Value;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The table's default.
    Default,
    /// An environment variable that sets the default (`WEB_CONCURRENCY`).
    Environment(&'static str),
    /// The configuration file.
    File(PathBuf),
    /// `FERROCORN_CMD_ARGS` or `GUNICORN_CMD_ARGS`.
    CmdArgs(&'static str),
    /// The command line.
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::Environment(var) => write!(f, "environment variable {var}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::CmdArgs(var) => write!(f, "{var}"),
            Source::CommandLine => f.write_str("the command line"),
        }
    }
}

/// The values one source gives, by setting name.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Where they come from.
    pub source: Source,
    /// Setting name → value.
    pub values: BTreeMap<&'static str, Value>,
}

impl Layer {
    /// An empty layer from `source`.
    pub fn new(source: Source) -> Layer {
        Layer {
            source,
            values: BTreeMap::new(),
        }
    }
}

/// Every setting's value and source, after layering.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Parallel to [`SETTINGS`]: `None` for a setting with no value.
    entries: Vec<(Option<Value>, Source)>,
}

impl Resolved {
    /// The defaults (with their environment overrides), then `layers` in order.
    ///
    /// Errors: an environment variable that sets a default holds a value
    /// the setting does not take.
    pub fn new(layers: &[Layer]) -> Result<Resolved, ConfigError> {
        let mut entries = Vec::with_capacity(SETTINGS.len());
        for s in SETTINGS {
            entries.push(env_default(s)?.unwrap_or((default_value(s), Source::Default)));
        }
        for layer in layers {
            for (name, value) in &layer.values {
                let i = index(name);
                entries[i] = (Some(value.clone()), layer.source.clone());
            }
        }
        Ok(Resolved { entries })
    }

    /// The value of `name`, if it has one.
    ///
    /// # Panics
    /// If `name` is not in the table (a programming error).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries[index(name)].0.as_ref()
    }

    /// Every setting but the hooks by name, as a JSON object (`null` for
    /// no value): what the server hooks see as `server.cfg`.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .iter()
            .filter(|(s, _, _)| s.kind != Kind::Hook)
            .map(|(s, value, _)| {
                let json = value.map_or(serde_json::Value::Null, |v| {
                    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
                });
                (s.name.to_string(), json)
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// Where the value of `name` came from.
    pub fn source(&self, name: &str) -> &Source {
        &self.entries[index(name)].1
    }

    /// Each setting with its value and source, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Setting, Option<&Value>, &Source)> {
        SETTINGS
            .iter()
            .zip(&self.entries)
            .map(|(s, (v, src))| (s, v.as_ref(), src))
    }

    /// A switch's value.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Boolean(true)))
    }

    /// A string's value, `None` when unset.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// An integer's value (0 when unset).
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).and_then(Value::as_integer).unwrap_or(0)
    }

    /// A list's items (empty when unset).
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A non-negative integer that must fit `T`, named in the error.
    ///
    /// Errors: the value is out of `T`'s range.
    pub fn number<T: TryFrom<i64>>(&self, name: &'static str) -> Result<T, ConfigError> {
        let n = self.int(name);
        T::try_from(n).map_err(|_| {
            bad(
                name,
                format!("{n} is out of range (from {})", self.source(name)),
            )
        })
    }

    /// Take `name`'s value and source from `other` (a reload keeping what
    /// only a restart may change).
    pub fn keep(&mut self, name: &str, other: &Resolved) {
        let i = index(name);
        self.entries[i] = other.entries[i].clone();
    }

    /// Whether `name` was set by some source other than its default.
    pub fn is_set(&self, name: &str) -> bool {
        !matches!(self.source(name), Source::Default)
    }
}

fn index(name: &str) -> usize {
    SETTINGS
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not a setting"))
}

/// A setting's default as a value (`None` for [`Default::None`]).
pub fn default_value(s: &Setting) -> Option<Value> {
    let strings = |items: &[&str]| {
        Value::Array(
            items
                .iter()
                .map(|i| Value::String((*i).to_string()))
                .collect(),
        )
    };
    match s.default {
        Default::None => None,
        Default::Bool(b) => Some(Value::Boolean(b)),
        Default::Int(i) => Some(Value::Integer(i)),
        Default::Str(v) if s.kind == Kind::CommaList => Some(strings(&split_commas(v))),
        Default::Str(v) => Some(Value::String(v.to_string())),
        Default::List(items) => Some(strings(items)),
        Default::Table(pairs) => Some(Value::Table(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
                .collect(),
        )),
    }
}

/// The default an environment variable sets (Gunicorn's `WEB_CONCURRENCY`,
/// `FORWARDED_ALLOW_IPS`, `PORT` for `bind`, `SENDFILE`).
fn env_default(s: &Setting) -> Result<Option<(Option<Value>, Source)>, ConfigError> {
    let Some(var) = s.env else { return Ok(None) };
    let Ok(raw) = std::env::var(var) else {
        return Ok(None);
    };
    if raw.is_empty() {
        return Ok(None);
    }
    let value = match s.name {
        // Gunicorn: "If the PORT environment variable is defined, the
        // default is ['0.0.0.0:$PORT']".
        "bind" => Value::Array(vec![Value::String(format!("0.0.0.0:{raw}"))]),
        // SENDFILE=0/false/no turns it off, anything else on.
        "sendfile" => Value::Boolean(!matches!(
            raw.to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )),
        _ => parse_str(s, &raw)
            .map_err(|e| bad(s.name, format!("{e} (from environment variable {var})")))?,
    };
    Ok(Some((Some(value), Source::Environment(var))))
}

/// `a, b,,c` → `["a", "b", "c"]`.
pub fn split_commas(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// A value given as text (a flag's argument, an environment variable)
/// as the setting's kind. Lists take one item per call.
///
/// Errors: the text is not a value of the kind (the message says which).
pub fn parse_str(s: &Setting, text: &str) -> Result<Value, String> {
    match s.kind {
        Kind::Bool | Kind::NegBool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("{text:?} is not true or false")),
        },
        Kind::Int => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Value::Integer)
            .ok_or_else(|| format!("{text:?} is not a non-negative integer")),
        Kind::Mode => parse_auto_int(text)
            .map(Value::Integer)
            .ok_or_else(|| format!("{text:?} is not a number like 0, 0o22, 022 or 0x12")),
        Kind::Str | Kind::OptionalStr(_) => Ok(Value::String(text.to_string())),
        Kind::List => Ok(Value::Array(vec![Value::String(text.to_string())])),
        Kind::CommaList => Ok(Value::Array(
            split_commas(text)
                .into_iter()
                .map(|p| Value::String(p.to_string()))
                .collect(),
        )),
        Kind::Table | Kind::Hook => Err("can only be set in a configuration file".into()),
    }
}

/// Gunicorn's `auto_int`: `int(x, 0)`, where a leading `0` followed by a
/// digit also means octal (`022`); non-negative.
pub fn parse_auto_int(text: &str) -> Option<i64> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x") {
        (h.to_string(), 16)
    } else if let Some(o) = t.strip_prefix("0o") {
        (o.to_string(), 8)
    } else if let Some(b) = t.strip_prefix("0b") {
        (b.to_string(), 2)
    } else if t.len() > 1 && t.starts_with('0') {
        (t[1..].to_string(), 8)
    } else {
        (t, 10)
    };
    i64::from_str_radix(&digits.replace('_', ""), radix)
        .ok()
        .filter(|n| *n >= 0)
}

/// Check a value a configuration file gives (TOML, or a gunicorn.conf.py's
/// variables as JSON) against the setting's kind, converting the lenient
/// spellings Gunicorn takes (a string for a list, a number for a mode).
///
/// Errors: the value's type is not one the setting takes.
pub fn check_file_value(s: &Setting, value: Value) -> Result<Value, String> {
    let strings = |items: Vec<Value>| -> Result<Value, String> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(_) => out.push(item),
                Value::Integer(i) => out.push(Value::String(i.to_string())),
                other => return Err(format!("expects strings, not {}", other.type_str())),
            }
        }
        Ok(Value::Array(out))
    };
    match (s.kind, value) {
        (Kind::Bool | Kind::NegBool, v @ Value::Boolean(_)) => Ok(v),
        (Kind::Bool | Kind::NegBool, v) => {
            Err(format!("must be true or false, not {}", v.type_str()))
        }
        (Kind::Int, Value::Integer(i)) if i >= 0 => Ok(Value::Integer(i)),
        (Kind::Int, Value::String(t)) => parse_str(s, &t),
        (Kind::Int, v) => Err(format!("must be a non-negative integer, not {v}")),
        (Kind::Mode, Value::Integer(i)) if i >= 0 => Ok(Value::Integer(i)),
        (Kind::Mode, Value::String(t)) => parse_str(s, &t),
        (Kind::Mode, v) => Err(format!("must be a mode like 0o22, not {v}")),
        (Kind::Str | Kind::OptionalStr(_), v @ Value::String(_)) => Ok(v),
        (Kind::Str | Kind::OptionalStr(_), Value::Integer(i)) => Ok(Value::String(i.to_string())),
        (Kind::Str | Kind::OptionalStr(_), v) => {
            Err(format!("must be a string, not {}", v.type_str()))
        }
        (Kind::List, Value::String(t)) => Ok(Value::Array(vec![Value::String(t)])),
        (Kind::List | Kind::CommaList, Value::Array(items)) => strings(items),
        (Kind::CommaList, Value::String(t)) => parse_str(s, &t),
        (Kind::List | Kind::CommaList, v) => {
            Err(format!("must be a list of strings, not {}", v.type_str()))
        }
        (Kind::Table, v @ Value::Table(_)) => Ok(v),
        (Kind::Table, v) => Err(format!("must be a table, not {}", v.type_str())),
        (Kind::Hook, _) => Err(
            "is a server hook, a Python callable: only a gunicorn.conf.py can define one".into(),
        ),
    }
}

/// The setting a configuration file's key names.
///
/// Errors: no setting has that name.
pub fn setting_for_key(key: &str) -> Result<&'static Setting, String> {
    table::get(key).ok_or_else(|| format!("unknown setting {key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_int_reads_octal_as_gunicorn_does() {
        assert_eq!(parse_auto_int("0"), Some(0));
        assert_eq!(parse_auto_int("022"), Some(0o22));
        assert_eq!(parse_auto_int("0o22"), Some(0o22));
        assert_eq!(parse_auto_int("0x12"), Some(0x12));
        assert_eq!(parse_auto_int("18"), Some(18));
        assert_eq!(parse_auto_int("-1"), None);
        assert_eq!(parse_auto_int("09"), None);
    }

    #[test]
    fn later_layers_replace_whole_values() {
        let mut file = Layer::new(Source::File("/etc/x.toml".into()));
        file.values
            .insert("bind", Value::Array(vec!["a".into(), "b".into()]));
        file.values.insert("workers", Value::Integer(3));
        let mut cli = Layer::new(Source::CommandLine);
        cli.values.insert("bind", Value::Array(vec!["c".into()]));
        let r = Resolved::new(&[file, cli]).unwrap();
        assert_eq!(r.list("bind"), vec!["c"]);
        assert_eq!(r.int("workers"), 3);
        assert_eq!(r.source("workers"), &Source::File("/etc/x.toml".into()));
        assert_eq!(r.source("bind"), &Source::CommandLine);
        assert_eq!(r.source("timeout"), &Source::Default);
        assert_eq!(r.list("forwarded_allow_ips"), vec!["127.0.0.1", "::1"]);
    }
}
