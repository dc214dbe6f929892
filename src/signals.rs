//! Signal delivery through a self-pipe, for the master and for each worker.
//!
//! The handler does one async-signal-safe thing: it writes the signal number
//! as one byte to a non-blocking pipe. The owning loop polls the read end and
//! drains the queued numbers in order, so a burst of `TTIN`s is counted, not
//! merged, and nothing is logged or allocated in signal context (Gunicorn's
//! arbiter does the same with its `SIG_QUEUE` and pipe).
//!
//! Invariant: at most one `SignalPipe` is live per process. A forked worker
//! calls [`SignalPipe::install`] again, which points the handler at a fresh
//! pipe; the inherited one is closed by dropping the master's copy.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};

/// Write end of the live pipe, read by the handler; -1 when none is installed.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn enqueue(signo: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signo as u8;
        let saved = nix::errno::Errno::last_raw();
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        // A full pipe (EAGAIN) drops the signal, which only happens after 64 KiB
        // of undrained signals: the loop is wedged and losing more is harmless.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
        nix::errno::Errno::set_raw(saved);
    }
}

/// The read end of the self-pipe; the signals routed to it are fixed at install.
#[derive(Debug)]
pub struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SignalPipe {
    /// Route `signals` to a new pipe and return its read end.
    ///
    /// Errors: pipe(2) or sigaction(2) failures.
    pub fn install(signals: &[Signal]) -> nix::Result<SignalPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(enqueue),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for &signal in signals {
            // SAFETY: `enqueue` only calls write(2) and touches errno and an atomic,
            // all async-signal-safe.
            unsafe { sigaction(signal, &action) }?;
        }
        Ok(SignalPipe { read, write })
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Take every queued signal, oldest first; empty when none is pending.
    pub fn drain(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = nix::unistd::read(&self.read, &mut buf) {
            out.extend(
                buf[..n]
                    .iter()
                    .filter_map(|&b| Signal::try_from(i32::from(b)).ok()),
            );
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        let _ = WRITE_FD.compare_exchange(
            self.write.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// Put `signals` back to their default disposition (in a child that wants
/// none of the handlers it inherited).
pub fn reset_default(signals: &[Signal]) {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for &signal in signals {
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { sigaction(signal, &default) };
    }
}

/// Block every signal and return the previous mask: around fork, so none
/// reaches a child before it has its own handlers (the inherited ones write
/// to the parent's pipe).
pub fn block_signals() -> SigSet {
    let mut old = SigSet::empty();
    let _ = sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

/// Put back a mask returned by [`block_signals`].
pub fn restore_signal_mask(old: &SigSet) {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}

/// Unblock every signal (in a child, once its handlers are in place).
pub fn unblock_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
