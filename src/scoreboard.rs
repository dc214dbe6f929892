//! The scoreboard (DESIGN §2): one `MAP_SHARED` mapping of a memfd that the
//! master makes before it starts any worker and passes to each (workers are
//! exec'd interpreters, so they map the same memfd again), with a slot per
//! worker that the worker
//! writes and the master reads — heartbeat, state, busy app threads,
//! requests served — and within it an entry per app thread saying which
//! request it runs since when, so the master can enforce `--timeout` per
//! request in every worker mode. No temp files, no `fchmod` heartbeats.
//!
//! Invariants: the mapping is never unmapped (it lives as long as the
//! process), so slots are `&'static`; its layout is this file's, compiled
//! into both the master and the workers' native module of one build (the
//! boot handshake checks that they are one build); only
//! atomics live in it, which are sound to share between processes on the
//! same machine; a slot belongs to one live worker at a time, handed out by
//! the master and freed when it reaps that worker.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap};

/// Most app threads per worker (`--threads`). The mapping is sized for
/// CAPACITY × MAX_THREADS entries, but only the pages of live workers'
/// entries are ever touched, so memory follows use.
pub use crate::config::MAX_THREADS;

/// Most workers one master can run (TTIN stops here).
pub const CAPACITY: usize = 1024;
/// Bytes of the request line kept per thread for the timeout log line.
const REQUEST_BYTES: usize = 96;

/// Upper bounds, in milliseconds, of the request-duration histogram's
/// buckets (Prometheus' default buckets, 5 ms to 10 s); a last bucket
/// counts the longer ones.
pub const DURATION_BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// What a worker is doing, as its slot says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not in use.
    Free = 0,
    /// Forked; Python starting or the app importing.
    Booting = 1,
    /// Accepting and serving.
    Ready = 2,
    /// Told to stop: finishing in-flight requests.
    Stopping = 3,
}

/// One worker's slot; a cache line so workers do not contend.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Slot {
    pid: AtomicI32,
    state: AtomicU8,
    /// Monotonic milliseconds of the worker's last event-loop turn.
    heartbeat: AtomicU64,
    /// Monotonic milliseconds when the worker last went from idle to busy; 0 when idle.
    busy_since: AtomicU64,
    /// App threads running a request now.
    busy: AtomicU32,
    /// Requests answered so far.
    requests: AtomicU64,
    /// Requests by status class: `[n]` counts `n`xx for n in 1..=5, `[0]`
    /// those that got no response (the client went away).
    by_class: [AtomicU64; 6],
    /// Requests by duration: one count per bucket of
    /// [`DURATION_BUCKETS_MS`], then the longer ones.
    durations: [AtomicU64; 12],
    /// Sum of the requests' durations, in microseconds.
    duration_us: AtomicU64,
    /// One entry per app thread (thread 0 is the I/O thread when inline).
    threads: [ThreadSlot; MAX_THREADS],
}

/// What one app thread is doing.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct ThreadSlot {
    /// Monotonic milliseconds when the current request started; 0 when idle.
    busy_since: AtomicU64,
    /// `METHOD request-target` of the current request, NUL-padded, for the
    /// log line of a timeout. Written before `busy_since` (release), read
    /// after it (acquire); a reader racing a new request may see a mix of
    /// two requests' bytes, never undefined behaviour.
    request: [AtomicU8; REQUEST_BYTES],
}

/// Milliseconds on CLOCK_MONOTONIC, the same clock in every process.
pub fn now_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000
    })
}

/// The master's scoreboard: the memfd to pass to workers and its mapping.
#[derive(Debug)]
pub struct Scoreboard {
    /// The memfd (close-on-exec); a worker gets a copy at exec.
    pub fd: OwnedFd,
    /// The slots.
    pub slots: &'static [Slot],
}

/// Bytes of the mapping.
fn len() -> NonZeroUsize {
    NonZeroUsize::new(CAPACITY * size_of::<Slot>()).expect("non-zero")
}

/// Make the scoreboard. Call once, in the master, before starting workers.
///
/// Errors: memfd_create(2), ftruncate(2) or mmap(2) failed (out of memory
/// or of file descriptors).
pub fn create() -> nix::Result<Scoreboard> {
    let fd = memfd_create("ferrocorn-scoreboard", MFdFlags::MFD_CLOEXEC)?;
    nix::unistd::ftruncate(&fd, len().get() as i64)?;
    let slots = attach(fd.as_fd())?;
    Ok(Scoreboard { fd, slots })
}

