//! The master process (DESIGN §1): owns the listeners, forks the workers,
//! reaps and respawns them, turns signals into state changes and tells
//! systemd the truth. It never serves a request and never loads Python:
//! workers are the app's interpreter, started by path ([`interpreter`]).
//!
//! One thread, one loop: drain signals → reap → stop, or top up and promote
//! a ready generation → tell systemd → wait (≤ 1 s) → repeat. Invariants:
//! the master stays single-threaded, because fork(2) is only safe from a
//! single-threaded process; a generation replaces the previous one only
//! once every one of its workers is ready, so a reload never leaves the
//! listeners unserved.

mod arbiter;
pub mod control;
pub mod endpoint;
mod exec;
pub mod interpreter;
pub mod metrics;
mod spawn;
pub mod upgrade;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::config::Settings;
use crate::exit;
use crate::listeners::Sockets;
use crate::notify;
use crate::scoreboard::{self, Slot, State as SlotState, Totals};
use crate::signals::SignalPipe;
use endpoint::{Endpoints, Question, Role};
use interpreter::Interpreter;

/// Signals the master acts on.
pub(crate) const SIGNALS: [Signal; 10] = [
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
/// After the app failed to import in a respawned worker while others still
/// serve, try again this much later.
const IMPORT_RETRY: Duration = Duration::from_secs(5);
/// A worker whose event loop has not turned for this long (and that is not
/// inside a request younger than `--timeout`) is taken for wedged.
const HEARTBEAT_STALE: Duration = Duration::from_secs(10);
/// Each `EXTEND_TIMEOUT_USEC` asks for this much more start-up time…
const EXTEND_STEP: Duration = Duration::from_secs(5);
/// …for at most this long after a start or a reload began, so a hung import
/// still times out in the end.
const EXTEND_LIMIT: Duration = Duration::from_secs(600);
/// A worker aborted for a request past `--timeout` gets this long to write
/// its tracebacks and die before SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(3);
/// After a reload, READY=1 waits until the old workers stopped accepting,
/// but no longer than this (one may be inside a long inline request).
const RETIRE_WAIT: Duration = Duration::from_secs(2);
/// `STATUS=` is sent at most this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Worker {
    /// Replaced or removed: TERM was sent, do not count it.
    retiring: bool,
    started: Instant,
    generation: u32,
    /// Index into the scoreboard.
    slot: usize,
    /// When it was sent SIGABRT for a request past `--timeout`.
    aborted: Option<Instant>,
}

/// A `--preload` zygote: imports the app and forks a worker into each of
/// its slots, then exits; its workers become ours (we are their subreaper).
#[derive(Debug)]
struct Zygote {
    generation: u32,
    slots: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Running,
    Stopping { deadline: Instant, killed: bool },
}

#[derive(Debug)]
struct Master {
    settings: Settings,
    /// The interpreter workers are started as.
    python: Interpreter,
    sockets: Sockets,
    signals: Option<SignalPipe>,
    /// Workers write a byte here when their state changes, to wake us.
    reports: (OwnedFd, OwnedFd),
    board: &'static [Slot],
    /// The scoreboard's memfd, passed to every worker.
    board_fd: OwnedFd,
    workers: HashMap<Pid, Worker>,
    zygotes: HashMap<Pid, Zygote>,
    /// With a gunicorn.conf.py: the arbiter, which runs its server hooks
    /// and forks the workers.
    arbiter: Option<arbiter::Arbiter>,
    /// Slots the arbiter was asked to fork a worker into, not yet adopted.
    forking: HashMap<usize, arbiter::Forking>,
    /// Zygote-forked workers reaped before their zygote's exit told us of them.
    reaped_early: Vec<Pid>,
    wanted: usize,
    /// The generation being spawned; older ones retire once it is ready.
    generation: u32,
    /// The first generation has been ready (READY=1 sent).
    served: bool,
    /// A HUP is in progress (RELOADING=1 sent, READY=1 owed).
    reloading: bool,
    /// A generation became ready at this instant; READY=1 is owed once the
    /// older generations stopped accepting.
    ready_owed: Option<Instant>,
    state: State,
    exit_code: i32,
    pidfile: Option<PathBuf>,
    /// No spawning before this instant.
    respawn_at: Instant,
    /// When the current start or reload began (the EXTEND_TIMEOUT_USEC window).
    booting_since: Instant,
    watchdog: Option<Duration>,
    next_ping: Instant,
    last_status: (Instant, String),
    /// Request counters of workers already reaped.
    totals_reaped: Totals,
    /// Workers replaced after exiting on their own (crash, timeout, recycling).
    restarts: u64,
    /// Workers aborted for a request past `--timeout`.
    timeouts: u64,
    /// When this master started.
    started: Instant,
    /// `/metrics` and the control socket.
    endpoints: Endpoints,
    /// The worker count last sent to StatsD (`gunicorn.workers`).
    statsd_workers: Option<usize>,
    /// When the master-side StatsD metrics are next due.
    next_statsd: Instant,
    /// How to start this binary again, for a binary upgrade.
    relaunch: upgrade::Relaunch,
    /// A new master started by USR2, not yet ready.
    upgrade: Option<upgrade::Upgrade>,
    /// The service was handed to a new master: leave its sockets alone.
    handed_over: bool,
    /// Started by a binary upgrade: tell the old master here once ready.
    upgrade_ready: Option<OwnedFd>,
}

