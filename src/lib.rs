//! ferrocorn: a pre-fork WSGI HTTP server for UNIX, native to systemd.
//!
//! One library, two processes (DESIGN §1). The master is the `ferrocorn`
//! binary: [`main`] goes command line → settings → logging → listeners →
//! interpreter check → [`master::run`], and never loads Python. Each worker
//! is the app's own interpreter, which imports this same library built as
//! the native module `ferrocorn._native` (the [`_native`] entry below) and
//! hands control to [`worker::main`]. Every failure becomes a message
//! naming what was wrong and an exit status from the contract in [`exit`].
//!
//! The modules follow the process model (DESIGN §8); only [`wsgi`] touches
//! Python and only [`http`] knows the wire format. This file is the one
//! place that knows both processes: it wires the native module's entry
//! ([`wsgi::module`]) to the worker, so that `wsgi/` never names `worker/`.

#![warn(missing_docs)]

pub mod boot;
pub mod config;
pub mod daemon;
pub mod http;
pub mod listeners;
pub mod logging;
pub mod master;
pub mod net;
pub mod notify;
pub mod privileges;
pub mod proctitle;
pub mod scoreboard;
pub mod signals;
pub mod worker;
pub mod wsgi;

use config::Settings;
use master::interpreter::Interpreter;

/// Exit statuses: the contract with systemd's `RestartPreventExitStatus=`,
/// the same for the master and its workers.
pub mod exit {
    /// Clean stop.
    pub const OK: i32 = 0;
    /// Start-up failed for another reason (e.g. an address in use).
    pub const FAILURE: i32 = 1;
    /// A worker could not boot (its interpreter or the native module
    /// would not start).
    pub const WORKER_BOOT_ERROR: i32 = 3;
    /// The app could not be imported.
    pub const APP_LOAD_ERROR: i32 = 4;
    /// Bad configuration (sysexits.h `EX_CONFIG`), including an unusable
    /// Python interpreter.
    pub const CONFIG: i32 = 78;
}

/// The native module `ferrocorn._native` that a worker's interpreter
/// imports: `run_worker(boot_fd)` runs [`worker::main`], `check_app(boot_fd)`
/// [`worker::check`].
#[pyo3::pymodule]
fn _native(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    wsgi::module::init(
        m,
        wsgi::module::Entries {
            serve: worker::main,
            check: worker::check,
        },
    )
}