/// Map the scoreboard of `fd` (made by [`create`], in this process or in
/// the master that started this worker).
///
/// Errors: mmap(2) failed, or `fd` is not a scoreboard-sized file.
pub fn attach(fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<&'static [Slot]> {
    let size = nix::sys::stat::fstat(fd)?.st_size;
    if size != len().get() as i64 {
        return Err(nix::Error::EINVAL);
    }
    // SAFETY: a shared mapping of a memfd only ever accessed through
    // atomics; a fresh memfd is zero-filled, which is a valid `Slot` (all
    // atomics zero, state Free), and one written by another process holds
    // only values its atomics stored. The size was checked to be exactly
    // CAPACITY slots. It is never unmapped, so the `'static` slice stays
    // valid for the whole process. The doubt: a worker of another build
    // would read another layout; the boot handshake refuses that.
    unsafe {
        let ptr = mmap(
            None,
            len(),
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )?;
        Ok(std::slice::from_raw_parts(
            ptr.as_ptr().cast::<Slot>(),
            CAPACITY,
        ))
    }
}

/// Find a free slot and mark it booting (master only).
pub fn claim(board: &[Slot]) -> Option<usize> {
    let i = board.iter().position(|s| s.state() == State::Free)?;
    let slot = &board[i];
    slot.pid.store(0, Ordering::Relaxed);
    slot.busy.store(0, Ordering::Relaxed);
    slot.busy_since.store(0, Ordering::Relaxed);
    slot.requests.store(0, Ordering::Relaxed);
    for c in slot.by_class.iter().chain(&slot.durations) {
        c.store(0, Ordering::Relaxed);
    }
    slot.duration_us.store(0, Ordering::Relaxed);
    slot.heartbeat.store(now_ms(), Ordering::Relaxed);
    // A killed predecessor may have died mid-request; touch only busy
    // entries so the pages of unused threads stay untouched.
    for t in &slot.threads {
        if t.busy_since.load(Ordering::Relaxed) != 0 {
            t.finish();
        }
    }
    slot.state.store(State::Booting as u8, Ordering::Release);
    Some(i)
}

impl Slot {
    /// The worker's state.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            1 => State::Booting,
            2 => State::Ready,
            3 => State::Stopping,
            _ => State::Free,
        }
    }

    /// Set the worker's state (the worker, or the master freeing the slot).
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Record the worker's pid (the worker, first thing; or the zygote
    /// that forked it).
    pub fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Release);
    }

    /// The worker's pid, 0 if not yet known.
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::Acquire)
    }

    /// The event loop turned: the worker is alive.
    pub fn beat(&self) {
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
    }

    /// A request starts on some thread of this worker.
    pub fn request_started(&self) {
        if self.busy.fetch_add(1, Ordering::Relaxed) == 0 {
            self.busy_since.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// A request ended, answered with `status` (`None`: no response) after
    /// `took`. A few relaxed additions on this worker's own cache lines:
    /// the metrics cost the request path nothing else.
    pub fn request_finished(&self, status: Option<u16>, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = status.map_or(0, |s| usize::from(s / 100).min(5));
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let ms = took.as_millis() as u64;
        let bucket = DURATION_BUCKETS_MS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(DURATION_BUCKETS_MS.len());
        self.durations[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if self.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.busy_since.store(0, Ordering::Relaxed);
        }
    }

    /// This worker's counters so far.
    pub fn totals(&self) -> Totals {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Totals {
            requests: load(&self.requests),
            by_class: std::array::from_fn(|i| load(&self.by_class[i])),
            durations: std::array::from_fn(|i| load(&self.durations[i])),
            duration_us: load(&self.duration_us),
        }
    }

    /// App threads busy now.
    pub fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The entry of app thread `i` (`i < MAX_THREADS`).
    pub fn thread(&'static self, i: usize) -> &'static ThreadSlot {
        &self.threads[i]
    }

    /// Threads among the first `n` that run a request older than `limit` at
    /// `now` (ms): `(thread, request, elapsed)`.
    pub fn overdue(&self, n: usize, now: u64, limit: Duration) -> Vec<(usize, String, Duration)> {
        self.threads[..n.min(MAX_THREADS)]
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let since = t.busy_since.load(Ordering::Acquire);
                let elapsed = Duration::from_millis(now.saturating_sub(since));
                (since != 0 && elapsed > limit).then(|| (i, t.request(), elapsed))
            })
            .collect()
    }

    /// Whether the worker shows life at `now` (ms): its loop turned within
    /// `stale`, or it is inside a request younger than `timeout` (with
    /// `--threads 1` the loop does not turn while the app runs).
    pub fn is_alive(&self, now: u64, stale: Duration, timeout: Option<Duration>) -> bool {
        let beat = self.heartbeat.load(Ordering::Relaxed);
        if now.saturating_sub(beat) <= stale.as_millis() as u64 {
            return true;
        }
        let since = self.busy_since.load(Ordering::Relaxed);
        since != 0 && timeout.is_none_or(|t| now.saturating_sub(since) <= t.as_millis() as u64)
    }
}

/// Request counters, of one worker or summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests answered.
    pub requests: u64,
    /// By status class (see [`Slot::request_finished`]).
    pub by_class: [u64; 6],
    /// By duration bucket ([`DURATION_BUCKETS_MS`], then the rest).
    pub durations: [u64; 12],
    /// Sum of durations, µs.
    pub duration_us: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, other: Totals) {
        self.requests += other.requests;
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        for (a, b) in self.durations.iter_mut().zip(other.durations) {
            *a += b;
        }
        self.duration_us += other.duration_us;
    }
}

