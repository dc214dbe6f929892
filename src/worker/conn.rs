//! A client connection and the request loop run on it: read a head, hand it
//! to the app, and keep going while pipelined requests are already buffered.
//!
//! The same `serve` runs inline on the I/O thread (`--threads 1`) and on app
//! threads. Invariant: after any parse error the connection is answered
//! once with `Connection: close` and dropped — never reused (no request
//! smuggling, DESIGN §3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::http::{Head, Limits, ParseError, error_response, parse_head};
use crate::listeners::ListenAddr;
use crate::logging::access;
use crate::net::{Peer, Stream};
use crate::scoreboard::{Slot, ThreadSlot};
use crate::wsgi::{App, Request};

/// An open client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub stream: Arc<Stream>,
    /// Bytes read and not yet consumed (a partial head, or pipelined requests).
    pub buf: Vec<u8>,
    pub peer: Peer,
    /// Index of the listener it was accepted on.
    pub listener: usize,
    /// When the I/O thread gives up waiting for the next head.
    pub deadline: Instant,
    /// No request has been taken from it yet (just accepted).
    pub fresh: bool,
}

/// What `serve` needs besides the connection; shared by all threads of a worker.
#[derive(Debug)]
pub(crate) struct ServeCtx {
    pub app: App,
    pub limits: Limits,
    pub listen_addrs: Vec<ListenAddr>,
    /// Set when the worker stops: responses then say `Connection: close`.
    pub stopping: AtomicBool,
    /// This worker's scoreboard slot: busy threads and requests served.
    pub slot: &'static Slot,
}

impl Conn {
    /// Whether a stopping worker may close it without losing a request: it
    /// has served at least one, holds no partial one, and no bytes of a
    /// next one wait in the kernel (closing over unread bytes sends a RST).
    pub fn is_idle(&self) -> bool {
        if self.fresh || !self.buf.is_empty() {
            return false;
        }
        let mut fds = [nix::poll::PollFd::new(
            self.stream.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        !matches!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
            Ok(1..)
        )
    }

    /// Take the next complete head off the front of `buf`, if there is one.
    pub fn next_head(&mut self, limits: &Limits) -> Result<Option<Head>, ParseError> {
        match parse_head(&self.buf, limits)? {
            Some((head, used)) => {
                self.buf.drain(..used);
                Ok(Some(head))
            }
            None => Ok(None),
        }
    }

    /// Answer a malformed request and leave the connection to be dropped.
    pub fn reject(&self, err: &ParseError) {
        tracing::debug!("invalid request from {}: {err}", self.peer);
        let _ = self.stream.write_all(&error_response(err));
        self.stream.shutdown();
    }
}

/// Serve `head` and every complete request already buffered after it, on
/// the app thread whose scoreboard entry is `thread`. Returns whether the
/// connection stays open, waiting for more bytes.
pub(crate) fn serve(ctx: &ServeCtx, thread: &ThreadSlot, conn: &mut Conn, mut head: Head) -> bool {
    conn.fresh = false;
    loop {
        let started = Instant::now();
        ctx.slot.request_started();
        thread.start(head.method(), head.target());
        let outcome = ctx.app.handle(Request {
            head: &head,
            stream: &conn.stream,
            buf: std::mem::take(&mut conn.buf),
            peer: &conn.peer,
            server: &ctx.listen_addrs[conn.listener],
            limits: &ctx.limits,
            may_keep_alive: !ctx.stopping.load(Ordering::Relaxed),
        });
        thread.finish();
        ctx.slot.request_finished();
        if access::enabled() {
            access::log(&access::Entry {
                head: &head,
                peer: &conn.peer,
                status: outcome.status,
                sent: outcome.sent,
                duration: started.elapsed(),
            });
        }
        if !outcome.keep_alive {
            return false;
        }
        conn.buf = outcome.buf;
        match conn.next_head(&ctx.limits) {
            Ok(Some(next)) => head = next,
            Ok(None) => return true,
            Err(e) => {
                conn.reject(&e);
                return false;
            }
        }
    }
}
