//! The configuration file (`-c/--config`), keyed by Gunicorn's setting
//! names. Two forms:
//!
//! - **TOML** (`.toml`, or any name not ending in `.py`):
//!
//!   ```toml
//!   wsgi_app = "myproject.wsgi:application"
//!   bind = ["unix:/run/app.sock", "127.0.0.1:8000"]
//!   workers = 4
//!   preload_app = true
//!   [secure_scheme_headers]
//!   X-FORWARDED-PROTO = "https"
//!   ```
//!
//!   An unknown key, or a value of the wrong type, is an error naming the
//!   key and the file.
//! - **Gunicorn's `gunicorn.conf.py`** (`PATH.py`, `file:PATH` or
//!   `python:MODULE`): Python code, run by the app's interpreter (the
//!   master has no Python: the caller supplies a [`PythonConfig`]). As in
//!   Gunicorn, its module-level variables named like a setting are the
//!   settings and other names are ignored; its server hooks (callables,
//!   or "module.function" strings) are run by the arbiter
//!   (`worker::arbiter`), which runs the file again itself.
//!
//! Without `-c`, `./gunicorn.conf.py` is read when it exists, as Gunicorn does.

use std::path::{Path, PathBuf};

use super::resolve::{Layer, Source, Value, check_file_value, setting_for_key};
use super::table::{Kind, SETTINGS, Support};
use super::{ConfigError, bad};

/// Gunicorn's default configuration file, read when `-c` is not given.
pub const DEFAULT_FILE: &str = "gunicorn.conf.py";

/// Where a configuration comes from, as `-c` spells it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Location {
    /// A TOML file (absolute).
    Toml(PathBuf),
    /// A Python file (absolute).
    PythonFile(PathBuf),
    /// `python:MODULE`: a module on the interpreter's path.
    PythonModule(String),
}

impl Location {
    /// Read `-c`'s value: `PATH`, `file:PATH` or `python:MODULE`.
    pub fn parse(spec: &str) -> Location {
        if let Some(module) = spec.strip_prefix("python:") {
            return Location::PythonModule(module.to_string());
        }
        let (path, python) = match spec.strip_prefix("file:") {
            Some(p) => (p, !p.ends_with(".toml")),
            None => (spec, spec.ends_with(".py")),
        };
        let path = PathBuf::from(path);
        let path = std::path::absolute(&path).unwrap_or(path);
        if python {
            Location::PythonFile(path)
        } else {
            Location::Toml(path)
        }
    }

    /// How `--print-config` and messages name it.
    pub fn describe(&self) -> String {
        match self {
            Location::Toml(p) | Location::PythonFile(p) => p.display().to_string(),
            Location::PythonModule(m) => format!("python:{m}"),
        }
    }

    fn source(&self) -> Source {
        match self {
            Location::Toml(p) | Location::PythonFile(p) => Source::File(p.clone()),
            Location::PythonModule(m) => Source::File(PathBuf::from(format!("python:{m}"))),
        }
    }
}

/// What a `gunicorn.conf.py` gave.
#[derive(Debug, Default)]
pub struct PythonValues {
    /// Its variables named like settings, as JSON values (`None` dropped).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// Variables named like a server hook that hold a callable.
    pub hooks: Vec<String>,
    /// The line of each variable's (last) top-level assignment, for messages.
    pub lines: std::collections::HashMap<String, u64>,
}

/// Which interpreter runs a `gunicorn.conf.py`: `--python` and
/// `--virtualenv` as the command line and `FERROCORN_CMD_ARGS` give them
/// (the file itself cannot choose the interpreter that reads it).
#[derive(Debug, Clone, Default)]
pub struct Interpreter {
    /// `--python`.
    pub python: Option<PathBuf>,
    /// `--virtualenv`.
    pub virtualenv: Option<PathBuf>,
    /// `--chdir`: the directory the file runs in, first on its `sys.path`
    /// (Gunicorn's master changes to it before reading the file).
    pub chdir: Option<PathBuf>,
}

