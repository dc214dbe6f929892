//! `-D/--daemon` (Gunicorn's `daemon`): detach from the terminal and run in
//! the background, the classic way (fork, setsid, fork; Stevens, and
//! Gunicorn's `util.daemonize`): the parent returns to the shell at once,
//! the server runs in a new session with no controlling terminal and its
//! standard streams on /dev/null (stdout and stderr kept with
//! `--enable-stdio-inheritance`). Its errors from then on go to the
//! `--error-logfile` file, if one is given.
//!
//! Refused under systemd (`NOTIFY_SOCKET`), which supervises the main
//! process itself: a daemon's exit would read as the service stopping.

use std::os::fd::AsRawFd;

use nix::unistd::{ForkResult, fork, setsid};

/// Detach. Returns in the daemon; the original process and the
/// intermediate one exit 0.
///
/// Errors: fork(2) or setsid(2) failed (the process is not detached).
pub fn daemonize(stdio_inheritance: bool) -> nix::Result<()> {
    for step in 0..2 {
        // SAFETY: called from the single-threaded start-up of the master,
        // before any thread or child exists; the parent only exits.
        match unsafe { fork() }? {
            // SAFETY: _exit ends the parent without running destructors
            // the child still relies on (buffers, the listeners to come).
            ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
            ForkResult::Child if step == 0 => {
                setsid()?;
            }
            ForkResult::Child => {}
        }
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let targets: &[i32] = if stdio_inheritance { &[0] } else { &[0, 1, 2] };
        for &target in targets {
            // SAFETY: dup2 onto the standard descriptors, which this
            // process owns; the source is /dev/null, open.
            unsafe { libc::dup2(null.as_raw_fd(), target) };
        }
    }
    Ok(())
}
