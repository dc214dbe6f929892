//! The command line, built from the settings table: every setting with a
//! flag gets it, with Gunicorn's spelling (`-w/--workers`, `--log-file` as
//! an alias of `--error-logfile`, `--limit-request-field_size`), its help
//! under its section's heading and its default. The same parser reads
//! `FERROCORN_CMD_ARGS`/`GUNICORN_CMD_ARGS`.
//!
//! A parse yields a [`Layer`] holding only the settings the arguments gave,
//! so that the sources can be layered (see [`super::resolve`]).

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};

use super::resolve::{Layer, Source, Value, parse_str};
use super::table::{DefaultValue as Default, Kind, SECTIONS, SETTINGS, Setting, Support};
use super::{ConfigError, bad};

/// The positional argument's id.
const APP: &str = "APP_MODULE";

/// The parser.
pub fn command() -> Command {
    let mut cmd = Command::new("ferrocorn")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "A pre-fork WSGI HTTP server for UNIX, in Rust, native to systemd, with \
             Gunicorn's command line.\n\nferrocorn status [--control-socket PATH] shows what \
             every worker is doing.",
        )
        .max_term_width(100)
        .disable_version_flag(true)
        // A flag given twice keeps the last value, as argparse does.
        .args_override_self(true)
        // argparse, which Gunicorn uses, takes unambiguous prefixes of long flags.
        .infer_long_args(true)
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version and exit"),
        )
        .arg(Arg::new(APP).value_name("APP_MODULE").help(
            "The WSGI application: MODULE:CALLABLE, MODULE (callable `application`), \
             MODULE:a.b or a factory call MODULE:create_app(\"arg\")",
        ));
    for section in SECTIONS {
        for s in SETTINGS.iter().filter(|s| s.section == *section) {
            if let Some(arg) = arg(s) {
                cmd = cmd.arg(arg);
            }
        }
    }
    cmd
}

fn arg(s: &'static Setting) -> Option<Arg> {
    let long = s.long()?;
    let mut arg = Arg::new(s.name)
        .long(&long[2..])
        .help(help(s))
        .help_heading(s.section);
    if let Some(c) = s.short() {
        arg = arg.short(c);
    }
    for alias in s
        .flags
        .iter()
        .filter(|f| f.starts_with("--") && **f != long)
    {
        arg = arg.visible_alias(&alias[2..]);
    }
    arg = match s.kind {
        Kind::Bool | Kind::NegBool => arg.action(ArgAction::SetTrue),
        Kind::List => arg.action(ArgAction::Append).value_name(s.meta),
        Kind::OptionalStr(missing) => arg
            .action(ArgAction::Set)
            .value_name(s.meta)
            .num_args(0..=1)
            .default_missing_value(missing),
        _ => arg.action(ArgAction::Set).value_name(s.meta),
    };
    Some(arg)
}

fn help(s: &Setting) -> String {
    let mut text = match s.support {
        Support::Refused { reason, .. } => format!("Refused: {reason}."),
        Support::Accepted(what) if s.kind != Kind::Hook => format!("{} Accepted: {what}.", s.doc),
        _ => s.doc.to_string(),
    };
    match (s.default, s.kind) {
        (_, Kind::Bool | Kind::NegBool) | (Default::None, _) => {}
        (Default::Str(""), _) | (Default::List(&[]), _) => {}
        (Default::Int(n), Kind::Mode) => text.push_str(&format!(" [default: {n:#o}]")),
        (Default::Int(n), _) => text.push_str(&format!(" [default: {n}]")),
        (Default::Str(v), _) => text.push_str(&format!(" [default: {v}]")),
        (Default::List(items), _) => text.push_str(&format!(" [default: {}]", items.join(" "))),
        (Default::Bool(_) | Default::Table(_), _) => {}
    }
    if let Some(var) = s.env {
        text.push_str(&format!(" [env: {var}]"));
    }
    text
}

