//! The master's side of the arbiter, the Python process that runs a
//! `gunicorn.conf.py`'s server hooks and forks the workers
//! (`worker::arbiter` has the protocol; docs/architecture.md, "Server
//! hooks"). The master writes commands without blocking and never waits
//! for an answer: a worker it asked for is adopted when its pid appears
//! in the scoreboard slot, so a hook that hangs delays workers, not the
//! master.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::{Master, State, Worker, spawn};
use crate::exit;
use crate::scoreboard::{self, State as SlotState};

/// How long the arbiter gets for `on_exit` once the workers are gone.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(5);
/// A worker the arbiter has not forked after this long is reported (a
/// `pre_fork` hook may hang).
const FORK_SLOW: Duration = Duration::from_secs(30);
/// Commands kept for an arbiter that does not read them, at most.
const OUTBOX_LIMIT: usize = 1 << 20;

/// The running arbiter.
#[derive(Debug)]
pub(super) struct Arbiter {
    pub(super) pid: Pid,
    /// The master's end of the command socket (non-blocking).
    control: OwnedFd,
    /// Bytes read from it that do not yet end a line.
    inbox: Vec<u8>,
    /// Commands not yet written (the socket was full).
    outbox: Vec<u8>,
    /// When `exit` was sent.
    exiting: Option<Instant>,
}

/// A slot the arbiter was asked to fork a worker into.
#[derive(Debug)]
pub(super) struct Forking {
    pub(super) generation: u32,
    since: Instant,
    reported: bool,
}

impl Arbiter {
    /// The command socket, for the master's poll, and whether commands
    /// wait to be written.
    pub(super) fn fd(&self) -> (std::os::fd::BorrowedFd<'_>, bool) {
        (self.control.as_fd(), !self.outbox.is_empty())
    }

    /// Write what the socket takes of the waiting commands.
    fn flush(&mut self) {
        while !self.outbox.is_empty() {
            match nix::unistd::write(&self.control, &self.outbox) {
                Ok(n) => {
                    self.outbox.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(e) => {
                    tracing::debug!("arbiter commands: {e}");
                    self.outbox.clear();
                }
            }
        }
    }
}

impl Master {
    /// Start the arbiter if the configuration is a `gunicorn.conf.py` and
    /// none runs; false if there is none to fork workers.
    pub(super) fn ensure_arbiter(&mut self) -> bool {
        if self.arbiter.is_some() {
            return true;
        }
        match spawn::spawn_arbiter(self) {
            Ok((pid, control)) => {
                self.arbiter = Some(Arbiter {
                    pid,
                    control,
                    inbox: Vec::new(),
                    outbox: Vec::new(),
                    exiting: None,
                });
                true
            }
            Err(e) => {
                tracing::error!("cannot start the arbiter: {e}");
                self.respawn_at = Instant::now() + super::RESPAWN_BACKOFF;
                false
            }
        }
    }

    /// Send one command line, without blocking: what the socket does not
    /// take now waits for the next turns (a hook that hangs fills it; past
    /// [`OUTBOX_LIMIT`] commands are dropped with a warning).
    pub(super) fn tell_arbiter(&mut self, command: &str) {
        let Some(arbiter) = self.arbiter.as_mut() else {
            return;
        };
        if arbiter.outbox.len() + command.len() >= OUTBOX_LIMIT {
            tracing::warn!(
                "The arbiter (pid: {}) is not reading its commands (a server hook hangs?); \
                 dropped {command:?}",
                arbiter.pid
            );
            return;
        }
        arbiter.outbox.extend_from_slice(command.as_bytes());
        arbiter.outbox.push(b'\n');
        arbiter.flush();
    }

    /// Write the commands still waiting (the master's loop, every turn).
    pub(super) fn flush_arbiter(&mut self) {
        if let Some(arbiter) = self.arbiter.as_mut() {
            arbiter.flush();
        }
    }

    /// Ask the arbiter for a worker of the current generation in a new
    /// slot; false if no slot is free.
    pub(super) fn fork_via_arbiter(&mut self) -> bool {
        let Some(slot) = scoreboard::claim(self.board) else {
            tracing::error!("scoreboard full: no worker above {}", scoreboard::CAPACITY);
            return false;
        };
        self.forking.insert(
            slot,
            Forking {
                generation: self.generation,
                since: Instant::now(),
                reported: false,
            },
        );
        self.tell_arbiter(&format!("fork {} {} {slot}", self.generation, self.wanted));
        true
    }

