//! The only fork(2) in ferrocorn: a worker is the master's child, with the
//! listeners and its scoreboard slot inherited and nothing else of the
//! master's left running.

use std::os::fd::AsFd;

use nix::unistd::{ForkResult, Pid, fork};

use super::{Master, block_signals};
use crate::worker;

/// Fork a child for the scoreboard `slots`: a worker (one slot), or with
/// `--preload` a zygote that forks a worker into each. In the child, run
/// it and exit with its status.
///
/// Errors: fork(2) failures (out of processes or memory).
pub(super) fn fork_child(master: &mut Master, slots: Vec<usize>) -> nix::Result<Pid> {
    let old_mask = block_signals();
    let master_pid = nix::unistd::getpid();
    // SAFETY: the master is single-threaded (module invariant of master/), so
    // the child starts in a consistent state: no lock is held by a thread
    // that does not exist in the child. The doubt: a library that started a
    // helper thread behind our back would break this; none of our
    // dependencies does in the master (Python is only started in workers).
    let forked = unsafe { fork() };
    if let Ok(ForkResult::Child) = forked {
        // The master's signal pipe and reserved sockets are not ours: close
        // them before installing our own handlers (signals stay blocked).
        drop(master.signals.take());
        master.sockets.reserved.clear();
        let listeners = std::mem::take(&mut master.sockets.http);
        let boot = worker::Boot {
            settings: &master.settings,
            listeners,
            master: master_pid,
            board: master.board,
            slots,
            report: master.reports.1.as_fd(),
        };
        std::process::exit(worker::run(boot));
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&old_mask),
        None,
    );
    forked.map(|f| match f {
        ForkResult::Parent { child } => child,
        ForkResult::Child => unreachable!("the child exited above"),
    })
}
