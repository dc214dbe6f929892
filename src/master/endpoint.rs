//! The master's own small services, answered from its loop without a
//! thread (the master stays single-threaded): Prometheus metrics over HTTP
//! (`GET /metrics` on the socket systemd names `metrics`, or on
//! `--metrics-bind`) and the control socket that `ferrocorn status` reads
//! (systemd's `control`, or `--control-socket`).
//!
//! Each connection asks one question and gets one answer, then is closed.
//! Everything is non-blocking and bounded: at most [`MAX_CONNS`] open
//! connections, [`MAX_REQUEST`] bytes of question and [`DEADLINE`] to ask
//! it, so a slow or hostile client cannot stall the master's loop.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::http::{Rules, parse_head};
use crate::listeners::Listener;

/// Most connections open at once; more wait in the listen queue.
const MAX_CONNS: usize = 32;
/// Most bytes of a question (an HTTP head, or a command line).
const MAX_REQUEST: usize = 8192;
/// Time a client gets to ask and to read the answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP: `GET /metrics`, Prometheus' text format.
    Metrics,
    /// A command line (`status`, `status json`), answered in text.
    Control,
}

/// A question, as the master's loop is asked to answer it.
#[derive(Debug, PartialEq, Eq)]
pub enum Question {
    /// `GET /metrics` (or `HEAD`: `head_only`).
    Metrics {
        /// Answer with the head only.
        head_only: bool,
    },
    /// A control command line, trimmed.
    Command(String),
}

#[derive(Debug)]
struct Conn {
    socket: Socket,
    role: Role,
    buf: Vec<u8>,
    /// The answer, once known, and how much of it is written.
    out: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

/// The listeners and their open connections.
#[derive(Debug, Default)]
pub struct Endpoints {
    listeners: Vec<(Role, Listener)>,
    conns: Vec<Conn>,
}

impl Endpoints {
    /// Serve `listener` (non-blocking, close-on-exec) in `role`.
    pub fn add(&mut self, role: Role, listener: Listener) {
        tracing::info!(
            "Serving {} at: {}",
            match role {
                Role::Metrics => "metrics (/metrics)",
                Role::Control => "the control socket",
            },
            listener.addr
        );
        self.listeners.push((role, listener));
    }

    /// Unlink the UNIX socket files this process created (at exit).
    pub fn remove_created_paths(&self) {
        for (_, l) in &self.listeners {
            l.remove_created_path();
        }
    }

    /// Whether there is nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The descriptors the loop waits on, with whether to wait for writing.
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let accepting = self.conns.len() < MAX_CONNS;
        self.listeners
            .iter()
            .filter(|_| accepting)
            .map(|(_, l)| (l.socket.as_fd(), false))
            .chain(
                self.conns
                    .iter()
                    .map(|c| (c.socket.as_fd(), c.out.is_some())),
            )
            .collect()
    }

    /// Accept, read and write what can be without blocking; `answer` turns
    /// a complete question into the bytes to send back.
    pub fn serve(&mut self, mut answer: impl FnMut(Role, Question) -> Vec<u8>) {
        for (role, listener) in &self.listeners {
            while self.conns.len() < MAX_CONNS {
                let Ok((socket, _)) = listener.socket.accept() else {
                    break;
                };
                if socket.set_nonblocking(true).is_err() {
                    continue;
                }
                self.conns.push(Conn {
                    socket,
                    role: *role,
                    buf: Vec::new(),
                    out: None,
                    deadline: Instant::now() + DEADLINE,
                });
            }
        }
        let now = Instant::now();
        self.conns.retain_mut(|c| {
            if now >= c.deadline {
                return false;
            }
            if c.out.is_none() {
                match read_question(c) {
                    Ok(Some(q)) => c.out = Some((answer(c.role, q), 0)),
                    Ok(None) => return true,
                    Err(reply) => c.out = Some((reply, 0)),
                }
            }
            let Some((out, written)) = &mut c.out else {
                return true;
            };
            while *written < out.len() {
                match (&c.socket).write(&out[*written..]) {
                    Ok(0) => return false,
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
            let _ = c.socket.shutdown(std::net::Shutdown::Write);
            false
        });
    }
}

/// Read what has arrived; `Ok(None)` while the question is incomplete,
/// `Err(answer)` for a malformed one.
fn read_question(c: &mut Conn) -> Result<Option<Question>, Vec<u8>> {
    let mut chunk = [0u8; 2048];
    loop {
        match (&c.socket).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return Err(Vec::new()),
        }
        if c.buf.len() > MAX_REQUEST {
            break;
        }
    }
    match c.role {
        Role::Control => {
            let Some(end) = c.buf.iter().position(|&b| b == b'\n') else {
                return if c.buf.len() > MAX_REQUEST {
                    Err(b"error: command too long\n".to_vec())
                } else {
                    Ok(None)
                };
            };
            let line = String::from_utf8_lossy(&c.buf[..end]).trim().to_string();
            Ok(Some(Question::Command(line)))
        }
        Role::Metrics => {
            let rules = Rules::default();
            match parse_head(&c.buf, &rules) {
                Ok(Some((head, _))) => {
                    let method = head.method();
                    let (path, _) = head.path_and_query();
                    if method != "GET" && method != "HEAD" {
                        return Err(text_response(
                            405,
                            "Method Not Allowed",
                            "GET /metrics\n",
                            false,
                        ));
                    }
                    if path != "/metrics" {
                        return Err(text_response(
                            404,
                            "Not Found",
                            "metrics are at /metrics\n",
                            false,
                        ));
                    }
                    Ok(Some(Question::Metrics {
                        head_only: method == "HEAD",
                    }))
                }
                Ok(None) if c.buf.len() <= MAX_REQUEST => Ok(None),
                Ok(None) => Err(crate::http::error_response(
                    &crate::http::ParseError::FieldTooLarge { limit: MAX_REQUEST },
                )),
                Err(e) => Err(crate::http::error_response(&e)),
            }
        }
    }
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn text_response(status: u16, reason: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}
