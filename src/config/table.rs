//! The settings table (DESIGN §7): every setting defined once — Gunicorn's
//! name, its flags, its type, its default, the environment variable that
//! overrides the default, whether `HUP` may change it, what ferrocorn does
//! with it and a doc line. The command line ([`super::cli`]), the TOML file
//! ([`super::file`]), `--print-config` ([`super::print`]), `--help`, the man
//! page and `docs/settings.md` ([`super::docs`]) are all made from it.
//!
//! It holds all of Gunicorn 27's settings (`gunicorn/config.py`), so that a
//! Gunicorn command line or configuration never meets clap's bare
//! "unexpected argument": each is implemented with Gunicorn's meaning
//! ([`Support::Yes`]), accepted with what it means here ([`Support::Accepted`],
//! a warning when it is set), or refused with a reason and what to use
//! instead ([`Support::Refused`], exit status 78). ferrocorn's own settings
//! ([`Support::Own`]) follow Gunicorn's.

/// How a setting's value is spelled and typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A switch: the flag sets `true`; the file takes `true`/`false`.
    Bool,
    /// A switch that turns something off: the flag sets `false`
    /// (Gunicorn's `--no-sendfile`).
    NegBool,
    /// A non-negative integer (Gunicorn's `validate_pos_int`).
    Int,
    /// An integer that may be written in octal (`0o22`, `022`) or hex, as
    /// Gunicorn's `auto_int` reads it: a file mode.
    Mode,
    /// A string.
    Str,
    /// A string whose flag may be given without a value, meaning `.0`
    /// (Gunicorn's `nargs="?"`).
    OptionalStr(&'static str),
    /// A list: the flag is repeated; the file takes an array (or one string).
    List,
    /// A comma-separated list: the flag takes `a,b`; the file a string or an array.
    CommaList,
    /// A table (the file only): `secure_scheme_headers`, `logconfig_dict`.
    Table,
    /// A Python callable (a server hook): only a `gunicorn.conf.py` can hold one.
    Hook,
}

/// A setting's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// No value (the setting is off or unset).
    None,
    /// A switch.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(&'static str),
    /// A list of strings.
    List(&'static [&'static str]),
    /// A table of strings.
    Table(&'static [(&'static str, &'static str)]),
}

/// What ferrocorn does with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented with Gunicorn's meaning.
    Yes,
    /// ferrocorn's own setting (Gunicorn has no such setting).
    Own,
    /// Accepted; setting it has this effect here (logged as a warning).
    Accepted(&'static str),
    /// Refused with exit status 78 and this reason, unless the value is one
    /// of `allowed` (which mean what ferrocorn does anyway).
    Refused {
        /// Why, and what to use instead.
        reason: &'static str,
        /// Values that are not refused (e.g. `h1` for `http_protocols`).
        allowed: &'static [&'static str],
    },
}

/// Whether `HUP` (a reload) applies a new value of the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The next generation of workers uses the new value.
    Yes,
    /// Only a restart does: the old value is kept, with a warning.
    Restart,
}

/// One setting.
#[derive(Debug)]
pub struct Setting {
    /// Gunicorn's name, also the key in the TOML file (`limit_request_line`).
    pub name: &'static str,
    /// Gunicorn's section, the heading in `--help` and the docs.
    pub section: &'static str,
    /// Its flags: a short one (`-w`) and long ones (`--workers`; the first
    /// long one is the name shown, the others are aliases). Empty: the file only.
    pub flags: &'static [&'static str],
    /// The value's name in `--help` (`INT`, `FILE`, ...).
    pub meta: &'static str,
    /// The type.
    pub kind: Kind,
    /// The default.
    pub default: DefaultValue,
    /// An environment variable that sets the default (`WEB_CONCURRENCY`).
    pub env: Option<&'static str>,
    /// Whether a reload applies a change.
    pub reload: Reload,
    /// What ferrocorn does with it.
    pub support: Support,
    /// One line saying what it does (units included).
    pub doc: &'static str,
}

impl Setting {
    /// The first long flag (`--workers`), if the setting has one.
    pub fn long(&self) -> Option<&'static str> {
        self.flags.iter().copied().find(|f| f.starts_with("--"))
    }

    /// The short flag's letter (`w`), if any.
    pub fn short(&self) -> Option<char> {
        self.flags
            .iter()
            .find(|f| f.len() == 2 && !f.starts_with("--"))
            .and_then(|f| f.chars().nth(1))
    }
}