/// Run the master until it stops; returns the process exit status.
/// Workers are started as `python`; `relaunch` says how this process was
/// started (for USR2); `upgrade_ready` is the pipe of an old master that
/// started this one.
pub fn run(
    settings: Settings,
    python: Interpreter,
    sockets: Sockets,
    relaunch: upgrade::Relaunch,
    upgrade_ready: Option<OwnedFd>,
    endpoints: Endpoints,
) -> i32 {
    let setup = || -> Result<_, String> {
        let signals = SignalPipe::install(&SIGNALS).map_err(|e| format!("signal handlers: {e}"))?;
        let reports = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
            .map_err(|e| format!("report pipe: {e}"))?;
        let board = scoreboard::create().map_err(|e| format!("scoreboard: {e}"))?;
        if settings.preload || settings.hooks_file().is_some() {
            // Workers forked by a zygote or the arbiter are reparented to
            // us when their parent exits.
            nix::sys::prctl::set_child_subreaper(true)
                .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
        }
        if let Some(path) = &settings.pidfile {
            write_pidfile(path)
                .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))?;
        }
        Ok((signals, reports, board))
    };
    let (
        signals,
        reports,
        scoreboard::Scoreboard {
            fd: board_fd,
            slots: board,
        },
    ) = match setup() {
        Ok(parts) => parts,
        Err(e) => {
            tracing::error!("{e}");
            notify::failed(&e, None);
            return exit::FAILURE;
        }
    };
    let now = Instant::now();
    let mut master = Master {
        wanted: settings.workers,
        pidfile: settings.pidfile.clone(),
        settings,
        python,
        sockets,
        signals: Some(signals),
        reports,
        board,
        board_fd,
        workers: HashMap::new(),
        zygotes: HashMap::new(),
        arbiter: None,
        forking: HashMap::new(),
        reaped_early: Vec::new(),
        generation: 0,
        served: false,
        reloading: false,
        ready_owed: None,
        state: State::Running,
        exit_code: exit::OK,
        respawn_at: now,
        booting_since: now,
        watchdog: notify::watchdog_interval(),
        next_ping: now,
        last_status: (
            now.checked_sub(STATUS_INTERVAL).unwrap_or(now),
            String::new(),
        ),
        totals_reaped: Totals::default(),
        restarts: 0,
        timeouts: 0,
        started: now,
        endpoints,
        statsd_workers: None,
        next_statsd: now,
        relaunch,
        upgrade: None,
        handed_over: false,
        upgrade_ready,
    };
    master.run_loop();
    master.cleanup();
    master.exit_code
}

