//! A worker process (DESIGN §2): the app's own interpreter running this
//! native module, the app imported once, one epoll I/O thread (the
//! interpreter's main thread) and `--threads` app threads (or the app
//! called inline on the I/O thread when `--threads 1`).
//!
//! The I/O thread owns the listeners and every connection that waits for a
//! request head; it never runs Python except inline. Invariants: a worker
//! with all app threads busy, or at `worker_connections`, stops accepting
//! so idle workers take new connections; after TERM it accepts nothing,
//! closes idle connections, answers in-flight requests with
//! `Connection: close` and exits when none is left (or at the graceful
//! deadline).

mod arbiter;
mod conn;
mod pool;
mod reload;

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use slab::Slab;

use crate::boot::Boot;
use crate::config::ProxyProtocol;
use crate::config::Settings;
use crate::exit;
use crate::http::Head;
use crate::http::proxy::Accept;
use crate::listeners::Listener;
use crate::net::AllowList;
use crate::net::{Peer, Stream};
use crate::scoreboard::{Slot, State as SlotState};
use crate::signals::SignalPipe;
use crate::wsgi::{App, AppError, AppSource, AppSpec, Forked, Forwarding, Hooks, PythonLogging};
use conn::{Conn, ServeCtx, serve};
use pool::{Job, Pool, Returned};

/// Signals a worker acts on; the rest keep their default disposition.
const SIGNALS: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// Bytes read per recv(2) while waiting for a head.
const READ_SIZE: usize = 16 * 1024;
/// How often idle and slow connections are checked against their deadlines.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

const TOKEN_SIGNAL: u64 = 0;
const TOKEN_WAKE: u64 = 1;
const TOKEN_LISTENER: u64 = 2;
const TOKEN_CONN: u64 = 1 << 32;

/// What the master handed this process, taken over from the boot
/// description's descriptors.
#[derive(Debug)]
struct Inherited {
    settings: Settings,
    listeners: Vec<Listener>,
    /// The master's pid, to notice being orphaned.
    master: nix::unistd::Pid,
    board: &'static [Slot],
    /// The slots of the workers to run: one for a worker; the whole batch
    /// for a zygote, which forks a worker into each.
    slots: Vec<usize>,
    /// Write end of the master's report pipe: a byte wakes the master.
    report: OwnedFd,
    /// `sys.argv` for the app.
    argv: Vec<String>,
}

/// The worker process's entry, called from the native module's
/// `run_worker` with the GIL released: read the boot description at
/// `boot_fd`, then run as a worker (or, with `--preload`, a zygote) until
/// told to stop. Returns the process exit status (see [`exit`]).
pub fn main(boot_fd: RawFd) -> i32 {
    // SAFETY: the master placed the description at this number for us,
    // and nothing else in this process uses it.
    let boot = match unsafe { Boot::read(boot_fd) } {
        Ok(boot) => boot,
        Err(e) => {
            eprintln!("ferrocorn: worker failed to boot: {e}");
            return exit::WORKER_BOOT_ERROR;
        }
    };
    start_logging(&boot);
    crate::logging::enter_worker(std::process::id());
    let control = match boot.control.map(|fd| own(fd, "arbiter's command socket")) {
        Some(Ok(fd)) => Some(fd),
        Some(Err(e)) => {
            tracing::error!("arbiter failed to boot: {e}");
            return exit::WORKER_BOOT_ERROR;
        }
        None => None,
    };
    match take_over(boot) {
        Ok(inherited) if control.is_some() => arbiter::run(inherited, control.expect("checked")),
        Ok(inherited) if inherited.settings.preload => zygote(inherited),
        Ok(inherited) => worker(inherited, None, false),
        Err(e) => {
            tracing::error!("worker failed to boot: {e}");
            exit::WORKER_BOOT_ERROR
        }
    }
}

