//! `wsgi.input`: the request body, streamed from the socket as the app reads
//! (PEP 3333, "Input and Error Streams"), never buffered whole.
//!
//! Bytes already read past the head are decoded first; more are read from
//! the socket only when the app asks, with the GIL released. The first read
//! answers `Expect: 100-continue` (RFC 9110 §10.1.1) unless the response has
//! already begun. Invariant: decoding never consumes a byte past the end of
//! this request's body, so what is left in `raw` afterwards is the next
//! pipelined request.

use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::exchange::Exchange;
use crate::http::{BodyDecoder, BodyKind, Decoded, LengthDecoder, Limits, ParseError};
use crate::net::Stream;

/// Bytes read from the socket per syscall while a body is streamed.
const READ_SIZE: usize = 64 * 1024;
/// A `read()` of at least `BULK_READ` and at most `BULK_MAX` bytes of a
/// Content-Length body goes from the socket straight into the `bytes`
/// object it returns. Larger reads take the buffered path, whose memory
/// grows only as bytes arrive: a client declaring gigabytes it never sends
/// must not make the worker allocate them up front.
const BULK_READ: usize = 16 * 1024;
const BULK_MAX: usize = 16 * 1024 * 1024;
/// Bytes readline() decodes per step while looking for a newline.
const LINE_STEP: usize = 8 * 1024;

/// Why the body cannot be read further.
#[derive(Debug, Clone)]
pub(crate) enum BodyFailure {
    /// The framing is malformed (a bad chunk size, ...): answer 400, close.
    Malformed(ParseError),
    /// The client went away or stalled; nothing more can be said to it.
    Io(io::ErrorKind),
}

impl BodyFailure {
    fn to_py(&self) -> PyErr {
        match self {
            BodyFailure::Malformed(ParseError::IncompleteBody) => PyOSError::new_err(
                "incomplete request body: the client closed the connection before its end",
            ),
            BodyFailure::Malformed(e) => PyOSError::new_err(format!("malformed request body: {e}")),
            BodyFailure::Io(kind) => PyOSError::new_err(format!("reading request body: {kind}")),
        }
    }
}

/// The request-body state shared by the `Input` object and the worker.
#[derive(Debug)]
pub(crate) struct BodyReader {
    stream: Arc<Stream>,
    /// Bytes from the socket not yet decoded, from `raw_pos` on.
    raw: Vec<u8>,
    raw_pos: usize,
    /// `None` for a request without a body.
    decoder: Option<BodyDecoder>,
    done: bool,
    /// The client closed its side; the connection cannot carry another request.
    eof: bool,
    /// Decoded body bytes not yet given to the app, from `decoded_pos` on.
    decoded: Vec<u8>,
    decoded_pos: usize,
    /// `Expect: 100-continue` was asked and not yet answered.
    pub(crate) continue_pending: bool,
    /// When reads give up (set while draining), besides the stall limit.
    deadline: Option<Instant>,
    pub(crate) failure: Option<BodyFailure>,
}

impl BodyReader {
    pub(crate) fn new(
        stream: Arc<Stream>,
        raw: Vec<u8>,
        kind: BodyKind,
        limits: &Limits,
        expect_continue: bool,
    ) -> BodyReader {
        let decoder = match kind {
            BodyKind::Empty | BodyKind::Length(0) => None,
            kind => Some(BodyDecoder::new(kind, limits)),
        };
        BodyReader {
            stream,
            raw,
            raw_pos: 0,
            done: decoder.is_none(),
            eof: false,
            continue_pending: expect_continue && decoder.is_some(),
            decoder,
            decoded: Vec::new(),
            decoded_pos: 0,
            failure: None,
            deadline: None,
        }
    }

