//! The native module's Python face (`ferrocorn._native`): what a worker's
//! interpreter calls to become a ferrocorn worker.
//!
//! `run_worker(boot_fd)` releases the GIL and runs the worker's entry (the
//! Rust event loop, which takes the GIL again only to call the app) until
//! the worker stops, then returns its exit status. The entry is handed in
//! by the crate root, so this module does not depend on `worker/`.

use std::os::fd::RawFd;
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// The worker's entry: reads the boot description at the fd, returns the
/// process exit status.
pub type Entry = fn(RawFd) -> i32;

static ENTRY: OnceLock<Entry> = OnceLock::new();

/// Fill the module: `__version__`, `__build__` (this build's identity,
/// which the master's probe checks against its own) and `run_worker`,
/// which calls `entry`.
///
/// Errors: Python could not add the attributes (out of memory).
pub fn init(module: &Bound<'_, PyModule>, entry: Entry) -> PyResult<()> {
    let _ = ENTRY.set(entry);
    module.add("__version__", crate::boot::VERSION)?;
    module.add("__build__", crate::boot::BUILD)?;
    module.add_function(wrap_pyfunction!(run_worker, module)?)
}

/// Run this process as a ferrocorn worker (or zygote) described by the
/// boot description at `boot_fd`; returns its exit status. Called once, by
/// the interpreter's main thread, from the master's start-up script.
#[pyfunction]
fn run_worker(py: Python<'_>, boot_fd: RawFd) -> i32 {
    let Some(&entry) = ENTRY.get() else {
        return crate::exit::WORKER_BOOT_ERROR;
    };
    py.detach(|| entry(boot_fd))
}