/// `--check-config`: import the app the boot description at `boot_fd`
/// names and return 0 if it loads, 1 (the reason logged) if not.
pub fn check(boot_fd: RawFd) -> i32 {
    // SAFETY: the master placed the description at this number for us,
    // and nothing else in this process uses it.
    let boot = match unsafe { Boot::read(boot_fd) } {
        Ok(boot) => boot,
        Err(e) => {
            eprintln!("ferrocorn: cannot check the app: {e}");
            return exit::FAILURE;
        }
    };
    start_logging(&boot);
    match load_app(&boot.settings, &boot.argv) {
        Ok(_) => {
            tracing::info!(
                "Checked: the configuration is valid and the app {:?} loads",
                boot.settings.app
            );
            exit::OK
        }
        Err(_) => exit::FAILURE,
    }
}

/// The error log as the master set it up: its file (which the master
/// opened) or stderr/the journal; with `--capture-output` the app's
/// stdout and stderr go to the file too.
fn start_logging(boot: &Boot) {
    let settings = &boot.settings;
    let file = match (boot.error_log, &settings.error_log) {
        (Some(fd), Some(path)) => own(fd, "error log")
            .ok()
            .map(|fd| crate::logging::file::LogFile::adopt(path, std::fs::File::from(fd))),
        _ => None,
    };
    crate::logging::init(settings.log_level, settings.log_target, file);
    if settings.capture_output {
        crate::logging::capture_output();
    }
    if let Err(e) = crate::logging::statsd::init(settings.statsd.as_ref()) {
        tracing::warn!("{e}; no StatsD metrics will be sent");
    }
}

/// Take ownership of a descriptor the master placed for us, made
/// close-on-exec so the app's subprocesses do not inherit it.
fn own(fd: RawFd, what: &str) -> Result<OwnedFd, String> {
    let flags = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
    // SAFETY: only flags are set; the fd is checked open by this call.
    nix::fcntl::fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, flags)
        .map_err(|e| format!("{what} (fd {fd}): {e}"))?;
    // SAFETY: the master placed this fd for us and nothing else in this
    // process owns it (it was open, checked above).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adopt the descriptors the boot description names (each made
