//! A client connection and the request loop run on it: read a head, hand it
//! to the app, and keep going while pipelined requests are already buffered.
//!
//! The same `serve` runs inline on the I/O thread (`--threads 1`) and on app
//! threads. Invariant: after any parse error the connection is answered
//! once with `Connection: close` and dropped — never reused (no request
//! smuggling, DESIGN §3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::http::proxy::{Accept, ProxyHeader, parse_proxy_header};
use crate::http::response::health_response;
use crate::http::{BodyKind, Head, ParseError, Rules, error_response, parse_head};
use crate::listeners::ListenAddr;
use crate::logging::access;
use crate::net::{AllowList, Peer, Stream};
use crate::scoreboard::{Slot, ThreadSlot};
use crate::wsgi::{App, Captured, Request, Tail};

/// The longest a closing connection waits for the client to stop sending
/// (see [`Conn::begin_linger`]).
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);

/// An open client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub stream: Arc<Stream>,
    /// Bytes read and not yet consumed (a partial head, or pipelined requests).
    pub buf: Vec<u8>,
    /// The client: the socket's peer, or the one a PROXY header named.
    pub peer: Peer,
    /// The socket's peer may set forwarding fields (`forwarded_allow_ips`).
    pub trusted: bool,
    /// Which PROXY header may still start the connection (`proxy_protocol`);
    /// `None` once it was read or cannot come any more.
    pub awaiting_proxy: Option<Accept>,
    /// The PROXY header the connection began with.
    pub proxy: Option<ProxyHeader>,
    /// Index of the listener it was accepted on.
    pub listener: usize,
    /// When the I/O thread gives up waiting for the next head.
    pub deadline: Instant,
    /// No request has been taken from it yet (just accepted).
    pub fresh: bool,
    /// A response the I/O thread is writing, the client slower than the app.
    pub writing: Option<Box<Writing>>,
    /// Answered and closing: what the client still sends is read and
    /// discarded until it stops or `deadline` ([`Conn::begin_linger`]).
    pub lingering: bool,
    /// In the I/O thread's epoll set. Not yet when its first request was
    /// read at accept: a connection answered and closed at once never
    /// joins it.
    pub watched: bool,
}

/// A response handed to the I/O thread (its [`Tail`]), and what is due
/// once it is out: the access log line and the scoreboard's count.
#[derive(Debug)]
pub(crate) struct Writing {
    pub tail: Tail,
    head: Head,
    started: Instant,
    status: Option<u16>,
    /// Body bytes, the tail's included.
    sent: u64,
    captured: Captured,
    /// The connection may carry another request after it.
    pub keep_alive: bool,
    /// If not, it closes with a lingering close (`Outcome::linger`).
    pub linger: bool,
}

/// What the connection does after `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait for the next request.
    Read,
    /// The response is out; the I/O thread discards what the client still
    /// sends, then closes ([`Conn::begin_linger`]).
    Linger,
    /// The I/O thread writes the rest of a response (`Conn::writing`).
    Write,
    /// Close it.
    Close,
}

/// What `serve` needs besides the connection; shared by all threads of a worker.
#[derive(Debug)]
pub(crate) struct ServeCtx {
    pub app: App,
    /// How heads are parsed.
    pub rules: Rules,
    pub listen_addrs: Vec<ListenAddr>,
    /// Set when the worker stops: responses then say `Connection: close`.
    pub stopping: AtomicBool,
    /// This worker's scoreboard slot: busy threads and requests served.
    pub slot: &'static Slot,
    /// `min_send_rate`, bytes per second (0 = no limit).
    pub min_send_rate: u64,
    /// `health_check_path`: answered here, without the app.
    pub health_check_path: Option<String>,
}

impl Conn {
    /// Whether a stopping worker may close it without losing a request: it
    /// has served at least one, holds no partial one, and no bytes of a
    /// next one wait in the kernel (closing over unread bytes sends a RST).
    pub fn is_idle(&self) -> bool {
        if self.fresh || !self.buf.is_empty() || self.writing.is_some() {
            return false;
        }
        !self.has_unread_bytes()
    }

    /// Whether bytes (or the peer's close) wait in the kernel, unread.
    pub fn has_unread_bytes(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.stream.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
            Ok(1..)
        )
    }

    /// Take a PROXY header off the front of `buf` when the connection may
    /// start with one: `Ok(false)` while too few bytes tell. From a socket
    /// peer not in `allowed` a header is refused (403).
    ///
    /// Errors: a malformed header (400), or one from a peer not allowed (403).
    pub fn take_proxy_header(&mut self, allowed: &AllowList) -> Result<bool, ParseError> {
        let Some(accept) = self.awaiting_proxy else {
            return Ok(true);
        };
        let Some((header, used)) = parse_proxy_header(&self.buf, accept)? else {
            return Ok(false);
        };
        self.awaiting_proxy = None;
        if let Some(header) = header {
            if !self.peer.is_in(allowed) {
                return Err(ParseError::ForbiddenProxyPeer);
            }
            self.buf.drain(..used);
            if let Some(client) = header.client {
                self.peer = Peer::Tcp(client);
            }
            self.proxy = Some(header);
        }
        Ok(true)
    }

    /// Take the next complete head off the front of `buf`, if there is one.
    pub fn next_head(&mut self, rules: &Rules) -> Result<Option<Head>, ParseError> {
        match parse_head(&self.buf, rules)? {
            Some((head, used)) => {
                self.buf.drain(..used);
                Ok(Some(head))
            }
            None => Ok(None),
        }
    }

    /// Answer a malformed request, and begin closing the connection.
    pub fn reject(&mut self, err: &ParseError) {
        tracing::debug!("invalid request from {}: {err}", self.peer);
        let _ = self.stream.write_all(&error_response(err));
        self.begin_linger();
    }

    /// Begin a lingering close, the response written: send our FIN after
    /// it, and read and discard what the client still sends, until its
    /// EOF or [`LINGER_TIME`]. Closing over unread bytes would make the
    /// kernel send a RST, which drops what of the response is still in
    /// our send buffer or unread in the client's (RFC 9112 §9.6; nginx's
    /// `lingering_close`).
    pub fn begin_linger(&mut self) {
        self.stream.shutdown_write();
        self.lingering = true;
        self.buf = Vec::new();
        self.awaiting_proxy = None;
        self.deadline = Instant::now() + LINGER_TIME;
    }
}

