//! Settings: the command line (Gunicorn's flag names) parsed by clap, then
//! validated into [`Settings`], the one typed value the master and workers
//! read. Sources, lowest first: defaults → the `-c` file ([`file`]) →
//! `FERROCORN_CMD_ARGS` → the command line (DESIGN §7).
//!
//! Invariant: a `Settings` is valid — every range is checked here, so no
//! other module re-validates; a bad value is a [`ConfigError`] naming the
//! setting, and `main` maps it to exit status 78 (EX_CONFIG).

pub mod bind;
pub mod file;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

pub use bind::Bind;

use crate::http::Limits;

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

/// `ferrocorn [OPTIONS] MODULE[:CALLABLE]` — flags and defaults as Gunicorn's.
/// A flag given twice keeps the last value, so the command line overrides
/// `FERROCORN_CMD_ARGS`.
#[derive(Debug, Parser)]
#[command(
    name = "ferrocorn",
    version,
    about,
    max_term_width = 100,
    args_override_self = true
)]
struct Cli {
    /// The WSGI application: `MODULE:CALLABLE`, `MODULE` (callable `application`),
    /// or a factory call `MODULE:create_app()` / `MODULE:create_app("arg")`.
    #[arg(value_name = "MODULE[:CALLABLE]")]
    app: Option<String>,

    /// The app when set by the configuration file's `wsgi_app`.
    #[arg(long, hide = true)]
    wsgi_app: Option<String>,

    /// Configuration file (TOML, Gunicorn's setting names as keys); re-read on HUP.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address to listen on, repeatable: HOST:PORT, HOST (port 8000), [::1]:PORT,
    /// unix:PATH or fd://N. Ignored when systemd passes sockets (LISTEN_FDS).
    #[arg(short, long = "bind", value_name = "ADDRESS")]
    bind: Vec<String>,

    /// Number of worker processes.
    #[arg(short, long, env = "WEB_CONCURRENCY", default_value_t = 1)]
    workers: usize,

    /// Application threads per worker; 1 calls the app on the I/O thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// Change to this directory before loading the app (it is put on sys.path).
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,

    /// Comma-separated directories to put at the front of sys.path.
    #[arg(long, value_name = "DIR[,DIR]", value_delimiter = ',')]
    pythonpath: Vec<PathBuf>,

    /// Run the workers with this virtualenv's interpreter, DIR/bin/python.
    #[arg(long, value_name = "DIR")]
    virtualenv: Option<PathBuf>,

    /// Run the workers with this Python interpreter (a path, or a name
    /// looked up on PATH); it wins over every virtualenv.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,

    /// Seconds a request may run before its worker is aborted (tracebacks
    /// logged) and replaced; also how long a client may stall; 0 = no limit.
    #[arg(short, long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,

    /// Import the app once, before forking the workers, so they share its
    /// memory copy-on-write (a zygote per generation: HUP still loads new code).
    #[arg(long)]
    preload: bool,

    /// Restart a worker gracefully after this many requests; 0 = never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_requests: u64,

    /// Add a random 0..=N to --max-requests per worker, so workers do not all restart at once.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_requests_jitter: u64,

    /// Restart a worker gracefully once its resident memory exceeds this many MiB; 0 = never.
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    max_worker_memory: u64,

    /// Seconds in-flight requests get to finish after TERM.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    graceful_timeout: u64,

    /// Seconds an idle keep-alive connection is held open.
    #[arg(long = "keep-alive", value_name = "SECS", default_value_t = 2)]
    keepalive: u64,

    /// Length of the listen(2) queue for sockets we bind.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    backlog: i32,

    /// Maximum open connections per worker.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    worker_connections: usize,

    /// Maximum bytes of the request line; 0 = 8190 (the hard ceiling).
    #[arg(long, value_name = "BYTES", default_value_t = 4094)]
    limit_request_line: usize,

    /// Maximum number of header field lines in a request (at most 32768).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit_request_fields: usize,