/// Runs a `gunicorn.conf.py` in the app's interpreter (the master has none
/// of its own).
pub trait PythonConfig {
    /// Run the file or module with `interpreter` and return its variables
    /// named like one of `names`.
    ///
    /// Errors: the interpreter cannot be started, or the code raised (the
    /// message carries Python's error).
    fn evaluate(
        &self,
        location: &Location,
        names: &[&str],
        interpreter: &Interpreter,
    ) -> Result<PythonValues, String>;
}

/// What a configuration file gave: its layer and warnings to log once
/// logging is up.
#[derive(Debug)]
pub struct Loaded {
    /// The settings it sets.
    pub layer: Layer,
    /// One line each (hooks that mean nothing here: TLS, dirty arbiters).
    pub warnings: Vec<String>,
}

/// Read the configuration at `location`.
///
/// Errors: the file cannot be read or parsed, a key is unknown (TOML), or a
/// value has a type the setting does not take; the message names the file.
pub fn load(
    location: &Location,
    python: &dyn PythonConfig,
    interpreter: &Interpreter,
) -> Result<Loaded, ConfigError> {
    let where_ = location.describe();
    let mut layer = Layer::new(location.source());
    let mut warnings = Vec::new();
    match location {
        Location::Toml(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad("config", format!("cannot read {where_}: {e}")))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| bad("config", format!("{where_}: {e}")))?;
            for (key, value) in table {
                let s =
                    setting_for_key(&key).map_err(|e| bad("config", format!("{where_}: {e}")))?;
                if s.name == "config" {
                    return Err(bad(
                        "config",
                        format!("{where_}: a configuration file cannot name another"),
                    ));
                }
                let value = check_file_value(s, value)
                    .map_err(|e| bad(s.name, format!("{e} (in {where_})")))?;
                layer.values.insert(s.name, value);
            }
        }
        Location::PythonFile(_) | Location::PythonModule(_) => {
            let names: Vec<&str> = SETTINGS
                .iter()
                .map(|s| s.name)
                .filter(|n| *n != "config")
                .collect();
            let got = python
                .evaluate(location, &names, interpreter)
                .map_err(|e| bad("config", format!("{where_}: {e}")))?;
            let mut hooks = got.hooks;
            for (key, json) in got.values {
                let s =
                    setting_for_key(&key).map_err(|e| bad("config", format!("{where_}: {e}")))?;
                let at = match got.lines.get(&key) {
                    Some(line) => format!("in {where_}, line {line}"),
                    None => format!("in {where_}"),
                };
                if s.kind == Kind::Hook {
                    match json {
                        serde_json::Value::Null => {}
                        // Gunicorn's "module.function", imported by the arbiter.
                        serde_json::Value::String(_) => hooks.push(key),
                        other => {
                            return Err(bad(
                                s.name,
                                format!("value is not callable: {other} ({at})"),
                            ));
                        }
                    }
                    continue;
                }
                let value = from_json(json).map_err(|e| bad(s.name, format!("{e} ({at})")))?;
                let Some(value) = value else { continue };
                let value =
                    check_file_value(s, value).map_err(|e| bad(s.name, format!("{e} ({at})")))?;
                layer.values.insert(s.name, value);
            }
            // Hooks that have no meaning here (TLS, dirty arbiters).
            for s in SETTINGS.iter().filter(|s| s.kind == Kind::Hook) {
                if let (true, Support::Accepted(what)) =
                    (hooks.iter().any(|h| h == s.name), s.support)
                {
                    warnings.push(format!("{where_}: {}: {what}", s.name));
                }
            }
        }
    }
    Ok(Loaded { layer, warnings })
}

/// The environment variable by which `egg:ferrocorn#main`, the
/// `paste.server_runner` of ferrocorn's Python package, hands the master
/// the settings of a PasteDeploy `[server:...]` section: JSON
/// `{"file": INI, "settings": {NAME: TEXT or [TEXT, ...]}}`, the values as
/// PasteDeploy read them (Gunicorn's runner sets them with `cfg.set`).
pub const PASTE_SERVER_VAR: &str = "FERROCORN_PASTE_SERVER";