/// Serve `head` and every complete request already buffered after it, on
/// the app thread whose scoreboard entry is `thread`, until one leaves the
/// rest of its response to the I/O thread ([`Next::Write`], the tail in
/// `conn.writing`) or the connection must close.
pub(crate) fn serve(
    ctx: &ServeCtx,
    thread: &'static ThreadSlot,
    conn: &mut Conn,
    mut head: Head,
) -> Next {
    conn.fresh = false;
    thread.enter();
    loop {
        if is_health_check(ctx, &head) {
            let stopping = ctx.stopping.load(Ordering::Relaxed);
            let keep_alive = head.keep_alive && !stopping;
            let answer =
                health_response(head.version, !stopping, head.method() == "HEAD", keep_alive);
            if conn.stream.write_all(&answer).is_err() || !keep_alive {
                return Next::Close;
            }
            match conn.next_head(&ctx.rules) {
                Ok(Some(next)) => {
                    head = next;
                    continue;
                }
                Ok(None) => return Next::Read,
                Err(e) => {
                    conn.reject(&e);
                    return Next::Linger;
                }
            }
        }
        let started = Instant::now();
        ctx.slot.request_started();
        thread.start(head.method(), head.target());
        let outcome = ctx.app.handle(Request {
            head: &head,
            stream: &conn.stream,
            buf: std::mem::take(&mut conn.buf),
            peer: &conn.peer,
            proxy: conn.proxy.as_ref(),
            trusted: conn.trusted,
            server: &ctx.listen_addrs[conn.listener],
            limits: &ctx.rules.limits,
            may_keep_alive: !ctx.stopping.load(Ordering::Relaxed),
            min_send_rate: ctx.min_send_rate,
        });
        thread.finish();
        conn.buf = outcome.buf;
        if let Some(tail) = outcome.tail {
            conn.writing = Some(Box::new(Writing {
                tail,
                head,
                started,
                status: outcome.status,
                sent: outcome.sent,
                captured: outcome.captured,
                keep_alive: outcome.keep_alive,
                linger: outcome.linger,
            }));
            return Next::Write;
        }
        let took = started.elapsed();
        record(
            ctx,
            &head,
            &conn.peer,
            outcome.status,
            outcome.sent,
            took,
            &outcome.captured,
        );
        if outcome.linger {
            conn.begin_linger();
            return Next::Linger;
        }
        if !outcome.keep_alive {
            return Next::Close;
        }
        match conn.next_head(&ctx.rules) {
            Ok(Some(next)) => head = next,
            Ok(None) => return Next::Read,
            Err(e) => {
                conn.reject(&e);
                return Next::Linger;
            }
        }
    }
}

/// Whether `head` asks for `health_check_path` (GET or HEAD, the query
/// ignored), which ferrocorn answers without the app. A request with a
/// body is the app's: its body would have to be read first.
fn is_health_check(ctx: &ServeCtx, head: &Head) -> bool {
    ctx.health_check_path.as_deref().is_some_and(|path| {
        matches!(head.method(), "GET" | "HEAD")
            && head.body == BodyKind::Empty
            && head.path_and_query().0 == path
    })
}

/// A request is over: count it on the scoreboard and in StatsD, and log it.
fn record(
    ctx: &ServeCtx,
    head: &Head,
    peer: &Peer,
    status: Option<u16>,
    sent: u64,
    took: Duration,
    captured: &Captured,
) {
    ctx.slot.request_finished(status, took);
    if let Some(statsd) = crate::logging::statsd::get() {
        statsd.request(status, took);
    }
    if access::enabled() {
        access::log(&access::Entry {
            head,
            peer,
            status,
            sent,
            duration: took,
            captured,
        });
    }
}

impl Writing {
    /// The tail is out (`unsent` 0) or was cut (`unsent` bytes short): the
    /// request is over.
    pub fn finish(self, ctx: &ServeCtx, peer: &Peer) {
        let sent = self.sent.saturating_sub(self.tail.unsent());
        let took = self.started.elapsed();
        record(
            ctx,
            &self.head,
            peer,
            self.status,
            sent,
            took,
            &self.captured,
        );
    }
}
