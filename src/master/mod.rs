//! The master process (DESIGN §1): owns the listeners, forks the workers,
//! reaps and respawns them, and turns signals into state changes. It never
//! serves a request and never starts Python.
//!
//! One thread, one loop: drain signals → reap → stop or top up → wait
//! (≤ 1 s) for the next signal → repeat. Invariant: the master stays single-threaded, because fork(2)
//! is only safe from a single-threaded process.

mod spawn;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::config::Settings;
use crate::listeners::Listener;
use crate::signals::SignalPipe;

/// Exit statuses: the contract with systemd's `RestartPreventExitStatus=`.
pub mod exit {
    /// Clean stop.
    pub const OK: i32 = 0;
    /// Start-up failed for another reason (e.g. an address in use).
    pub const FAILURE: i32 = 1;
    /// A worker could not boot (Python would not start).
    pub const WORKER_BOOT_ERROR: i32 = 3;
    /// The app could not be imported.
    pub const APP_LOAD_ERROR: i32 = 4;
    /// Bad configuration (sysexits.h `EX_CONFIG`).
    pub const CONFIG: i32 = 78;
}

/// Signals the master acts on.
const SIGNALS: [Signal; 10] = [
    Signal::SIGCHLD,
    Signal::SIGHUP,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// How long a quick stop (INT/QUIT) waits before SIGKILL.
const QUICK_STOP: Duration = Duration::from_secs(2);
/// A worker that dies sooner than this after its fork is crashing at boot:
/// its replacement waits as long, so a crash loop cannot spin the CPU.
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Worker {
    /// Replaced by HUP or removed by TTOU: TERM was sent, do not count it.
    retiring: bool,
    started: Instant,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Running,
    Stopping { deadline: Instant, killed: bool },
}

#[derive(Debug)]
struct Master {
    settings: Settings,
    listeners: Vec<Listener>,
    signals: Option<SignalPipe>,
    workers: HashMap<Pid, Worker>,
    wanted: usize,
    state: State,
    exit_code: i32,
    pidfile: Option<PathBuf>,
    /// No spawning before this instant (see `RESPAWN_BACKOFF`).
    respawn_at: Instant,
}

/// Block every signal around fork, so none reaches a child before it has
/// installed its own handlers (the inherited ones write to the master's pipe).
pub(crate) fn block_signals() -> SigSet {
    let mut old = SigSet::empty();
    let _ = sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

/// Unblock every signal (in a child, after its handlers are in place).
pub(crate) fn unblock_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Run the master until it stops; returns the process exit status.
pub fn run(settings: Settings, listeners: Vec<Listener>) -> i32 {
    let signals = match SignalPipe::install(&SIGNALS) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return exit::FAILURE;
        }
    };
    let pidfile = settings.pidfile.clone();
    if let Some(path) = &pidfile {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            tracing::error!("cannot write pid file {}: {e}", path.display());
            return exit::FAILURE;
        }
    }
    let mut master = Master {
        wanted: settings.workers,
        settings,
        listeners,
        signals: Some(signals),
        workers: HashMap::new(),
        state: State::Running,
        exit_code: exit::OK,
        pidfile,
        respawn_at: Instant::now(),
    };
    master.run_loop();
    master.cleanup();
    master.exit_code
}

impl Master {
    fn run_loop(&mut self) {
        loop {
            let queued = self
                .signals
                .as_ref()
                .map(SignalPipe::drain)
                .unwrap_or_default();
            for signal in queued {
                self.handle_signal(signal);
            }
            self.reap();
            match self.state {
                State::Running => self.spawn_missing(),
                State::Stopping { deadline, killed } => {
                    if self.workers.is_empty() {
                        return;
                    }
                    if !killed && Instant::now() >= deadline {
                        let n = self.workers.len();
                        tracing::warn!("graceful timeout reached: killing {n} worker(s)");
                        self.signal_all(Signal::SIGKILL);
                        self.state = State::Stopping {
                            deadline,
                            killed: true,
                        };
                    }
                }
            }
            self.wait();
        }
    }

    /// Sleep until a signal arrives or a second passes.
    fn wait(&self) {
        let Some(signals) = &self.signals else { return };
        let mut fds = [PollFd::new(signals.fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
    }

    fn handle_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGCHLD | Signal::SIGWINCH | Signal::SIGUSR1 | Signal::SIGUSR2 => {}
            Signal::SIGHUP => self.reload(),
            Signal::SIGTERM => match self.state {
                State::Running => self.stop(true),
                // A second TERM during a graceful stop escalates.
                State::Stopping { .. } => self.stop(false),
            },
            Signal::SIGINT | Signal::SIGQUIT => self.stop(false),
            Signal::SIGTTIN => {
                self.wanted += 1;
                tracing::info!("Handling signal: ttin; workers: {}", self.wanted);
            }
            Signal::SIGTTOU if self.wanted > 1 => {
                self.wanted -= 1;
                tracing::info!("Handling signal: ttou; workers: {}", self.wanted);
                self.retire(1);
            }
            _ => {}
        }
    }

