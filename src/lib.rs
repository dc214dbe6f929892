//! ferrocorn: a pre-fork WSGI HTTP server for UNIX, native to systemd.
//!
//! `main` goes command line → settings → logging → listeners → master;
//! every failure becomes a message naming what was wrong and an exit status
//! from the contract in [`master::exit`]. The modules follow the process
//! model (DESIGN §8); only [`wsgi`] touches Python and only [`http`] knows
//! the wire format.

#![warn(missing_docs)]

pub mod config;
pub mod http;
pub mod listeners;
pub mod logging;
pub mod master;
pub mod notify;
pub mod privileges;
pub mod signals;
pub mod worker;
pub mod wsgi;

use config::Settings;
use master::exit;

/// Run ferrocorn with this process's command line; returns the exit status.
pub fn main() -> i32 {
    // SAFETY: first thing in main: single-threaded.
    let upgrade_ready = unsafe { master::upgrade::inherited_ready_pipe() };
    let relaunch = master::upgrade::Relaunch::capture();
    let settings = match Settings::from_env_and_args(std::env::args_os().collect()) {
        Ok(Ok(settings)) => settings,
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
    logging::init(settings.log_level, settings.log_target);
    if let Err(e) = logging::access::init(settings.access_log.as_ref(), &settings.access_log_format)
    {
        tracing::error!("access log: {e}");
        return exit::CONFIG;
    }
    if let Some(mask) = settings.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }

    if let Some(dir) = &settings.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            tracing::error!("chdir: cannot change to {}: {e}", dir.display());
            return exit::CONFIG;
        }
    }
    // --virtualenv or VIRTUAL_ENV, else the venv the app directory is in or beside.
    let mut settings = settings;
    if settings.virtualenv.is_none() {
        let cwd = std::env::current_dir().unwrap_or_default();
        let mut dirs = settings
            .pythonpath
            .iter()
            .map(|p| cwd.join(p))
            .chain([cwd.clone()]);
        settings.virtualenv = dirs.find_map(|d| wsgi::find_virtualenv(&d));
    }
    if let Some(venv) = &settings.virtualenv {
        if let Err(e) = wsgi::check_virtualenv(venv) {
            tracing::error!("virtualenv: {e}");
            return exit::CONFIG;
        }
        tracing::info!("Using virtualenv: {}", venv.display());
    }
    for (key, value) in &settings.raw_env {
        // SAFETY: the process is single-threaded here (no worker forked, no
        // thread started), so nothing reads the environment concurrently.
        unsafe { std::env::set_var(key, value) };
    }

    let sockets = match listeners::open(&settings.bind, settings.backlog) {
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
        "Using worker: {mode} ({} worker(s) × {} thread(s))",
        settings.workers,
        settings.threads
    );
    if let Err(e) = privileges::drop_privileges(settings.user, settings.group) {
        tracing::error!("{e}");
        notify::failed(&e.to_string(), None);
        return exit::CONFIG;
    }
    master::run(settings, sockets, relaunch, upgrade_ready)
}
