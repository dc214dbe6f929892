//! One request/response exchange: the state that the app's Python objects
//! (`wsgi.input`, `start_response`, `write`) and the worker share.
//!
//! Invariants: the response head goes out at most once, lazily, with the
//! first non-empty body chunk or at the end (PEP 3333, "Buffering and
//! Streaming"); its framing is fixed then; the body never exceeds a declared
//! Content-Length; once the request ends the Python objects are detached
//! from the socket (`input` becomes `None`, the writer's stream is dropped),
//! so an app that keeps them cannot touch the next request.

use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::{Bound, Python};

use pyo3::types::{PyBytes, PyBytesMethods};

use super::input::BodyReader;
use super::tail::Tail;
use crate::http::response::{
    Framing, HeadSpec, LAST_CHUNK, chunk_size_line, is_bodyless, is_hop_by_hop,
    is_valid_field_name, is_valid_field_value, latin1, push_field_line, status_code, write_head,
};
use crate::http::{Head, Limits, Version};
use crate::net::{SendPace, Stream, with_io_slices};

/// Body bytes that go out in one TCP segment with a head (Ethernet's MSS
/// is 1,448 bytes).
const ONE_SEGMENT: u64 = 1024;

/// What `start_response` recorded (PEP 3333, "The start_response() Callable").
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub status: String,
    pub code: u16,
    /// The app's fields as field lines, ready for the head.
    pub field_lines: Vec<u8>,
    /// The app's Content-Length, if it gave one.
    pub length: Option<u64>,
    /// The app asked for `Connection: close`.
    pub close: bool,
}

impl Started {
    /// Validate a status and check and record each `(name, value)` field
    /// the app gives (hop-by-hop ones are dropped, a `Connection: close`
    /// noted).
    ///
    /// Errors: a message naming the bad status or field, raised to the app.
    pub(crate) fn new(status: &str, field_count: usize) -> Result<Started, String> {
        let code = status_code(status)
            .ok_or_else(|| format!("invalid status {status:?}: expected \"NNN Reason\""))?;
        if !is_valid_field_value(status.as_bytes()) {
            return Err(format!("invalid status {status:?}: control characters"));
        }
        Ok(Started {
            status: status.to_string(),
            code,
            // A typical field line is under 48 bytes.
            field_lines: Vec::with_capacity(48 * field_count),
            length: None,
            close: false,
        })
    }

    /// Check and record one of the app's fields.
    ///
    /// Errors: a message naming the bad field, raised to the app.
    pub(crate) fn push_field(&mut self, name: &str, value: &str) -> Result<(), String> {
        if !is_valid_field_name(name) {
            return Err(format!("invalid header name {name:?}"));
        }
        // PEP 3333: values are latin-1 "native strings", sent as latin-1.
        let bytes = latin1(value).ok_or_else(|| {
            format!(
                "the value of header {name:?} is not latin-1 (PEP 3333): {value:?}; encode it \
                 (RFC 8187, or percent-encoding) first"
            )
        })?;
        if !is_valid_field_value(&bytes) {
            return Err(format!("invalid value for header {name:?}: {value:?}"));
        }
        if is_hop_by_hop(name) {
            if name.eq_ignore_ascii_case("connection")
                && value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                self.close = true;
            }
            return Ok(());
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("invalid Content-Length {value:?}"))?;
            if self.length.replace(n).is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".into());
            }
        }
        push_field_line(&mut self.field_lines, name, &bytes);
        Ok(())
    }
}

/// The response half: everything needed to put bytes on the wire.
#[derive(Debug)]
pub(crate) struct ResponseWriter {
    stream: Option<Arc<Stream>>,
    version: Version,
    head_request: bool,
    /// The request allows keep-alive and the worker is not stopping.
    may_keep_alive: bool,
    pub(crate) started: Option<Started>,
    head_sent: bool,
    framing: Framing,
    keep_alive: bool,
    /// Body bytes sent (before chunk framing).
    sent: u64,
    /// The client stopped reading or went away.
    broken: bool,
    /// Set by `finish`: the connection may carry another request.
    reusable: bool,
    /// `min_send_rate`, bytes per second (0 = no limit).
    min_send_rate: u64,
    /// How fast the client reads while the app thread waits for it.
    pace: SendPace,
    /// What the socket did not take of a whole body, for the I/O thread.
    pub(crate) tail: Option<Tail>,
    /// Why the response was cut: the client read too slowly.
    pub(crate) cut: Option<String>,
}

/// The exchange shared with Python.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The body reader; `None` once the request is over.
    pub(crate) input: Mutex<Option<BodyReader>>,
    pub(crate) output: Mutex<ResponseWriter>,
    head_sent: AtomicBool,
}

