//! Settings (DESIGN §7). One table ([`table`]) defines each setting — its
//! Gunicorn name, flags, type, default, environment default and doc line —
//! and everything else is made from it: the command line ([`cli`]), the
//! configuration file ([`file`]), the layering of sources ([`resolve`]),
//! `--print-config` ([`print`]) and the generated docs ([`docs`]). Here the
//! resolved values are validated into [`Settings`], the one typed value
//! the master and the workers read.
//!
//! Sources, lowest first: defaults (and the environment variables that set
//! them) → the `-c` file → `FERROCORN_CMD_ARGS`/`GUNICORN_CMD_ARGS` → the
//! command line.
//!
//! Invariant: a `Settings` is valid — every range is checked here, so no
//! other module re-validates; a bad value is a [`ConfigError`] naming the
//! setting, and `main` maps it to exit status 78 (EX_CONFIG). This module
//! uses nothing above it (DESIGN §8): the `http` rules and `net` allow
//! lists it fills in are theirs.

pub mod bind;
pub mod cli;
pub mod docs;
pub mod file;
pub mod print;
pub mod resolve;
pub mod table;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use bind::Bind;
pub use file::{Interpreter, Location, PythonConfig, PythonValues};
pub use resolve::{Resolved, Source};

use crate::http::{HeaderMap, Limits, Rules};
use crate::net::AllowList;
use table::{Kind, SETTINGS, Support};

/// A configuration value that cannot be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// Gunicorn's name for the setting, e.g. `limit_request_line`.
    pub setting: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

fn bad(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

/// Validated settings; Gunicorn's setting names, durations in seconds.
///
/// The master hands them to every worker it starts (serialised in the boot
/// description, see `crate::boot`), so a worker runs with exactly its
/// generation's settings even if the file changed since.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `MODULE[:CALLABLE]` as given (parsed by the WSGI loader); with
    /// `--paste`, the .ini file's name.
    pub app: String,
    /// `paste`: load the app from a PasteDeploy .ini file instead.
    pub paste: Option<Paste>,
    /// Where to listen; never empty.
    pub bind: Vec<Bind>,
    /// listen(2) backlog.
    pub backlog: i32,
    /// `reuse_port`: SO_REUSEPORT on the sockets we bind.
    pub reuse_port: bool,
    /// Worker processes, at least 1.
    pub workers: usize,
    /// `worker_class` as given, after Gunicorn's aliases (`sync`, `gthread`, `gevent`...).
    pub worker_class: String,
    /// App threads per worker, 1 to [`MAX_THREADS`] (the worker class's mapping applied).
    pub threads: usize,
    /// Open connections per worker.
    pub worker_connections: usize,
    /// Requests before a worker restarts; 0 = never.
    pub max_requests: u64,
    /// Random extra requests per worker, `0..=jitter`.
    pub max_requests_jitter: u64,
    /// RSS ceiling per worker in bytes; `None` = none.
    pub max_worker_memory: Option<u64>,
    /// How long a request may run (and a client may stall); `None` = unlimited.
    pub timeout: Option<Duration>,
    /// `header_timeout`: how long a client gets to send a complete head.
    pub header_timeout: Duration,
    /// `min_send_rate`: slowest a client may read a response, bytes per
    /// second; 0 = no limit.
    pub min_send_rate: u64,
    /// `write_budget`: bytes of response bodies a worker holds for slow
    /// readers.
    pub write_budget: u64,
    /// Time in-flight requests get after TERM.
    pub graceful_timeout: Duration,
    /// Idle keep-alive time.
    pub keepalive: Duration,
    /// How request heads are parsed: limits and Gunicorn's `permit_*` switches.
    pub rules: Rules,
    /// Who may set forwarding headers, and which.
    pub proxy: Proxy,
    /// Import the app in a zygote that forks the workers (`--preload`).
    pub preload: bool,
    /// `sendfile`: send `wsgi.file_wrapper` files with sendfile(2).
    pub sendfile: bool,
    /// Directory to change into first, if any.
    pub chdir: Option<PathBuf>,
    /// `daemon`: detach from the terminal.
    pub daemon: bool,
    /// `enable_stdio_inheritance`: a daemon keeps its stdio.
    pub stdio_inheritance: bool,
    /// Extra sys.path entries, in order.
    pub pythonpath: Vec<PathBuf>,
    /// Virtualenv root (holds `pyvenv.cfg`) from `--virtualenv`, if any.
    pub virtualenv: Option<PathBuf>,
    /// The workers' interpreter from `--python`, if any.
    pub python: Option<PathBuf>,
    /// Extra environment for the app, `(key, value)`.
    pub raw_env: Vec<(String, String)>,
    /// PID file path.
    pub pidfile: Option<PathBuf>,
    /// Lowest level logged, from `--log-level`.
    #[serde(with = "level_name")]
    pub log_level: tracing::Level,
    /// Where the error log goes when it is not a file.
    pub log_target: LogTarget,
    /// `errorlog`: the error log file; `None` = `-` (the log target).
    pub error_log: Option<PathBuf>,
    /// `capture_output`: the app's stdout and stderr go to the error log file.
    pub capture_output: bool,
    /// How the app's Python logging is configured, if at all.
    pub log_config: Option<LogConfig>,
    /// Access log destination; `None` = off.
    pub access_log: Option<AccessLog>,
    /// Access log format (Gunicorn's `access_log_format`).
    pub access_log_format: String,
    /// StatsD metrics, if `statsd_host` is set.
    pub statsd: Option<Statsd>,
    /// `metrics_bind`: where to serve Prometheus metrics.
    pub metrics_bind: Vec<Bind>,
    /// `control_socket`: where to serve `ferrocorn status`.
    pub control_socket: Option<PathBuf>,
    /// `control_socket_disable`.
    pub control_socket_disable: bool,
    /// `control_socket_mode`: the mode of a control socket we create.
    pub control_socket_mode: u32,
    /// The name in process titles (`proc_name`, else `default_proc_name`,
    /// else the app).
    pub proc_name: String,
    /// `reload`: watch the app's files and reload on change.
    pub reload: bool,
    /// `reload_extra_files`.
    pub reload_extra_files: Vec<PathBuf>,
    /// Uid to switch to after binding (the master's business: workers
    /// start with it already).
    #[serde(skip)]
    pub user: Option<nix::unistd::Uid>,
    /// Gid to switch to after binding.
    #[serde(skip)]
    pub group: Option<nix::unistd::Gid>,
    /// `initgroups`: also the user's supplementary groups.
    pub initgroups: bool,
    /// umask(2) value while creating sockets and files (Gunicorn's default 0).
    pub umask: u32,
    /// `check_config`: check, import the app and exit.
    pub check_config: bool,
    /// `print_config`: print the resolved settings and exit.
    pub print_config: bool,
    /// The configuration file, if one was read.
    pub config: Option<Location>,
    /// Every setting by Gunicorn's name, as JSON, for the server hooks'
    /// `server.cfg` (set with `config` when that is a `gunicorn.conf.py`).
    pub cfg: Option<String>,
    /// What to parse again on HUP.
    #[serde(skip)]
    sources: Sources,
}