/// Parse `args` (without the program name) as coming from `source`: the
/// settings they give (the app as `wsgi_app`).
///
/// Errors: clap's own (an unknown flag, `--help`, `--version`), or a value
/// the setting does not take ([`ConfigError`]).
pub fn parse(args: &[OsString], source: Source) -> Result<Result<Layer, ConfigError>, clap::Error> {
    let argv = std::iter::once(OsString::from("ferrocorn")).chain(args.iter().cloned());
    let matches = command().try_get_matches_from(argv)?;
    let mut layer = Layer::new(source);
    let from = |name: &str| format!("{name}: from {}", layer.source);
    for s in SETTINGS {
        if s.long().is_none() || matches.value_source(s.name) != Some(ValueSource::CommandLine) {
            continue;
        }
        let value = match s.kind {
            Kind::Bool => Value::Boolean(true),
            Kind::NegBool => Value::Boolean(false),
            Kind::List => Value::Array(
                matches
                    .get_many::<String>(s.name)
                    .into_iter()
                    .flatten()
                    .map(|v| Value::String(v.clone()))
                    .collect(),
            ),
            _ => {
                let text = matches
                    .get_one::<String>(s.name)
                    .cloned()
                    .unwrap_or_default();
                match parse_str(s, &text) {
                    Ok(v) => v,
                    Err(e) => {
                        return Ok(Err(bad(
                            s.name,
                            format!("{e} ({})", from(s.long().unwrap_or(s.name))),
                        )));
                    }
                }
            }
        };
        layer.values.insert(s.name, value);
    }
    if let Some(app) = matches.get_one::<String>(APP) {
        layer.values.insert("wsgi_app", Value::String(app.clone()));
    }
    Ok(Ok(layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(args: &[&str]) -> Layer {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args, Source::CommandLine).unwrap().unwrap()
    }

    #[test]
    fn the_command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn flags_become_typed_values_and_absent_ones_stay_absent() {
        let l = layer(&[
            "-w",
            "3",
            "--preload",
            "-b",
            "a:1",
            "--bind=b:2",
            "--no-sendfile",
            "-m",
            "027",
            "--forwarded-allow-ips=10.0.0.1, 10.0.0.0/8",
            "app:app",
        ]);
        assert_eq!(l.values["workers"], Value::Integer(3));
        assert_eq!(l.values["preload_app"], Value::Boolean(true));
        assert_eq!(
            l.values["bind"],
            Value::Array(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(l.values["sendfile"], Value::Boolean(false));
        assert_eq!(l.values["umask"], Value::Integer(0o27));
        assert_eq!(
            l.values["forwarded_allow_ips"],
            Value::Array(vec!["10.0.0.1".into(), "10.0.0.0/8".into()])
        );
        assert_eq!(l.values["wsgi_app"], Value::String("app:app".into()));
        assert!(!l.values.contains_key("timeout"));
    }

    #[test]
    fn gunicorn_spellings_are_accepted() {
        let l = layer(&[
            "--log-file=/tmp/x.log",
            "--limit-request-field_size",
            "9",
            "--worker-class=gevent",
            "--paster",
            "a.ini",
            "--proxy-protocol",
            "--keep",
            "5",
            "x",
        ]);
        assert_eq!(l.values["errorlog"], Value::String("/tmp/x.log".into()));
        assert_eq!(l.values["limit_request_field_size"], Value::Integer(9));
        assert_eq!(l.values["worker_class"], Value::String("gevent".into()));
        assert_eq!(l.values["paste"], Value::String("a.ini".into()));
        assert_eq!(l.values["proxy_protocol"], Value::String("auto".into()));
        assert_eq!(l.values["keepalive"], Value::Integer(5));
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let args: Vec<OsString> = ["-w", "many", "app"].iter().map(OsString::from).collect();
        let err = parse(&args, Source::CommandLine).unwrap().unwrap_err();
        assert_eq!(err.setting, "workers");
        assert!(err.message.contains("\"many\""), "{err}");
    }
}
