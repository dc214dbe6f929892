//! The only fork(2) in ferrocorn: a worker is the master's child, with the
//! listeners inherited and nothing else of the master's left running.

use nix::unistd::{ForkResult, Pid, fork};

use super::{Master, block_signals};
use crate::worker;

/// Fork one worker; in the child, run it and exit with its status.
///
/// Errors: fork(2) failures (out of processes or memory).
pub(super) fn fork_worker(master: &mut Master) -> nix::Result<Pid> {
    let old_mask = block_signals();
    let master_pid = nix::unistd::getpid();
    // SAFETY: the master is single-threaded (module invariant of master/), so
    // the child starts in a consistent state: no lock is held by a thread
    // that does not exist in the child. The doubt: a library that started a
    // helper thread behind our back would break this; none of our
    // dependencies does in the master (Python is only started in workers).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&old_mask),
                None,
            );
            Ok(child)
        }
        Ok(ForkResult::Child) => {
            // The master's signal pipe is not ours: close it before
            // installing our own (signals stay blocked until then).
            drop(master.signals.take());
            let listeners = std::mem::take(&mut master.listeners);
            let code = worker::run(&master.settings, listeners, master_pid);
            std::process::exit(code)
        }
        Err(e) => {
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&old_mask),
                None,
            );
            Err(e)
        }
    }
}