/// The arguments a reload parses again, with the file, and what they gave.
#[derive(Debug, Clone, Default)]
struct Sources {
    /// The command line, without the program name.
    args: Vec<OsString>,
    /// `FERROCORN_CMD_ARGS`/`GUNICORN_CMD_ARGS` as read at start.
    cmd_args: Option<(&'static str, Vec<OsString>)>,
    /// [`file::PASTE_SERVER_VAR`] as read at start.
    paste_server: Option<String>,
    /// The values these settings were made from.
    resolved: Option<Resolved>,
}

/// `paste`: a PasteDeploy application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paste {
    /// The .ini file, absolute.
    pub path: PathBuf,
    /// The app section's name (`FILE#NAME`; `main` by default).
    pub name: String,
    /// `raw_paste_global_conf`: `(key, value)` for the file's globals.
    pub global: Vec<(String, String)>,
}

/// Trust in forwarding headers (Gunicorn's proxy settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proxy {
    /// `forwarded_allow_ips`.
    pub forwarded_allow: AllowList,
    /// `secure_scheme_headers`: upper-case name and exact value.
    pub secure_scheme_headers: Vec<(String, String)>,
    /// `forwarder_headers`: upper-case names (`*` = any).
    pub forwarder_headers: Vec<String>,
    /// `header_map`.
    pub header_map: HeaderMap,
    /// `proxy_protocol`.
    pub proxy_protocol: ProxyProtocol,
    /// `proxy_allow_ips`.
    pub proxy_allow: AllowList,
    /// `health_check_path`: answered by ferrocorn, not the app.
    pub health_check_path: Option<String>,
}

/// `proxy_protocol`: which PROXY protocol header each connection starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyProtocol {
    /// None (`off`).
    Off,
    /// The text header (`v1`).
    V1,
    /// The binary header (`v2`).
    V2,
    /// Either (`auto`, or the flag alone).
    Auto,
}

/// The app's Python logging configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogConfig {
    /// `logconfig`: a `logging.config.fileConfig` file.
    File(PathBuf),
    /// `logconfig_json`: a JSON file holding a `dictConfig` dictionary.
    Json(PathBuf),
    /// `logconfig_dict`: the dictionary, as JSON text.
    Dict(String),
}

/// Where StatsD metrics go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statsd {
    /// `statsd_host`: `HOST:PORT` (UDP) or `unix://PATH` (a datagram socket).
    pub target: StatsdTarget,
    /// `statsd_prefix`, with its trailing `.` (or empty).
    pub prefix: String,
    /// `dogstatsd_tags`, as given (empty: none).
    pub tags: String,
    /// `enable_backlog_metric`.
    pub backlog: bool,
}