impl Exchange {
    pub(crate) fn new(
        head: &Head,
        limits: &Limits,
        stream: Arc<Stream>,
        raw: Vec<u8>,
        may_keep_alive: bool,
        min_send_rate: u64,
    ) -> Self {
        Exchange {
            input: Mutex::new(Some(BodyReader::new(
                Arc::clone(&stream),
                raw,
                head.body,
                limits,
                head.expect_continue,
            ))),
            output: Mutex::new(ResponseWriter {
                stream: Some(stream),
                version: head.version,
                head_request: head.method() == "HEAD",
                may_keep_alive: may_keep_alive && head.keep_alive,
                started: None,
                head_sent: false,
                framing: Framing::NoBody,
                keep_alive: false,
                sent: 0,
                broken: false,
                reusable: false,
                min_send_rate,
                pace: SendPace::new(min_send_rate),
                tail: None,
                cut: None,
            }),
            head_sent: AtomicBool::new(false),
        }
    }

    /// Whether the response head is out (so 100 Continue may no longer be sent).
    pub(crate) fn head_sent(&self) -> bool {
        self.head_sent.load(Ordering::Acquire)
    }

    /// Whether a `100 Continue` is still owed and the body is unread: the
    /// client is waiting for us, so the connection cannot be reused.
    fn awaiting_continue(&self) -> bool {
        match self.input.try_lock() {
            Ok(guard) => guard
                .as_ref()
                .is_some_and(|b| b.continue_pending && !b.is_done()),
            Err(_) => false,
        }
    }

    /// Whether reading the request body failed (malformed, cut short by
    /// the client's EOF, or the socket's error).
    fn body_failed(&self) -> bool {
        match self.input.try_lock() {
            Ok(guard) => guard.as_ref().is_some_and(|b| b.failure.is_some()),
            Err(_) => false,
        }
    }

    /// Send one block of body bytes (`data`; empty: none) in one writev,
    /// with the head first if it is not out yet. `total` is the whole body's length when
    /// the server knows it (a one-item list), used when the app gave no
    /// Content-Length.
    ///
    /// Errors: the socket's; and, before the head is out, a request body
    /// that failed: an incomplete request must not be answered as if it
    /// were complete (RFC 9112 §8), so even an app that caught the error
    /// from `wsgi.input` does not get its response sent (the worker
    /// answers 400 instead).
    pub(crate) fn send(
        &self,
        py: Python<'_>,
        w: &mut ResponseWriter,
        data: &[u8],
        total: Option<u64>,
    ) -> io::Result<()> {
        let head = self.head_if_due(w, total)?;
        w.write_body(py, &head, data)
    }

    /// The response head if it is not out yet (empty if it is), its
    /// framing now fixed; `total` as for [`Exchange::send`].
    ///
    /// Errors: a request body that failed, as for [`Exchange::send`].
    fn head_if_due(&self, w: &mut ResponseWriter, total: Option<u64>) -> io::Result<Vec<u8>> {
        let mut head = Vec::new();
        if w.head_sent {
            return Ok(head);
        }
        if self.body_failed() {
            return Err(io::Error::other(
                "the request body failed: the app's response is not sent",
            ));
        }
        // One allocation for a typical head (status line, Server, Date, the fields).
        head.reserve(192 + w.started.as_ref().map_or(0, |s| s.field_lines.len()));
        let awaiting = self.awaiting_continue();
        w.build_head(&mut head, total, awaiting);
        // The connection closes after this response: Nagle's algorithm
        // costs no wait there (the close flushes), and saves segments.
        // Not on a kept-alive one, where delayed acknowledgements make it
        // dearer than what it saves (bench/run.py `big_gen`: ×1.74 server
        // CPU per request); nor for a body that goes out in one segment
        // with its head, where it saves nothing.
        let small = match w.framing {
            Framing::NoBody => true,
            Framing::Length(n) => n <= ONE_SEGMENT,
            Framing::Chunked | Framing::Close => false,
        };
        if let (false, false, Some(stream)) = (w.keep_alive, small, &w.stream) {
            stream.coalesce_until_close();
        }
        w.head_sent = true;
        self.head_sent.store(true, Ordering::Release);
        Ok(head)
    }