/// The settings layer of [`PASTE_SERVER_VAR`]'s value; it sits above the
/// configuration file and below `FERROCORN_CMD_ARGS` and the command line,
/// as Gunicorn's runner sets them over its configuration file.
///
/// Errors: not the runner's JSON, an unknown setting or a bad value, named
/// with the .ini file.
pub fn paste_server(json: &str) -> Result<Layer, ConfigError> {
    #[derive(serde::Deserialize)]
    struct Given {
        file: String,
        settings: serde_json::Map<String, serde_json::Value>,
    }
    let given: Given =
        serde_json::from_str(json).map_err(|e| bad("paste", format!("{PASTE_SERVER_VAR}: {e}")))?;
    let where_ = format!("the [server] section of {}", given.file);
    let mut layer = Layer::new(Source::File(PathBuf::from(&where_)));
    for (key, value) in given.settings {
        let s = setting_for_key(&key).map_err(|e| bad("paste", format!("{e} (in {where_})")))?;
        let texts: Vec<String> = match value {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect(),
            serde_json::Value::String(text) => vec![text],
            other => vec![other.to_string()],
        };
        let mut value = None;
        for text in &texts {
            let parsed = super::resolve::parse_str(s, text)
                .map_err(|e| bad(s.name, format!("{e} (in {where_})")))?;
            value = Some(match (value, parsed) {
                (Some(Value::Array(mut all)), Value::Array(more)) => {
                    all.extend(more);
                    Value::Array(all)
                }
                (_, parsed) => parsed,
            });
        }
        if let Some(value) = value {
            layer.values.insert(s.name, value);
        }
    }
    Ok(layer)
}

/// A JSON value from a `gunicorn.conf.py` as a setting value; `None` for
/// Python's `None` (the default).
fn from_json(json: serde_json::Value) -> Result<Option<Value>, String> {
    use serde_json::Value as J;
    Ok(Some(match json {
        J::Null => return Ok(None),
        J::Bool(b) => Value::Boolean(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            // Gunicorn's int() of a float truncates (timeout = 30.5 is 30).
            None => Value::Integer(n.as_f64().unwrap_or(0.0) as i64),
        },
        J::String(s) => Value::String(s),
        J::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| from_json(i).map(|v| v.unwrap_or(Value::String(String::new()))))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => Value::Table(
            map.into_iter()
                .filter_map(|(k, v)| from_json(v).transpose().map(|v| v.map(|v| (k, v))))
                .collect::<Result<_, _>>()?,
        ),
    }))
}