/// close-on-exec, so the app's subprocesses inherit none of them).
fn take_over(boot: Boot) -> Result<Inherited, String> {
    let listeners = boot
        .listeners
        .iter()
        .map(|&fd| crate::listeners::inherited(fd).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let board_fd = own(boot.scoreboard, "scoreboard")?;
    let board = crate::scoreboard::attach(board_fd.as_fd())
        .map_err(|e| format!("scoreboard (fd {}): {e}", boot.scoreboard))?;
    let report = own(boot.report, "report pipe")?;
    let access_file = match boot.access_log {
        Some(fd) => Some(std::fs::File::from(own(fd, "access log")?)),
        None => None,
    };
    crate::logging::access::init_worker(
        boot.settings.access_log.as_ref(),
        &boot.settings.access_log_format,
        access_file,
    );
    let arbiter = boot.control.is_some();
    if (boot.slots.is_empty() && !arbiter) || boot.slots.iter().any(|&s| s >= board.len()) {
        return Err(format!("bad scoreboard slots {:?}", boot.slots));
    }
    Ok(Inherited {
        settings: boot.settings,
        listeners,
        master: nix::unistd::Pid::from_raw(boot.master),
        board,
        slots: boot.slots,
        report,
        argv: boot.argv,
    })
}

/// `--preload`: import the app once, freeze the heap and fork a worker into
/// each slot; the workers share the app's memory copy-on-write and, once
/// this process exits, become the master's children (it is their
/// subreaper). A new zygote per generation lets HUP load new code.
fn zygote(mut boot: Inherited) -> i32 {
    let pid = std::process::id();
    // No handlers of ours here: TERM or the master's death simply ends us.
    crate::signals::unblock_signals();
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    if nix::unistd::getppid() != boot.master {
        return exit::OK;
    }
    crate::proctitle::set(&format!("ferrocorn: zygote [{}]", boot.settings.proc_name));
    tracing::info!(
        "Preloading the app for {} worker(s) (pid: {pid})",
        boot.slots.len()
    );
    let app = match load_app(&boot.settings, &boot.argv) {
        Ok(app) => app,
        Err(code) => return code,
    };
    app.freeze();
    for slot in std::mem::take(&mut boot.slots) {
        let old_mask = crate::signals::block_signals();
        match crate::wsgi::fork() {
            Ok(Forked::Child) => {
                boot.slots = vec![slot];
                return worker(boot, Some(app), true);
            }
            Ok(Forked::Parent(child)) => boot.board[slot].set_pid(child),
            Err(e) => tracing::error!("zygote cannot fork a worker: {e}"),
        }
        crate::signals::restore_signal_mask(&old_mask);
    }
    exit::OK
}

/// What the WSGI bridge needs of the settings to load the app.
fn app_spec(settings: &Settings, argv: &[String]) -> AppSpec {
    use crate::config::LogConfig;
    let source = match &settings.paste {
        Some(p) => AppSource::Paste {
            path: p.path.clone(),
            name: p.name.clone(),
            global: p.global.clone(),
        },
        None => AppSource::Uri(settings.app.clone()),
    };
    let logging = settings.log_config.as_ref().map(|c| match c {
        LogConfig::File(p) => PythonLogging::File(p.clone()),
        LogConfig::Json(p) => PythonLogging::Json(p.clone()),
        LogConfig::Dict(text) => PythonLogging::Dict(text.clone()),
    });
    AppSpec {
        source,
        pythonpath: settings.pythonpath.clone(),
        argv: argv.to_vec(),
        multithread: settings.threads > 1,
        multiprocess: settings.workers > 1,
        logging,
        forwarding: Forwarding {
            secure_scheme_headers: settings.proxy.secure_scheme_headers.clone(),
            forwarder_headers: settings.proxy.forwarder_headers.clone(),
            header_map: settings.proxy.header_map,
        },
        sendfile: settings.sendfile,
        capture: crate::logging::access::capture_spec(),
    }
}

/// Import the app; on failure log why and return the exit status.
fn load_app(settings: &Settings, argv: &[String]) -> Result<App, i32> {
    let spec = app_spec(settings, argv);
    App::load(&spec).map_err(|e| match e {
        AppError::Import(_) => {
            tracing::error!("{e}");
            exit::APP_LOAD_ERROR
        }
        AppError::Config(_) => {
            tracing::error!("{e}");
            exit::CONFIG
        }
        AppError::Interpreter(_) => {
            tracing::error!("worker failed to boot: {e}");
            exit::WORKER_BOOT_ERROR
        }
    })
}

/// A worker: import the app (unless a zygote did) and serve. `forked`: by
/// a zygote or the arbiter (else exec'd by the master).
fn worker(boot: Inherited, preloaded: Option<App>, forked: bool) -> i32 {
    let Inherited {
        settings,
        listeners,
        master,
        board,
        slots,
        report,
        argv,
    } = boot;
    let slot = &board[slots[0]];
    let pid = std::process::id();
    if forked {
        crate::logging::enter_worker(pid);
    }
    // Before any thread of ours starts (the title moves the environment
    // if it must).
    crate::proctitle::set(&format!("ferrocorn: worker [{}]", settings.proc_name));
    slot.set_pid(pid as i32);
    let signals = match SignalPipe::install(&SIGNALS) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("worker cannot install signal handlers: {e}");
            return exit::WORKER_BOOT_ERROR;
        }
    };
    crate::signals::unblock_signals();
    if forked {
        // Our parent is a zygote, which exits once the batch is forked, or
        // the arbiter's middle process, which exits at once: the death
        // signal below must be armed against the master.
        let deadline = Instant::now() + Duration::from_secs(5);
        while nix::unistd::getppid() != master && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The master's death must not leave us serving on alone.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    if nix::unistd::getppid() != master {
        return exit::OK;
    }
    tracing::info!("Booting worker with pid: {pid}");
    let app = match preloaded.map_or_else(|| load_app(&settings, &argv), Ok) {
        Ok(app) => app,
        Err(code) => {
            // As Gunicorn's worker, whose worker_exit runs after a failed
            // boot too.
            if let Some(hooks) = Hooks::installed() {
                hooks.run("worker_exit");
            }
            return code;
        }
    };
    app.post_worker_init();
    if settings.reload {
        let watched = report
            .try_clone()
            .map_err(|e| e.to_string())
            .and_then(|r| reload::watch(app.source_files(), &settings.reload_extra_files, r));
        if let Err(e) = watched {
            tracing::error!("--reload: {e}; serving without the reloader");
        }
    }
    match EventLoop::new(&settings, listeners, app, signals, slot, report) {
        Ok(mut event_loop) => {
            event_loop.abort_hook = Hooks::installed().filter(|h| h.catch_abort());
            slot.set_state(SlotState::Ready);
            let _ = nix::unistd::write(&event_loop.report, b"r");
            let code = event_loop.run();
            if let Some(hooks) = Hooks::installed() {
                hooks.run("worker_exit");
            }
            code
        }
        Err(e) => {
            tracing::error!("worker failed to boot: {e}");
            exit::WORKER_BOOT_ERROR
        }
    }
}

