//! A client connection's socket, used in blocking style by whoever runs the
//! request (the I/O thread inline, or an app thread).
//!
//! The socket stays non-blocking for its whole life, so the I/O thread can
//! own it between requests without an fcntl per hand-off. Reads and writes
//! try the syscall first and only poll(2) on `EAGAIN`, with the stall limit
//! (`--timeout`) as poll's timeout: a client that stops reading or writing
//! mid-request cannot hold a thread forever.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::Socket;

/// A connected stream socket (TCP or UNIX), non-blocking underneath.
#[derive(Debug)]
pub struct Stream {
    sock: Socket,
    /// How long one read or write may wait for the peer; `None` = forever.
    stall: Option<Duration>,
    /// A TCP connection (which has TCP_NODELAY on), not a UNIX one.
    tcp: bool,
}

impl Stream {
    /// Wrap an accepted socket, which must be non-blocking already
    /// (accept4 with `SOCK_NONBLOCK`, as [`Listener::accept`] does); `tcp`:
    /// a TCP connection, whose TCP_NODELAY is on.
    ///
    /// [`Listener::accept`]: crate::listeners::Listener::accept
    pub fn accepted(sock: Socket, stall: Option<Duration>, tcp: bool) -> Stream {
        Stream { sock, stall, tcp }
    }

    /// Let TCP coalesce what is written from now on (Nagle's algorithm:
    /// TCP_NODELAY off), on a connection that closes after this response.
    /// A write goes out at once when all before it was acknowledged, else
    /// with what follows; close(2) or shutdown(2) sends what is held with
    /// the FIN (tcp(7)). Without it, a generator of 64 × 16 KiB costs a
    /// segment per block, and the FIN a segment of its own. Nothing on a
    /// UNIX socket.
    pub fn coalesce_until_close(&self) {
        if self.tcp {
            let _ = self.sock.set_tcp_nodelay(false);
        }
    }