    /// HUP: replace every worker. New ones start at once; old ones finish
    /// their in-flight requests, so the listeners never go unserved.
    fn reload(&mut self) {
        if !matches!(self.state, State::Running) {
            return;
        }
        tracing::info!("Handling signal: hup; restarting workers");
        let current = self.workers.values().filter(|w| !w.retiring).count();
        self.retire(current);
    }

    /// TERM `n` serving workers (lowest pids first, i.e. usually the oldest).
    fn retire(&mut self, n: usize) {
        let mut pids: Vec<Pid> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring)
            .map(|(&pid, _)| pid)
            .collect();
        pids.sort();
        for pid in pids.into_iter().take(n) {
            if let Some(w) = self.workers.get_mut(&pid) {
                w.retiring = true;
            }
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    fn stop(&mut self, graceful: bool) {
        let (signal, grace, how) = if graceful {
            (Signal::SIGTERM, self.settings.graceful_timeout, "graceful")
        } else {
            (Signal::SIGQUIT, QUICK_STOP, "quick")
        };
        tracing::info!("Shutting down: {how} stop");
        self.signal_all(signal);
        let deadline = Instant::now() + grace;
        self.state = match self.state {
            State::Stopping {
                deadline: d,
                killed,
            } => State::Stopping {
                deadline: d.min(deadline),
                killed,
            },
            State::Running => State::Stopping {
                deadline,
                killed: false,
            },
        };
    }

    fn signal_all(&self, signal: Signal) {
        for &pid in self.workers.keys() {
            let _ = kill(pid, signal);
        }
    }

    /// Collect every exited child and say why it exited, in one line each.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let Some(pid) = status.pid() else { continue };
            let Some(worker) = self.workers.remove(&pid) else {
                continue;
            };
            let stopping = matches!(self.state, State::Stopping { .. }) || worker.retiring;
            let crashed = !matches!(status, WaitStatus::Exited(_, exit::OK));
            if crashed && !stopping && worker.started.elapsed() < RESPAWN_BACKOFF {
                self.respawn_at = Instant::now() + RESPAWN_BACKOFF;
            }
            match status {
                WaitStatus::Exited(_, exit::OK) => {
                    tracing::info!("Worker exited (pid: {pid})");
                }
                WaitStatus::Exited(_, exit::APP_LOAD_ERROR) => {
                    self.halt(exit::APP_LOAD_ERROR, "App failed to load.");
                }
                WaitStatus::Exited(_, exit::WORKER_BOOT_ERROR) => {
                    self.halt(exit::WORKER_BOOT_ERROR, "Worker failed to boot.");
                }
                WaitStatus::Exited(_, code) => {
                    tracing::warn!("Worker (pid: {pid}) exited with code {code}");
                }
                WaitStatus::Signaled(_, signal, _) if stopping => {
                    tracing::info!("Worker (pid: {pid}) stopped by {signal}");
                }
                WaitStatus::Signaled(_, signal, core) => {
                    let core = if core { " (core dumped)" } else { "" };
                    tracing::error!("Worker (pid: {pid}) was killed by {signal}{core}");
                }
                _ => {}
            }
        }
    }

    /// Stop everything because a worker cannot run the app: respawning would
    /// only fail again.
    fn halt(&mut self, code: i32, reason: &str) {
        if self.exit_code == exit::OK {
            tracing::error!("Shutting down: {reason} (exit status {code})");
            self.exit_code = code;
        }
        if matches!(self.state, State::Running) {
            self.stop(false);
        }
    }

    fn spawn_missing(&mut self) {
        if Instant::now() < self.respawn_at {
            return;
        }
        let serving = self.workers.values().filter(|w| !w.retiring).count();
        for _ in serving..self.wanted {
            match spawn::fork_worker(self) {
                Ok(pid) => {
                    let worker = Worker {
                        retiring: false,
                        started: Instant::now(),
                    };
                    self.workers.insert(pid, worker);
                }
                Err(e) => {
                    tracing::error!("cannot fork a worker: {e}");
                    return;
                }
            }
        }
    }

    fn cleanup(&mut self) {
        for l in &self.listeners {
            l.remove_created_path();
        }
        if let Some(path) = &self.pidfile {
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|s| s.trim() == std::process::id().to_string());
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
        tracing::info!("Shutting down: Master");
    }
}