/// The setting called `name`.
pub fn get(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The settings in `--help` order: Gunicorn's sections, then ferrocorn's.
pub const SECTIONS: &[&str] = &[
    "Config File",
    "Server Socket",
    "Worker Processes",
    "Security",
    "Server Mechanics",
    "Proxies",
    "Logging",
    "Metrics and Control",
    "Process Naming",
    "Debugging",
    "Python",
    "SSL",
    "HTTP/2",
    "ASGI",
    "Dirty Arbiters",
    "Server Hooks",
];

const TLS: &str = "ferrocorn does not terminate TLS: put nginx (or HAProxy) in front of it \
                   for TLS and HTTP/2, and have it send X-Forwarded-Proto";
const HTTP2: &str = "ferrocorn speaks HTTP/1.1: let nginx (or HAProxy) speak HTTP/2 to \
                     clients and HTTP/1.1 to ferrocorn";
const ASGI: &str = "ferrocorn serves WSGI (PEP 3333) only: serve ASGI apps with uvicorn or \
                    Gunicorn's asgi worker";
const DIRTY: &str = "Gunicorn's dirty arbiters are not provided: run long blocking work in a \
                     task queue (Celery, RQ) or a service of its own";
const HOOK: &str = "not run: ferrocorn serves no TLS, so Gunicorn's ssl_context is never \
                    called";
const SYSLOG: &str = "ferrocorn does not speak syslog: under systemd it logs natively to the \
                      journal (journald forwards to syslog with ForwardToSyslog=yes), else \
                      use --error-logfile";
const UWSGI: &str = "the uwsgi protocol is not served: point nginx's proxy_pass (HTTP) at \
                     ferrocorn instead of uwsgi_pass";

macro_rules! setting {
    ($name:literal, $section:literal, [$($flag:literal),*], $meta:literal, $kind:expr,
     $default:expr, $env:expr, $reload:ident, $support:expr, $doc:literal) => {
        Setting {
            name: $name,
            section: $section,
            flags: &[$($flag),*],
            meta: $meta,
            kind: $kind,
            default: $default,
            env: $env,
            reload: Reload::$reload,
            support: $support,
            doc: $doc,
        }
    };
}

const fn refused(reason: &'static str) -> Support {
    Support::Refused {
        reason,
        allowed: &[],
    }
}

use DefaultValue as D;
use Kind as K;
use Support as S;

/// Every setting, in `--help` order within its section.
#[rustfmt::skip]
pub static SETTINGS: &[Setting] = &[
    // --- Config File ----------------------------------------------------
    setting!("config", "Config File", ["-c", "--config"], "CONFIG", K::Str, D::None, None, Restart, S::Yes,
        "The configuration file: TOML keyed by these names, or a Gunicorn gunicorn.conf.py (PATH, file:PATH or python:MODULE); re-read on HUP. Without it, ./gunicorn.conf.py is read if present."),
    setting!("wsgi_app", "Config File", [], "STRING", K::Str, D::None, None, Yes, S::Yes,
        "The WSGI application, MODULE[:CALLABLE] (the command line's positional argument)."),

    // --- Server Socket --------------------------------------------------
    setting!("bind", "Server Socket", ["-b", "--bind"], "ADDRESS", K::List, D::List(&["127.0.0.1:8000"]), Some("PORT"), Restart, S::Yes,
        "Where to listen, repeatable: HOST:PORT, HOST (port 8000), [::1]:PORT, unix:PATH or fd://N. With PORT set in the environment the default is 0.0.0.0:$PORT. Sockets passed by systemd (LISTEN_FDS) are served instead."),
    setting!("backlog", "Server Socket", ["--backlog"], "INT", K::Int, D::Int(2048), None, Restart, S::Yes,
        "Length of the listen(2) queue of the sockets ferrocorn binds."),
    setting!("reuse_port", "Server Socket", ["--reuse-port"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Set SO_REUSEPORT on the sockets ferrocorn binds (all workers still share them)."),

    // --- Worker Processes -----------------------------------------------
    setting!("workers", "Worker Processes", ["-w", "--workers"], "INT", K::Int, D::Int(1), Some("WEB_CONCURRENCY"), Yes, S::Yes,
        "Number of worker processes (TTIN/TTOU change it while running)."),
    setting!("worker_class", "Worker Processes", ["-k", "--worker-class"], "STRING", K::Str, D::Str("sync"), None, Yes, S::Yes,
        "sync (the app called on the I/O thread) or gthread (--threads app threads); gevent, eventlet, gevent_wsgi and gevent_pywsgi run on app threads (min(--worker-connections, 64) per worker), with a warning; others are refused."),
    setting!("threads", "Worker Processes", ["--threads"], "INT", K::Int, D::Int(1), None, Yes, S::Yes,
        "App threads per worker (at most 256); 1 calls the app on the I/O thread; more than 1 with the sync class means gthread, as in Gunicorn."),
    setting!("worker_connections", "Worker Processes", ["--worker-connections"], "INT", K::Int, D::Int(1000), None, Yes, S::Yes,
        "Most open client connections per worker; at the limit the worker stops accepting."),
    setting!("max_requests", "Worker Processes", ["--max-requests"], "INT", K::Int, D::Int(0), None, Yes, S::Yes,
        "Restart a worker gracefully after this many requests; 0 = never."),
    setting!("max_requests_jitter", "Worker Processes", ["--max-requests-jitter"], "INT", K::Int, D::Int(0), None, Yes, S::Yes,
        "Add a random 0..=N to --max-requests per worker, so workers do not restart together."),
    setting!("max_worker_memory", "Worker Processes", ["--max-worker-memory"], "MIB", K::Int, D::Int(0), None, Yes, S::Own,
        "Restart a worker gracefully once its resident memory passes this many MiB; 0 = never."),
    setting!("timeout", "Worker Processes", ["-t", "--timeout"], "INT", K::Int, D::Int(30), None, Yes, S::Yes,
        "Seconds one request may run before its worker is aborted (every thread's traceback logged) and replaced, in every worker class (time spent waiting for the client to send or read is not counted); also how long a client may stall mid-request; 0 = no limit."),
    setting!("header_timeout", "Worker Processes", ["--header-timeout"], "INT", K::Int, D::Int(10), None, Yes, S::Own,
        "Seconds a client gets to send a complete request head, from its connection or its previous request (shortened while the worker is at --worker-connections); 0 = --timeout's (30 when that is 0)."),
    setting!("min_send_rate", "Worker Processes", ["--min-send-rate"], "INT", K::Int, D::Int(1024), None, Yes, S::Own,
        "Slowest a client may read a response, in bytes per second over each 30 s it keeps the worker waiting; a slower one is cut and logged (the app's close() still runs); 0 = no limit."),
    setting!("write_budget", "Worker Processes", ["--write-budget"], "MIB", K::Int, D::Int(64), None, Yes, S::Own,
        "MiB of response bodies a worker holds for clients that read slower than the app wrote (the I/O thread finishes them, the app thread moves on); over it, the clients that went longest without reading are cut."),
    setting!("graceful_timeout", "Worker Processes", ["--graceful-timeout"], "INT", K::Int, D::Int(30), None, Yes, S::Yes,
        "Seconds in-flight requests get to finish after TERM (or a reload) before their worker is killed."),
    setting!("keepalive", "Worker Processes", ["--keep-alive"], "INT", K::Int, D::Int(2), None, Yes, S::Yes,
        "Seconds an idle keep-alive connection is held open (every worker class keeps connections alive)."),
    setting!("http_parser", "Worker Processes", ["--http-parser"], "STRING", K::Str, D::Str("auto"), None, Yes,
        S::Accepted("ferrocorn parses HTTP with its own strict Rust parser whatever the value (auto, fast, python)"),
        "Gunicorn's choice of HTTP parser."),

    // --- Security -------------------------------------------------------
    setting!("limit_request_line", "Security", ["--limit-request-line"], "INT", K::Int, D::Int(4094), None, Yes, S::Yes,
        "Most bytes in the request line (0 = 8190, the ceiling); longer is answered 414."),
    setting!("limit_request_fields", "Security", ["--limit-request-fields"], "INT", K::Int, D::Int(100), None, Yes, S::Yes,
        "Most header field lines in a request (at most 32768); more is answered 431."),
    setting!("limit_request_field_size", "Security", ["--limit-request-field_size", "--limit-request-field-size"], "INT", K::Int, D::Int(8190), None, Yes, S::Yes,
        "Most bytes in one header field line (0 = unlimited); longer is answered 431."),

    setting!("limit_request_body", "Security", ["--limit-request-body"], "INT", K::Int, D::Int(0), None, Yes, S::Own,
        "Most bytes in a request body, by its Content-Length or its chunks; more is answered 413. 0 = unlimited, as Gunicorn."),

    // --- Server Mechanics -----------------------------------------------
    setting!("preload_app", "Server Mechanics", ["--preload"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Import the app once, in a zygote per generation that forks the workers, so they share its memory (HUP still loads new code)."),
    setting!("sendfile", "Server Mechanics", ["--no-sendfile"], "", K::NegBool, D::Bool(true), Some("SENDFILE"), Yes, S::Yes,
        "--no-sendfile sends wsgi.file_wrapper files with read and write instead of sendfile(2) (SENDFILE=0 in the environment too)."),
    setting!("chdir", "Server Mechanics", ["--chdir"], "DIR", K::Str, D::None, None, Restart, S::Yes,
        "Change to this directory before loading the app; it goes first on sys.path."),
    setting!("daemon", "Server Mechanics", ["-D", "--daemon"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Detach from the terminal and run in the background (refused under systemd, which supervises the process itself)."),
    setting!("raw_env", "Server Mechanics", ["-e", "--env"], "ENV", K::List, D::List(&[]), None, Yes, S::Yes,
        "Set an environment variable for the app, KEY=VALUE, repeatable."),
    setting!("pidfile", "Server Mechanics", ["-p", "--pid"], "FILE", K::Str, D::None, None, Restart, S::Yes,
        "Write the master's PID to this file (removed on exit)."),
    setting!("worker_tmp_dir", "Server Mechanics", ["--worker-tmp-dir"], "DIR", K::Str, D::None, None, Yes,
        S::Accepted("no effect: ferrocorn's workers report to the master through a shared-memory scoreboard, not heartbeat files, so nothing is written there"),
        "Gunicorn's directory for worker heartbeat files."),
    setting!("user", "Server Mechanics", ["-u", "--user"], "USER", K::Str, D::None, None, Restart, S::Yes,
        "Run as this user (name or uid) once the sockets are bound; the master too drops to it."),
    setting!("group", "Server Mechanics", ["-g", "--group"], "GROUP", K::Str, D::None, None, Restart, S::Yes,
        "Run as this group (name or gid); default: the user's primary group."),
    setting!("umask", "Server Mechanics", ["-m", "--umask"], "INT", K::Mode, D::Int(0), None, Restart, S::Yes,
        "File mode creation mask applied while ferrocorn creates its UNIX sockets, as Gunicorn (0: they are 0777, so a proxy running as another user can connect); Gunicorn's int(x, 0) syntax: 0, 0o22, 022 or 0x12."),
    setting!("initgroups", "Server Mechanics", ["--initgroups"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "With --user, also set the user's supplementary groups (initgroups(3))."),
    setting!("tmp_upload_dir", "Server Mechanics", [], "DIR", K::Str, D::None, None, Yes,
        S::Accepted("no effect: ferrocorn streams request bodies from the socket to wsgi.input and writes none to disk"),
        "Gunicorn's directory for request bodies."),
    setting!("pythonpath", "Server Mechanics", ["--pythonpath"], "STRING", K::CommaList, D::None, None, Yes, S::Yes,
        "Comma-separated directories to put first on sys.path."),
    setting!("paste", "Server Mechanics", ["--paste", "--paster"], "STRING", K::Str, D::None, None, Yes, S::Yes,
        "Load the app from a PasteDeploy .ini file (FILE or FILE#SECTION; needs PasteDeploy in the app's environment); its [loggers] configure Python logging."),
    setting!("raw_paste_global_conf", "Server Mechanics", ["--paste-global"], "CONF", K::List, D::List(&[]), None, Yes, S::Yes,
        "A PasteDeploy global configuration variable, KEY=VALUE, repeatable."),
    setting!("strip_header_spaces", "Server Mechanics", ["--strip-header-spaces"], "", K::Bool, D::Bool(false), None, Yes,
        Support::Refused { reason: "accepting whitespace before a field name's colon is a known request-smuggling vector (RFC 9112 section 5.1 requires a 400); fix the client or the proxy that sends it", allowed: &["false"] },
        "Gunicorn's deprecated tolerance of spaces before ':' in header fields."),
    setting!("permit_obsolete_folding", "Server Mechanics", ["--permit-obsolete-folding"], "", K::Bool, D::Bool(false), None, Yes, S::Yes,
        "Accept obsolete line folding in header fields (RFC 9112 section 5.2), replacing each fold with a space; without it such requests get 400."),
    setting!("permit_unconventional_http_method", "Server Mechanics", ["--permit-unconventional-http-method"], "", K::Bool, D::Bool(false), None, Yes, S::Yes,
        "Accept methods shorter than 3 or longer than 20 characters, with lowercase letters or '#' (any RFC 9110 token); without it they get 400."),
    setting!("permit_unconventional_http_version", "Server Mechanics", ["--permit-unconventional-http-version"], "", K::Bool, D::Bool(false), None, Yes, S::Yes,
        "Accept any HTTP/D.D version: 0.x and 1.0 are served as HTTP/1.0, the others as HTTP/1.1; without it only 1.0 and 1.1 are served (others get 505)."),
    setting!("casefold_http_method", "Server Mechanics", ["--casefold-http-method"], "", K::Bool, D::Bool(false), None, Yes, S::Yes,
        "Uppercase the request method before the app sees it (methods are case-sensitive by definition)."),
    setting!("header_map", "Server Mechanics", ["--header-map"], "STRING", K::Str, D::Str("drop"), None, Yes, S::Yes,
        "Header field names with '_', which would map onto the same environ key as their '-' twin: drop (ignore them), refuse (answer 400) or dangerous (map them); a trusted proxy's --forwarder-headers are always mapped."),
    setting!("protocol", "Server Mechanics", ["--protocol"], "STRING", K::Str, D::Str("http"), None, Restart,
        Support::Refused { reason: UWSGI, allowed: &["http"] },
        "Gunicorn's choice of http or the uwsgi binary protocol."),
    setting!("uwsgi_allow_ips", "Server Mechanics", ["--uwsgi-allow-from"], "STRING", K::CommaList, D::Str("127.0.0.1,::1"), None, Restart, refused(UWSGI),
        "Peers allowed to speak the uwsgi protocol."),

    // --- Proxies --------------------------------------------------------
    setting!("forwarded_allow_ips", "Proxies", ["--forwarded-allow-ips"], "STRING", K::CommaList, D::Str("127.0.0.1,::1"), Some("FORWARDED_ALLOW_IPS"), Yes, S::Yes,
        "Peers trusted to set secure_scheme_headers and forwarder_headers: IPs and CIDR networks, comma-separated, or * for every peer; UNIX-socket peers are always trusted."),
    setting!("secure_scheme_headers", "Proxies", [], "TABLE", K::Table,
        D::Table(&[("X-FORWARDED-PROTOCOL", "ssl"), ("X-FORWARDED-PROTO", "https"), ("X-FORWARDED-SSL", "on")]), None, Yes, S::Yes,
        "Header fields (upper-case names) and the exact values with which a trusted proxy says the request came over HTTPS (wsgi.url_scheme https); two of them disagreeing is answered 400."),
    setting!("forwarder_headers", "Proxies", ["--forwarder-headers"], "STRING", K::CommaList, D::Str("SCRIPT_NAME,PATH_INFO"), None, Yes, S::Yes,
        "Header fields with '_' a trusted proxy may set, mapped into the environ whatever --header-map says; a SCRIPT_NAME field sets SCRIPT_NAME and is stripped from PATH_INFO."),
    setting!("proxy_protocol", "Proxies", ["--proxy-protocol"], "MODE", K::OptionalStr("auto"), D::Str("off"), None, Restart, S::Yes,
        "Read a PROXY protocol header (HAProxy, stunnel) before each connection's first request: off, v1, v2 or auto (the flag alone); REMOTE_ADDR is then the client's."),
    setting!("health_check_path", "Proxies", ["--health-check-path"], "PATH", K::Str, D::None, None, Yes, S::Own,
        "A path (e.g. /_health) that ferrocorn answers itself, without the app: GET or HEAD gets 200 OK, or 503 once the worker is stopping, so a load balancer's check drains it. Not logged."),
    setting!("proxy_allow_ips", "Proxies", ["--proxy-allow-from"], "STRING", K::CommaList, D::Str("127.0.0.1,::1"), None, Yes, S::Yes,
        "Peers allowed to send a PROXY protocol header: IPs and CIDR networks, or *; others are answered 403."),

    // --- Logging --------------------------------------------------------
    setting!("accesslog", "Logging", ["--access-logfile"], "FILE", K::Str, D::None, None, Restart, S::Yes,
        "Write one line per request to FILE; - writes them to stdout (native journal entries with fields when stdout is the journal)."),
    setting!("access_log_format", "Logging", ["--access-logformat"], "STRING", K::Str,
        D::Str(r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#), None, Yes, S::Yes,
        "The access log line, with Gunicorn's atoms: %(h)s %(l)s %(u)s %(t)s %(r)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s %(f)s %(a)s %(T)s %(D)s %(M)s %(L)s %(p)s %({header}i)s %({header}o)s %({key}e)s."),
    setting!("errorlog", "Logging", ["--error-logfile", "--log-file"], "FILE", K::Str, D::Str("-"), None, Restart, S::Yes,
        "Where the error log goes: - for stderr (the journal under systemd), or a file, opened before privileges are dropped and reopened on USR1."),
    setting!("loglevel", "Logging", ["--log-level"], "LEVEL", K::Str, D::Str("info"), None, Restart, S::Yes,
        "The error log's level: debug, info, warning, error or critical."),
    setting!("log_target", "Logging", ["--log-target"], "TARGET", K::Str, D::Str("auto"), None, Restart, S::Own,
        "Where the error log goes when it is -: auto (the journal when stderr is connected to it), stderr or journald."),
    setting!("capture_output", "Logging", ["--capture-output"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Send the app's stdout and stderr to the --error-logfile file."),
    setting!("logger_class", "Logging", ["--logger-class"], "STRING", K::Str, D::Str("gunicorn.glogging.Logger"), None, Restart,
        Support::Refused { reason: "ferrocorn's own logs are written by the Rust master and workers, not by a Python logger class: configure the app's Python logging with --log-config, --log-config-json or logconfig_dict", allowed: &["gunicorn.glogging.Logger"] },
        "Gunicorn's Python class that writes its logs."),
    setting!("logconfig", "Logging", ["--log-config"], "FILE", K::Str, D::None, None, Yes, S::Yes,
        "Configure the app's Python logging from this logging.config.fileConfig file, in every worker before the app is imported."),
    setting!("logconfig_dict", "Logging", [], "TABLE", K::Table, D::None, None, Yes, S::Yes,
        "Configure the app's Python logging with this logging.config.dictConfig dictionary (a TOML table), in every worker before the app is imported."),
    setting!("logconfig_json", "Logging", ["--log-config-json"], "FILE", K::Str, D::None, None, Yes, S::Yes,
        "Configure the app's Python logging from this JSON file (a dictConfig dictionary), in every worker before the app is imported."),
    setting!("syslog", "Logging", ["--log-syslog"], "", K::Bool, D::Bool(false), None, Restart,
        Support::Refused { reason: SYSLOG, allowed: &["false"] },
        "Gunicorn's logging to syslog."),
    setting!("syslog_addr", "Logging", ["--log-syslog-to"], "SYSLOG_ADDR", K::Str, D::Str("udp://localhost:514"), None, Restart, refused(SYSLOG),
        "Where Gunicorn's syslog messages go."),
    setting!("syslog_prefix", "Logging", ["--log-syslog-prefix"], "SYSLOG_PREFIX", K::Str, D::None, None, Restart, refused(SYSLOG),
        "The program name of Gunicorn's syslog messages."),
    setting!("syslog_facility", "Logging", ["--log-syslog-facility"], "SYSLOG_FACILITY", K::Str, D::Str("user"), None, Restart, refused(SYSLOG),
        "The facility of Gunicorn's syslog messages."),
    setting!("disable_redirect_access_to_syslog", "Logging", ["--disable-redirect-access-to-syslog"], "", K::Bool, D::Bool(false), None, Restart,
        S::Accepted("no effect: ferrocorn never sends the access log to syslog"),
        "Gunicorn's switch keeping access lines out of syslog."),
    setting!("enable_stdio_inheritance", "Logging", ["-R", "--enable-stdio-inheritance"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "With --daemon, keep stdin, stdout and stderr instead of pointing them at /dev/null."),

    // --- Metrics and Control --------------------------------------------
    setting!("statsd_host", "Metrics and Control", ["--statsd-host"], "STATSD_ADDR", K::Str, D::None, None, Restart, S::Yes,
        "Send Gunicorn's StatsD metrics (requests, request.duration, request.status.CODE, workers, log.*) to HOST:PORT (UDP) or unix://PATH (datagram)."),
    setting!("statsd_prefix", "Metrics and Control", ["--statsd-prefix"], "STATSD_PREFIX", K::Str, D::Str(""), None, Restart, S::Yes,
        "Prefix of the StatsD metric names (a '.' is added)."),
    setting!("dogstatsd_tags", "Metrics and Control", ["--dogstatsd-tags"], "DOGSTATSD_TAGS", K::Str, D::Str(""), None, Restart, S::Yes,
        "DogStatsD tags added to every metric, comma-separated: tag1:value1,tag2:value2."),
    setting!("enable_backlog_metric", "Metrics and Control", ["--enable-backlog-metric"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Send the listen backlog (connections waiting to be accepted) to StatsD as the backlog histogram, once a second."),
    setting!("metrics_bind", "Metrics and Control", ["--metrics-bind"], "ADDRESS", K::List, D::List(&[]), None, Restart, S::Own,
        "Serve Prometheus metrics at /metrics on this address (HOST:PORT or unix:PATH, repeatable), as on a socket systemd passes with FileDescriptorName=metrics."),
    setting!("control_socket", "Metrics and Control", ["--control-socket"], "PATH", K::Str, D::None, None, Restart, S::Yes,
        "A UNIX socket for `ferrocorn status` (what each worker and thread is doing); one systemd passes with FileDescriptorName=control is used too."),
    setting!("control_socket_disable", "Metrics and Control", ["--no-control-socket"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Serve no control socket (not even systemd's)."),
    setting!("control_socket_mode", "Metrics and Control", ["--control-socket-mode"], "INT", K::Mode, D::Int(0o600), None, Restart, S::Yes,
        "Permission mode of the control socket ferrocorn creates (0o600: its user only)."),

    // --- Process Naming -------------------------------------------------
    setting!("proc_name", "Process Naming", ["-n", "--name"], "STRING", K::Str, D::None, None, Restart, S::Yes,
        "The name in process titles: `ferrocorn: master [NAME]`, `ferrocorn: worker [NAME]` (default: the app)."),
    setting!("default_proc_name", "Process Naming", [], "STRING", K::Str, D::None, None, Restart, S::Yes,
        "The name used when proc_name is not set (default: the app)."),

    // --- Debugging ------------------------------------------------------
    setting!("reload", "Debugging", ["--reload"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Development: watch the app's source files (every imported module) with inotify and start a new generation when one changes."),
    setting!("reload_engine", "Debugging", ["--reload-engine"], "STRING", K::Str, D::Str("auto"), None, Restart,
        S::Accepted("ferrocorn always watches with inotify (auto, inotify and poll are accepted)"),
        "Gunicorn's choice of file watcher for --reload."),
    setting!("reload_extra_files", "Debugging", ["--reload-extra-file"], "FILES", K::List, D::List(&[]), None, Restart, S::Yes,
        "With --reload, also watch this file (templates, configuration), repeatable."),
    setting!("spew", "Debugging", ["--spew"], "", K::Bool, D::Bool(false), None, Restart,
        Support::Refused { reason: "ferrocorn's server is Rust, so there is no server Python to trace: trace the app with python -X importtime, sys.settrace in the app or a profiler", allowed: &["false"] },
        "Gunicorn's trace of every line the server executes."),
    setting!("check_config", "Debugging", ["--check-config"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Check the configuration and import the app, then exit: 0 if it loads, 1 (with the reason) if not."),
    setting!("print_config", "Debugging", ["--print-config"], "", K::Bool, D::Bool(false), None, Restart, S::Yes,
        "Print the resolved settings as TOML (each non-default value with its source) and exit; the output works as a -c file."),

    // --- Python ---------------------------------------------------------
    setting!("python", "Python", ["--python"], "PATH", K::Str, D::None, None, Yes, S::Own,
        "The workers' Python interpreter (a path, or a name looked up on PATH); wins over every virtualenv."),
    setting!("virtualenv", "Python", ["--virtualenv"], "DIR", K::Str, D::None, None, Yes, S::Own,
        "Run the workers with this virtualenv's interpreter, DIR/bin/python."),

    // --- SSL --------------------------------------------------------------
    setting!("keyfile", "SSL", ["--keyfile"], "FILE", K::Str, D::None, None, Restart, refused(TLS), "Gunicorn's TLS private key."),
    setting!("certfile", "SSL", ["--certfile"], "FILE", K::Str, D::None, None, Restart, refused(TLS), "Gunicorn's TLS certificate."),
    setting!("ssl_version", "SSL", ["--ssl-version"], "STRING", K::Str, D::None, None, Restart, refused(TLS), "Gunicorn's TLS version (deprecated there)."),
    setting!("cert_reqs", "SSL", ["--cert-reqs"], "INT", K::Int, D::Int(0), None, Restart, refused(TLS), "Gunicorn's client certificate requirement."),
    setting!("ca_certs", "SSL", ["--ca-certs"], "FILE", K::Str, D::None, None, Restart, refused(TLS), "Gunicorn's CA certificates."),
    setting!("suppress_ragged_eofs", "SSL", ["--suppress-ragged-eofs"], "", K::Bool, D::Bool(true), None, Restart, refused(TLS), "Gunicorn's TLS ragged-EOF handling."),
    setting!("do_handshake_on_connect", "SSL", ["--do-handshake-on-connect"], "", K::Bool, D::Bool(false), None, Restart, refused(TLS), "Gunicorn's TLS handshake timing."),
    setting!("ciphers", "SSL", ["--ciphers"], "STRING", K::Str, D::None, None, Restart, refused(TLS), "Gunicorn's TLS cipher list."),

    // --- HTTP/2 -----------------------------------------------------------
    setting!("http_protocols", "HTTP/2", ["--http-protocols"], "STRING", K::Str, D::Str("h1"), None, Restart,
        Support::Refused { reason: HTTP2, allowed: &["h1"] }, "Gunicorn's HTTP versions (h1, h2)."),
    setting!("http2_cleartext", "HTTP/2", ["--http2-cleartext"], "STRING", K::Str, D::Str("off"), None, Restart,
        Support::Refused { reason: HTTP2, allowed: &["off"] }, "Gunicorn's cleartext HTTP/2 (h2c)."),
    setting!("http2_max_concurrent_streams", "HTTP/2", ["--http2-max-concurrent-streams"], "INT", K::Int, D::Int(100), None, Restart, refused(HTTP2), "Gunicorn's HTTP/2 stream limit."),
    setting!("http2_initial_window_size", "HTTP/2", ["--http2-initial-window-size"], "INT", K::Int, D::Int(65535), None, Restart, refused(HTTP2), "Gunicorn's HTTP/2 flow-control window."),
    setting!("http2_max_frame_size", "HTTP/2", ["--http2-max-frame-size"], "INT", K::Int, D::Int(16384), None, Restart, refused(HTTP2), "Gunicorn's HTTP/2 frame size."),
    setting!("http2_max_header_list_size", "HTTP/2", ["--http2-max-header-list-size"], "INT", K::Int, D::Int(65536), None, Restart, refused(HTTP2), "Gunicorn's HTTP/2 header list size."),

    // --- ASGI -------------------------------------------------------------
    setting!("asgi_loop", "ASGI", ["--asgi-loop"], "STRING", K::Str, D::Str("auto"), None, Restart, refused(ASGI), "Gunicorn's ASGI event loop."),
    setting!("asgi_lifespan", "ASGI", ["--asgi-lifespan"], "STRING", K::Str, D::Str("auto"), None, Restart, refused(ASGI), "Gunicorn's ASGI lifespan protocol."),
    setting!("asgi_disconnect_grace_period", "ASGI", ["--asgi-disconnect-grace-period"], "INT", K::Int, D::Int(3), None, Restart, refused(ASGI), "Gunicorn's ASGI disconnect grace period."),
    setting!("root_path", "ASGI", ["--root-path"], "STRING", K::Str, D::Str(""), None, Restart,
        Support::Refused { reason: "root_path is ASGI's mount point: for a WSGI app set SCRIPT_NAME (-e SCRIPT_NAME=/prefix), or have the proxy send a SCRIPT_NAME header", allowed: &[""] },
        "Gunicorn's ASGI root_path."),
    setting!("websocket_max_message_size", "ASGI", ["--websocket-max-message-size"], "INT", K::Int, D::Int(16_777_216), None, Restart, refused(ASGI), "Gunicorn's ASGI WebSocket message limit."),

    // --- Dirty Arbiters -----------------------------------------------------
    setting!("dirty_apps", "Dirty Arbiters", ["--dirty-app"], "STRING", K::List, D::List(&[]), None, Restart, refused(DIRTY), "Gunicorn's dirty applications."),
    setting!("dirty_workers", "Dirty Arbiters", ["--dirty-workers"], "INT", K::Int, D::Int(0), None, Restart,
        Support::Refused { reason: DIRTY, allowed: &["0"] }, "Gunicorn's dirty worker count."),
    setting!("dirty_timeout", "Dirty Arbiters", ["--dirty-timeout"], "INT", K::Int, D::Int(300), None, Restart, refused(DIRTY), "Gunicorn's dirty task timeout."),
    setting!("dirty_threads", "Dirty Arbiters", ["--dirty-threads"], "INT", K::Int, D::Int(1), None, Restart, refused(DIRTY), "Gunicorn's dirty worker threads."),
    setting!("dirty_graceful_timeout", "Dirty Arbiters", ["--dirty-graceful-timeout"], "INT", K::Int, D::Int(30), None, Restart, refused(DIRTY), "Gunicorn's dirty worker graceful timeout."),

    // --- Server Hooks (a gunicorn.conf.py's callables) ----------------------
    setting!("on_starting", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`on_starting(server)`: in the arbiter, once, before the first worker is forked; raising stops the start (exit 78)."),
    setting!("on_reload", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`on_reload(server)`: in the arbiter on HUP, after the file ran again and before the new generation is forked."),
    setting!("when_ready", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`when_ready(server)`: in the arbiter after on_starting, the listeners bound; raising stops the start (exit 78)."),
    setting!("pre_fork", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`pre_fork(server, worker)`: in the arbiter (or the --preload zygote) before each worker's fork."),
    setting!("post_fork", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`post_fork(server, worker)`: in the new worker, before the app is imported."),
    setting!("post_worker_init", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`post_worker_init(worker)`: in the worker once the app is loaded, before it serves."),
    setting!("worker_int", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`worker_int(worker)`: in the worker on INT or QUIT (a quick stop)."),
    setting!("worker_abort", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`worker_abort(worker)`: in the worker on ABRT, which the master sends for a request past --timeout."),
    setting!("pre_exec", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`pre_exec(server)`: in the arbiter when USR2 starts a new master."),
    setting!("pre_request", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`pre_request(worker, req)`: in the worker before the app is called."),
    setting!("post_request", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`post_request(worker, req, environ, resp)` (or 2 or 3 arguments): in the worker after the response."),
    setting!("child_exit", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`child_exit(server, worker)`: in the arbiter once the master reaped a worker."),
    setting!("worker_exit", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`worker_exit(server, worker)`: in the worker as it exits."),
    setting!("nworkers_changed", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`nworkers_changed(server, new, old)`: in the arbiter at start (old None), TTIN, TTOU and HUP."),
    setting!("on_exit", "Server Hooks", [], "", K::Hook, D::None, None, Yes, S::Yes, "`on_exit(server)`: in the arbiter when the master stops, the workers gone."),
    setting!("ssl_context", "Server Hooks", [], "", K::Hook, D::None, None, Restart, S::Accepted(HOOK), "Called to make Gunicorn's TLS context."),
    setting!("on_dirty_starting", "Server Hooks", [], "", K::Hook, D::None, None, Restart, S::Accepted(DIRTY), "Called before a dirty arbiter starts."),
    setting!("dirty_post_fork", "Server Hooks", [], "", K::Hook, D::None, None, Restart, S::Accepted(DIRTY), "Called after a dirty worker's fork."),
    setting!("dirty_worker_init", "Server Hooks", [], "", K::Hook, D::None, None, Restart, S::Accepted(DIRTY), "Called once a dirty worker loaded its apps."),
    setting!("dirty_worker_exit", "Server Hooks", [], "", K::Hook, D::None, None, Restart, S::Accepted(DIRTY), "Called when a dirty worker exited."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gunicorn_27_setting_is_in_the_table() {
        // gunicorn 27.0.1's KNOWN_SETTINGS, by name.
        let gunicorn = "access_log_format accesslog asgi_disconnect_grace_period asgi_lifespan \
            asgi_loop backlog bind ca_certs capture_output casefold_http_method cert_reqs \
            certfile chdir check_config child_exit ciphers config control_socket \
            control_socket_disable control_socket_mode daemon default_proc_name dirty_apps \
            dirty_graceful_timeout dirty_post_fork dirty_threads dirty_timeout \
            dirty_worker_exit dirty_worker_init dirty_workers disable_redirect_access_to_syslog \
            do_handshake_on_connect dogstatsd_tags enable_backlog_metric \
            enable_stdio_inheritance errorlog forwarded_allow_ips forwarder_headers \
            graceful_timeout group header_map http2_cleartext http2_initial_window_size \
            http2_max_concurrent_streams http2_max_frame_size http2_max_header_list_size \
            http_parser http_protocols initgroups keepalive keyfile limit_request_field_size \
            limit_request_fields limit_request_line logconfig logconfig_dict logconfig_json \
            logger_class loglevel max_requests max_requests_jitter nworkers_changed \
            on_dirty_starting on_exit on_reload on_starting paste permit_obsolete_folding \
            permit_unconventional_http_method permit_unconventional_http_version pidfile \
            post_fork post_request post_worker_init pre_exec pre_fork pre_request preload_app \
            print_config proc_name protocol proxy_allow_ips proxy_protocol pythonpath raw_env \
            raw_paste_global_conf reload reload_engine reload_extra_files reuse_port root_path \
            secure_scheme_headers sendfile spew ssl_context ssl_version statsd_host \
            statsd_prefix strip_header_spaces suppress_ragged_eofs syslog syslog_addr \
            syslog_facility syslog_prefix threads timeout tmp_upload_dir umask user \
            uwsgi_allow_ips websocket_max_message_size when_ready worker_abort worker_class \
            worker_connections worker_exit worker_int worker_tmp_dir workers wsgi_app";
        let names: Vec<&str> = gunicorn.split_whitespace().collect();
        assert_eq!(names.len(), 120);
        for name in names {
            let s = get(name).unwrap_or_else(|| panic!("{name} is missing"));
            assert_ne!(s.support, Support::Own, "{name} is Gunicorn's");
        }
    }

    #[test]
    fn names_and_flags_are_unique_and_sections_known() {
        let mut seen = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.name), "{} twice", s.name);
            for f in s.flags {
                assert!(seen.insert(f), "{f} twice");
                assert!(f.starts_with('-'));
            }
            assert!(SECTIONS.contains(&s.section), "{}: {}", s.name, s.section);
            assert!(s.doc.ends_with('.'), "{}: doc line", s.name);
            assert_eq!(
                s.flags.is_empty(),
                s.kind == Kind::Table
                    || s.kind == Kind::Hook
                    || matches!(s.name, "wsgi_app" | "tmp_upload_dir" | "default_proc_name"),
                "{}",
                s.name
            );
        }
    }
}