    /// The underlying fd, for epoll registration.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Append up to `max` bytes to `buf` without waiting.
    ///
    /// Returns `Ok(None)` when nothing is available yet, `Ok(Some(0))` at EOF.
    pub fn try_read_into(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        buf.reserve(max);
        let spare = &mut buf.spare_capacity_mut()[..max];
        // recv(2) into uninitialised spare capacity: socket2 takes
        // `&mut [MaybeUninit<u8>]` for exactly this.
        loop {
            match self.sock.recv(spare) {
                Ok(n) => {
                    // SAFETY: recv initialised the first `n` bytes of the spare
                    // capacity, and `n <= max <= spare capacity`.
                    unsafe { buf.set_len(buf.len() + n) };
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Append at least one and at most `max` bytes to `buf`, waiting up to
    /// the stall limit, and no later than `deadline`. Returns 0 at EOF.
    ///
    /// Errors: `TimedOut` when the peer sent nothing within the limit or
    /// by the deadline, or the socket error.
    pub fn read_into(
        &self,
        buf: &mut Vec<u8>,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        loop {
            if let Some(n) = self.try_read_into(buf, max)? {
                return Ok(n);
            }
            let limit = match deadline {
                None => self.stall,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    Some(self.stall.map_or(left, |s| s.min(left)))
                }
            };
            self.wait_for(PollFlags::POLLIN, limit)?;
        }
    }

    /// Read at least one byte into `buf` (unless it is empty), waiting up to
    /// the stall limit. Returns `n`, 0 at EOF; the first `n` bytes of `buf`
    /// are then initialised.
    ///
    /// Errors: as [`Stream::read_into`].
    pub fn read_slice(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        loop {
            match self.sock.recv(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::POLLIN)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Write every byte of `bufs`, in order, with writev(2).
    ///
    /// Errors: `TimedOut` when the peer stopped reading for the stall limit,
    /// `BrokenPipe`/`ConnectionReset` when it went away.
    pub fn write_all_vectored(&self, bufs: &[&[u8]]) -> io::Result<()> {
        with_io_slices(bufs.iter().copied(), |slices| self.write_all_slices(slices))
    }

    /// Write as much of `slices` as the socket takes without waiting, and
    /// advance `slices` past it. Returns whether everything was written.
    ///
    /// Errors: as [`Stream::write_all_vectored`], but never `TimedOut`.
    pub fn write_now(&self, slices: &mut &mut [IoSlice<'_>]) -> io::Result<bool> {
        while !slices.is_empty() {
            // sendmsg(2) takes at most IOV_MAX buffers per call.
            let batch = &slices[..slices.len().min(IOV_MAX)];
            let offered: usize = batch.iter().map(|s| s.len()).sum();
            match self.sock.send_vectored(batch) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    IoSlice::advance_slices(slices, n);
                    // A short write means a full send buffer: trying again
                    // now would only fail with EAGAIN (one syscall more per
                    // wait for a slow client).
                    if n < offered && !slices.is_empty() {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Write every byte of `slices`, waiting up to the stall limit whenever
    /// the socket's send buffer is full.
    ///
    /// Errors: as [`Stream::write_all_vectored`].
    pub fn write_all_slices(&self, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        while !self.write_now(&mut slices)? {
            self.wait(PollFlags::POLLOUT)?;
        }
        Ok(())
    }

    /// Finish writing `slices` once [`Stream::write_now`] stopped short
    /// (the send buffer is full: writing again at once would only fail
    /// with EAGAIN): wait for room, write, and so on, giving up on a
    /// client that reads slower than `pace` allows.
    ///
    /// Errors: as [`Stream::write_all_vectored`]; `TimedOut` also when
    /// `pace` finds the client too slow.
    pub fn write_all_paced(
        &self,
        mut slices: &mut [IoSlice<'_>],
        pace: &mut SendPace,
    ) -> io::Result<()> {
        pace.begin_wait();
        loop {
            pace.check(Instant::now(), self.stall)?;
            // Wake at least once a second to apply both limits.
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLOUT)];
            match crate::scoreboard::client_wait(|| poll(&mut fds, PollTimeout::from(1000u16))) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let before = io_len(slices);
            let done = self.write_now(&mut slices)?;
            pace.sent((before - io_len(slices)) as u64);
            if done {
                return Ok(());
            }
        }
    }

    /// Write all of `buf`.
    pub fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.write_all_vectored(&[buf])
    }

    /// Send up to `len` bytes of `file` from `*offset` with sendfile(2),
    /// without waiting, advancing `*offset`. Returns the bytes sent (0: the
    /// file ended), or `None` when the socket takes nothing now.
    pub fn sendfile_now(
        &self,
        file: BorrowedFd<'_>,
        offset: &mut i64,
        len: u64,
    ) -> io::Result<Option<usize>> {
        let chunk = len.min(1 << 30) as usize;
        loop {
            match nix::sys::sendfile::sendfile64(&self.sock, file, Some(offset), chunk) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Send our FIN once what is queued has gone: the peer sees the end
    /// of the response, and may go on sending.
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// Read and drop what the peer sent, without waiting: up to 1 MiB per
    /// call, so that one sender cannot keep the caller. Returns false at
    /// the peer's EOF.
    ///
    /// Errors: the socket's (a reset peer).
    pub fn discard(&self) -> io::Result<bool> {
        let mut scratch = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        for _ in 0..64 {
            match self.sock.recv(&mut scratch) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn wait(&self, events: PollFlags) -> io::Result<()> {
        self.wait_for(events, self.stall)
    }

    /// Wait up to `limit` (`None`: forever) for `events`.
    fn wait_for(&self, events: PollFlags, limit: Option<Duration>) -> io::Result<()> {
        let timeout = match limit {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.sock.as_fd(), events)];
        loop {
            match crate::scoreboard::client_wait(|| poll(&mut fds, timeout)) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stalled longer than the timeout",
                    ));
                }
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Most buffers one sendmsg(2) takes (`UIO_MAXIOV` on Linux).
const IOV_MAX: usize = 1024;

/// Bytes in `slices`.
fn io_len(slices: &[IoSlice<'_>]) -> usize {
    slices.iter().map(|s| s.len()).sum()
}

/// How slowly a client may read a response: `min_send_rate`, and the
/// stall limit (`--timeout`) without any progress. Bytes are counted over
/// windows of [`SendPace::WINDOW`], the first one starting when the client
/// first makes the server wait (a response the socket takes at once is
/// never judged); a window that ends with fewer than `min × 30` bytes read
/// fails the client.
#[derive(Debug, Clone, Copy)]
pub struct SendPace {
    /// Bytes per second; 0 = no limit.
    min: u64,
    /// When the current window began; `None` before the first wait.
    window: Option<Instant>,
    /// Bytes sent in the current window.
    in_window: u64,
    /// When the client last took bytes, or a wait for it began.
    last_progress: Instant,
}

impl SendPace {
    /// The window the rate is averaged over.
    pub const WINDOW: Duration = Duration::from_secs(30);

    /// A pace of at least `min` bytes per second (0 = any pace).
    pub fn new(min: u64) -> SendPace {
        SendPace {
            min,
            window: None,
            in_window: 0,
            last_progress: Instant::now(),
        }
    }

    /// Count `n` more bytes sent.
    pub fn sent(&mut self, n: u64) {
        if n > 0 {
            self.in_window = self.in_window.saturating_add(n);
            self.last_progress = Instant::now();
        }
    }

    /// A write begins that may wait: the stall limit counts from now (the
    /// time the app took since the last write is not the client's).
    pub fn begin_wait(&mut self) {
        self.last_progress = Instant::now();
    }

    /// When the client last took bytes (or the pace was made).
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// Judge the client at `now`, while it makes the server wait; `stall`
    /// is the longest it may take nothing (`None`: any).
    ///
    /// Errors: `TimedOut`, saying which limit the client broke: no
    /// progress for `stall`, or a whole window with fewer than `min × 30`
    /// bytes read.
    pub fn check(&mut self, now: Instant, stall: Option<Duration>) -> io::Result<()> {
        let window = Self::WINDOW.as_secs();
        match self.window {
            None => {
                self.window = Some(now);
                self.in_window = 0;
            }
            Some(start) if self.min > 0 && now.saturating_duration_since(start) >= Self::WINDOW => {
                if self.in_window < self.min * window {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "client read {} bytes in {window} s, below min_send_rate ({} bytes/s)",
                            self.in_window, self.min
                        ),
                    ));
                }
                self.window = Some(now);
                self.in_window = 0;
            }
            Some(_) => {}
        }
        if stall.is_some_and(|stall| now.saturating_duration_since(self.last_progress) >= stall) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stalled longer than the timeout",
            ));
        }
        Ok(())
    }
}

/// Call `f` with the non-empty buffers of `bufs` as `IoSlice`s, kept on the
/// stack when there are at most 16 of them (a streamed block's write has
/// 4: head, size line, block, CRLF; a whole body's, its items and 4).
pub fn with_io_slices<'b, I, R>(bufs: I, f: impl FnOnce(&mut [IoSlice<'b>]) -> R) -> R
where
    I: IntoIterator<Item = &'b [u8]>,
    I::IntoIter: ExactSizeIterator,
{
    const STACK: usize = 16;
    let bufs = bufs.into_iter();
    if bufs.len() <= STACK {
        let bufs = bufs.filter(|b| !b.is_empty());
        let mut slices = [IoSlice::new(&[]); STACK];
        let mut n = 0;
        for b in bufs {
            slices[n] = IoSlice::new(b);
            n += 1;
        }
        f(&mut slices[..n])
    } else {
        let mut slices: Vec<IoSlice<'b>> =
            bufs.filter(|b| !b.is_empty()).map(IoSlice::new).collect();
        f(&mut slices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_judges_whole_windows_from_the_first_wait() {
        let t0 = Instant::now();
        let mut pace = SendPace::new(1024);
        // Bytes sent before the first wait do not count.
        pace.sent(1 << 30);
        pace.check(t0, None).unwrap();
        pace.sent(1024 * 29);
        pace.check(t0 + Duration::from_secs(29), None).unwrap();
        // 29 KiB in 30 s is below 1 KiB/s.
        let e = pace.check(t0 + SendPace::WINDOW, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            e.to_string().contains("min_send_rate (1024 bytes/s)"),
            "{e}"
        );

        let mut pace = SendPace::new(1024);
        pace.check(t0, None).unwrap();
        pace.sent(30 * 1024);
        pace.check(t0 + SendPace::WINDOW, None).unwrap();
        // A new window: a stall after a fast start is judged on its own.
        pace.check(t0 + 2 * SendPace::WINDOW, None).unwrap_err();

        let mut unlimited = SendPace::new(0);
        unlimited.check(t0, None).unwrap();
        unlimited.check(t0 + 10 * SendPace::WINDOW, None).unwrap();
        // No progress for the stall limit fails whatever the rate.
        let stalled = unlimited.check(
            Instant::now() + Duration::from_secs(31),
            Some(Duration::from_secs(30)),
        );
        assert!(stalled.unwrap_err().to_string().contains("stalled"));
    }
}