    /// Send a whole body whose items all exist (a list or tuple of
    /// `bytes`), and complete the response: the head if due, the items
    /// framed (one chunk for all of them), the last chunk if chunked — in
    /// one writev when the socket takes it all. What it does not take at
    /// once becomes the writer's [`Tail`], holding the app's objects (no
    /// copy) for the I/O thread to write, so the app thread is free.
    /// `total` as for [`Exchange::send`].
    ///
    /// Errors: as [`Exchange::send`].
    pub(crate) fn send_whole(
        &self,
        w: &mut ResponseWriter,
        items: &[Bound<'_, PyBytes>],
        total: Option<u64>,
    ) -> io::Result<()> {
        let head = self.head_if_due(w, total)?;
        let mut size_line = Vec::new();
        // The wire, in order, each part with the object it lies in: on the
        // stack for a few items (the common case), else in a vector.
        type Part<'a, 'py> = (&'a [u8], Option<&'a Bound<'py, PyBytes>>);
        const STACK: usize = 12;
        let mut stack: [Part<'_, '_>; STACK] = [(&[], None); STACK];
        let mut heap: Vec<Part<'_, '_>> = Vec::new();
        let small = items.len() + 4 <= STACK;
        let mut n = 0;
        let mut push = |part| {
            if small {
                stack[n] = part;
                n += 1;
            } else {
                heap.push(part);
            }
        };
        push((&head[..], None));
        let pieces = items.iter().map(|i| (i.as_bytes(), i));
        w.frame(pieces, &mut size_line, true, |bytes, obj| {
            push((bytes, obj))
        });
        let parts: &[Part<'_, '_>] = if small { &stack[..n] } else { &heap };
        w.mark_finished();
        let Some(stream) = w.stream.clone() else {
            return Err(io::Error::other("response written after its request ended"));
        };
        let wrote = with_io_slices(parts.iter().map(|&(bytes, _)| bytes), |mut slices| {
            let before: usize = slices.iter().map(|s| s.len()).sum();
            let all = stream.write_now(&mut slices)?;
            Ok::<_, io::Error>((all, before - slices.iter().map(|s| s.len()).sum::<usize>()))
        });
        let (all, mut written) = match wrote {
            Ok(r) => r,
            Err(e) => {
                w.broken = true;
                w.reusable = false;
                return Err(e);
            }
        };
        if all {
            return Ok(());
        }
        // What is left, from the first part not fully written.
        let mut rest = Vec::with_capacity(parts.len());
        for &(bytes, obj) in parts {
            if written >= bytes.len() {
                written -= bytes.len();
                continue;
            }
            rest.push((&bytes[written..], obj));
            written = 0;
        }
        w.tail = Some(Tail::new(stream, &rest, w.min_send_rate));
        Ok(())
    }

    /// Complete the response: the head if nothing was sent, the last chunk if
    /// chunked; then record whether the connection may carry another request
    /// (not if a declared Content-Length was not met: the client would read
    /// our next response as the rest of this body).
    pub(crate) fn finish(&self, py: Python<'_>, w: &mut ResponseWriter) -> io::Result<()> {
        if !w.head_sent {
            self.send(py, w, b"", Some(0))?;
        }
        if w.framing == Framing::Chunked {
            w.write_raw(py, &[LAST_CHUNK])?;
        }
        w.mark_finished();
        Ok(())
    }
}

impl ResponseWriter {
    pub(crate) fn head_sent(&self) -> bool {
        self.head_sent
    }

    /// The status code of the head sent, if one was.
    pub(crate) fn status_code(&self) -> Option<u16> {
        self.started
            .as_ref()
            .filter(|_| self.head_sent)
            .map(|s| s.code)
    }

    /// Body bytes sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// The value of the app's response field `name` (ASCII case-insensitive;
    /// the last one when repeated, as Gunicorn's access log atoms take it).
    pub(crate) fn response_field(&self, name: &str) -> Option<String> {
        self.response_fields()
            .into_iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The app's response fields as `(name, value)`, in order (what
    /// post_request's `resp.headers` holds).
    pub(crate) fn response_fields(&self) -> Vec<(String, String)> {
        let Some(started) = self.started.as_ref() else {
            return Vec::new();
        };
        started
            .field_lines
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':')?;
                // The values are latin-1 (PEP 3333): one char per byte.
                let text = |b: &[u8]| b.trim_ascii().iter().map(|&c| char::from(c)).collect();
                Some((text(&line[..colon]), text(&line[colon + 1..])))
            })
            .collect()
    }

    /// Whether `finish` completed and the connection may be reused.
    pub(crate) fn reusable(&self) -> bool {
        self.reusable
    }

    /// Whether the framing chosen at head time lets a body be sent.
    pub(crate) fn body_allowed(&self) -> bool {
        self.framing != Framing::NoBody
    }

    /// The socket, while the request lasts (for sendfile).
    pub(crate) fn stream(&self) -> Option<&Arc<Stream>> {
        self.stream.as_ref()
    }

    /// `min_send_rate`, bytes per second (0 = no limit).
    pub(crate) fn min_send_rate(&self) -> u64 {
        self.min_send_rate
    }

    /// Account for body bytes sent around `write_body` (by sendfile).
    pub(crate) fn count_sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// Drop the socket so Python objects kept past the request cannot use it.
    pub(crate) fn detach(&mut self) {
        self.stream = None;
    }