/// `0..=jitter`, different per worker (Gunicorn's `max_requests_jitter`).
fn jitter(jitter: u64) -> u64 {
    if jitter == 0 {
        return 0;
    }
    // No cryptographic need: spread restarts. Mix the pid with the clock.
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ crate::scoreboard::now_ms().wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (seed ^ (seed >> 31)) % (jitter + 1)
}

/// This process's resident set size in bytes (`/proc/self/statm`, field 2 × page size).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some(pages * page as u64)
}

/// A kept-alive connection gets `keepalive` to start its next request, or
/// the head timeout if part of one is already buffered.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    keepalive: Duration,
    head: Duration,
}

struct EventLoop {
    epoll: Epoll,
    listeners: Vec<Listener>,
    accepting: bool,
    signals: SignalPipe,
    conns: Slab<Conn>,
    ctx: Arc<ServeCtx>,
    /// `None` with `--threads 1`: the app runs inline.
    pool: Option<Pool>,
    threads: usize,
    /// Jobs handed to the pool and not yet returned.
    busy: usize,
    worker_connections: usize,
    /// `forwarded_allow_ips`: whose forwarding fields are believed.
    forwarded_allow: AllowList,
    /// `proxy_protocol`: the PROXY header a connection may start with.
    proxy_protocol: Option<Accept>,
    /// `proxy_allow_ips`: who may send one.
    proxy_allow: AllowList,
    timeouts: Timeouts,
    stall: Option<Duration>,
    /// `--capture-output`: stdout and stderr follow the error log file.
    capture_output: bool,
    /// Set after TERM: when to give up on in-flight requests.
    stop_deadline: Option<Instant>,
    /// Restart after this many requests (`--max-requests` + jitter).
    max_requests: Option<u64>,
    /// Restart once resident memory passes this many bytes.
    max_memory: Option<u64>,
    next_memory_check: Instant,
    /// Wakes the master (a byte on its report pipe) when our state changes.
    report: OwnedFd,
    graceful_timeout: Duration,
    next_sweep: Instant,
    /// Server hooks with a `worker_abort`, whose SIGABRT handler runs
    /// when this loop turns.
    abort_hook: Option<&'static Hooks>,
}

impl Timeouts {
    fn idle(self, conn: &Conn) -> Duration {
        if conn.buf.is_empty() {
            self.keepalive
        } else {
            self.head
        }
    }
}

