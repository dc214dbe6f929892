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
use conn::{Conn, LINGER_TIME, Next, ServeCtx, serve};
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
/// After a read at accept that found no request, how many accepts leave
/// the read to epoll (see `EventLoop::first_read`).
const EARLY_READ_BACKOFF: u8 = 8;
/// How often idle and slow connections are checked against their deadlines.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// With three quarters of `worker_connections` open, the most time a
/// connection gets to complete a request head (`header_timeout` otherwise).
const PRESSED_HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Over `write_budget`, a response whose client took nothing for this long
/// is cut to make room.
const STALLED: Duration = Duration::from_secs(1);

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

/// Raise this process's soft limit on open files (RLIMIT_NOFILE) towards
/// its hard limit, enough for `worker_connections` and the app's own
/// files: a systemd service starts with a soft limit of 1024 (its hard
/// limit is 524288), too few for the default 1000 connections. The Go
/// runtime does the same.
fn raise_nofile(worker_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let want = worker_connections as u64 + 1024;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard) {
                tracing::debug!("cannot raise RLIMIT_NOFILE to {want}: {e}");
            }
        }
    }
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
    /// Three quarters of `worker_connections` were open at the last sweep.
    pressed: bool,
    /// Out of descriptors: not accepting until the next sweep.
    accept_paused: bool,
    /// Accepts left before the next read at accept (see `first_read`).
    early_misses: u8,
    /// `write_budget`: bytes of the app's response bodies the tails may hold.
    write_budget: u64,
    /// Per listener: its connections come with TCP_NODELAY set (inherited).
    nodelay: Vec<bool>,
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
        if conn.lingering {
            LINGER_TIME
        } else if conn.buf.is_empty() {
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
        raise_nofile(settings.worker_connections);
        let nodelay = listeners
            .iter()
            .map(Listener::nodelay_for_connections)
            .collect();
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
            min_send_rate: settings.min_send_rate,
            health_check_path: settings.proxy.health_check_path.clone(),
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
                head: settings.header_timeout,
            },
            pressed: false,
            accept_paused: false,
            early_misses: 0,
            nodelay,
            write_budget: settings.write_budget,
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
                    t if t >= TOKEN_CONN => self.on_ready((t - TOKEN_CONN) as usize),
                    t => self.on_acceptable((t - TOKEN_LISTENER) as usize),
                }
            }
            self.sweep();
            self.check_recycling();
        }
        // Tails release the app's objects with the GIL: before Python ends.
        self.conns.clear();
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

    /// Accept while the worker has room: an app thread free, and
    /// connections under the limit or one without a response in flight,
    /// which may make room for another ([`EventLoop::victim`] decides when
    /// a connection comes; this runs at every accept and close).
    fn update_accepting(&mut self) {
        let room = !self.accept_paused
            && self.busy < self.threads
            && (self.conns.len() < self.worker_connections
                || self.conns.iter().any(|(_, c)| c.writing.is_none()));
        let _ = self.set_accepting(room);
    }

    /// At `worker_connections`, the connection to close for a new one: one
    /// in a lingering close (answered already), else an idle keep-alive
    /// connection (the cheapest to lose), else the one that has waited
    /// longest for a complete head. Never one with a response in flight,
    /// or bytes waiting unread (perhaps a whole request): a client whose
    /// request is complete is not dropped for a slow one.
    fn victim(&self) -> Option<usize> {
        let mut waiting: Vec<(bool, bool, Instant, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.writing.is_none())
            .map(|(k, c)| (!c.lingering, c.fresh || !c.buf.is_empty(), c.deadline, k))
            .collect();
        waiting.sort_unstable();
        waiting
            .into_iter()
            .map(|(_, _, _, k)| k)
            .find(|&k| self.conns[k].lingering || !self.conns[k].has_unread_bytes())
    }

    /// What the I/O thread waits for on `conn`: bytes of a request, or
    /// room for the rest of a response (a tail).
    fn interest(threaded: bool, conn: &Conn) -> EpollFlags {
        let ready = if conn.writing.is_some() {
            EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        // Threaded: a connection handed to an app thread must not wake us,
        // so interest is one-shot and re-armed when it comes back.
        if threaded {
            ready | EpollFlags::EPOLLONESHOT
        } else {
            ready
        }
    }

    fn on_acceptable(&mut self, index: usize) {
        // Inline, one per wake-up: the next epoll_wait says whether another
        // is queued (a loop would end in an accept4 that finds none).
        let batch = if self.pool.is_some() { 64 } else { 1 };
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
        let (socket, addr) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Out of descriptors: make room as at worker_connections,
                // or stop accepting until the next sweep (the listener
                // would stay readable and spin the loop).
                if let Some(victim) = self.victim() {
                    self.conns.remove(victim);
                    return true;
                }
                tracing::warn!("accept: {e}; not accepting for {SWEEP_INTERVAL:?}");
                self.accept_paused = true;
                let _ = self.set_accepting(false);
                return false;
            }
            Err(e) => {
                tracing::debug!("accept failed: {e}");
                return false;
            }
        };
        let peer = addr.as_socket().map_or(Peer::Unix, Peer::Tcp);
        let tcp = matches!(peer, Peer::Tcp(_));
        if tcp && !self.nodelay[index] {
            let _ = socket.set_tcp_nodelay(true);
        }
        let conn = Conn {
            stream: Arc::new(Stream::accepted(socket, self.stall, tcp)),
            buf: Vec::new(),
            trusted: peer.is_in(&self.forwarded_allow),
            peer,
            awaiting_proxy: self.proxy_protocol,
            proxy: None,
            listener: index,
            deadline: Instant::now() + self.timeouts.head,
            fresh: true,
            writing: None,
            lingering: false,
            watched: false,
        };
        if self.conns.len() >= self.worker_connections {
            // Every candidate has bytes unread (requests, perhaps whole):
            // the new connection is the one to go.
            let Some(victim) = self.victim() else {
                return true;
            };
            tracing::debug!(
                "at worker_connections ({}): closed {} to make room",
                self.worker_connections,
                self.conns[victim].peer
            );
            self.conns.remove(victim);
        }
        let key = self.conns.insert(conn);
        self.first_read(key);
        true
    }

    /// Read a just-accepted connection at once, or leave it to epoll.
    ///
    /// A client writes its request as soon as the handshake completes,
    /// which is before accept(2) returns when the worker is the slower
    /// side: then the request is served now, and a connection that closes
    /// after it never costs an epoll_ctl(2). When the last try found
    /// nothing (the worker is waiting on its clients), the next few wait
    /// for epoll instead of paying a recv(2) that finds nothing. A stopping
    /// worker, taking what the kernel queued (`begin_stop`), only accepts:
    /// serving there would accept on while clients keep connecting.
    fn first_read(&mut self, key: usize) {
        if self.stop_deadline.is_some() {
            return self.watch(key);
        }
        if self.early_misses > 0 {
            self.early_misses -= 1;
            return self.watch(key);
        }
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let before = conn.buf.len();
        self.on_readable(key);
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.fresh && !c.lingering && c.buf.len() == before)
        {
            self.early_misses = EARLY_READ_BACKOFF;
        }
    }

    fn on_ready(&mut self, key: usize) {
        match self.conns.get(key) {
            Some(conn) if conn.writing.is_some() => self.on_writable(key),
            Some(_) => self.on_readable(key),
            None => {}
        }
    }

    /// Write what the client takes of a tail; once it is out, the request
    /// is over and the connection waits for (or has) the next one.
    fn on_writable(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let Some(writing) = conn.writing.as_mut() else {
            return;
        };
        match writing.tail.write() {
            Ok(false) => return self.rearm(key),
            Ok(true) => {}
            Err(e) => {
                tracing::debug!("writing a response to {}: {e}", conn.peer);
                return self.cut(key);
            }
        }
        let writing = *conn.writing.take().expect("checked");
        let (keep_alive, writing_linger) = (writing.keep_alive, writing.linger);
        writing.finish(&self.ctx, &conn.peer);
        if !keep_alive {
            if !writing_linger {
                return self.close(key);
            }
            conn.begin_linger();
            return self.watch(key);
        }
        conn.deadline = Instant::now() + self.timeouts.idle(conn);
        // A pipelined request may be buffered already.
        match conn.next_head(&self.ctx.rules) {
            Ok(Some(head)) => {
                // Inline, the interest must leave EPOLLOUT (level-triggered);
                // threaded, the one-shot interest fired and stays disarmed
                // while an app thread has the connection.
                if self.pool.is_none() {
                    self.watch(key);
                }
                self.dispatch(key, head);
            }
            Ok(None) => self.watch(key),
            Err(e) => {
                conn.reject(&e);
                self.watch(key);
            }
        }
    }

    /// Give up on a response being written (the request ends short).
    fn cut(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if let Some(writing) = conn.writing.take() {
                writing.finish(&self.ctx, &conn.peer);
            }
        }
        self.update_accepting();
    }

    /// Point the epoll interest of connection `key` at what it now waits
    /// for (a one-shot interest is re-armed).
    fn watch(&mut self, key: usize) {
        let threaded = self.pool.is_some();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut ev = EpollEvent::new(Self::interest(threaded, conn), TOKEN_CONN + key as u64);
        let done = if conn.watched {
            self.epoll.modify(conn.stream.fd(), &mut ev)
        } else {
            self.epoll.add(conn.stream.fd(), ev)
        };
        conn.watched = true;
        if done.is_err() {
            self.close(key);
        }
    }

    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.lingering {
            return match conn.stream.discard() {
                Ok(true) => self.rearm(key),
                Ok(false) | Err(_) => self.close(key),
            };
        }
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
                return self.rearm(key);
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
                self.rearm(key);
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
        match serve(&self.ctx, self.ctx.slot.thread(0), conn, head) {
            Next::Read => {
                conn.deadline = Instant::now() + self.timeouts.idle(conn);
                self.rearm(key);
            }
            Next::Write => {
                self.watch(key);
                self.within_budget();
            }
            Next::Linger => self.rearm(key),
            Next::Close => self.close(key),
        }
    }

    fn on_returns(&mut self) {
        let Some(pool) = &self.pool else { return };
        let _ = pool.wake.read();
        let returned: Vec<Returned> = pool.returns.try_iter().collect();
        let mut tails = false;
        for r in returned {
            self.busy -= 1;
            if let Returned::Open(mut conn) = r {
                if self.stop_deadline.is_some() && conn.is_idle() {
                    continue;
                }
                tails |= conn.writing.is_some();
                conn.deadline = Instant::now() + self.timeouts.idle(&conn);
                let key = self.conns.insert(conn);
                self.watch(key);
            }
        }
        if tails {
            self.within_budget();
        }
        self.update_accepting();
    }

    /// Re-arm a one-shot interest (threaded), or join the epoll set; a
    /// level-triggered interest (inline) needs nothing.
    fn rearm(&mut self, key: usize) {
        if self.pool.is_some() || self.conns.get(key).is_some_and(|c| !c.watched) {
            self.watch(key);
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
        if std::mem::take(&mut self.accept_paused) {
            self.update_accepting();
        }
        let before = self.conns.len();
        // A client too slow to read its response is cut (min_send_rate, or
        // no progress for --timeout).
        let stall = self.stall;
        let mut too_slow = Vec::new();
        for (key, conn) in &mut self.conns {
            if let Some(w) = conn.writing.as_mut() {
                if let Err(e) = w.tail.check(now, stall) {
                    tracing::info!("Cut the response to {}: {e}", conn.peer);
                    too_slow.push(key);
                }
            }
        }
        for key in too_slow {
            self.cut(key);
        }
        self.within_budget();
        // Under connection pressure, a connection gets PRESSED_HEAD_TIMEOUT
        // at most to complete a head it has begun (or its first): slow heads
        // make room sooner.
        let pressed = self.conns.len() * 4 >= self.worker_connections * 3;
        if pressed && !self.pressed {
            tracing::warn!(
                "{} of worker_connections ({}) open: connections get {} s to send a complete head",
                self.conns.len(),
                self.worker_connections,
                PRESSED_HEAD_TIMEOUT.as_secs()
            );
        }
        self.pressed = pressed;
        if pressed {
            // Only heads under way: an idle keep-alive connection keeps its
            // --keep-alive, and is the first to go when room is needed.
            let soon = now + PRESSED_HEAD_TIMEOUT;
            for (_, c) in &mut self.conns {
                if c.fresh || !c.buf.is_empty() {
                    c.deadline = c.deadline.min(soon);
                }
            }
        }
        // Bytes we have not read yet arrived while this thread was busy (an
        // inline request): the client was not slow, we were; they are read
        // on the next turn, and the deadline applies again after that.
        // A lingering close ends at its deadline, whatever is still coming.
        self.conns.retain(|_, c| {
            c.writing.is_some() || c.deadline > now || (!c.lingering && c.has_unread_bytes())
        });
        if self.conns.len() != before {
            self.update_accepting();
        }
    }

    /// `write_budget`: while the tails hold more of the app's bytes than
    /// the budget, cut those whose client has taken nothing for
    /// [`STALLED`], longest first; past twice the budget, cut by that
    /// order whatever the wait, until back under it. A client that reads
    /// is cut last.
    fn within_budget(&mut self) {
        let held = |conns: &Slab<Conn>| -> u64 {
            conns
                .iter()
                .filter_map(|(_, c)| c.writing.as_ref())
                .map(|w| w.tail.held())
                .sum()
        };
        let mut total = held(&self.conns);
        if total <= self.write_budget {
            return;
        }
        let mut order: Vec<(Instant, usize, u64)> = self
            .conns
            .iter()
            .filter_map(|(k, c)| {
                let w = c.writing.as_ref()?;
                Some((w.tail.last_progress(), k, w.tail.held()))
            })
            .collect();
        order.sort_unstable();
        let now = Instant::now();
        for (last_progress, key, bytes) in order {
            let hard = total > 2 * self.write_budget;
            if total <= self.write_budget || (!hard && now - last_progress < STALLED) {
                break;
            }
            tracing::info!(
                "Cut the response to {}: the client took nothing for {:.1} s while the worker \
                 held {} MiB for slow clients (write_budget {} MiB)",
                self.conns[key].peer,
                (now - last_progress).as_secs_f64(),
                total >> 20,
                self.write_budget >> 20
            );
            total -= bytes;
            self.cut(key);
        }
    }
}