/// A StatsD server's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatsdTarget {
    /// UDP to this host and port (resolved when sending starts).
    Udp(String, u16),
    /// A UNIX datagram socket.
    Unix(PathBuf),
}

/// `--log-target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogTarget {
    /// The journal when `JOURNAL_STREAM` names our stderr, else stderr.
    Auto,
    /// Human-readable lines on stderr.
    Stderr,
    /// Native journald entries.
    Journald,
}

/// `--access-logfile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessLog {
    /// `-`: stdout, as Gunicorn (native journal entries when stdout is the journal).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// Most app threads per worker (`threads`): each has a scoreboard entry
/// the master watches, and the scoreboard is sized by this.
pub const MAX_THREADS: usize = 256;

/// App threads for the greenlet worker classes (gevent, eventlet), which
/// ferrocorn runs on threads: at most this many, fewer if
/// `worker_connections` is lower.
pub const GREEN_THREADS: usize = 64;

/// Gunicorn's default `access_log_format`.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// `tracing::Level` by its name, for the boot description.
mod level_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(level: &tracing::Level, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(level.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<tracing::Level, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Hard ceilings, as Gunicorn's (`MAX_REQUEST_LINE`, `MAX_HEADERS`).
const MAX_REQUEST_LINE: usize = 8190;
const MAX_HEADERS: usize = 32768;

/// The settings with what goes with them.
#[derive(Debug)]
pub struct Loaded {
    /// The validated settings.
    pub settings: Settings,
    /// Every value with its source (for `--print-config`).
    pub resolved: Resolved,
    /// Lines to log as warnings once logging is up: settings accepted with
    /// another meaning, the worker class mapped, hooks that mean nothing here.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Parse `argv` (the program name first) with the configuration file's
    /// settings below it and the arguments of `FERROCORN_CMD_ARGS` (or
    /// Gunicorn's `GUNICORN_CMD_ARGS`) in between, so a systemd
    /// `EnvironmentFile=` can carry the settings and flags given on the
    /// command line win. `python` runs a `gunicorn.conf.py`.
    ///
    /// Errors: clap's own (usage, `--help`, `--version`, which the caller
    /// prints), or a [`ConfigError`]: a value out of range, a refused
    /// setting, an unreadable or invalid file, badly quoted environment
    /// arguments.
    pub fn load(
        argv: Vec<OsString>,
        python: &dyn PythonConfig,
    ) -> Result<Result<Loaded, ConfigError>, clap::Error> {
        let args: Vec<OsString> = argv.into_iter().skip(1).collect();
        let mut cmd_args = None;
        for var in ["FERROCORN_CMD_ARGS", "GUNICORN_CMD_ARGS"] {
            let Ok(value) = std::env::var(var) else {
                continue;
            };
            match shlex::split(&value) {
                Some(words) => {
                    cmd_args = Some((var, words.into_iter().map(OsString::from).collect()))
                }
                None => return Ok(Err(bad("cmd_args", format!("{var}: unbalanced quotes")))),
            }
            break;
        }
        Settings::load_sources(
            Sources {
                args,
                cmd_args,
                paste_server: std::env::var(file::PASTE_SERVER_VAR).ok(),
                resolved: None,
            },
            python,
        )
    }

    fn load_sources(
        sources: Sources,
        python: &dyn PythonConfig,
    ) -> Result<Result<Loaded, ConfigError>, clap::Error> {
        let cli = match cli::parse(&sources.args, Source::CommandLine)? {
            Ok(layer) => layer,
            Err(e) => return Ok(Err(e)),
        };
        let env = match &sources.cmd_args {
            Some((var, words)) => match cli::parse(words, Source::CmdArgs(var))? {
                Ok(layer) => Some(layer),
                Err(e) => return Ok(Err(e)),
            },
            None => None,
        };
        let given = [Some(&cli), env.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|l| {
                l.values
                    .get("config")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
        let location = file::locate(given.as_deref());
        let path_of = |name: &str| {
            [Some(&cli), env.as_ref()]
                .into_iter()
                .flatten()
                .find_map(|l| {
                    l.values
                        .get(name)
                        .and_then(|v| v.as_str())
                        .map(PathBuf::from)
                })
        };
        let interpreter = Interpreter {
            python: path_of("python"),
            virtualenv: path_of("virtualenv"),
            chdir: path_of("chdir"),
        };
        let mut warnings = Vec::new();
        let mut layers = Vec::new();
        if let Some(location) = &location {
            match file::load(location, python, &interpreter) {
                Ok(loaded) => {
                    layers.push(loaded.layer);
                    warnings.extend(loaded.warnings);
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        if let Some(json) = &sources.paste_server {
            match file::paste_server(json) {
                Ok(layer) => layers.push(layer),
                Err(e) => return Ok(Err(e)),
            }
        }
        layers.extend(env);
        layers.push(cli);
        Ok((|| {
            let resolved = Resolved::new(&layers)?;
            Settings::from_resolved(resolved, location, sources, warnings)
        })())
    }

    fn from_resolved(
        resolved: Resolved,
        location: Option<Location>,
        mut sources: Sources,
        mut warnings: Vec<String>,
    ) -> Result<Loaded, ConfigError> {
        let mut settings = Settings::validate(&resolved, &mut warnings)?;
        if matches!(
            location,
            Some(Location::PythonFile(_) | Location::PythonModule(_))
        ) {
            settings.cfg = Some(resolved.to_json().to_string());
        }
        settings.config = location;
        sources.resolved = Some(resolved.clone());
        settings.sources = sources;
        Ok(Loaded {
            settings,
            resolved,
            warnings,
        })
    }

    /// The arbiter's part: the `gunicorn.conf.py` whose server hooks run,
    /// as the hooks module takes it (a path, or `python:MODULE`); `None`
    /// for TOML or no file, where there is no arbiter.
    pub fn hooks_file(&self) -> Option<String> {
        match &self.config {
            Some(Location::PythonFile(p)) => Some(p.display().to_string()),
            Some(Location::PythonModule(m)) => Some(format!("python:{m}")),
            _ => None,
        }
    }

    /// Parse the same sources again (HUP): the file may have changed. What
    /// only a restart can change ([`table::Reload::Restart`]) keeps its
    /// current value; those that changed are named in the warnings.
    ///
    /// Errors: a message naming what is now wrong.
    pub fn reread(&self, python: &dyn PythonConfig) -> Result<Loaded, String> {
        let sources = Sources {
            resolved: None,
            ..self.sources.clone()
        };
        let fresh = match Settings::load_sources(sources.clone(), python) {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string().trim().to_string()),
        };
        let Some(current) = &self.sources.resolved else {
            return Ok(fresh);
        };
        let mut warnings = fresh.warnings;
        let mut merged = fresh.resolved;
        for name in restart_only() {
            if merged.get(name) != current.get(name) {
                warnings.push(format!(
                    "Reload: {name} changed; it takes effect at the next restart"
                ));
                merged.keep(name, current);
            }
        }
        Settings::from_resolved(merged, self.config.clone(), sources, warnings)
            .map_err(|e| e.to_string())
    }

    fn validate(r: &Resolved, warnings: &mut Vec<String>) -> Result<Settings, ConfigError> {
        check_support(r, warnings)?;
        let paste = paste(r)?;
        let app = match (r.str("wsgi_app"), &paste) {
            (Some(app), _) if !app.trim().is_empty() && !app.starts_with(':') => app.to_string(),
            (Some(_), _) => return Err(bad("wsgi_app", "expected MODULE[:CALLABLE]")),
            (None, Some(p)) => p.path.display().to_string(),
            (None, None) => {
                return Err(bad(
                    "wsgi_app",
                    "no application: give MODULE[:CALLABLE], --paste FILE.ini, or wsgi_app in \
                     the configuration file",
                ));
            }
        };
        let workers: usize = r.number("workers")?;
        if workers == 0 {
            return Err(bad("workers", "must be at least 1"));
        }
        let worker_connections: usize = r.number("worker_connections")?;
        if worker_connections == 0 {
            return Err(bad("worker_connections", "must be at least 1"));
        }
        let (worker_class, threads) = worker_class(r, worker_connections, warnings)?;
        let backlog: i32 = r.number("backlog")?;
        if backlog == 0 {
            return Err(bad("backlog", "must be at least 1"));
        }
        let binds = |name: &'static str| -> Result<Vec<Bind>, ConfigError> {
            r.list(name)
                .iter()
                .map(|b| {
                    b.parse::<Bind>()
                        .map_err(|e| bad(name, format!("{b:?}: {e} (from {})", r.source(name))))
                })
                .collect()
        };
        let bind = binds("bind")?;
        if bind.is_empty() {
            return Err(bad("bind", "no address to listen on"));
        }
        let request_line = match r.number::<usize>("limit_request_line")? {
            0 => MAX_REQUEST_LINE,
            n => n.min(MAX_REQUEST_LINE),
        };
        let fields: usize = r.number("limit_request_fields")?;
        if fields > MAX_HEADERS {
            return Err(bad(
                "limit_request_fields",
                format!("{fields} is above the maximum {MAX_HEADERS}"),
            ));
        }
        let raw_env = r
            .list("raw_env")
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(bad("raw_env", format!("{kv:?} is not KEY=VALUE"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let level = r.str("loglevel").unwrap_or("info").to_ascii_lowercase();
        let log_level = match level.as_str() {
            "debug" => tracing::Level::DEBUG,
            "info" => tracing::Level::INFO,
            "warning" | "warn" => tracing::Level::WARN,
            "error" | "critical" => tracing::Level::ERROR,
            other => {
                return Err(bad(
                    "loglevel",
                    format!("{other:?}: expected debug, info, warning, error or critical"),
                ));
            }
        };
        let log_target = match r.str("log_target").unwrap_or("auto") {
            "auto" => LogTarget::Auto,
            "stderr" => LogTarget::Stderr,
            "journald" => LogTarget::Journald,
            other => {
                return Err(bad(
                    "log_target",
                    format!("{other:?}: expected auto, stderr or journald"),
                ));
            }
        };
        let path = |name: &str| r.str(name).filter(|p| !p.is_empty()).map(PathBuf::from);
        let access_log = path("accesslog").map(|p| {
            if p.as_os_str() == "-" {
                AccessLog::Stdout
            } else {
                AccessLog::File(p)
            }
        });
        let error_log = path("errorlog").filter(|p| p.as_os_str() != "-");
        let user = r.str("user").map(resolve_user).transpose()?;
        let group = match r.str("group") {
            Some(g) => Some(resolve_group(g)?),
            // As Gunicorn: the user's primary group unless one is named.
            None => match user {
                Some(uid) => nix::unistd::User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map(|u| u.gid),
                None => None,
            },
        };
        let umask = mode(r, "umask")?;
        let control_socket_mode = mode(r, "control_socket_mode")?;
        let daemon = r.flag("daemon");
        if daemon && std::env::var_os("NOTIFY_SOCKET").is_some() {
            return Err(bad(
                "daemon",
                "refused under systemd (NOTIFY_SOCKET is set): systemd supervises the process \
                 itself and would lose track of a daemon; drop --daemon and use Type=notify",
            ));
        }
        let proc_name = r
            .str("proc_name")
            .or(r.str("default_proc_name"))
            .unwrap_or(&app)
            .to_string();
        let timeout = r.int("timeout");
        Ok(Settings {
            paste,
            bind,
            backlog,
            reuse_port: r.flag("reuse_port"),
            workers,
            worker_class,
            threads,
            worker_connections,
            max_requests: r.number("max_requests")?,
            max_requests_jitter: r.number("max_requests_jitter")?,
            max_worker_memory: Some(r.number::<u64>("max_worker_memory")? << 20).filter(|&b| b > 0),
            timeout: (timeout > 0).then(|| Duration::from_secs(timeout as u64)),
            header_timeout: match r.number::<u64>("header_timeout")? {
                0 => Duration::from_secs(if timeout > 0 { timeout as u64 } else { 30 }),
                n => Duration::from_secs(n),
            },
            min_send_rate: r.number("min_send_rate")?,
            write_budget: r.number::<u64>("write_budget")? << 20,
            graceful_timeout: Duration::from_secs(r.number("graceful_timeout")?),
            keepalive: Duration::from_secs(r.number("keepalive")?),
            rules: Rules {
                limits: Limits {
                    request_line,
                    fields,
                    field_size: r.number("limit_request_field_size")?,
                    body: r.number("limit_request_body")?,
                },
                obsolete_folding: r.flag("permit_obsolete_folding"),
                unconventional_method: r.flag("permit_unconventional_http_method"),
                unconventional_version: r.flag("permit_unconventional_http_version"),
                casefold_method: r.flag("casefold_http_method"),
            },
            proxy: proxy(r)?,
            preload: r.flag("preload_app"),
            sendfile: r.flag("sendfile"),
            chdir: path("chdir"),
            daemon,
            stdio_inheritance: r.flag("enable_stdio_inheritance"),
            pythonpath: r
                .list("pythonpath")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            virtualenv: path("virtualenv"),
            python: path("python"),
            raw_env,
            pidfile: path("pidfile"),
            log_level,
            log_target,
            error_log,
            capture_output: r.flag("capture_output"),
            log_config: log_config(r)?,
            access_log,
            access_log_format: r.str("access_log_format").unwrap_or_default().to_string(),
            statsd: statsd(r)?,
            metrics_bind: binds("metrics_bind")?,
            control_socket: path("control_socket"),
            control_socket_disable: r.flag("control_socket_disable"),
            control_socket_mode,
            proc_name,
            reload: r.flag("reload"),
            reload_extra_files: r
                .list("reload_extra_files")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            user,
            group,
            initgroups: r.flag("initgroups"),
            umask,
            check_config: r.flag("check_config"),
            print_config: r.flag("print_config"),
            app,
            config: None,
            cfg: None,
            sources: Sources::default(),
        })
    }
}

/// Refuse the settings ferrocorn does not do, and warn about those it
/// accepts with another meaning (never a silent ignore).
fn check_support(r: &Resolved, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    for (s, value, source) in r.iter() {
        if matches!(source, Source::Default) {
            continue;
        }
        let shown = match (s.kind, value) {
            (Kind::Bool | Kind::NegBool, _) | (_, None) => String::new(),
            (_, Some(v)) => format!(" {}", print::value_text(v)),
        };
        match s.support {
            Support::Refused { reason, allowed } => {
                let harmless = value.is_none_or(|v| {
                    allowed.contains(&print::plain_text(v).as_str())
                        || resolve::default_value(s).as_ref() == Some(v) && !allowed.is_empty()
                });
                if !harmless {
                    let flag = s.long().unwrap_or(s.name);
                    return Err(bad(
                        s.name,
                        format!("{flag}{shown} (from {source}) is not supported: {reason}"),
                    ));
                }
            }
            // Hooks are named together, by the file that defines them.
            Support::Accepted(meaning)
                if s.kind != Kind::Hook && resolve::default_value(s).as_ref() != value =>
            {
                warnings.push(format!(
                    "{}{shown} (from {source}): {meaning}",
                    s.long().unwrap_or(s.name)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `worker_class` and `threads` (Gunicorn: the sync class with more than
/// one thread is gthread). The greenlet classes run on app threads.
fn worker_class(
    r: &Resolved,
    worker_connections: usize,
    warnings: &mut Vec<String>,
) -> Result<(String, usize), ConfigError> {
    let given = r.str("worker_class").unwrap_or("sync");
    let threads: usize = r.number("threads")?;
    if threads == 0 || threads > MAX_THREADS {
        return Err(bad("threads", format!("must be 1 to {MAX_THREADS}")));
    }
    let class = canonical_worker_class(given);
    match class.as_str() {
        "sync" | "gthread" => Ok((class, threads)),
        "gevent" | "eventlet" | "gevent_wsgi" | "gevent_pywsgi" => {
            let mapped = if r.is_set("threads") && threads > 1 {
                threads
            } else {
                worker_connections.clamp(1, GREEN_THREADS)
            };
            warnings.push(format!(
                "worker_class {given:?} is run as {mapped} app threads per worker: ferrocorn has \
                 no greenlets, so the app is not monkey-patched and each concurrent request \
                 holds a thread (min(worker_connections, {GREEN_THREADS}), or --threads)"
            ));
            Ok((class, mapped))
        }
        "tornado" => Err(bad(
            "worker_class",
            "tornado is not supported: ferrocorn serves WSGI apps; serve a Tornado app with \
             its own server behind nginx",
        )),
        "asgi" => Err(bad(
            "worker_class",
            "asgi is not supported: ferrocorn serves WSGI (PEP 3333) only; serve ASGI apps \
             with uvicorn or Gunicorn's asgi worker",
        )),
        other if other.starts_with("uvicorn") => Err(bad(
            "worker_class",
            format!(
                "{other} is an ASGI worker class: ferrocorn serves WSGI (PEP 3333) only; serve \
                 ASGI apps with uvicorn"
            ),
        )),
        other => Err(bad(
            "worker_class",
            format!(
                "{other:?} is not supported: ferrocorn's workers are its own (Rust); use sync \
                 or gthread (--threads N)"
            ),
        )),
    }
}

/// Gunicorn's spellings of its own classes (`gunicorn.workers.ggevent.GeventWorker`,
/// `egg:gunicorn#gevent`) as their short names.
fn canonical_worker_class(given: &str) -> String {
    let short = given.strip_prefix("egg:gunicorn#").unwrap_or(given).trim();
    let known = [
        ("gunicorn.workers.sync.SyncWorker", "sync"),
        ("gunicorn.workers.gthread.ThreadWorker", "gthread"),
        ("gunicorn.workers.ggevent.GeventWorker", "gevent"),
        (
            "gunicorn.workers.ggevent.GeventPyWSGIWorker",
            "gevent_pywsgi",
        ),
        ("gunicorn.workers.geventlet.EventletWorker", "eventlet"),
        ("gunicorn.workers.gtornado.TornadoWorker", "tornado"),
    ];
    known
        .iter()
        .find(|(path, _)| *path == short)
        .map_or(short.to_ascii_lowercase(), |(_, name)| (*name).to_string())
}

fn proxy(r: &Resolved) -> Result<Proxy, ConfigError> {
    let allow = |name: &'static str| {
        AllowList::parse(&r.list(name))
            .map_err(|e| bad(name, format!("{e} (from {})", r.source(name))))
    };
    let secure_scheme_headers = match r.get("secure_scheme_headers") {
        Some(resolve::Value::Table(t)) => t
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(v) => Ok((k.to_ascii_uppercase(), v.to_string())),
                None => Err(bad(
                    "secure_scheme_headers",
                    format!("the value of {k:?} must be a string"),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let header_map = match r.str("header_map").unwrap_or("drop") {
        "drop" => HeaderMap::Drop,
        "refuse" => HeaderMap::Refuse,
        "dangerous" => HeaderMap::Dangerous,
        other => {
            return Err(bad(
                "header_map",
                format!("{other:?}: expected drop, refuse or dangerous"),
            ));
        }
    };
    let proxy_protocol = match r.str("proxy_protocol").unwrap_or("off") {
        "off" | "false" => ProxyProtocol::Off,
        "v1" => ProxyProtocol::V1,
        "v2" => ProxyProtocol::V2,
        "auto" | "true" => ProxyProtocol::Auto,
        other => {
            return Err(bad(
                "proxy_protocol",
                format!("{other:?}: expected off, v1, v2 or auto"),
            ));
        }
    };
    Ok(Proxy {
        forwarded_allow: allow("forwarded_allow_ips")?,
        secure_scheme_headers,
        forwarder_headers: r
            .list("forwarder_headers")
            .iter()
            .map(|h| h.to_ascii_uppercase())
            .collect(),
        header_map,
        proxy_protocol,
        proxy_allow: allow("proxy_allow_ips")?,
        health_check_path: match r.str("health_check_path") {
            Some(p) if !p.starts_with('/') => {
                return Err(bad(
                    "health_check_path",
                    format!("{p:?}: expected a path starting with /"),
                ));
            }
            p => p.map(str::to_string),
        },
    })
}

fn paste(r: &Resolved) -> Result<Option<Paste>, ConfigError> {
    let Some(spec) = r.str("paste").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let spec = spec.strip_prefix("config:").unwrap_or(spec);
    let (file, name) = match spec.split_once('#') {
        Some((file, name)) => (file, name.to_string()),
        None => (spec, "main".to_string()),
    };
    let path = std::path::absolute(file).unwrap_or_else(|_| PathBuf::from(file));
    if !path.is_file() {
        return Err(bad("paste", format!("{}: no such file", path.display())));
    }
    let global = r
        .list("raw_paste_global_conf")
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(
                "raw_paste_global_conf",
                format!("{kv:?} is not KEY=VALUE"),
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Paste { path, name, global }))
}

fn log_config(r: &Resolved) -> Result<Option<LogConfig>, ConfigError> {
    // Gunicorn: logconfig_dict takes precedence over the files.
    if let Some(resolve::Value::Table(t)) = r.get("logconfig_dict") {
        if !t.is_empty() {
            let json =
                serde_json::to_string(t).map_err(|e| bad("logconfig_dict", e.to_string()))?;
            return Ok(Some(LogConfig::Dict(json)));
        }
    }
    let file = |name: &'static str| -> Result<Option<PathBuf>, ConfigError> {
        match r.str(name).filter(|p| !p.is_empty()) {
            Some(p) => {
                let path = std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p));
                if !path.is_file() {
                    return Err(bad(name, format!("{}: no such file", path.display())));
                }
                Ok(Some(path))
            }
            None => Ok(None),
        }
    };
    if let Some(p) = file("logconfig_json")? {
        return Ok(Some(LogConfig::Json(p)));
    }
    Ok(file("logconfig")?.map(LogConfig::File))
}

fn statsd(r: &Resolved) -> Result<Option<Statsd>, ConfigError> {
    let Some(host) = r.str("statsd_host").filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let target = if let Some(path) = host.strip_prefix("unix://") {
        StatsdTarget::Unix(PathBuf::from(path))
    } else {
        let (name, port) = host
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                bad(
                    "statsd_host",
                    format!("{host:?}: expected HOST:PORT or unix://PATH"),
                )
            })?;
        StatsdTarget::Udp(name.to_string(), port)
    };
    let mut prefix = r.str("statsd_prefix").unwrap_or("").to_string();
    if !prefix.is_empty() && !prefix.ends_with('.') {
        prefix.push('.');
    }
    Ok(Some(Statsd {
        target,
        prefix,
        tags: r.str("dogstatsd_tags").unwrap_or("").to_string(),
        backlog: r.flag("enable_backlog_metric"),
    }))
}

fn mode(r: &Resolved, name: &'static str) -> Result<u32, ConfigError> {
    let m: u32 = r.number(name)?;
    if m > 0o777 {
        return Err(bad(
            name,
            format!("{m:#o} is not a file mode (at most 0o777)"),
        ));
    }
    Ok(m)
}

/// A user by name, or a numeric uid (which need not be in the user database).
fn resolve_user(name: &str) -> Result<nix::unistd::Uid, ConfigError> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id.into());
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid),
        _ => Err(bad("user", format!("no user named {name:?}"))),
    }
}

/// A group by name, or a numeric gid.
fn resolve_group(name: &str) -> Result<nix::unistd::Gid, ConfigError> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id.into());
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        _ => Err(bad("group", format!("no group named {name:?}"))),
    }
}

/// The settings that `HUP` cannot change (the table's [`table::Reload::Restart`]).
pub fn restart_only() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(|s| s.reload == table::Reload::Restart)
        .map(|s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoPython;
    impl PythonConfig for NoPython {
        fn evaluate(
            &self,
            _: &Location,
            _: &[&str],
            _: &Interpreter,
        ) -> Result<PythonValues, String> {
            Err("no Python in unit tests".into())
        }
    }

    fn load(args: &[&str]) -> Result<Loaded, ConfigError> {
        let argv = std::iter::once("ferrocorn").chain(args.iter().copied());
        Settings::load(argv.map(OsString::from).collect(), &NoPython).expect("clap accepts")
    }

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        load(args).map(|l| l.settings)
    }

    #[test]
    fn defaults_are_gunicorns() {
        let s = parse(&["app:app"]).unwrap();
        assert_eq!(s.bind, vec!["127.0.0.1:8000".parse().unwrap()]);
        assert_eq!(s.threads, 1);
        assert_eq!(s.keepalive, Duration::from_secs(2));
        assert_eq!(s.rules, Rules::default());
        assert_eq!(s.umask, 0);
        assert_eq!(s.proc_name, "app:app");
        assert!(s.sendfile);
        assert_eq!(s.proxy.secure_scheme_headers.len(), 3);
        assert_eq!(s.proxy.forwarder_headers, vec!["SCRIPT_NAME", "PATH_INFO"]);
    }

    #[test]
    fn request_line_zero_means_the_ceiling() {
        let s = parse(&["--limit-request-line", "0", "app"]).unwrap();
        assert_eq!(s.rules.limits.request_line, MAX_REQUEST_LINE);
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert_eq!(parse(&["-w", "0", "app"]).unwrap_err().setting, "workers");
        assert_eq!(
            parse(&["-e", "NOEQUALS", "app"]).unwrap_err().setting,
            "raw_env"
        );
        assert_eq!(parse(&["-b", "unix:", "app"]).unwrap_err().setting, "bind");
        assert_eq!(
            parse(&["--log-level", "loud", "app"]).unwrap_err().setting,
            "loglevel"
        );
        assert_eq!(
            parse(&["--header-map", "x", "app"]).unwrap_err().setting,
            "header_map"
        );
        assert_eq!(
            parse(&["--forwarded-allow-ips", "10.0.0.0/33", "app"])
                .unwrap_err()
                .setting,
            "forwarded_allow_ips"
        );
    }

    #[test]
    fn later_flags_override_earlier_ones() {
        let s = parse(&["-w", "3", "--keep-alive", "5", "-w", "2", "app"]).unwrap();
        assert_eq!(s.workers, 2);
        assert_eq!(s.keepalive, Duration::from_secs(5));
    }

    #[test]
    fn users_groups_and_umask_resolve() {
        let s = parse(&["-u", "root", "-g", "0", "-m", "027", "app"]).unwrap();
        assert_eq!(s.user, Some(0.into()));
        assert_eq!(s.group, Some(0.into()));
        assert_eq!(s.umask, 0o027);
        assert_eq!(
            parse(&["-u", "no-such-user-x", "app"]).unwrap_err().setting,
            "user"
        );
        assert_eq!(
            parse(&["-m", "0o1777", "app"]).unwrap_err().setting,
            "umask"
        );
    }

    #[test]
    fn worker_classes_map_or_are_refused() {
        let s = parse(&["-k", "gthread", "--threads", "4", "app"]).unwrap();
        assert_eq!((s.worker_class.as_str(), s.threads), ("gthread", 4));
        let l = load(&["--worker-class=gevent", "app"]).unwrap();
        assert_eq!(l.settings.threads, GREEN_THREADS);
        assert!(
            l.warnings.iter().any(|w| w.contains("gevent")),
            "{:?}",
            l.warnings
        );
        let s = parse(&[
            "-k",
            "gunicorn.workers.geventlet.EventletWorker",
            "--worker-connections",
            "8",
            "app",
        ])
        .unwrap();
        assert_eq!((s.worker_class.as_str(), s.threads), ("eventlet", 8));
        for refused in ["tornado", "uvicorn.workers.UvicornWorker", "myapp.MyWorker"] {
            let e = parse(&["-k", refused, "app"]).unwrap_err();
            assert_eq!(e.setting, "worker_class", "{refused}");
        }
    }

    #[test]
    fn refused_settings_name_the_flag_and_the_alternative() {
        let e = parse(&["--certfile", "/x.pem", "app"]).unwrap_err();
        assert_eq!(e.setting, "certfile");
        assert!(
            e.message.contains("--certfile") && e.message.contains("nginx"),
            "{e}"
        );
        // A value that means what ferrocorn does anyway is not refused.
        assert!(parse(&["--http-protocols", "h1", "--protocol", "http", "app"]).is_ok());
        assert_eq!(
            parse(&["--http-protocols", "h2", "app"])
                .unwrap_err()
                .setting,
            "http_protocols"
        );
        assert_eq!(
            parse(&["--strip-header-spaces", "app"])
                .unwrap_err()
                .setting,
            "strip_header_spaces"
        );
    }

    #[test]
    fn accepted_settings_warn_with_their_meaning() {
        let l = load(&["--worker-tmp-dir", "/dev/shm", "app"]).unwrap();
        assert!(
            l.warnings
                .iter()
                .any(|w| w.contains("--worker-tmp-dir") && w.contains("scoreboard"))
        );
        assert!(load(&["app"]).unwrap().warnings.is_empty());
    }

    #[test]
    fn pythonpath_is_comma_separated() {
        let s = parse(&["--pythonpath", "a,b", "app"]).unwrap();
        assert_eq!(s.pythonpath, vec![PathBuf::from("a"), PathBuf::from("b")]);
    }
}