impl EventLoop {
    fn new(
        settings: &Settings,
        listeners: Vec<Listener>,
        app: App,
        signals: SignalPipe,
        slot: &'static Slot,
        report: OwnedFd,
    ) -> std::io::Result<EventLoop> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            signals.fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGNAL),
        )?;
        let ctx = Arc::new(ServeCtx {
            app,
            rules: settings.rules,
            listen_addrs: listeners.iter().map(|l| l.addr.clone()).collect(),
            stopping: false.into(),
            slot,
        });
        let pool = if settings.threads > 1 {
            let pool = Pool::start(settings.threads, Arc::clone(&ctx))?;
            epoll.add(
                pool.wake.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKE),
            )?;
            Some(pool)
        } else {
            None
        };
        let mut event_loop = EventLoop {
            epoll,
            listeners,
            accepting: false,
            signals,
            conns: Slab::with_capacity(64),
            ctx,
            pool,
            threads: settings.threads,
            busy: 0,
            worker_connections: settings.worker_connections,
            forwarded_allow: settings.proxy.forwarded_allow.clone(),
            proxy_protocol: match settings.proxy.proxy_protocol {
                ProxyProtocol::Off => None,
                ProxyProtocol::V1 => Some(Accept::V1),
                ProxyProtocol::V2 => Some(Accept::V2),
                ProxyProtocol::Auto => Some(Accept::Both),
            },
            proxy_allow: settings.proxy.proxy_allow.clone(),
            timeouts: Timeouts {
                keepalive: settings.keepalive,
                head: settings.timeout.unwrap_or(Duration::from_secs(30)),
            },
            stall: settings.timeout,
            capture_output: settings.capture_output,
            stop_deadline: None,
            graceful_timeout: settings.graceful_timeout,
            next_sweep: Instant::now() + SWEEP_INTERVAL,
            abort_hook: None,
            max_requests: (settings.max_requests > 0)
                .then(|| settings.max_requests + jitter(settings.max_requests_jitter)),
            max_memory: settings.max_worker_memory,
            next_memory_check: Instant::now(),
            report,
        };
        event_loop.set_accepting(true)?;
        Ok(event_loop)
    }

    // Not inlined, so that profiles (bench/profile.sh) can name it.
    #[inline(never)]
    fn run(mut self) -> i32 {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            if let Some(deadline) = self.stop_deadline {
                if (self.conns.is_empty() && self.busy == 0) || Instant::now() >= deadline {
                    break;
                }
            }
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(250u16)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    tracing::error!("epoll_wait failed: {e}");
                    return exit::WORKER_BOOT_ERROR;
                }
            };
            self.ctx.slot.beat();
            if let Some(hooks) = self.abort_hook {
                hooks.check_signals();
            }
            // Signals first: a TERM must stop accepting before this turn
            // accepts anything (the master promises old code is gone).
            if events[..n].iter().any(|ev| ev.data() == TOKEN_SIGNAL) && !self.on_signals() {
                return exit::OK;
            }
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_SIGNAL => {}
                    TOKEN_WAKE => self.on_returns(),
                    t if t >= TOKEN_CONN => self.on_readable((t - TOKEN_CONN) as usize),
                    t => self.on_acceptable((t - TOKEN_LISTENER) as usize),
                }
            }
            self.sweep();
            self.check_recycling();
        }
        // With requests still running at the deadline, just go: their
        // threads hold Python state and cannot be waited for.
        if self.busy == 0 {
            if let Some(pool) = self.pool.take() {
                pool.join();
            }
            self.ctx.app.shutdown();
        }
        exit::OK
    }

    /// Handle queued signals; false means "exit now".
    fn on_signals(&mut self) -> bool {
        for signal in self.signals.drain() {
            match signal {
                Signal::SIGTERM | Signal::SIGHUP => self.begin_stop(),
                Signal::SIGINT | Signal::SIGQUIT => {
                    if let Some(hooks) = Hooks::installed() {
                        hooks.run("worker_int");
                    }
                    return false;
                }
                Signal::SIGUSR1 => {
                    // The master created the new files; open them by path.
                    let capture = self.capture_output;
                    if let Err(e) = crate::logging::reopen_error_log(None, capture) {
                        tracing::error!("cannot reopen the error log: {e}");
                    }
                    if let Err(e) = crate::logging::access::reopen(None) {
                        tracing::error!("cannot reopen the access log: {e}");
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// `--max-requests` and `--max-worker-memory`: restart gracefully
    /// between requests (the master starts the replacement at once).
    fn check_recycling(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        if let Some(limit) = self.max_requests {
            if self.ctx.slot.requests() >= limit {
                tracing::info!("Autorestarting worker after {limit} requests");
                return self.begin_stop();
            }
        }
        let now = Instant::now();
        if let (Some(limit), true) = (self.max_memory, now >= self.next_memory_check) {
            self.next_memory_check = now + Duration::from_secs(1);
            if let Some(rss) = resident_bytes().filter(|&rss| rss > limit) {
                tracing::info!(
                    "Autorestarting worker: resident memory {} MiB above the {} MiB limit",
                    rss >> 20,
                    limit >> 20
                );
                self.begin_stop();
            }
        }
    }

    fn begin_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        tracing::info!("Worker exiting (pid: {})", std::process::id());
        self.stop_deadline = Some(Instant::now() + self.graceful_timeout);
        self.ctx.stopping.store(true, Ordering::Relaxed);
        let _ = self.set_accepting(false);
        // Connections the kernel already queued for us were made before the
        // stop: serve them (with `Connection: close`) rather than leave them
        // to be reset when the master closes the listeners, up to our cap.
        for index in 0..self.listeners.len() {
            while self.conns.len() < self.worker_connections && self.accept_one(index) {}
        }
        self.listeners.clear();
        // Only now, with no listener left, tell the master we are stopping.
        self.ctx.slot.set_state(SlotState::Stopping);
        let _ = nix::unistd::write(&self.report, b"s");
        // Idle keep-alive connections have nothing in flight: close them.
        // The others get their request answered with `Connection: close`,
        // without waiting longer than a keep-alive for it to arrive.
        let soon = Instant::now() + self.timeouts.keepalive;
        self.conns.retain(|_, c| {
            c.deadline = c.deadline.min(soon);
            !c.is_idle()
        });
    }

    fn set_accepting(&mut self, on: bool) -> std::io::Result<()> {
        if on == self.accepting || (on && self.stop_deadline.is_some()) {
            return Ok(());
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if on {
                // EPOLLEXCLUSIVE: a new connection wakes one idle worker, not
                // every worker blocked on this listener (the thundering
                // herd); a busy worker's instance does not count as woken.
                let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
                let ev = EpollEvent::new(flags, TOKEN_LISTENER + i as u64);
                self.epoll.add(l.socket.as_fd(), ev)?;
            } else {
                self.epoll.delete(l.socket.as_fd())?;
            }
        }
        self.accepting = on;
        Ok(())
    }

    /// Accept while the worker has room: an app thread free, connections under the limit.
    fn update_accepting(&mut self) {
        let room = self.busy < self.threads && self.conns.len() < self.worker_connections;
        let _ = self.set_accepting(room);
    }

    fn conn_flags(&self) -> EpollFlags {
        // Threaded: a connection handed to an app thread must not wake us,
        // so interest is one-shot and re-armed when it comes back.
        if self.pool.is_some() {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT
        } else {
            EpollFlags::EPOLLIN
        }
    }

    fn on_acceptable(&mut self, index: usize) {
        let batch = if self.pool.is_some() { 64 } else { 4 };
        for _ in 0..batch {
            if !self.accepting || !self.accept_one(index) {
                return;
            }
            self.update_accepting();
        }
    }

    /// Accept one connection from listener `index` and wait for its head;
    /// false when none is queued (or the listener is gone).
    fn accept_one(&mut self, index: usize) -> bool {
        let Some(listener) = self.listeners.get(index) else {
            return false;
        };
        let (socket, addr) = match listener.socket.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                tracing::debug!("accept failed: {e}");
                return false;
            }
        };
        let peer = addr.as_socket().map_or(Peer::Unix, Peer::Tcp);
        if matches!(peer, Peer::Tcp(_)) {
            let _ = socket.set_tcp_nodelay(true);
        }
        let Ok(stream) = Stream::new(socket, self.stall) else {
            return true;
        };
        let conn = Conn {
            stream: Arc::new(stream),
            buf: Vec::new(),
            trusted: peer.is_in(&self.forwarded_allow),
            peer,
            awaiting_proxy: self.proxy_protocol,
            proxy: None,
            listener: index,
            deadline: Instant::now() + self.timeouts.head,
            fresh: true,
        };
        let flags = self.conn_flags();
        let entry = self.conns.vacant_entry();
        let ev = EpollEvent::new(flags, TOKEN_CONN + entry.key() as u64);
        if self.epoll.add(conn.stream.fd(), ev).is_ok() {
            entry.insert(conn);
        }
        true
    }

    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.stream.try_read_into(&mut conn.buf, READ_SIZE) {
            Ok(Some(0)) | Err(_) => {
                self.close(key);
                return;
            }
            Ok(_) => {}
        }
        match conn.take_proxy_header(&self.proxy_allow) {
            Ok(true) => {}
            Ok(false) => return self.rearm(key),
            Err(e) => {
                conn.reject(&e);
                return self.close(key);
            }
        }
        match conn.next_head(&self.ctx.rules) {
            Ok(None) => {
                if !conn.buf.is_empty() && conn.deadline > Instant::now() + self.timeouts.head {
                    conn.deadline = Instant::now() + self.timeouts.head;
                }
                self.rearm(key);
            }
            Err(e) => {
                conn.reject(&e);
                self.close(key);
            }
            Ok(Some(head)) => self.dispatch(key, head),
        }
    }

    fn dispatch(&mut self, key: usize, head: Head) {
        if let Some(pool) = &self.pool {
            let conn = self.conns.remove(key);
            pool.submit(Job { conn, head });
            self.busy += 1;
            self.update_accepting();
            return;
        }
        let conn = &mut self.conns[key];
        // Inline, the I/O thread is app thread 0.
        if serve(&self.ctx, self.ctx.slot.thread(0), conn, head) {
            conn.deadline = Instant::now() + self.timeouts.idle(conn);
        } else {
            self.close(key);
        }
    }

    fn on_returns(&mut self) {
        let Some(pool) = &self.pool else { return };
        let _ = pool.wake.read();
        let returned: Vec<Returned> = pool.returns.try_iter().collect();
        for r in returned {
            self.busy -= 1;
            if let Returned::Idle(mut conn) = r {
                if self.stop_deadline.is_some() && conn.is_idle() {
                    continue;
                }
                conn.deadline = Instant::now() + self.timeouts.idle(&conn);
                let flags = self.conn_flags();
                let entry = self.conns.vacant_entry();
                let mut ev = EpollEvent::new(flags, TOKEN_CONN + entry.key() as u64);
                if self.epoll.modify(conn.stream.fd(), &mut ev).is_ok() {
                    entry.insert(conn);
                }
            }
        }
        self.update_accepting();
    }

    fn rearm(&mut self, key: usize) {
        if self.pool.is_none() {
            return;
        }
        if let Some(conn) = self.conns.get(key) {
            let mut ev = EpollEvent::new(self.conn_flags(), TOKEN_CONN + key as u64);
            if self.epoll.modify(conn.stream.fd(), &mut ev).is_err() {
                self.close(key);
            }
        }
    }

    fn close(&mut self, key: usize) {
        // Dropping the last reference closes the fd, which also removes it
        // from the epoll set.
        self.conns.try_remove(key);
        self.update_accepting();
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let before = self.conns.len();
        // Bytes we have not read yet arrived while this thread was busy (an
        // inline request): the client was not slow, we were; they are read
        // on the next turn, and the deadline applies again after that.
        self.conns
            .retain(|_, c| c.deadline > now || c.has_unread_bytes());
        if self.conns.len() != before {
            self.update_accepting();
        }
    }
}