impl ThreadSlot {
    /// The request this thread runs at `now` (ms) and for how long, if any.
    pub fn current(&self, now: u64) -> Option<(String, Duration)> {
        let since = self.busy_since.load(Ordering::Acquire);
        (since != 0).then(|| {
            (
                self.request(),
                Duration::from_millis(now.saturating_sub(since)),
            )
        })
    }

    /// This thread starts `request` (`METHOD target`).
    pub fn start(&self, method: &str, target: &str) {
        // `METHOD target`, cut to fit, then one NUL: the reader stops there.
        let parts = [method.as_bytes(), b" ", target.as_bytes()];
        let text = parts.iter().flat_map(|p| p.iter().copied());
        let mut n = 0;
        for (cell, b) in self.request[..REQUEST_BYTES - 1].iter().zip(text) {
            cell.store(b, Ordering::Relaxed);
            n += 1;
        }
        self.request[n].store(0, Ordering::Relaxed);
        self.busy_since.store(now_ms().max(1), Ordering::Release);
    }

    /// This thread's request ended.
    pub fn finish(&self) {
        self.busy_since.store(0, Ordering::Release);
    }

    /// Make this the entry of the calling thread's requests, which
    /// [`client_wait`] takes off the clock.
    pub fn enter(&'static self) {
        CURRENT.set(Some(self));
    }
}

thread_local! {
    /// The entry of the request the calling thread runs (see [`ThreadSlot::enter`]).
    static CURRENT: std::cell::Cell<Option<&'static ThreadSlot>> =
        const { std::cell::Cell::new(None) };
}

/// Run `f`, a wait for the client (a socket read or write that would
/// block), off the clock of the calling thread's request: `--timeout`
/// measures the app, not a client slower than it (those waits are bounded
/// by the stall limit and `min_send_rate` themselves). The master sees
/// the thread idle meanwhile; afterwards its clock goes on from where it
/// stopped.
pub fn client_wait<R>(f: impl FnOnce() -> R) -> R {
    let Some(slot) = CURRENT.get() else {
        return f();
    };
    let since = slot.busy_since.swap(0, Ordering::AcqRel);
    let paused = now_ms();
    let result = f();
    if since != 0 {
        let resumed = since.saturating_add(now_ms().saturating_sub(paused));
        slot.busy_since.store(resumed.max(1), Ordering::Release);
    }
    result
}

impl ThreadSlot {
    fn request(&self) -> String {
        let bytes: Vec<u8> = self
            .request
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_with_a_forked_child() {
        let board = create().unwrap().slots;
        let i = claim(board).unwrap();
        // SAFETY: the child only touches atomics in the shared mapping and
        // exits with _exit, running nothing of the test harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                board[i].set_state(State::Ready);
                board[i].request_started();
                board[i].request_finished(Some(404), Duration::from_millis(7));
                // SAFETY: _exit is async-signal-safe and skips atexit handlers.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        assert_eq!(board[i].state(), State::Ready);
        assert_eq!(board[i].requests(), 1);
        assert_eq!(board[i].busy(), 0);
        let t = board[i].totals();
        assert_eq!((t.by_class[4], t.durations[1], t.duration_us), (1, 1, 7000));
    }

    #[test]
    fn a_second_mapping_of_the_memfd_sees_the_same_slots() {
        let board = create().unwrap();
        let again = attach(board.fd.as_fd()).unwrap();
        let i = claim(board.slots).unwrap();
        again[i].set_pid(4242);
        assert_eq!(board.slots[i].pid(), 4242);
        assert_eq!(again[i].state(), State::Booting);
    }

    #[test]
    fn overdue_threads_are_named_with_their_request() {
        let board = create().unwrap().slots;
        let slot = &board[claim(board).unwrap()];
        slot.thread(1).start("GET", "/slow?x=1");
        let now = now_ms();
        assert!(slot.overdue(4, now, Duration::from_secs(1)).is_empty());
        let late = slot.overdue(4, now + 2_000, Duration::from_secs(1));
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].0, late[0].1.as_str()), (1, "GET /slow?x=1"));
        slot.thread(1).finish();
        assert!(
            slot.overdue(4, now + 2_000, Duration::from_secs(1))
                .is_empty()
        );
    }

    #[test]
    fn a_busy_worker_is_alive_until_the_timeout() {
        let board = create().unwrap().slots;
        let slot = &board[claim(board).unwrap()];
        let stale = Duration::from_secs(1);
        let now = now_ms();
        assert!(slot.is_alive(now, stale, None));
        let later = now + 5_000;
        assert!(!slot.is_alive(later, stale, None));
        slot.request_started();
        assert!(slot.is_alive(later, stale, Some(Duration::from_secs(30))));
        assert!(!slot.is_alive(now + 40_000, stale, Some(Duration::from_secs(30))));
    }
}