    /// Make the workers the arbiter forked ours: their pids are in their
    /// slots (written before the middle process exits, so before we can
    /// reap them).
    pub(super) fn adopt_forked(&mut self) {
        let stopping = matches!(self.state, State::Stopping { .. });
        let board = self.board;
        let done: Vec<(usize, i32)> = self
            .forking
            .keys()
            .map(|&slot| (slot, board[slot].pid()))
            .filter(|&(_, pid)| pid != 0)
            .collect();
        for (slot, pid) in done {
            let Some(forking) = self.forking.remove(&slot) else {
                continue;
            };
            let pid = Pid::from_raw(pid);
            if stopping {
                let _ = kill(pid, Signal::SIGTERM);
            }
            self.workers.insert(
                pid,
                Worker {
                    retiring: stopping,
                    started: Instant::now(),
                    generation: forking.generation,
                    slot,
                    aborted: None,
                },
            );
        }
        for (slot, f) in self.forking.iter_mut() {
            if !f.reported && f.since.elapsed() >= FORK_SLOW {
                f.reported = true;
                tracing::warn!(
                    "The arbiter has not forked the worker for slot {slot} in {} s \
                     (a pre_fork or another server hook may hang)",
                    FORK_SLOW.as_secs()
                );
            }
        }
    }

    /// Give up the slots of workers not forked yet, of `generation` (or all).
    pub(super) fn forget_forking(&mut self, generation: Option<u32>) {
        let board = self.board;
        self.forking.retain(|&slot, f| {
            let keep = generation.is_some_and(|g| g != f.generation);
            if !keep {
                board[slot].set_state(SlotState::Free);
            }
            keep
        });
    }

    /// Read what the arbiter's zygotes say: `failed G CODE` when the app
    /// would not load for generation G.
    pub(super) fn read_arbiter(&mut self) {
        let Some(arbiter) = self.arbiter.as_mut() else {
            return;
        };
        let mut buf = [0u8; 512];
        loop {
            match nix::unistd::read(&arbiter.control, &mut buf) {
                Ok(0) => break,
                Ok(n) => arbiter.inbox.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let mut failed = Vec::new();
        while let Some(end) = arbiter.inbox.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = arbiter.inbox.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["failed", generation, code] = words[..] {
                if let (Ok(g), Ok(c)) = (generation.parse::<u32>(), code.parse::<i32>()) {
                    failed.push((g, c));
                }
            }
        }
        for (generation, code) in failed {
            self.forget_forking(Some(generation));
            self.boot_failed(generation, code);
        }
    }

    /// The arbiter exited: at start (a bad hook, exit 78) that stops the
    /// server; later it is started again (running on_starting again).
    pub(super) fn arbiter_exited(&mut self, status: WaitStatus) {
        self.arbiter = None;
        self.forget_forking(None);
        if matches!(self.state, State::Stopping { .. }) {
            return;
        }
        let code = match status {
            WaitStatus::Exited(_, code) => code,
            _ => exit::WORKER_BOOT_ERROR,
        };
        if !self.served {
            let reason = if code == exit::CONFIG {
                "a server hook of the configuration file failed."
            } else {
                "the arbiter failed."
            };
            return self.halt(code, reason);
        }
        tracing::error!("The arbiter exited ({status:?}); starting it again");
        self.respawn_at = Instant::now() + super::RESPAWN_BACKOFF;
    }

    /// Once the workers are gone: `exit` (on_exit), then SIGKILL if it
    /// takes longer than [`EXIT_GRACE`]. True while the arbiter runs.
    pub(super) fn stop_arbiter(&mut self) -> bool {
        let Some(arbiter) = self.arbiter.as_ref() else {
            return false;
        };
        match arbiter.exiting {
            None => {
                self.tell_arbiter("exit");
                if let Some(a) = self.arbiter.as_mut() {
                    a.exiting = Some(Instant::now());
                }
            }
            Some(at) if at.elapsed() >= EXIT_GRACE => {
                tracing::warn!(
                    "The arbiter has not exited {} s after the workers (a server hook hangs): \
                     killing it",
                    EXIT_GRACE.as_secs()
                );
                let _ = kill(arbiter.pid, Signal::SIGKILL);
            }
            Some(_) => {}
        }
        true
    }
}