/// Run the master with this process's command line; returns the exit status.
pub fn main() -> i32 {
    // SAFETY: first thing in main: single-threaded.
    let upgrade_ready = unsafe { master::upgrade::inherited_ready_pipe() };
    let relaunch = master::upgrade::Relaunch::capture();
    boot::capture_argv();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "status") {
        return master::control::status_command(&argv[2..]);
    }
    let loaded = match Settings::load(argv, &master::interpreter::ConfigRunner) {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => {
            eprintln!("ferrocorn: configuration error: {e}");
            return exit::CONFIG;
        }
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::CONFIG
            } else {
                exit::OK
            };
        }
    };
    let config::Loaded {
        settings,
        resolved,
        warnings,
    } = loaded;
    if settings.print_config {
        print!("{}", config::print::render(&resolved));
    }
    if settings.check_config || settings.print_config {
        // Gunicorn's --check-config (and --print-config): import the app,
        // exit 0 or 1; nothing is bound, no file written.
        return check(&settings, &warnings);
    }
    if settings.daemon {
        // Before any log file is opened or stdout captured: the daemon's
        // standard streams become /dev/null.
        if let Err(e) = daemon::daemonize(settings.stdio_inheritance) {
            eprintln!("ferrocorn: cannot daemonize: {e}");
            return exit::FAILURE;
        }
    }
    let owner = Some((settings.user, settings.group));
    let error_log = match &settings.error_log {
        Some(path) => match logging::file::LogFile::open(path, owner) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("ferrocorn: errorlog: cannot open the error log {e}");
                return exit::CONFIG;
            }
        },
        None => None,
    };
    logging::init(settings.log_level, settings.log_target, error_log);
    if settings.capture_output {
        logging::capture_output();
    }
    // StatsD first: the warnings below count as gunicorn.log.warning.
    if let Err(e) = logging::statsd::init(settings.statsd.as_ref()) {
        tracing::warn!("{e}; no StatsD metrics will be sent");
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    if let Err(e) = logging::access::init(
        settings.access_log.as_ref(),
        &settings.access_log_format,
        owner,
    ) {
        tracing::error!("accesslog: cannot open the access log {e}");
        return exit::CONFIG;
    }

    if let Some(dir) = &settings.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            tracing::error!("chdir: cannot change to {}: {e}", dir.display());
            return exit::CONFIG;
        }
    }
    for (key, value) in &settings.raw_env {
        // SAFETY: the process is single-threaded here (no worker started, no
        // thread started), so nothing reads the environment concurrently.
        unsafe { std::env::set_var(key, value) };
    }
    // The arguments were read (Relaunch, the boot argv): the title may now
    // take their place.
    proctitle::set(&format!("ferrocorn: master [{}]", settings.proc_name));

    let options = listeners::BindOptions {
        backlog: settings.backlog,
        reuse_port: settings.reuse_port,
        umask: settings.umask,
        owner: (settings.user, settings.group),
    };
    let mut sockets = match listeners::open(&settings.bind, &options) {
        Ok(s) => s,
        Err(e @ listeners::ListenError::BadFd { .. }) => {
            tracing::error!("{e}");
            notify::failed(&e.to_string(), None);
            return exit::CONFIG;
        }
        Err(e) => {
            tracing::error!("{e}");
            notify::failed(&e.to_string(), e.errno());
            return exit::FAILURE;
        }
    };
    let endpoints = match open_endpoints(&settings, &mut sockets, &options) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            notify::failed(&e.to_string(), e.errno());
            return exit::FAILURE;
        }
    };
    let listeners = &sockets.http;

    tracing::info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));
    for l in listeners {
        tracing::info!("Listening at: {} ({})", l.addr, std::process::id());
    }
    let mode = if settings.threads > 1 {
        "threads"
    } else {
        "inline"
    };
    tracing::info!(
        "Using worker: {} ({mode}: {} worker(s) × {} thread(s))",
        settings.worker_class,
        settings.workers,
        settings.threads
    );
    if let Err(e) = privileges::drop_privileges(settings.user, settings.group, settings.initgroups)
    {
        tracing::error!("{e}");
        notify::failed(&e.to_string(), None);
        return exit::CONFIG;
    }
    // Checked as the user the workers run as, before any of them starts.
    let python = match Interpreter::find(&settings) {
        Ok(python) => python,
        Err(e) => {
            tracing::error!("{e}");
            notify::failed(&e.to_string(), None);
            for l in &sockets.http {
                l.remove_created_path();
            }
            return exit::CONFIG;
        }
    };
    master::log_interpreter(&python);
    master::run(
        settings,
        python,
        sockets,
        relaunch,
        upgrade_ready,
        endpoints,
    )
}

/// `--check-config`: the app imported by the interpreter the workers
/// would run, with the settings' directory and environment; 0 or 1.
fn check(settings: &Settings, warnings: &[String]) -> i32 {
    logging::init(settings.log_level, settings.log_target, None);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if let Some(dir) = &settings.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            tracing::error!("chdir: cannot change to {}: {e}", dir.display());
            return exit::FAILURE;
        }
    }
    for (key, value) in &settings.raw_env {
        // SAFETY: single-threaded start-up: nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var(key, value) };
    }
    match Interpreter::find(settings) {
        Ok(python) => master::check_app(settings, &python),
        Err(e) => {
            tracing::error!("{e}");
            exit::FAILURE
        }
    }
}

/// The master's metrics and control listeners: the sockets systemd named
/// `metrics` and `control`, `--metrics-bind` and `--control-socket`.
///
/// Errors: an address cannot be bound, or systemd's socket is no listener.
fn open_endpoints(
    settings: &Settings,
    sockets: &mut listeners::Sockets,
    options: &listeners::BindOptions,
) -> Result<master::endpoint::Endpoints, listeners::ListenError> {
    use master::endpoint::Role;
    let mut endpoints = master::endpoint::Endpoints::default();
    for (name, fd) in std::mem::take(&mut sockets.reserved) {
        let role = match name.as_str() {
            "metrics" => Role::Metrics,
            "control" if !settings.control_socket_disable => Role::Control,
            _ => continue,
        };
        endpoints.add(role, listeners::adopt_reserved(fd)?);
    }
    for bind in &settings.metrics_bind {
        endpoints.add(Role::Metrics, listeners::bind(bind, options)?);
    }
    if let (Some(path), false) = (&settings.control_socket, settings.control_socket_disable) {
        let control = listeners::BindOptions {
            umask: 0o777 & !settings.control_socket_mode,
            ..*options
        };
        let bind = config::Bind::Unix(path.clone());
        endpoints.add(Role::Control, listeners::bind(&bind, &control)?);
    }
    Ok(endpoints)
}