    /// Whether the whole body has been decoded (not necessarily read by the app).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    fn available(&self) -> usize {
        self.decoded.len() - self.decoded_pos
    }

    /// Decode until `want` bytes are available or the body ends.
    /// Reads the socket as needed; `head_sent` tells whether the 100
    /// Continue may still be sent.
    fn fill(&mut self, want: usize, head_sent: bool) -> Result<(), BodyFailure> {
        self.recording(|body| body.fill_inner(want, head_sent))
    }

    /// Run `f` unless the body already failed, and remember its failure:
    /// the body cannot be read past one.
    fn recording<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, BodyFailure>,
    ) -> Result<R, BodyFailure> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let result = f(self);
        if let Err(f) = &result {
            self.failure = Some(f.clone());
        }
        result
    }

    fn fill_inner(&mut self, want: usize, head_sent: bool) -> Result<(), BodyFailure> {
        if self.decoded_pos == self.decoded.len() {
            self.decoded.clear();
            self.decoded_pos = 0;
        }
        while self.available() < want && !self.done {
            if self.raw_pos < self.raw.len() {
                let max = want - self.available();
                let input = &self.raw[self.raw_pos..];
                let Decoded { consumed, done } = match &mut self.decoder {
                    Some(d) => d.decode(input, &mut self.decoded, max),
                    None => Ok(Decoded {
                        consumed: 0,
                        done: true,
                    }),
                }
                .map_err(BodyFailure::Malformed)?;
                self.raw_pos += consumed;
                self.done = done;
                if consumed > 0 || done {
                    continue;
                }
            }
            self.read_more(head_sent)?;
        }
        Ok(())
    }

    fn read_more(&mut self, head_sent: bool) -> Result<(), BodyFailure> {
        if self.raw_pos == self.raw.len() {
            self.raw.clear();
            self.raw_pos = 0;
        }
        self.send_continue_if_owed(head_sent)?;
        match self
            .stream
            .read_into(&mut self.raw, READ_SIZE, self.deadline)
        {
            Ok(0) => {
                // EOF before the body's end: the request is incomplete
                // (RFC 9112 §8), never handed to the app as if whole.
                self.eof = true;
                let finished = self.decoder.as_ref().map_or(Ok(()), BodyDecoder::finish);
                finished.map_err(BodyFailure::Malformed)?;
                self.done = true;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(BodyFailure::Io(e.kind())),
        }
    }

    /// Answer `Expect: 100-continue` before the first read from the socket,
    /// unless the response has begun (RFC 9110 §10.1.1).
    fn send_continue_if_owed(&mut self, head_sent: bool) -> Result<(), BodyFailure> {
        if std::mem::take(&mut self.continue_pending) && !head_sent {
            self.stream
                .write_all(crate::http::response::CONTINUE)
                .map_err(|e| BodyFailure::Io(e.kind()))?;
        }
        Ok(())
    }

    /// How many bytes `read(want)` returns for a Content-Length body (if
    /// the client sends them all), or `None` for a chunked body, a failed
    /// one, or no body.
    fn bulk_len(&self, want: usize) -> Option<usize> {
        match (&self.decoder, &self.failure) {
            (Some(BodyDecoder::Length(d)), None) => {
                let left = usize::try_from(d.remaining()).unwrap_or(usize::MAX);
                Some(want.min(self.available().saturating_add(left)))
            }
            _ => None,
        }
    }

    /// Fill `out` with the next body bytes of a Content-Length body, the
    /// socket read straight into it (no copy through our buffers). Returns
    /// the bytes written: all of `out`.
    ///
    /// Errors: `IncompleteBody` when the client closes the connection
    /// first (RFC 9112 §8), or the socket's error.
    /// Only after [`BodyReader::bulk_len`] said yes.
    fn read_exact_into(
        &mut self,
        out: &mut [MaybeUninit<u8>],
        head_sent: bool,
    ) -> Result<usize, BodyFailure> {
        self.recording(|body| {
            let mut filled = body.available().min(out.len());
            write_bytes(&mut out[..filled], body.take(filled));
            // Then what was read past the head (or past an earlier read)...
            let left = body.length_left();
            let buffered = &body.raw[body.raw_pos..];
            let n = buffered.len().min(out.len() - filled).min(left);
            write_bytes(&mut out[filled..filled + n], &buffered[..n]);
            body.raw_pos += n;
            body.length_decoder().advance(n as u64);
            filled += n;
            // ... then the socket, never past the body's end.
            while filled < out.len() && body.length_left() > 0 {
                body.send_continue_if_owed(head_sent)?;
                let room = (out.len() - filled).min(body.length_left());
                match body.stream.read_slice(&mut out[filled..filled + room]) {
                    Ok(0) => {
                        // As in read_more: an incomplete body (RFC 9112 §8).
                        body.eof = true;
                        return Err(BodyFailure::Malformed(ParseError::IncompleteBody));
                    }
                    Ok(n) => {
                        body.length_decoder().advance(n as u64);
                        filled += n;
                    }
                    Err(e) => return Err(BodyFailure::Io(e.kind())),
                }
            }
            body.done = body.length_left() == 0;
            Ok(filled)
        })
    }

    fn length_decoder(&mut self) -> &mut LengthDecoder {
        match &mut self.decoder {
            Some(BodyDecoder::Length(d)) => d,
            _ => unreachable!("only called for a Content-Length body"),
        }
    }

    /// Bytes of a Content-Length body not yet read from the socket.
    fn length_left(&self) -> usize {
        match &self.decoder {
            Some(BodyDecoder::Length(d)) => usize::try_from(d.remaining()).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.available());
        let start = self.decoded_pos;
        self.decoded_pos += n;
        &self.decoded[start..start + n]
    }

    /// Read and discard the rest of the body so the connection can carry the
    /// next request; gives up (returns false) past `limit` bytes, after
    /// `time` (a client trickling a body the app ignored must not hold the
    /// thread), or on error. A client still waiting for `100 Continue` is
    /// not drained: it would send the body only if asked.
    pub(crate) fn drain(&mut self, limit: usize, time: Duration) -> bool {
        if self.continue_pending {
            return self.done;
        }
        if self.eof {
            return false;
        }
        self.deadline = Some(Instant::now() + time);
        let mut discarded = 0;
        while !self.done && discarded <= limit {
            if self.fill(LINE_STEP, true).is_err() {
                return false;
            }
            discarded += self.available();
            self.decoded_pos = self.decoded.len();
        }
        self.done && !self.eof
    }

    /// The bytes after this request's body: the start of the next request.
    /// Only meaningful once the body is done.
    pub(crate) fn take_leftover(&mut self) -> Vec<u8> {
        let mut raw = std::mem::take(&mut self.raw);
        raw.drain(..self.raw_pos);
        self.raw_pos = 0;
        raw
    }
}

