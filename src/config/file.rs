//! The configuration file (`-c/--config FILE`, TOML), keyed by Gunicorn's
//! setting names:
//!
//! ```toml
//! wsgi_app = "myproject.wsgi:application"
//! bind = ["unix:/run/app.sock", "127.0.0.1:8000"]
//! workers = 4
//! timeout = 60
//! raw_env = ["DJANGO_SETTINGS_MODULE=myproject.settings"]
//! preload_app = true
//! ```
//!
//! Each key maps onto the command-line flag that defines the setting, and
//! the file's flags are parsed before `FERROCORN_CMD_ARGS` and the command
//! line, so there is one definition (the flag's) and one precedence order:
//! defaults → file → environment → command line (DESIGN §7). An unknown key,
//! or a value of the wrong type, is an error naming the key and the file.

use std::ffi::OsString;
use std::path::Path;

use super::{ConfigError, bad};

/// How a key's value becomes arguments.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// One `--flag VALUE` (string, integer or float).
    Value,
    /// An integer given in octal, as a file mode.
    Octal,
    /// One `--flag VALUE` per array item (a single string is one item).
    Repeat,
    /// `--flag` when true.
    Switch,
}

/// Gunicorn setting name → (flag, kind).
const KEYS: &[(&str, &str, Kind)] = &[
    ("wsgi_app", "--wsgi-app", Kind::Value),
    ("bind", "--bind", Kind::Repeat),
    ("workers", "--workers", Kind::Value),
    ("threads", "--threads", Kind::Value),
    ("chdir", "--chdir", Kind::Value),
    ("pythonpath", "--pythonpath", Kind::Value),
    ("virtualenv", "--virtualenv", Kind::Value),
    ("timeout", "--timeout", Kind::Value),
    ("graceful_timeout", "--graceful-timeout", Kind::Value),
    ("keepalive", "--keep-alive", Kind::Value),
    ("backlog", "--backlog", Kind::Value),
    ("worker_connections", "--worker-connections", Kind::Value),
    ("limit_request_line", "--limit-request-line", Kind::Value),
    (
        "limit_request_fields",
        "--limit-request-fields",
        Kind::Value,
    ),
    (
        "limit_request_field_size",
        "--limit-request-field_size",
        Kind::Value,
    ),
    ("raw_env", "--env", Kind::Repeat),
    ("pidfile", "--pid", Kind::Value),
    ("loglevel", "--log-level", Kind::Value),
    ("log_target", "--log-target", Kind::Value),
    ("accesslog", "--access-logfile", Kind::Value),
    ("access_log_format", "--access-logformat", Kind::Value),
    ("user", "--user", Kind::Value),
    ("group", "--group", Kind::Value),
    ("umask", "--umask", Kind::Octal),
    ("preload_app", "--preload", Kind::Switch),
    ("max_requests", "--max-requests", Kind::Value),
    ("max_requests_jitter", "--max-requests-jitter", Kind::Value),
    ("max_worker_memory", "--max-worker-memory", Kind::Value),
];

/// Read `path` and turn it into command-line arguments.
///
/// Errors: the file cannot be read or parsed, a key is unknown, or a value
/// has a type the setting does not take.
pub fn to_args(path: &Path) -> Result<Vec<OsString>, ConfigError> {
    let where_ = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", format!("cannot read {where_}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| bad("config", format!("{where_}: {e}")))?;
    let mut args = Vec::new();
    for (key, value) in &table {
        let Some(&(_, flag, kind)) = KEYS.iter().find(|(k, _, _)| k == key) else {
            return Err(bad("config", format!("{where_}: unknown setting {key:?}")));
        };
        let wrong = |want: &str| bad("config", format!("{where_}: {key} must be {want}"));
        match (kind, value) {
            (Kind::Switch, toml::Value::Boolean(on)) => {
                if *on {
                    args.push(flag.into());
                }
            }
            (Kind::Switch, _) => return Err(wrong("true or false")),
            (Kind::Octal, toml::Value::Integer(mode)) => {
                args.extend([flag.into(), format!("{mode:o}").into()]);
            }
            (Kind::Octal, toml::Value::String(mode)) => {
                args.extend([flag.into(), mode.into()]);
            }
            (Kind::Octal, _) => return Err(wrong("a mode like 0o027")),
            (Kind::Repeat, toml::Value::Array(items)) => {
                for item in items {
                    let item = scalar(item).ok_or_else(|| wrong("an array of strings"))?;
                    args.extend([flag.into(), item.into()]);
                }
            }
            (Kind::Repeat | Kind::Value, v) => {
                let v = scalar(v).ok_or_else(|| wrong("a string or a number"))?;
                args.extend([flag.into(), v.into()]);
            }
        }
    }
    Ok(args)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// The `-c/--config` value among `args`, if any (the last one wins).
pub fn find_config_arg(args: &[OsString]) -> Option<OsString> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let s = arg.to_string_lossy();
        if s == "-c" || s == "--config" {
            found = iter.next().cloned();
        } else if let Some(v) = s.strip_prefix("--config=") {
            found = Some(v.into());
        } else if let Some(v) = s
            .strip_prefix("-c")
            .filter(|v| !v.is_empty() && !s.starts_with("--"))
        {
            found = Some(v.into());
        } else if s == "--" {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("ferrocorn-cfg-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn gunicorn_names_become_flags() {
        let path = write(
            "ok",
            r#"
            wsgi_app = "app:application"
            bind = ["unix:/tmp/a.sock", "127.0.0.1:9"]
            workers = 3
            umask = 0o027
            preload_app = true
            raw_env = ["A=1"]
            "#,
        );
        let args: Vec<String> = to_args(&path)
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--wsgi-app app:application"), "{joined}");
        assert!(
            joined.contains("--bind unix:/tmp/a.sock --bind 127.0.0.1:9"),
            "{joined}"
        );
        assert!(joined.contains("--workers 3"), "{joined}");
        assert!(joined.contains("--umask 27"), "{joined}");
        assert!(joined.contains("--preload"), "{joined}");
        assert!(joined.contains("--env A=1"), "{joined}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key() {
        let path = write("bad", "wokers = 3\n");
        let err = to_args(&path).unwrap_err();
        assert!(
            err.to_string().contains("unknown setting \"wokers\""),
            "{err}"
        );
        let path2 = write("type", "preload_app = \"yes\"\n");
        let err = to_args(&path2).unwrap_err();
        assert!(
            err.to_string()
                .contains("preload_app must be true or false"),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();
        std::fs::remove_file(path2).unwrap();
    }

    #[test]
    fn the_config_flag_is_found_in_every_spelling() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            find_config_arg(&args(&["-c", "a.toml", "app"])),
            Some("a.toml".into())
        );
        assert_eq!(
            find_config_arg(&args(&["--config=b.toml"])),
            Some("b.toml".into())
        );
        assert_eq!(find_config_arg(&args(&["-cc.toml"])), Some("c.toml".into()));
        assert_eq!(find_config_arg(&args(&["--chdir", "x", "app"])), None);
    }
}