/// Write our pid to `path` as Gunicorn does: a new file in the same
/// directory, mode 0644, renamed over `path`, so a reader never sees it
/// half-written.
fn write_pidfile(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `--check-config`: import the app in a child of `python` and return 0 if
/// it loads, 1 if not (the child logs why), as Gunicorn's `--check-config`.
pub fn check_app(settings: &Settings, python: &Interpreter) -> i32 {
    match spawn::spawn_check(python, settings) {
        Ok(pid) => match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => exit::OK,
            _ => exit::FAILURE,
        },
        Err(e) => {
            tracing::error!("cannot start Python to check the app: {e}");
            exit::FAILURE
        }
    }
}

/// `Using Python: PATH (VERSION; REASON; module MODULE)`, at start and when
/// a reload changes it.
pub fn log_interpreter(python: &Interpreter) {
    let module = python.native.as_ref().map_or_else(
        || "its own ferrocorn._native".to_string(),
        |m| m.display().to_string(),
    );
    tracing::info!(
        "Using Python: {} ({}; {}; module {module})",
        python.path.display(),
        python.version,
        python.reason
    );
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
            self.drain_reports();
            self.read_arbiter();
            self.flush_arbiter();
            self.serve_endpoints();
            self.reap();
            self.adopt_forked();
            self.check_upgrade();
            self.abort_overdue();
            match self.state {
                State::Running => {
                    self.spawn_missing();
                    self.promote_ready_generation();
                    self.announce_ready();
                }
                State::Stopping { deadline, killed } => {
                    // Workers first, then the arbiter (on_exit); a worker it
                    // has yet to fork is adopted and stopped, or given up
                    // when the arbiter is gone.
                    let serving = !(self.workers.is_empty() && self.zygotes.is_empty());
                    if !serving && !self.stop_arbiter() {
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
            self.tell_systemd();
            self.send_statsd();
            self.wait();
        }
    }

    /// Sleep until a signal or a worker report arrives, a second passes, or
    /// the next watchdog ping is due.
    fn wait(&self) {
        let Some(signals) = &self.signals else { return };
        let mut timeout = Duration::from_secs(1);
        if self.watchdog.is_some() {
            timeout = timeout.min(self.next_ping.saturating_duration_since(Instant::now()));
        }
        let mut fds = vec![
            PollFd::new(signals.fd(), PollFlags::POLLIN),
            PollFd::new(self.reports.0.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(up) = &self.upgrade {
            fds.push(PollFd::new(up.ready.as_fd(), PollFlags::POLLIN));
        }
        if let Some(arbiter) = &self.arbiter {
            let (fd, writing) = arbiter.fd();
            let flags = if writing {
                PollFlags::POLLIN | PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push(PollFd::new(fd, flags));
        }
        for (fd, writing) in self.endpoints.fds() {
            let flags = if writing {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push(PollFd::new(fd, flags));
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(1000);
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }

    /// Workers write a byte when their state changes (to wake us), and an
    /// `R` when `--reload` saw a source file change.
    fn drain_reports(&mut self) {
        let mut buf = [0u8; 256];
        let mut changed = false;
        while let Ok(n @ 1..) = nix::unistd::read(&self.reports.0, &mut buf) {
            changed |= buf[..n].contains(&b'R');
        }
        if changed && self.settings.reload {
            self.reload_code();
        }
    }

    fn handle_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGCHLD | Signal::SIGWINCH => {}
            Signal::SIGUSR2 => self.start_upgrade(),
            Signal::SIGHUP => self.reload(),
            Signal::SIGTERM => match self.state {
                State::Running => self.stop(true),
                // A second TERM during a graceful stop escalates.
                State::Stopping { .. } => self.stop(false),
            },
            Signal::SIGINT | Signal::SIGQUIT => self.stop(false),
            Signal::SIGTTIN => {
                let old = self.wanted;
                self.wanted = (self.wanted + 1).min(scoreboard::CAPACITY);
                tracing::info!("Handling signal: ttin; workers: {}", self.wanted);
                self.tell_arbiter(&format!("workers {} {old}", self.wanted));
            }
            Signal::SIGTTOU if self.wanted > 1 => {
                self.wanted -= 1;
                tracing::info!("Handling signal: ttou; workers: {}", self.wanted);
                self.tell_arbiter(&format!("workers {} {}", self.wanted, self.wanted + 1));
                self.retire(|w, g| w.generation == g, 1);
            }
            Signal::SIGUSR1 => {
                tracing::info!("Handling signal: usr1; reopening log files");
                // The master first: it creates the new files (as the
                // workers' user) that the workers then open by path.
                let owner = Some((self.settings.user, self.settings.group));
                let capture = self.settings.capture_output;
                if let Err(e) = crate::logging::reopen_error_log(owner, capture) {
                    tracing::error!("cannot reopen the error log: {e}");
                }
                if let Err(e) = crate::logging::access::reopen(owner) {
                    tracing::error!("cannot reopen the access log: {e}");
                }
                self.signal_all(Signal::SIGUSR1);
            }
            _ => {}
        }
    }

    /// `--reload` saw the app's code change: a new generation imports it,
    /// with the same settings (as Gunicorn's reloader, which restarts
    /// workers without reading the configuration again).
    fn reload_code(&mut self) {
        if !matches!(self.state, State::Running) || self.reloading || !self.served {
            return;
        }
        tracing::info!(
            "Reloading: the app's code changed; starting generation {}",
            self.generation + 1
        );
        notify::reloading();
        self.reloading = true;
        self.booting_since = Instant::now();
        self.generation += 1;
    }

    /// HUP: start a new generation that re-imports the app. The current one
    /// keeps serving until every new worker is ready (`promote_ready_generation`).
    fn reload(&mut self) {
        if !matches!(self.state, State::Running) || self.reloading {
            return;
        }
        tracing::info!(
            "Handling signal: hup; starting generation {}",
            self.generation + 1
        );
        notify::reloading();
        let old = self.wanted;
        match self.settings.reread(&interpreter::ConfigRunner) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    tracing::warn!("{warning}");
                }
                self.apply_settings(loaded.settings);
            }
            Err(e) => tracing::error!(
                "Reload: cannot re-read the configuration ({e}); keeping the current settings"
            ),
        }
        // The new generation's settings go with it: the arbiter forks its
        // workers with them.
        match serde_json::to_string(&self.settings) {
            Ok(json) => self.tell_arbiter(&format!("reload {} {old} {json}", self.wanted)),
            Err(e) => tracing::error!("Reload: the arbiter keeps its settings: {e}"),
        }
        self.reloading = true;
        self.booting_since = Instant::now();
        self.generation += 1;
    }

    /// Use re-read settings for the next generation (`Settings::reread`
    /// kept what only a restart can change).
    fn apply_settings(&mut self, new: Settings) {
        // Checked again at every reload: the venv may have been rebuilt
        // with another Python since the start.
        match Interpreter::find(&new) {
            Ok(python) if python == self.python => {}
            Ok(python) => {
                log_interpreter(&python);
                self.python = python;
            }
            Err(e) => {
                tracing::error!("Reload: {e}; keeping the current settings");
                return;
            }
        }
        for (key, value) in &new.raw_env {
            // SAFETY: the master is single-threaded; workers started from
            // now on inherit the new environment.
            unsafe { std::env::set_var(key, value) };
        }
        self.wanted = new.workers;
        self.settings = new;
    }

    /// USR2: start the binary on disk as a new master on our listeners.
    fn start_upgrade(&mut self) {
        if !matches!(self.state, State::Running) || self.upgrade.is_some() || !self.served {
            return;
        }
        self.tell_arbiter("exec");
        match upgrade::start(&self.relaunch, &self.sockets) {
            Ok(up) => {
                tracing::info!(
                    "Handling signal: usr2; starting new master {} (pid: {})",
                    self.relaunch.exe.display(),
                    up.pid
                );
                self.upgrade = Some(up);
            }
            Err(e) => tracing::error!("binary upgrade: cannot start a new master: {e}"),
        }
    }

    /// Once the new master serves: hand systemd its pid and retire.
    fn check_upgrade(&mut self) {
        let Some(up) = &self.upgrade else { return };
        let mut buf = [0u8; 64];
        if !matches!(nix::unistd::read(&up.ready, &mut buf), Ok(1..)) {
            return;
        }
        let pid = up.pid;
        tracing::info!("New master (pid: {pid}) is serving; handing over and retiring");
        notify::main_pid(pid.as_raw() as u32, "handing over to the upgraded master");
        self.upgrade = None;
        self.handed_over = true;
        self.stop(true);
    }

    /// When every worker of the current generation is ready: retire the
    /// older generations and, if that was a start or a reload, say READY=1.
    fn promote_ready_generation(&mut self) {
        let current = self.generation;
        let ready = self
            .workers
            .values()
            .filter(|w| w.generation == current && !w.retiring)
            .filter(|w| self.board[w.slot].state() == SlotState::Ready)
            .count();
        if ready < self.wanted {
            return;
        }
        self.retire(|w, g| w.generation < g, usize::MAX);
        if !self.served || self.reloading {
            let what = if self.served {
                "Reload complete"
            } else {
                "Ready"
            };
            tracing::info!("{what}: generation {current}, {ready} worker(s) serving");
            self.served = true;
            self.reloading = false;
            self.ready_owed = Some(Instant::now());
        }
    }

    /// READY=1 (or, after a binary upgrade, the word to the old master) once
    /// no worker of an older generation accepts any more, so that whoever
    /// waits for it — `systemctl reload` with `Type=notify-reload` — is only
    /// answered by the new code afterwards.
    fn announce_ready(&mut self) {
        let Some(since) = self.ready_owed else { return };
        let current = self.generation;
        let old_accepting = self
            .workers
            .values()
            .any(|w| w.generation < current && self.board[w.slot].state() == SlotState::Ready);
        if old_accepting && since.elapsed() < RETIRE_WAIT {
            return;
        }
        self.ready_owed = None;
        let line = self.status_line();
        match self.upgrade_ready.take() {
            // Started by USR2: the old master is still the service's main
            // PID; it hands over with MAINPID= (systemd would ignore our
            // READY=1 until then).
            Some(old_master) => {
                let _ = nix::unistd::write(&old_master, b"ready\n");
            }
            None => notify::ready(&line),
        }
        self.last_status.1 = line;
    }

    /// TERM up to `n` serving workers that `which(worker, generation)`
    /// selects, oldest first.
    fn retire(&mut self, which: impl Fn(&Worker, u32) -> bool, n: usize) {
        let mut pids: Vec<(Instant, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring && which(w, self.generation))
            .map(|(&pid, w)| (w.started, pid))
            .collect();
        pids.sort();
        for (_, pid) in pids.into_iter().take(n) {
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
        if !self.handed_over {
            // After MAINPID= the service is the new master's to describe.
            notify::stopping();
        }
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
        for &pid in self.workers.keys().chain(self.zygotes.keys()) {
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
            if self.upgrade.as_ref().is_some_and(|u| u.pid == pid) {
                tracing::error!(
                    "Binary upgrade failed: the new master exited ({status:?}); still serving"
                );
                self.upgrade = None;
                continue;
            }
            if self.arbiter.as_ref().is_some_and(|a| a.pid == pid) {
                self.arbiter_exited(status);
                continue;
            }
            if let Some(zygote) = self.zygotes.remove(&pid) {
                self.zygote_exited(pid, zygote, status);
                continue;
            }
            // A worker the arbiter forked may not be adopted yet.
            self.adopt_forked();
            let Some(worker) = self.workers.remove(&pid) else {
                // A zygote's worker that died before we adopted it.
                self.reaped_early.push(pid);
                continue;
            };
            self.tell_arbiter(&format!("exited {} {pid}", worker.slot));
            let slot = &self.board[worker.slot];
            self.totals_reaped += slot.totals();
            let recycled = slot.state() == SlotState::Stopping;
            slot.set_state(SlotState::Free);
            let stopping = matches!(self.state, State::Stopping { .. }) || worker.retiring;
            let crashed = !matches!(status, WaitStatus::Exited(_, exit::OK));
            if !stopping && (crashed || recycled) {
                self.restarts += 1;
            }
            if crashed && !stopping && worker.started.elapsed() < RESPAWN_BACKOFF {
                self.respawn_at = Instant::now() + RESPAWN_BACKOFF;
            }
            match status {
                WaitStatus::Signaled(_, signal, _) if worker.aborted.is_some() => {
                    tracing::warn!(
                        "Worker (pid: {pid}) killed by {signal} after a request timeout"
                    );
                }
                WaitStatus::Exited(_, code) if worker.aborted.is_some() => {
                    // A worker_abort hook ended it (Gunicorn's status 1).
                    tracing::warn!(
                        "Worker (pid: {pid}) exited with code {code} after a request timeout"
                    );
                }
                WaitStatus::Exited(_, exit::OK) => {
                    tracing::info!("Worker exited (pid: {pid})");
                }
                WaitStatus::Exited(
                    _,
                    code @ (exit::APP_LOAD_ERROR | exit::WORKER_BOOT_ERROR | exit::CONFIG),
                ) => {
                    self.boot_failed(worker.generation, code);
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

    /// A zygote exits 0 once its workers are forked: adopt them (their pids
    /// are in its slots). Otherwise the app did not load.
    fn zygote_exited(&mut self, pid: Pid, zygote: Zygote, status: WaitStatus) {
        for &slot in &zygote.slots {
            let child = Pid::from_raw(self.board[slot].pid());
            let dead = child.as_raw() == 0 || self.reaped_early.contains(&child);
            if dead {
                self.board[slot].set_state(SlotState::Free);
                continue;
            }
            let worker = Worker {
                retiring: matches!(self.state, State::Stopping { .. }),
                started: Instant::now(),
                generation: zygote.generation,
                slot,
                aborted: None,
            };
            if worker.retiring {
                let _ = kill(child, Signal::SIGTERM);
            }
            self.workers.insert(child, worker);
        }
        self.reaped_early.clear();
        match status {
            WaitStatus::Exited(_, exit::OK) => {}
            WaitStatus::Exited(
                _,
                code @ (exit::APP_LOAD_ERROR | exit::WORKER_BOOT_ERROR | exit::CONFIG),
            ) => {
                self.boot_failed(zygote.generation, code);
            }
            other => tracing::error!("Zygote (pid: {pid}) failed: {other:?}"),
        }
    }

    /// `--timeout`: a worker with a request running longer gets SIGABRT (its
    /// Python tracebacks go to the log), then SIGKILL after `ABORT_GRACE`;
    /// the reaper replaces it.
    fn abort_overdue(&mut self) {
        let Some(limit) = self.settings.timeout else {
            return;
        };
        let (now, now_ms) = (Instant::now(), scoreboard::now_ms());
        for (&pid, w) in self.workers.iter_mut() {
            match w.aborted {
                Some(at) => {
                    if now.duration_since(at) >= ABORT_GRACE {
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
                None => {
                    let late = self.board[w.slot].overdue(self.settings.threads, now_ms, limit);
                    if let Some((thread, request, ran)) = late.first() {
                        tracing::error!(
                            "Worker (pid: {pid}) timeout: {request:?} on thread {thread} has run \
                             {:.1} s (limit {} s); aborting the worker",
                            ran.as_secs_f64(),
                            limit.as_secs()
                        );
                        w.aborted = Some(now);
                        self.timeouts += 1;
                        let _ = kill(pid, Signal::SIGABRT);
                    }
                }
            }
        }
    }

    /// A worker (or zygote) of `generation` could not import the app (4),
    /// start Python (3) or found its configuration invalid (78).
    fn boot_failed(&mut self, generation: u32, code: i32) {
        let reason = match code {
            exit::APP_LOAD_ERROR => "App failed to load.",
            exit::CONFIG => "The app's configuration is invalid.",
            _ => "Worker failed to boot.",
        };
        if !self.served {
            // First start: respawning would only fail again.
            return self.halt(code, reason);
        }
        if self.reloading && generation == self.generation {
            // The new code is broken: keep the generation that works.
            tracing::error!(
                "Reload failed: {reason} Generation {} keeps serving",
                self.generation - 1
            );
            let abandoned = self.generation;
            self.generation -= 1;
            self.reloading = false;
            for (&pid, w) in self.workers.iter_mut() {
                if w.generation == abandoned {
                    w.retiring = true;
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            for (&pid, z) in &self.zygotes {
                if z.generation == abandoned {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            self.forget_forking(Some(abandoned));
            notify::ready(&format!("reload failed ({reason}); {}", self.status_line()));
            return;
        }
        tracing::error!("{reason} Other workers keep serving; retrying in {IMPORT_RETRY:?}");
        self.respawn_at = Instant::now() + IMPORT_RETRY;
    }

    /// Stop everything because a worker cannot run the app.
    fn halt(&mut self, code: i32, reason: &str) {
        if self.exit_code == exit::OK {
            tracing::error!("Shutting down: {reason} (exit status {code})");
            notify::failed(reason, None);
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
        let generation = self.generation;
        // A worker restarting on its own (max-requests, memory) or aborted
        // is replaced at once, while it finishes.
        let serving = self
            .workers
            .values()
            .filter(|w| !w.retiring && w.generation == generation && w.aborted.is_none())
            .filter(|w| self.board[w.slot].state() != SlotState::Stopping)
            .count();
        let booting: usize = self
            .zygotes
            .values()
            .filter(|z| z.generation == generation)
            .map(|z| z.slots.len())
            .sum::<usize>()
            + self
                .forking
                .values()
                .filter(|f| f.generation == generation)
                .count();
        let missing = self.wanted.saturating_sub(serving + booting);
        if missing == 0 {
            return;
        }
        if self.settings.hooks_file().is_some() {
            if self.ensure_arbiter() {
                for _ in 0..missing {
                    if !self.fork_via_arbiter() {
                        break;
                    }
                }
            }
            return;
        }
        // With --preload one zygote forks the whole batch; else one fork each.
        let batch = if self.settings.preload { missing } else { 1 };
        for _ in 0..missing / batch {
            let mut slots: Vec<usize> = Vec::with_capacity(batch);
            while slots.len() < batch {
                let Some(slot) = scoreboard::claim(self.board) else {
                    tracing::error!("scoreboard full: no worker above {}", scoreboard::CAPACITY);
                    for slot in slots {
                        self.board[slot].set_state(SlotState::Free);
                    }
                    return;
                };
                slots.push(slot);
            }
            match spawn::spawn_child(self, slots.clone()) {
                Ok(pid) if self.settings.preload => {
                    self.zygotes.insert(pid, Zygote { generation, slots });
                }
                Ok(pid) => {
                    let worker = Worker {
                        retiring: false,
                        started: Instant::now(),
                        generation,
                        slot: slots[0],
                        aborted: None,
                    };
                    self.workers.insert(pid, worker);
                }
                Err(e) => {
                    for slot in slots {
                        self.board[slot].set_state(SlotState::Free);
                    }
                    tracing::error!("cannot start a worker: {e}");
                    return;
                }
            }
        }
    }

    /// Answer `/metrics` and the control socket, without blocking.
    fn serve_endpoints(&mut self) {
        if self.endpoints.is_empty() {
            return;
        }
        let mut endpoints = std::mem::take(&mut self.endpoints);
        endpoints.serve(|role, question| match (role, question) {
            (Role::Metrics, Question::Metrics { head_only }) => {
                let body = metrics::render(&self.snapshot());
                endpoint::text_response(200, "OK", &body, head_only)
            }
            (_, Question::Command(line)) => control::answer(&line, &self.snapshot()),
            (Role::Control, Question::Metrics { .. }) => Vec::new(),
        });
        self.endpoints = endpoints;
    }

    /// The server as the scoreboard and the master's counters show it.
    fn snapshot(&self) -> metrics::Snapshot {
        let now = scoreboard::now_ms();
        let mut totals = self.totals_reaped;
        let mut workers: Vec<metrics::WorkerView> = self
            .workers
            .iter()
            .map(|(&pid, w)| {
                let slot = &self.board[w.slot];
                let t = slot.totals();
                totals += t;
                metrics::WorkerView {
                    pid: pid.as_raw(),
                    generation: w.generation,
                    state: if w.retiring {
                        SlotState::Stopping
                    } else {
                        slot.state()
                    },
                    age: w.started.elapsed(),
                    totals: t,
                    threads: (0..self.settings.threads)
                        .map(|i| slot.thread(i).current(now))
                        .collect(),
                }
            })
            .collect();
        workers.sort_by_key(|w| (w.generation, w.pid));
        let http: Vec<&crate::listeners::Listener> = self.sockets.http.iter().collect();
        let queues = crate::listeners::queue::queues(&http);
        metrics::Snapshot {
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            generation: self.generation,
            wanted: self.wanted,
            workers,
            totals,
            restarts: self.restarts,
            timeouts: self.timeouts,
            queues: http
                .iter()
                .map(|l| l.addr.to_string())
                .zip(queues)
                .collect(),
        }
    }

    /// Gunicorn's master-side StatsD metrics: `gunicorn.workers` when the
    /// count changes, `gunicorn.backlog` every second if asked for.
    fn send_statsd(&mut self) {
        let Some(statsd) = crate::logging::statsd::get() else {
            return;
        };
        let now = Instant::now();
        if now < self.next_statsd {
            return;
        }
        self.next_statsd = now + STATUS_INTERVAL;
        let count = self.workers.values().filter(|w| !w.retiring).count();
        if self.statsd_workers != Some(count) {
            self.statsd_workers = Some(count);
            statsd.gauge("gunicorn.workers", count as u64);
        }
        if self.settings.statsd.as_ref().is_some_and(|s| s.backlog) {
            let http: Vec<&crate::listeners::Listener> = self.sockets.http.iter().collect();
            let waiting: u32 = crate::listeners::queue::queues(&http)
                .into_iter()
                .flatten()
                .map(|q| q.waiting)
                .sum();
            statsd.histogram("gunicorn.backlog", waiting.into());
        }
    }

    /// `STATUS=` (at most once a second, when it changed), `WATCHDOG=1` while
    /// some worker is alive, and more start-up time while the app imports.
    fn tell_systemd(&mut self) {
        if self.upgrade_ready.is_some() || self.handed_over {
            // Not the main PID (yet, or any more): see announce_ready.
            return;
        }
        let now = Instant::now();
        if matches!(self.state, State::Running)
            && now.duration_since(self.last_status.0) >= STATUS_INTERVAL
        {
            let line = self.status_line();
            if line != self.last_status.1 {
                notify::status(&line);
                self.last_status.1 = line;
            }
            self.last_status.0 = now;
            let booting = !self.served || self.reloading;
            if booting && now.duration_since(self.booting_since) < EXTEND_LIMIT {
                notify::extend_timeout(EXTEND_STEP);
            }
        }
        if let Some(interval) = self.watchdog {
            if now >= self.next_ping && self.some_worker_alive() {
                notify::watchdog();
                self.next_ping = now + interval;
            }
        }
    }

    fn some_worker_alive(&self) -> bool {
        let now = scoreboard::now_ms();
        self.workers
            .values()
            .any(|w| self.board[w.slot].is_alive(now, HEARTBEAT_STALE, self.settings.timeout))
    }

    /// `workers 2/2 ready, 1 busy, 1234 requests served` (and the phase).
    fn status_line(&self) -> String {
        let slots = || self.workers.values().map(|w| &self.board[w.slot]);
        let ready = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation && !w.retiring)
            .filter(|w| self.board[w.slot].state() == SlotState::Ready)
            .count();
        let busy: u32 = slots().map(Slot::busy).sum();
        let requests: u64 = self.totals_reaped.requests + slots().map(Slot::requests).sum::<u64>();
        let phase = match (self.served, self.reloading) {
            (false, _) => "starting; ",
            (true, true) => "reloading; ",
            (true, false) => "",
        };
        format!(
            "{phase}workers {ready}/{} ready, {busy} busy, {requests} requests served",
            self.wanted
        )
    }

    fn cleanup(&mut self) {
        if !self.handed_over {
            for l in &self.sockets.http {
                l.remove_created_path();
            }
            self.endpoints.remove_created_paths();
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