    /// Maximum bytes of one header field line; 0 = unlimited.
    #[arg(
        long = "limit-request-field_size",
        alias = "limit-request-field-size",
        value_name = "BYTES",
        default_value_t = 8190
    )]
    limit_request_field_size: usize,

    /// Set an environment variable for the app, repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    raw_env: Vec<String>,

    /// Write the master's PID to this file (removed on exit).
    #[arg(short, long, value_name = "FILE")]
    pid: Option<PathBuf>,

    /// Log level: debug, info, warning, error or critical.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,

    /// Where logs go: auto (the journal when stderr is connected to it), stderr or journald.
    #[arg(long, value_name = "TARGET", default_value = "auto")]
    log_target: String,

    /// Write an access log line per request to FILE; `-` sends it to the log target.
    #[arg(long, value_name = "FILE")]
    access_logfile: Option<PathBuf>,

    /// Access log format, Gunicorn's atoms (%(h)s, %(r)s, %(s)s, ...).
    #[arg(long, value_name = "FORMAT", default_value = DEFAULT_ACCESS_LOG_FORMAT)]
    access_logformat: String,

    /// Run as this user (name or uid) once the sockets are bound.
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,

    /// Run as this group (name or gid) once the sockets are bound.
    #[arg(short = 'g', long, value_name = "GROUP")]
    group: Option<String>,

    /// File mode creation mask (octal, e.g. 027), set before binding.
    #[arg(short = 'm', long, value_name = "MASK")]
    umask: Option<String>,
}

/// Validated settings; Gunicorn's setting names, durations in seconds.
///
/// The master hands them to every worker it starts (serialised in the boot
/// description, see [`crate::boot`]), so a worker runs with exactly its
/// generation's settings even if the file changed since.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `MODULE[:CALLABLE]` as given (parsed by the WSGI loader).
    pub app: String,
    /// Where to listen; never empty.
    pub bind: Vec<Bind>,
    /// Worker processes, at least 1.
    pub workers: usize,
    /// App threads per worker, at least 1.
    pub threads: usize,
    /// Directory to change into first, if any.
    pub chdir: Option<PathBuf>,
    /// Extra sys.path entries, in order.
    pub pythonpath: Vec<PathBuf>,
    /// Virtualenv root (holds `pyvenv.cfg`) from `--virtualenv`, if any.
    pub virtualenv: Option<PathBuf>,
    /// The workers' interpreter from `--python`, if any.
    pub python: Option<PathBuf>,
    /// How long a request may run (and a client may stall); `None` = unlimited.
    pub timeout: Option<Duration>,
    /// Import the app in a zygote that forks the workers (`--preload`).
    pub preload: bool,
    /// Requests before a worker restarts; 0 = never.
    pub max_requests: u64,
    /// Random extra requests per worker, `0..=jitter`.
    pub max_requests_jitter: u64,
    /// RSS ceiling per worker in bytes; `None` = none.
    pub max_worker_memory: Option<u64>,
    /// Time in-flight requests get after TERM.
    pub graceful_timeout: Duration,
    /// Idle keep-alive time.
    pub keepalive: Duration,
    /// listen(2) backlog.
    pub backlog: i32,
    /// Open connections per worker.
    pub worker_connections: usize,
    /// Request head limits.
    pub limits: Limits,
    /// Extra environment for the app, `(key, value)`.
    pub raw_env: Vec<(String, String)>,
    /// PID file path.
    pub pidfile: Option<PathBuf>,
    /// Lowest level logged, from `--log-level`.
    #[serde(with = "level_name")]
    pub log_level: tracing::Level,
    /// Where logs go.
    pub log_target: LogTarget,
    /// Access log destination; `None` = off.
    pub access_log: Option<AccessLog>,
    /// Access log format (Gunicorn's `access_log_format`).
    pub access_log_format: String,
    /// Uid to switch to after binding (the master's business: workers
    /// start with it already).
    #[serde(skip)]
    pub user: Option<nix::unistd::Uid>,
    /// Gid to switch to after binding.
    #[serde(skip)]
    pub group: Option<nix::unistd::Gid>,
    /// umask(2) value to set at start.
    pub umask: Option<u32>,
    /// The configuration file, absolute, if one was given.
    pub config: Option<PathBuf>,
    /// `argv[0]`, the environment's arguments and the command line's, as
    /// parsed: with the file, what a reload parses again.
    #[serde(skip)]
    cmdline: Vec<OsString>,
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
    /// `-`: through the log target (stderr or the journal, with fields).
    LogTarget,
    /// Appended to this file.
    File(PathBuf),
}