    fn build_head(&mut self, out: &mut Vec<u8>, total: Option<u64>, awaiting_continue: bool) {
        let started = self
            .started
            .as_ref()
            .expect("send() only after start_response");
        let framing = if is_bodyless(started.code, self.head_request) {
            Framing::NoBody
        } else if let Some(n) = started.length.or(total) {
            Framing::Length(n)
        } else if self.version == Version::Http11 {
            Framing::Chunked
        } else {
            Framing::Close
        };
        let keep_alive = self.may_keep_alive
            && !started.close
            && !awaiting_continue
            && framing.allows_keep_alive();
        write_head(
            out,
            HeadSpec {
                version: self.version,
                status: &started.status,
                framing,
                keep_alive,
                app_sent_length: started.length.is_some(),
            },
            &started.field_lines,
        );
        self.framing = framing;
        self.keep_alive = keep_alive;
    }

    /// The whole body is out (or handed to a tail): record whether the
    /// connection may carry another request — not if a declared
    /// Content-Length was not met (the client would read our next response
    /// as the rest of this body), nor once the client went away.
    fn mark_finished(&mut self) {
        let complete = match self.framing {
            Framing::Length(n) => self.sent == n,
            _ => true,
        };
        self.reusable = self.keep_alive && complete && !self.broken;
    }

    /// Write the head (if not empty) and one body block, framed, in one
    /// writev.
    fn write_body(&mut self, py: Python<'_>, head: &[u8], data: &[u8]) -> io::Result<()> {
        let mut size_line = Vec::new();
        // Head, chunk-size line, the block, CRLF.
        let mut bufs: [&[u8]; 4] = [&[]; 4];
        bufs[0] = head;
        let mut n = 1;
        let pieces = std::iter::once((data, ())).filter(|(d, _)| !d.is_empty());
        self.frame(pieces, &mut size_line, false, |bytes, _| {
            bufs[n] = bytes;
            n += 1;
        });
        self.write_raw(py, &bufs[..n])
    }

    /// Frame body `pieces` (each with a tag `T`: where its bytes lie) for
    /// the response's framing, and count them as sent: at most the room
    /// left in a Content-Length (the excess would be read as the next
    /// response; Gunicorn truncates the same way), one chunk for all of
    /// them (chunk boundaries carry no meaning) and, if `last`, the last
    /// chunk; as they are when close-delimited; nothing without a body.
    /// `push` gets the wire parts in order, the framing's own (which lie
    /// in `size_line` or are static) without a tag.
    fn frame<'a, T>(
        &mut self,
        pieces: impl Iterator<Item = (&'a [u8], T)> + Clone,
        size_line: &'a mut Vec<u8>,
        last: bool,
        mut push: impl FnMut(&'a [u8], Option<T>),
    ) {
        let len: usize = pieces.clone().map(|(b, _)| b.len()).sum();
        match self.framing {
            Framing::NoBody => {}
            Framing::Length(declared) => {
                let mut room = declared.saturating_sub(self.sent).min(len as u64) as usize;
                self.sent += room as u64;
                for (bytes, tag) in pieces {
                    let take = room.min(bytes.len());
                    push(&bytes[..take], Some(tag));
                    room -= take;
                }
            }
            Framing::Chunked => {
                self.sent += len as u64;
                if len > 0 {
                    *size_line = chunk_size_line(len);
                    push(size_line, None);
                    for (bytes, tag) in pieces {
                        push(bytes, Some(tag));
                    }
                    push(b"\r\n", None);
                }
                if last {
                    push(LAST_CHUNK, None);
                }
            }
            Framing::Close => {
                self.sent += len as u64;
                for (bytes, tag) in pieces {
                    push(bytes, Some(tag));
                }
            }
        }
    }

    /// Write `bufs` in order. The GIL stays held while the socket takes
    /// the bytes at once (a small response: no GIL hand-off) and is released
    /// while waiting for the client to read.
    fn write_raw(&mut self, py: Python<'_>, bufs: &[&[u8]]) -> io::Result<()> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let Some(stream) = &self.stream else {
            return Err(io::Error::other("response written after its request ended"));
        };
        let pace = &mut self.pace;
        let result = with_io_slices(bufs.iter().copied(), |mut slices| {
            match stream.write_now(&mut slices) {
                Ok(true) => Ok(()),
                Ok(false) => py.detach(|| stream.write_all_paced(slices, pace)),
                Err(e) => Err(e),
            }
        });
        if let Err(e) = &result {
            self.broken = true;
            if e.kind() == io::ErrorKind::TimedOut {
                self.cut = Some(e.to_string());
            }
        }
        result
    }
}
