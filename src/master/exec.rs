//! Starting another program with descriptors of ours: a worker (the app's
//! interpreter) or, for a binary upgrade, the new master. The only fork(2)
//! of the master is here.
//!
//! The child gets exactly the descriptors asked for, at 3, 4, ... in the
//! order given (everything else the master holds is close-on-exec), an
//! explicit environment, and optionally another working directory.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::path::Path;

use nix::fcntl::{FcntlArg, fcntl};
use nix::unistd::{ForkResult, Pid, fork};

use crate::signals::{block_signals, restore_signal_mask};

/// How the child's signals start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signals {
    /// All blocked (the mask of the fork): a worker unblocks them once its
    /// own handlers are installed, so a TERM or USR1 that arrives while the
    /// interpreter starts is handled, not fatal.
    Blocked,
    /// None blocked, default dispositions: a new master installs its
    /// handlers early and must be stoppable before.
    Default,
}

/// What to exec.
#[derive(Debug)]
pub(crate) struct Program<'a> {
    /// The executable's path.
    pub exe: &'a CStr,
    /// `argv`, `argv[0]` included.
    pub argv: &'a [CString],
    /// The whole environment, `KEY=VALUE`.
    pub env: &'a [CString],
    /// Variables to set to the child's own pid (`LISTEN_PID`), which only
    /// the child knows.
    pub pid_vars: &'a [&'a str],
    /// Descriptors to place at 3, 4, ... in this order.
    pub fds: &'a [RawFd],
    /// Working directory to change to first, if not ours.
    pub cwd: Option<&'a Path>,
    /// The child's signal mask at exec.
    pub signals: Signals,
}

/// Fork and exec `program`; returns the child's pid.
///
/// Errors: fork(2) failed. A failure in the child (exec of a missing
/// file, say) is written to stderr and the child exits with status 127.
pub(crate) fn spawn(program: &Program<'_>) -> nix::Result<Pid> {
    let old_mask = block_signals();
    // SAFETY: the master is single-threaded (module invariant of master/),
    // so the child starts in a consistent state: no lock is held by a
    // thread that does not exist in the child, and it may allocate. The
    // doubt: a library that started a helper thread behind our back would
    // break this; none of our dependencies does, and Python never runs in
    // the master.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            restore_signal_mask(&old_mask);
            Ok(child)
        }
        Ok(ForkResult::Child) => {
            let err = exec(program);
            eprintln!(
                "ferrocorn: cannot exec {}: {err}",
                program.exe.to_string_lossy()
            );
            // SAFETY: _exit ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(127) }
        }
        Err(e) => {
            restore_signal_mask(&old_mask);
            Err(e)
        }
    }
}

/// In the forked child: place the descriptors, exec. Returns only on error.
fn exec(program: &Program<'_>) -> nix::Error {
    if let Some(dir) = program.cwd {
        if let Err(e) = nix::unistd::chdir(dir) {
            return e;
        }
    }
    // Move everything out of the way first (above every target number), so
    // placing fd i at 3+i never clobbers one still to be placed.
    let floor = 3 + program.fds.len() as RawFd + 16;
    let mut temps = Vec::with_capacity(program.fds.len());
    for &fd in program.fds {
        // SAFETY: the fds are open in this process (inherited across fork).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(floor)) {
            Ok(t) => temps.push(t),
            Err(e) => return e,
        }
    }
    for (i, &t) in temps.iter().enumerate() {
        // dup2 clears close-on-exec on the target: exactly these survive exec.
        // SAFETY: `t` is a valid fd we own; the target number is ours to reuse.
        if unsafe { libc::dup2(t, 3 + i as RawFd) } < 0 {
            return nix::Error::last();
        }
    }
    if program.signals == Signals::Default {
        // Our handlers write to the master's signal pipe: default them
        // before unblocking, so a signal before exec cannot reach it.
        crate::signals::reset_default(&super::SIGNALS);
        crate::signals::unblock_signals();
    }
    let mut env = program.env.to_vec();
    let pid = std::process::id();
    env.extend(
        program
            .pid_vars
            .iter()
            .filter_map(|var| CString::new(format!("{var}={pid}")).ok()),
    );
    match nix::unistd::execve(program.exe, program.argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// This process's environment without `remove`'s variables, `KEY=VALUE`.
pub(crate) fn environment_without(remove: &[&str]) -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .filter(|(k, _)| !remove.iter().any(|r| k.as_bytes() == r.as_bytes()))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}
