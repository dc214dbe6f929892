//! The rest of a response that the client could not take at once: what an
//! app thread hands to the I/O thread so that a slow reader holds no thread
//! (DESIGN §2, "Slow clients").
//!
//! A tail is made only for a body that exists whole when the app returns —
//! a list or tuple of `bytes`, or a `wsgi.file_wrapper` file sent with
//! sendfile(2) — and holds references to the app's `bytes` objects, never
//! copies (the head and framing bytes it owns are small). Invariants: the
//! pieces go out in order and exactly once; a `bytes` object's buffer is
//! read only while the tail holds a reference to it; the Python objects are
//! released, and a file wrapper's `close()` called, with the GIL held, when
//! the tail is dropped — finished, cut or abandoned.

use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::net::{SendPace, Stream};

/// Most pieces written with one writev (IOV_MAX is 1024).
const IOV_BATCH: usize = 64;

/// Bytes still to go out.
#[derive(Debug)]
enum Piece {
    /// The head, a chunk-size line or other framing: ours.
    Owned(Vec<u8>),
    /// Part of a `bytes` object the app returned: `len` bytes at `ptr`.
    Held {
        _obj: Py<PyBytes>,
        ptr: *const u8,
        len: usize,
    },
}

// SAFETY: `ptr` points into the buffer of the `bytes` object `_obj` holds a
// strong reference to. A `bytes` object is immutable and its buffer lives,
// unmoved, as long as the object; the reference is released only when the
// piece is dropped, so reading the buffer from another thread, without the
// GIL, reads memory that nothing frees or writes meanwhile. (An app that
// mutates a `bytes` object through the C API breaks Python's own rules.)
unsafe impl Send for Piece {}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Owned(v) => v,
            // SAFETY: see `unsafe impl Send for Piece`: the buffer is alive
            // and immutable while `self` is.
            Piece::Held { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

/// A `wsgi.file_wrapper` file still to be sent with sendfile(2).
#[derive(Debug)]
struct FileBody {
    /// The wrapper, whose `close()` the tail owes the app.
    wrapper: Py<PyAny>,
    /// Its file's descriptor, open while `wrapper` is not closed.
    fd: RawFd,
    offset: i64,
    left: u64,
}

/// A response body (and perhaps the end of its head) still to be written;
/// see the module documentation.
#[derive(Debug)]
pub struct Tail {
    stream: Arc<Stream>,
    pieces: Vec<Piece>,
    /// The first piece not fully written, and how much of it was.
    at: usize,
    offset: usize,
    file: Option<FileBody>,
    /// Bytes of the app's objects this tail keeps alive (the write budget).
    held: u64,
    /// Bytes still to write.
    unsent: u64,
    pace: SendPace,
}

impl Tail {
    /// A tail of the bytes `parts` on `stream`, in order, each with the
    /// `bytes` object it lies in (`None`: ours, copied here); judged by
    /// `min_send_rate` from now on.
    pub(crate) fn new(
        stream: Arc<Stream>,
        parts: &[(&[u8], Option<&Bound<'_, PyBytes>>)],
        min_send_rate: u64,
    ) -> Tail {
        let mut held = 0;
        let pieces = parts
            .iter()
            .filter(|(bytes, _)| !bytes.is_empty())
            .map(|&(bytes, obj)| match obj {
                Some(obj) => {
                    held += bytes.len() as u64;
                    Piece::Held {
                        _obj: obj.clone().unbind(),
                        ptr: bytes.as_ptr(),
                        len: bytes.len(),
                    }
                }
                None => Piece::Owned(bytes.to_vec()),
            })
            .collect::<Vec<_>>();
        let unsent = pieces.iter().map(|p| p.bytes().len() as u64).sum();
        let mut pace = SendPace::new(min_send_rate);
        // The client made us wait: its first window starts now.
        let _ = pace.check(Instant::now(), None);
        Tail {
            stream,
            pieces,
            at: 0,
            offset: 0,
            file: None,
            held,
            unsent,
            pace,
        }
    }

    /// Then `left` bytes of `wrapper`'s file `fd` from `offset`, with
    /// sendfile(2); the tail calls the wrapper's `close()` when dropped.
    pub(crate) fn then_file(
        mut self,
        wrapper: Py<PyAny>,
        fd: RawFd,
        offset: i64,
        left: u64,
    ) -> Tail {
        self.unsent += left;
        self.file = Some(FileBody {
            wrapper,
            fd,
            offset,
            left,
        });
        self
    }

    /// Bytes of the app's objects this tail keeps alive.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Bytes not yet written.
    pub fn unsent(&self) -> u64 {
        self.unsent
    }

    /// When the client last took bytes (or the tail was made).
    pub fn last_progress(&self) -> Instant {
        self.pace.last_progress()
    }

    /// Whether the tail owes a file wrapper's `close()` (so the app thread
    /// must not call it).
    pub(crate) fn closes_iterable(&self) -> bool {
        self.file.is_some()
    }

    /// Write what the socket takes now. Returns whether everything is out.
    ///
    /// Errors: the socket's (the client went away), or a file that ended
    /// before its length (the response is short; the connection must
    /// close).
    pub fn write(&mut self) -> io::Result<bool> {
        while self.at < self.pieces.len() {
            let mut slices = [IoSlice::new(&[]); IOV_BATCH];
            let mut n = 0;
            for (i, piece) in self.pieces[self.at..].iter().take(IOV_BATCH).enumerate() {
                let bytes = piece.bytes();
                slices[n] = IoSlice::new(if i == 0 { &bytes[self.offset..] } else { bytes });
                n += 1;
            }
            let before: usize = slices[..n].iter().map(|s| s.len()).sum();
            let mut rest = &mut slices[..n];
            let all = self.stream.write_now(&mut rest)?;
            let after: usize = rest.iter().map(|s| s.len()).sum();
            self.advance(before - after);
            if !all {
                return Ok(false);
            }
        }
        if let Some(file) = &mut self.file {
            while file.left > 0 {
                // SAFETY: the descriptor belongs to the wrapper's file, which
                // stays open until the tail calls its close() on drop.
                let fd = unsafe { BorrowedFd::borrow_raw(file.fd) };
                match self.stream.sendfile_now(fd, &mut file.offset, file.left)? {
                    None => return Ok(false),
                    Some(0) => return Err(io::Error::other("the file ended before its length")),
                    Some(n) => {
                        file.left -= n as u64;
                        self.unsent -= n as u64;
                        self.pace.sent(n as u64);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Judge the client at `now`: `min_send_rate`, and `--timeout` (`stall`)
    /// without any progress.
    ///
    /// Errors: `TimedOut`, saying which limit the client broke.
    pub fn check(&mut self, now: Instant, stall: Option<Duration>) -> io::Result<()> {
        self.pace.check(now, stall)
    }

    fn advance(&mut self, mut n: usize) {
        if n == 0 {
            return;
        }
        self.unsent -= n as u64;
        self.pace.sent(n as u64);
        while n > 0 {
            let left = self.pieces[self.at].bytes().len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.at += 1;
            self.offset = 0;
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let holds_python =
            self.file.is_some() || self.pieces.iter().any(|p| matches!(p, Piece::Held { .. }));
        if !holds_python {
            return;
        }
        // Release the app's objects now, not whenever some thread next
        // takes the GIL: they may be large.
        Python::attach(|py| {
            if let Some(file) = self.file.take() {
                if let Err(e) = file
                    .wrapper
                    .bind(py)
                    .call_method0(pyo3::intern!(py, "close"))
                {
                    tracing::error!("the file wrapper's close() failed: {e}");
                }
            }
            self.pieces.clear();
        });
    }
}
