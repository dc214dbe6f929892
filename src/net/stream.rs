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
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::Socket;

/// A connected stream socket (TCP or UNIX), non-blocking underneath.
#[derive(Debug)]
pub struct Stream {
    sock: Socket,
    /// How long one read or write may wait for the peer; `None` = forever.
    stall: Option<Duration>,
}

impl Stream {
    /// Wrap an accepted socket; it is made non-blocking here.
    pub fn new(sock: Socket, stall: Option<Duration>) -> io::Result<Stream> {
        sock.set_nonblocking(true)?;
        Ok(Stream { sock, stall })
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
    /// the stall limit. Returns 0 at EOF.
    ///
    /// Errors: `TimedOut` when the peer sent nothing within the limit, or
    /// the socket error.
    pub fn read_into(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        loop {
            if let Some(n) = self.try_read_into(buf, max)? {
                return Ok(n);
            }
            self.wait(PollFlags::POLLIN)?;
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
        with_io_slices(bufs, |slices| self.write_all_slices(slices))
    }

    /// Write as much of `slices` as the socket takes without waiting, and
    /// advance `slices` past it. Returns whether everything was written.
    ///
    /// Errors: as [`Stream::write_all_vectored`], but never `TimedOut`.
    pub fn write_now(&self, slices: &mut &mut [IoSlice<'_>]) -> io::Result<bool> {
        while !slices.is_empty() {
            match self.sock.send_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(slices, n),
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

    /// Write all of `buf`.
    pub fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.write_all_vectored(&[buf])
    }

    /// Send `len` bytes of `file` from `offset` with sendfile(2), without
    /// copying them through user space.
    ///
    /// Returns the bytes sent, less than `len` only if the file ended first.
    pub fn sendfile(&self, file: BorrowedFd<'_>, mut offset: i64, len: u64) -> io::Result<u64> {
        let mut sent = 0u64;
        while sent < len {
            let chunk = (len - sent).min(1 << 30) as usize;
            match nix::sys::sendfile::sendfile64(&self.sock, file, Some(&mut offset), chunk) {
                Ok(0) => break,
                Ok(n) => sent += n as u64,
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLOUT)?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(sent)
    }

    /// Shut down both directions, so a peer blocked on us sees EOF now.
    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    fn wait(&self, events: PollFlags) -> io::Result<()> {
        let timeout = match self.stall {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.sock.as_fd(), events)];
        loop {
            match poll(&mut fds, timeout) {
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

/// Call `f` with the non-empty buffers of `bufs` as `IoSlice`s, kept on the
/// stack when there are at most 16 of them (a response write has at most
/// 11: head, size line, 8 body pieces, CRLF).
pub fn with_io_slices<R>(bufs: &[&[u8]], f: impl FnOnce(&mut [IoSlice<'_>]) -> R) -> R {
    const STACK: usize = 16;
    if bufs.len() <= STACK {
        let mut slices = [IoSlice::new(&[]); STACK];
        let mut n = 0;
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            slices[n] = IoSlice::new(b);
            n += 1;
        }
        f(&mut slices[..n])
    } else {
        let mut slices: Vec<IoSlice<'_>> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| IoSlice::new(b))
            .collect();
        f(&mut slices)
    }
}
