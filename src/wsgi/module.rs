//! The native module's Python face (`ferrocorn._native`): what a worker's
//! interpreter calls to become a ferrocorn worker.
//!
//! `log(level, message)` writes to the error log (for the server hooks).
//! `run_worker(boot_fd)` releases the GIL and runs the worker's entry (the
//! Rust event loop, which takes the GIL again only to call the app) until
//! the worker stops, then returns its exit status. The entry is handed in
//! by the crate root, so this module does not depend on `worker/`.

use std::os::fd::RawFd;
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// The worker's entries: each reads the boot description at the fd and
/// returns the process exit status.
#[derive(Debug, Clone, Copy)]
pub struct Entries {
    /// Serve as a worker (or zygote).
    pub serve: fn(RawFd) -> i32,
    /// Only import the app (`--check-config`).
    pub check: fn(RawFd) -> i32,
}

static ENTRIES: OnceLock<Entries> = OnceLock::new();

/// Fill the module: `__version__`, `__build__` (this build's identity,
/// which the master's probe checks against its own), `run_worker` and
/// `check_app`, which call `entries`.
///
/// Errors: Python could not add the attributes (out of memory).
pub fn init(module: &Bound<'_, PyModule>, entries: Entries) -> PyResult<()> {
    let _ = ENTRIES.set(entries);
    module.add("__version__", crate::boot::VERSION)?;
    module.add("__build__", crate::boot::BUILD)?;
    module.add_function(wrap_pyfunction!(run_worker, module)?)?;
    module.add_function(wrap_pyfunction!(log, module)?)?;
    module.add_function(wrap_pyfunction!(check_app, module)?)
}

/// Write `message` to ferrocorn's error log at `level` (`"error"`,
/// `"warn"`, `"info"` or `"debug"`): the server hooks' `server.log` and
/// `worker.log` (Gunicorn's logger methods).
#[pyfunction]
pub(crate) fn log(py: Python<'_>, level: &str, message: &str) {
    py.detach(|| match level {
        "error" => tracing::error!("{message}"),
        "warn" => tracing::warn!("{message}"),
        "debug" => tracing::debug!("{message}"),
        _ => tracing::info!("{message}"),
    });
}

/// Run this process as a ferrocorn worker (or zygote) described by the
/// boot description at `boot_fd`; returns its exit status. Called once, by
/// the interpreter's main thread, from the master's start-up script.
#[pyfunction]
fn run_worker(py: Python<'_>, boot_fd: RawFd) -> i32 {
    let Some(entries) = ENTRIES.get() else {
        return crate::exit::WORKER_BOOT_ERROR;
    };
    py.detach(|| (entries.serve)(boot_fd))
}

/// Import the app described by the boot description at `boot_fd` and
/// return 0 if it loads, 1 if not (`--check-config`).
#[pyfunction]
fn check_app(py: Python<'_>, boot_fd: RawFd) -> i32 {
    let Some(entries) = ENTRIES.get() else {
        return crate::exit::FAILURE;
    };
    py.detach(|| (entries.check)(boot_fd))
}