/// The configuration to read: `-c`'s value if given, else Gunicorn's
/// default `./gunicorn.conf.py` when it exists.
pub fn locate(given: Option<&str>) -> Option<Location> {
    match given {
        Some(spec) => Some(Location::parse(spec)),
        None => Path::new(DEFAULT_FILE)
            .is_file()
            .then(|| Location::parse(DEFAULT_FILE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `gunicorn.conf.py` that gives what `.0` makes, without Python.
    struct Gives(fn() -> PythonValues);

    impl PythonConfig for Gives {
        fn evaluate(
            &self,
            _: &Location,
            _: &[&str],
            _: &Interpreter,
        ) -> Result<PythonValues, String> {
            Ok((self.0)())
        }
    }

    /// Settings, a hook that runs and one that means nothing here.
    const NO_PYTHON: Gives = Gives(|| {
        let mut values = serde_json::Map::new();
        values.insert("workers".into(), serde_json::json!(4));
        values.insert("bind".into(), serde_json::json!("unix:/tmp/x.sock"));
        values.insert("pidfile".into(), serde_json::Value::Null);
        PythonValues {
            values,
            hooks: vec!["post_fork".into(), "ssl_context".into()],
            lines: Default::default(),
        }
    });

    /// Line 7 says `on_exit = 5`.
    const NOT_CALLABLE: Gives = Gives(|| {
        let mut values = serde_json::Map::new();
        values.insert("on_exit".into(), serde_json::json!(5));
        PythonValues {
            values,
            hooks: Vec::new(),
            lines: [("on_exit".to_string(), 7)].into(),
        }
    });

    fn write(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("ferrocorn-cfg-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn toml_keys_are_gunicorns_names() {
        let path = write(
            "ok",
            r#"
            wsgi_app = "app:application"
            bind = ["unix:/tmp/a.sock", "127.0.0.1:9"]
            workers = 3
            umask = 0o027
            preload_app = true
            raw_env = "A=1"
            forwarded_allow_ips = "10.0.0.1,10.0.0.2"
            [secure_scheme_headers]
            X-SCHEME = "https"
            "#,
        );
        let loaded = load(
            &Location::Toml(path.clone()),
            &NO_PYTHON,
            &Interpreter::default(),
        )
        .unwrap();
        let v = &loaded.layer.values;
        assert_eq!(v["workers"], Value::Integer(3));
        assert_eq!(v["umask"], Value::Integer(0o27));
        assert_eq!(v["raw_env"], Value::Array(vec!["A=1".into()]));
        assert_eq!(
            v["forwarded_allow_ips"],
            Value::Array(vec!["10.0.0.1".into(), "10.0.0.2".into()])
        );
        assert!(v["secure_scheme_headers"].is_table());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key_and_file() {
        let path = write("bad", "wokers = 3\n");
        let err = load(
            &Location::Toml(path.clone()),
            &NO_PYTHON,
            &Interpreter::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown setting \"wokers\""),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let path2 = write("type", "preload_app = \"yes\"\n");
        let err = load(
            &Location::Toml(path2.clone()),
            &NO_PYTHON,
            &Interpreter::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "preload_app");
        assert!(err.message.contains("true or false"), "{err}");
        std::fs::remove_file(path).unwrap();
        std::fs::remove_file(path2).unwrap();
    }

    #[test]
    fn a_python_config_gives_its_variables_and_names_its_hooks() {
        let loaded = load(
            &Location::PythonFile("/x/gunicorn.conf.py".into()),
            &NO_PYTHON,
            &Interpreter::default(),
        )
        .unwrap();
        assert_eq!(loaded.layer.values["workers"], Value::Integer(4));
        assert_eq!(
            loaded.layer.values["bind"],
            Value::Array(vec!["unix:/tmp/x.sock".into()])
        );
        assert!(!loaded.layer.values.contains_key("pidfile"));
        // post_fork runs; ssl_context has no meaning without TLS.
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("ssl_context"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn a_hook_that_is_not_callable_is_an_error_naming_the_file_and_line() {
        let err = load(
            &Location::PythonFile("/x/gunicorn.conf.py".into()),
            &NOT_CALLABLE,
            &Interpreter::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "on_exit");
        assert_eq!(
            err.message,
            "value is not callable: 5 (in /x/gunicorn.conf.py, line 7)"
        );
    }

    #[test]
    fn a_paste_server_section_is_a_layer_of_settings_parsed_from_text() {
        let layer = paste_server(
            r#"{"file": "/srv/site.ini", "settings": {"workers": "4", "preload_app": "true",
                "bind": ["127.0.0.1:6543", "[::1]:6543"], "proc_name": "/srv/site.ini"}}"#,
        )
        .unwrap();
        assert_eq!(layer.values["workers"], Value::Integer(4));
        assert_eq!(layer.values["preload_app"], Value::Boolean(true));
        assert_eq!(
            layer.values["bind"],
            Value::Array(vec!["127.0.0.1:6543".into(), "[::1]:6543".into()])
        );
        assert_eq!(
            layer.source.to_string(),
            "the [server] section of /srv/site.ini"
        );
        let unknown =
            paste_server(r#"{"file": "/srv/site.ini", "settings": {"wokers": "4"}}"#).unwrap_err();
        assert!(
            unknown.to_string().contains("\"wokers\"")
                && unknown.to_string().contains("/srv/site.ini"),
            "{unknown}"
        );
        let bad = paste_server(r#"{"file": "/srv/site.ini", "settings": {"workers": "many"}}"#)
            .unwrap_err();
        assert_eq!(bad.setting, "workers");
    }

    #[test]
    fn locations_follow_gunicorns_spelling() {
        assert!(matches!(
            Location::parse("a/gunicorn.conf.py"),
            Location::PythonFile(_)
        ));
        assert!(matches!(
            Location::parse("file:x.conf"),
            Location::PythonFile(_)
        ));
        assert!(matches!(Location::parse("x.toml"), Location::Toml(_)));
        assert!(matches!(
            Location::parse("/etc/ferrocorn/app.conf"),
            Location::Toml(_)
        ));
        assert_eq!(
            Location::parse("python:myproj.gconf"),
            Location::PythonModule("myproj.gconf".into())
        );
    }
}