/// Most app threads per worker (`threads`): each has a scoreboard entry
/// the master watches, and the scoreboard is sized by this.
pub const MAX_THREADS: usize = 256;

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

impl Settings {
    /// Parse the command line and validate it.
    ///
    /// Errors: clap's own (usage, `--help`, `--version`, which the caller
    /// prints), or a [`ConfigError`] for a value out of range.
    pub fn from_args<I, T>(args: I) -> Result<Result<Settings, ConfigError>, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        Ok(Settings::validate(cli))
    }

    /// Parse `argv` with the configuration file's settings before it and
    /// the arguments of `FERROCORN_CMD_ARGS` (or Gunicorn's
    /// `GUNICORN_CMD_ARGS`) in between, so a systemd `EnvironmentFile=` can
    /// carry the settings and flags given on the command line win.
    ///
    /// Errors: as [`Settings::from_args`]; an unreadable or invalid file and
    /// badly quoted environment arguments are a [`ConfigError`].
    pub fn from_env_and_args(
        argv: Vec<OsString>,
    ) -> Result<Result<Settings, ConfigError>, clap::Error> {
        let mut argv = argv.into_iter();
        let mut cmdline: Vec<OsString> = argv.next().into_iter().collect();
        for var in ["FERROCORN_CMD_ARGS", "GUNICORN_CMD_ARGS"] {
            let Ok(value) = std::env::var(var) else {
                continue;
            };
            match shlex::split(&value) {
                Some(words) => cmdline.extend(words.into_iter().map(OsString::from)),
                None => return Ok(Err(bad("cmd_args", format!("{var}: unbalanced quotes")))),
            }
            break;
        }
        cmdline.extend(argv);
        let config = file::find_config_arg(&cmdline[1..]).map(|c| {
            let c = PathBuf::from(c);
            std::path::absolute(&c).unwrap_or(c)
        });
        Settings::parse_with_file(cmdline, config)
    }

    fn parse_with_file(
        cmdline: Vec<OsString>,
        config: Option<PathBuf>,
    ) -> Result<Result<Settings, ConfigError>, clap::Error> {
        let file_args = match &config {
            Some(path) => match file::to_args(path) {
                Ok(args) => args,
                Err(e) => return Ok(Err(e)),
            },
            None => Vec::new(),
        };
        let all = cmdline[..1]
            .iter()
            .chain(&file_args)
            .chain(&cmdline[1..])
            .cloned();
        Ok(Settings::from_args(all)?.map(|mut s| {
            s.config = config;
            s.cmdline = cmdline;
            s
        }))
    }

    /// Parse the same sources again (HUP): the file may have changed.
    ///
    /// Errors: a message naming what is now wrong.
    pub fn reread(&self) -> Result<Settings, String> {
        match Settings::parse_with_file(self.cmdline.clone(), self.config.clone()) {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string().trim().to_string()),
        }
    }

    fn validate(cli: Cli) -> Result<Settings, ConfigError> {
        let Some(app) = cli.app.or(cli.wsgi_app) else {
            return Err(bad(
                "wsgi_app",
                "no application: give MODULE[:CALLABLE] or wsgi_app in the config file",
            ));
        };
        if app.trim().is_empty() || app.starts_with(':') {
            return Err(bad("wsgi_app", "expected MODULE[:CALLABLE]"));
        }
        if cli.workers == 0 {
            return Err(bad("workers", "must be at least 1"));
        }
        if cli.threads == 0 || cli.threads > MAX_THREADS {
            return Err(bad("threads", format!("must be 1 to {MAX_THREADS}")));
        }
        if cli.worker_connections == 0 {
            return Err(bad("worker_connections", "must be at least 1"));
        }
        if cli.backlog <= 0 {
            return Err(bad("backlog", "must be at least 1"));
        }
        let bind = if cli.bind.is_empty() {
            vec!["127.0.0.1:8000".to_string()]
        } else {
            cli.bind
        };
        let bind = bind
            .iter()
            .map(|b| {
                b.parse::<Bind>()
                    .map_err(|e| bad("bind", format!("{b:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request_line = match cli.limit_request_line {
            0 => MAX_REQUEST_LINE,
            n => n.min(MAX_REQUEST_LINE),
        };
        if cli.limit_request_fields > MAX_HEADERS {
            return Err(bad(
                "limit_request_fields",
                format!(
                    "{} is above the maximum {MAX_HEADERS}",
                    cli.limit_request_fields
                ),
            ));
        }
        let raw_env = cli
            .raw_env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(bad("raw_env", format!("{kv:?} is not KEY=VALUE"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let log_level = match cli.log_level.to_ascii_lowercase().as_str() {
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
        let virtualenv = cli.virtualenv.filter(|v| !v.as_os_str().is_empty());
        let log_target = match cli.log_target.as_str() {
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
        let access_log = cli.access_logfile.map(|p| {
            if p.as_os_str() == "-" {
                AccessLog::LogTarget
            } else {
                AccessLog::File(p)
            }
        });
        let user = cli.user.as_deref().map(resolve_user).transpose()?;
        let group = match cli.group.as_deref() {
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
        let umask = cli
            .umask
            .as_deref()
            .map(|m| {
                let digits = m.strip_prefix("0o").unwrap_or(m);
                u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|&v| v <= 0o777)
                    .ok_or_else(|| bad("umask", format!("{m:?}: expected an octal mode like 027")))
            })
            .transpose()?;
        Ok(Settings {
            app,
            bind,
            workers: cli.workers,
            threads: cli.threads,
            chdir: cli.chdir,
            pythonpath: cli.pythonpath,
            virtualenv,
            python: cli.python.filter(|p| !p.as_os_str().is_empty()),
            timeout: (cli.timeout > 0).then(|| Duration::from_secs(cli.timeout)),
            preload: cli.preload,
            max_requests: cli.max_requests,
            max_requests_jitter: cli.max_requests_jitter,
            max_worker_memory: (cli.max_worker_memory > 0).then_some(cli.max_worker_memory << 20),
            graceful_timeout: Duration::from_secs(cli.graceful_timeout),
            keepalive: Duration::from_secs(cli.keepalive),
            backlog: cli.backlog,
            worker_connections: cli.worker_connections,
            limits: Limits {
                request_line,
                fields: cli.limit_request_fields,
                field_size: cli.limit_request_field_size,
            },
            raw_env,
            pidfile: cli.pid,
            log_level,
            log_target,
            access_log,
            access_log_format: cli.access_logformat,
            user,
            group,
            umask,
            config: None,
            cmdline: Vec::new(),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let argv = std::iter::once("ferrocorn").chain(args.iter().copied());
        Settings::from_args(argv).expect("clap accepts")
    }

    #[test]
    fn defaults_are_gunicorns() {
        let s = parse(&["app:app"]).unwrap();
        assert_eq!(s.bind, vec!["127.0.0.1:8000".parse().unwrap()]);
        assert_eq!(s.threads, 1);
        assert_eq!(s.keepalive, Duration::from_secs(2));
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn field_size_flag_keeps_gunicorns_underscore() {
        let s = parse(&["--limit-request-field_size", "100", "app"]).unwrap();
        assert_eq!(s.limits.field_size, 100);
        let s = parse(&["--limit-request-field-size", "200", "app"]).unwrap();
        assert_eq!(s.limits.field_size, 200);
    }

    #[test]
    fn request_line_zero_means_the_ceiling() {
        let s = parse(&["--limit-request-line", "0", "app"]).unwrap();
        assert_eq!(s.limits.request_line, MAX_REQUEST_LINE);
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
        assert_eq!(s.umask, Some(0o027));
        assert_eq!(
            parse(&["-u", "no-such-user-x", "app"]).unwrap_err().setting,
            "user"
        );
        assert_eq!(parse(&["-m", "999", "app"]).unwrap_err().setting, "umask");
    }

    #[test]
    fn pythonpath_is_comma_separated() {
        let s = parse(&["--pythonpath", "a,b", "app"]).unwrap();
        assert_eq!(s.pythonpath, vec![PathBuf::from("a"), PathBuf::from("b")]);
    }
}