/// Initialise `dst` with `src` (same length); `<[MaybeUninit<u8>]>::
/// write_copy_of_slice` once the MSRV reaches 1.93.
fn write_bytes(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        d.write(*s);
    }
}

/// The `wsgi.input` object (PEP 3333): `read`, `readline`, `readlines` and
/// iteration over lines. Raises `OSError` when the client disconnects or the
/// body is malformed.
#[pyclass(module = "ferrocorn", name = "Input")]
pub(crate) struct Input {
    pub(crate) ex: Arc<Exchange>,
}

fn size_arg(size: Option<isize>) -> usize {
    match size {
        Some(n) if n >= 0 => n as usize,
        _ => usize::MAX,
    }
}

impl Input {
    /// Run `f` on the body state with the GIL released (it may block on the socket).
    fn with_body<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut BodyReader, bool) -> R + Send,
    ) -> PyResult<R> {
        let ex = &self.ex;
        py.detach(|| {
            let head_sent = ex.head_sent();
            let mut guard = ex.input.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(body) => Ok(f(body, head_sent)),
                None => Err(()),
            }
        })
        .map_err(|()| PyOSError::new_err("wsgi.input used after its request ended"))
    }
}

impl Input {
    /// `read()` of `len` bytes of a Content-Length body into a new `bytes`
    /// object that the socket fills directly, with the GIL released.
    fn read_bulk<'py>(&self, py: Python<'py>, len: usize) -> PyResult<Bound<'py, PyBytes>> {
        // SAFETY: the GIL is held. PyBytes_FromStringAndSize(NULL, len) makes
        // a bytes object with `len` uninitialised bytes (or NULL and an
        // exception), which no Python code can see before we return it.
        let bytes = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyBytes_FromStringAndSize(
                    std::ptr::null(),
                    len as pyo3::ffi::Py_ssize_t,
                ),
            )?
            .cast_into_unchecked::<PyBytes>()
        };
        // SAFETY: the object is new and ours alone, so writing its buffer is
        // allowed, and it stays alive (we hold `bytes`) while the GIL is
        // released; its `len` bytes are uninitialised, hence MaybeUninit.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                pyo3::ffi::PyBytes_AsString(bytes.as_ptr()).cast::<MaybeUninit<u8>>(),
                len,
            )
        };
        let got = self
            .with_body(py, |body, head_sent| body.read_exact_into(buf, head_sent))?
            .map_err(|f| f.to_py())?;
        // read_exact_into fills all of `buf` or fails.
        debug_assert_eq!(got, len);
        Ok(bytes)
    }
}

#[pymethods]
impl Input {
    /// Read up to `size` bytes (all that is left when `size` is absent or negative).
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let want = size_arg(size);
        if let Some(len) = self.with_body(py, |body, _| body.bulk_len(want))? {
            if (BULK_READ..=BULK_MAX).contains(&len) {
                return self.read_bulk(py, len);
            }
        }
        let data = self.with_body(py, |body, head_sent| {
            body.fill(want, head_sent)?;
            Ok(body.take(want).to_vec())
        })?;
        data.map(|d| PyBytes::new(py, &d))
            .map_err(|f: BodyFailure| f.to_py())
    }

    /// Read one line, up to and including `\n`, at most `size` bytes.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size_arg(size);
        let data = self.with_body(py, |body, head_sent| {
            let mut scanned = 0;
            loop {
                let avail = &body.decoded[body.decoded_pos..];
                if let Some(i) = avail[scanned..].iter().position(|&b| b == b'\n') {
                    return Ok(body.take((scanned + i + 1).min(limit)).to_vec());
                }
                scanned = avail.len();
                if scanned >= limit || body.done {
                    return Ok(body.take(limit).to_vec());
                }
                body.fill(scanned.saturating_add(LINE_STEP).min(limit), head_sent)?;
            }
        })?;
        data.map(|d| PyBytes::new(py, &d))
            .map_err(|f: BodyFailure| f.to_py())
    }

    /// Read all lines; `hint` is accepted and may be ignored, as PEP 3333 allows.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let _ = hint;
        let lines = PyList::empty(py);
        loop {
            let line = self.readline(py, None)?;
            if line.as_bytes().is_empty() {
                return Ok(lines);
            }
            lines.append(line)?;
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}
