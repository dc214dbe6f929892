//! The integration-test harness: start the real `ferrocorn` binary on a UNIX
//! socket or a loopback port, talk raw HTTP/1.x bytes to it, read its log.
//!
//! Invariants every test relies on:
//! - each server gets its own temp dir (log, sockets, markers) and its own
//!   process group, so tests run in parallel and a dropped [`Server`] leaves
//!   no process behind (TERM to the master, then KILL to the whole group);
//! - every wait is bounded: connects, reads and polls all carry deadlines, so a
//!   hung server fails a test instead of hanging the run;
//! - nothing here talks to anything but loopback or UNIX sockets.
//!
//! Only std, `libc` and `serde_json` (dependencies of the crate) are used.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test: the one cargo built for this test run, or
/// `FERROCORN_TEST_BIN` (a wheel's `venv/bin/ferrocorn`, by
/// `make wheel-test`, so the whole suite runs with that venv's interpreter).
pub fn bin() -> PathBuf {
    std::env::var_os("FERROCORN_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ferrocorn")))
}

/// Accessors for the test apps' JSON answers that name what is missing
/// or of the wrong type when they panic.
pub trait Json {
    /// The member `key` of an object; panics (naming the key) otherwise.
    fn key(&self, key: &str) -> &serde_json::Value;
    /// Whether the object has the member `key`.
    fn has(&self, key: &str) -> bool;
    /// The string; panics otherwise.
    fn str(&self) -> &str;
    /// The boolean; panics otherwise.
    fn bool(&self) -> bool;
    /// The number as f64; panics otherwise.
    fn num(&self) -> f64;
    /// The array's items; panics otherwise.
    fn arr(&self) -> &[serde_json::Value];
}

impl Json for serde_json::Value {
    fn key(&self, key: &str) -> &serde_json::Value {
        self.get(key)
            .unwrap_or_else(|| panic!("no key {key:?} in {self}"))
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn str(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("not a string: {self}"))
    }

    fn bool(&self) -> bool {
        self.as_bool()
            .unwrap_or_else(|| panic!("not a bool: {self}"))
    }

    fn num(&self) -> f64 {
        self.as_f64()
            .unwrap_or_else(|| panic!("not a number: {self}"))
    }

    fn arr(&self) -> &[serde_json::Value] {
        self.as_array()
            .unwrap_or_else(|| panic!("not an array: {self}"))
    }
}

/// How long a server may take from spawn to its first answered request.
/// Generous: two cores, tests in parallel, Python imports.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Default per-read timeout of a [`Client`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/apps`, the folder of the Python WSGI apps the tests serve.
pub fn apps_dir() -> PathBuf {
    repo_root().join("tests").join("apps")
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the file at `path` comes to contain `needle` within `timeout`
/// (a log line written by another process).
pub fn file_gets(path: &Path, needle: &str, timeout: Duration) -> bool {
    poll_until(timeout, || {
        fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
    })
}

/// The deterministic download body of `testapp.py` `/big`: byte i is i % 251.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Pseudo-random upload bytes (xorshift64*), with a newline about every 64
/// bytes so the `readline` variants of `wsgi.input` have lines to split.
pub fn upload_data(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
            if b < 4 { b'\n' } else { b }
        })
        .collect()
}

/// The SHA-256 of `data` as lowercase hex, computed by Debian's Python
/// (`hashlib`), so uploads are checked without a hashing crate.
pub fn python_sha256(data: &[u8]) -> String {
    let mut child = Command::new(python())
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python for sha256");
    // The child prints only after EOF on stdin, so writing everything first
    // cannot deadlock on a full stdout pipe.
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python sha256 failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The Python the project builds against (see .cargo/config.toml), or
/// `python3` where that is missing.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3.11").exists() {
        "/usr/bin/python3.11"
    } else {
        "python3"
    }
}

/// A loopback TCP port that was free a moment ago. Racy by nature (another
/// process may take it before the server binds), which is why
/// [`ServerBuilder::start`] retries a TCP start that fails.
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Temp dirs
// ---------------------------------------------------------------------------

/// A per-test directory under `std::env::temp_dir()`, removed on drop unless
/// the test is failing (then it is kept and its path printed).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `name` should be short: UNIX socket paths are limited to 107 bytes.
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("fc-{}-{}-{}", name, std::process::id(), n));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("(kept test dir {})", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Addresses and streams
// ---------------------------------------------------------------------------

/// Where a server listens: loopback TCP or a UNIX socket path.
#[derive(Clone, Debug)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Addr {
    /// The `-b` argument for this address (Gunicorn syntax).
    pub fn bind_arg(&self) -> String {
        match self {
            Addr::Tcp(a) => a.to_string(), // "127.0.0.1:P" or "[::1]:P"
            Addr::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    /// The socket file's path; panics for a TCP address.
    pub fn unix_path(&self) -> &Path {
        match self {
            Addr::Unix(p) => p,
            Addr::Tcp(a) => panic!("{a} is not a UNIX socket"),
        }
    }

    pub fn connect(&self) -> io::Result<Stream> {
        match self {
            Addr::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_secs(5)).map(Stream::Tcp),
            Addr::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
        }
    }
}

/// A connected client socket of either family.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Close the sending side: the server reads EOF after what was sent.
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }

    pub fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
        }
    }

    /// The client's own port (TCP only), to compare with `REMOTE_PORT`.
    pub fn local_port(&self) -> Option<u16> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok().map(|a| a.port()),
            Stream::Unix(_) => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// How a response body was delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body by definition: HEAD, 1xx, 204, 304.
    None,
    Length,
    Chunked,
    /// Read until the server closed the connection.
    Close,
}

/// One parsed HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    pub framing: Framing,
    /// False when the connection ended (or stalled) before the framing said
    /// the body was complete.
    pub complete: bool,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (Connection, Transfer-Encoding)
    /// contains `token`, case-insensitively.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text())
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {:?}", self.text()))
    }

    /// A short description for assertion messages.
    pub fn summary(&self) -> String {
        let mut body = self.text();
        if body.len() > 300 {
            body.truncate(300);
            body.push_str("...");
        }
        format!(
            "{} {} {} {:?} framing={:?} complete={} body({} bytes)={:?}",
            self.version,
            self.status,
            self.reason,
            self.headers,
            self.framing,
            self.complete,
            self.body.len(),
            body
        )
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// A raw HTTP/1.x client over one connection, with its own read buffer so
/// that pipelined responses are split correctly.
#[derive(Debug)]
pub struct Client {
    pub stream: Stream,
    buf: Vec<u8>,
    timeout: Duration,
}

/// Builds a request: `Host: localhost` unless given, `Content-Length` when a
/// body is given and no framing header is.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        out.extend_from_slice(b"Host: localhost\r\n");
    }
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Encodes `parts` as a chunked body (each part one chunk), then the last
/// chunk and an empty trailer section.
pub fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

impl Client {
    /// Connects, retrying for up to 5 s (a listener may be momentarily busy).
    pub fn connect(addr: &Addr) -> Client {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match addr.connect() {
                Ok(stream) => return Client::from_stream(stream),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("connect to {addr:?}: {e}"),
            }
        }
    }

    pub fn from_stream(stream: Stream) -> Client {
        stream.set_read_timeout(IO_TIMEOUT).unwrap();
        stream.set_write_timeout(IO_TIMEOUT).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            timeout: IO_TIMEOUT,
        }
    }

    /// Changes the per-read timeout (default [`IO_TIMEOUT`]).
    pub fn set_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(t).unwrap();
        self.timeout = t;
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send request bytes");
    }

    /// Sends one request and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send(&request(method, target, headers, body));
        self.read_response_for(method)
    }

    pub fn get(&mut self, target: &str) -> Response {
        self.request("GET", target, &[], b"")
    }

    /// Reads the next response (any status, 1xx included) to a non-HEAD
    /// request; panics on timeout or on EOF before a status line.
    pub fn read_response(&mut self) -> Response {
        self.read_response_for("GET")
    }

    pub fn read_response_for(&mut self, method: &str) -> Response {
        match self.try_read_response(method) {
            Ok(r) => r,
            Err(e) => panic!(
                "no response to {method}: {e}; unparsed bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads more bytes into the buffer; Ok(0) on EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Fills until `buf` holds `n` bytes; false on EOF/reset first.
    fn fill_to(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() < n {
            match self.fill() {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if is_reset(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Takes one CRLF-terminated line (without the CRLF); None on EOF first.
    fn take_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(Some(line));
            }
            if self.buf.len() > 1 << 20 {
                return Err(io::Error::other("line longer than 1 MiB"));
            }
            match self.fill() {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if is_reset(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one response. `Err(UnexpectedEof)` when the connection ends
    /// before a complete head; a body cut short gives `complete: false`.
    pub fn try_read_response(&mut self, method: &str) -> io::Result<Response> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > 1 << 20 {
                return Err(io::Error::other("response head longer than 1 MiB"));
            }
            match self.fill() {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a complete response head",
                    ));
                }
                Ok(_) => {}
                Err(e) if is_reset(&e) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::other(format!("bad status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("bad header line {line:?}")))?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            framing: Framing::None,
            complete: true,
        };
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(resp);
        }
        if resp.header_has_token("transfer-encoding", "chunked") {
            resp.framing = Framing::Chunked;
            resp.complete = self.read_chunked(&mut resp.body, deadline)?;
        } else if let Some(cl) = resp.header("content-length").map(str::to_string) {
            resp.framing = Framing::Length;
            let n: usize = cl
                .parse()
                .map_err(|_| io::Error::other(format!("bad Content-Length {cl:?}")))?;
            let complete = match self.fill_to(n) {
                Ok(c) => c,
                Err(e) if is_timeout(&e) => false,
                Err(e) => return Err(e),
            };
            let take = n.min(self.buf.len());
            resp.body = self.buf.drain(..take).collect();
            resp.complete = complete;
        } else {
            resp.framing = Framing::Close;
            loop {
                if Instant::now() > deadline {
                    resp.complete = false;
                    break;
                }
                match self.fill() {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if is_reset(&e) => break,
                    Err(e) if is_timeout(&e) => {
                        resp.complete = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// De-chunks into `body`; Ok(false) if the stream ended (EOF, reset or
    /// read timeout) before the last chunk and trailers.
    fn read_chunked(&mut self, body: &mut Vec<u8>, deadline: Instant) -> io::Result<bool> {
        loop {
            if Instant::now() > deadline {
                return Ok(false);
            }
            let line = match self.take_line() {
                Ok(Some(l)) => l,
                Ok(None) => return Ok(false),
                Err(e) if is_timeout(&e) => return Ok(false),
                Err(e) => return Err(e),
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailer section: lines until an empty one.
                loop {
                    match self.take_line() {
                        Ok(Some(l)) if l.is_empty() => return Ok(true),
                        Ok(Some(_)) => {}
                        Ok(None) => return Ok(false),
                        Err(e) if is_timeout(&e) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
            }
            match self.fill_to(size + 2) {
                Ok(true) => {}
                Ok(false) => {
                    body.append(&mut self.buf);
                    return Ok(false);
                }
                Err(e) if is_timeout(&e) => {
                    body.append(&mut self.buf);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            body.extend(self.buf.drain(..size));
            if &self.buf[..2] != b"\r\n" {
                return Err(io::Error::other("chunk data not followed by CRLF"));
            }
            self.buf.drain(..2);
        }
    }

    /// Reads at least `n` raw bytes (head included) into the buffer, or
    /// panics; used to start consuming a response and then walk away.
    pub fn read_some(&mut self, n: usize) {
        assert!(self.fill_to(n).expect("read"), "EOF before {n} bytes");
    }

    /// True when the server closes the connection (EOF or reset) within
    /// `wait`. Bytes that arrive meanwhile are kept in the buffer.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            self.stream
                .set_read_timeout(left.max(Duration::from_millis(1)))
                .unwrap();
            match self.fill() {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if is_reset(&e) => break true,
                Err(e) if is_timeout(&e) => break false,
                Err(e) => panic!("read: {e}"),
            }
        };
        let _ = self.stream.set_read_timeout(self.timeout);
        result
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// How the server under test is given its listeners.
#[derive(Clone, Debug)]
enum Listen {
    /// `-b unix:<dir>/s.sock` (the default: race-free).
    Unix,
    /// `-b 127.0.0.1:<free port>`, retried on a lost port race.
    Tcp,
    /// Exactly these `-b` arguments.
    Binds(Vec<Addr>),
    /// No `-b` at all (socket activation, the default address, fd://).
    Given(Addr),
}

/// Builds the command line of a server under test.
#[derive(Debug)]
pub struct ServerBuilder {
    dir: TempDir,
    app: String,
    chdir: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    env_removed: Vec<String>,
    listen: Listen,
    wrapper: Vec<OsString>,
    fds: Vec<i32>,
    /// Another ferrocorn than [`bin()`] (a copy in another layout).
    binary: Option<PathBuf>,
}

/// A spawned master process (in its own process group).
#[derive(Debug)]
struct Proc {
    child: Child,
    exited: Option<ExitStatus>,
}

/// A running `ferrocorn` master, its temp dir and log.
#[derive(Debug)]
pub struct Server {
    proc: Proc,
    /// The address tests talk to (the first listener).
    pub addr: Addr,
    pub log_path: PathBuf,
    pub dir: TempDir,
}

impl ServerBuilder {
    /// `name` names the temp dir; `app` is the app argument
    /// (`testapp:app`, `factory:create_app()`...), served from `tests/apps`.
    pub fn new(name: &str, app: &str) -> ServerBuilder {
        ServerBuilder {
            dir: TempDir::new(name),
            app: app.to_string(),
            chdir: Some(apps_dir()),
            args: Vec::new(),
            env: Vec::new(),
            env_removed: Vec::new(),
            listen: Listen::Unix,
            wrapper: Vec::new(),
            fds: Vec::new(),
            binary: None,
        }
    }

    /// Start this ferrocorn binary instead of [`bin()`].
    pub fn binary(mut self, path: PathBuf) -> Self {
        self.binary = Some(path);
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, it: I) -> Self {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the server process itself.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Remove a variable from the server's environment, including the
    /// harness's own defaults (`PYTHONUNBUFFERED`).
    pub fn without_env(mut self, k: &str) -> Self {
        self.env_removed.push(k.to_string());
        self
    }

    /// `--chdir` (None: no `--chdir` at all).
    pub fn chdir(mut self, dir: Option<PathBuf>) -> Self {
        self.chdir = dir;
        self
    }

    /// Passes `-e TESTAPP_MARKER_DIR=<temp dir>`: where testapp.py and
    /// validated.py leave their markers (close() called, requests seen).
    pub fn markers(self) -> Self {
        let kv = format!("TESTAPP_MARKER_DIR={}", self.dir.path().display());
        self.arg("-e").arg(kv)
    }

    pub fn tcp(mut self) -> Self {
        self.listen = Listen::Tcp;
        self
    }

    pub fn binds(mut self, addrs: Vec<Addr>) -> Self {
        self.listen = Listen::Binds(addrs);
        self
    }

    /// No `-b`: the server finds its listener elsewhere (socket activation,
    /// `fd://` in the args); `addr` is where the test will connect.
    pub fn no_bind(mut self, addr: Addr) -> Self {
        self.listen = Listen::Given(addr);
        self
    }

    /// Runs ferrocorn under another program (`systemd-socket-activate ...`),
    /// which must exec it with the remaining arguments.
    pub fn wrapper<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, it: I) -> Self {
        self.wrapper = it.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps `fd` open across exec (clears its CLOEXEC in the child), for `-b fd://N`.
    pub fn inherit_fd(mut self, fd: i32) -> Self {
        self.fds.push(fd);
        self
    }

    /// The temp dir (to place files before the start).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, binds: &[Addr], stderr: File, stdout: File) -> Command {
        let binary = self.binary.clone().unwrap_or_else(bin);
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(binary)
        } else {
            let mut c = Command::new(&self.wrapper[0]);
            c.args(&self.wrapper[1..]).arg(binary);
            c
        };
        for b in binds {
            cmd.arg("-b").arg(b.bind_arg());
        }
        if let Some(d) = &self.chdir {
            cmd.arg("--chdir").arg(d);
        }
        cmd.args(&self.args);
        // No app argument: it comes from --paste or a configuration file.
        if !self.app.is_empty() {
            cmd.arg(&self.app);
        }
        for k in [
            "WEB_CONCURRENCY",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
            "VIRTUAL_ENV",
            "PYTHONHOME",
            "PYTHONPATH",
            "FERROCORN_CMD_ARGS",
            "GUNICORN_CMD_ARGS",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
        cmd.env("PYTHONUNBUFFERED", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for k in &self.env_removed {
            cmd.env_remove(k);
        }
        cmd.current_dir(self.dir.path());
        cmd.stdin(Stdio::null());
        // The contract: logs go to stderr. stdout is kept apart so that a
        // log line printed to stdout does not count.
        cmd.stdout(stdout);
        cmd.stderr(stderr);
        // Its own process group, so Drop can end the master and every worker
        // it leaves behind without touching anything else.
        cmd.process_group(0);
        let fds = self.fds.clone();
        if !fds.is_empty() {
            // SAFETY: the closure runs in the forked child before exec and
            // only calls fcntl(2), which is async-signal-safe; it allocates
            // nothing and touches no lock. The fds are open in the parent
            // (the test holds the listener) so they are valid in the child.
            unsafe {
                cmd.pre_exec(move || {
                    for &fd in &fds {
                        let flags = libc::fcntl(fd, libc::F_GETFD);
                        if flags < 0
                            || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                        {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    fn spawn_proc(&self, binds: &[Addr]) -> Proc {
        let stderr = File::create(self.log_path()).expect("create log");
        let stdout = File::create(self.dir.join("stdout.log")).expect("create stdout log");
        let child = self
            .command(binds, stderr, stdout)
            .spawn()
            .expect("spawn ferrocorn");
        Proc {
            child,
            exited: None,
        }
    }

    /// The server's stderr.
    fn log_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    fn binds_and_addr(&self) -> (Vec<Addr>, Addr) {
        match &self.listen {
            Listen::Unix => {
                let a = Addr::Unix(self.dir.join("s.sock"));
                (vec![a.clone()], a)
            }
            Listen::Tcp => {
                let a = Addr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())));
                (vec![a.clone()], a)
            }
            Listen::Binds(v) => (v.clone(), v[0].clone()),
            Listen::Given(a) => (Vec::new(), a.clone()),
        }
    }

    /// Spawns the server without waiting for it (for exit-status tests).
    pub fn spawn(self) -> Server {
        let (binds, addr) = self.binds_and_addr();
        let proc = self.spawn_proc(&binds);
        Server {
            proc,
            addr,
            log_path: self.log_path(),
            dir: self.dir,
        }
    }

    /// Spawns the server and waits until it answers an HTTP request on its
    /// address; panics with the log if it exits or does not answer within
    /// [`READY_TIMEOUT`]. A TCP start that exits early is retried on a new
    /// port (the free-port race), up to three times.
    pub fn start(self) -> Server {
        let attempts = if matches!(self.listen, Listen::Tcp) {
            3
        } else {
            1
        };
        let mut why = String::new();
        for _ in 0..attempts {
            let (binds, addr) = self.binds_and_addr();
            let mut proc = self.spawn_proc(&binds);
            match wait_ready(&mut proc, &addr) {
                Ok(()) => {
                    return Server {
                        proc,
                        addr,
                        log_path: self.log_path(),
                        dir: self.dir,
                    };
                }
                Err(e) => {
                    why = e;
                    proc.kill_all();
                }
            }
        }
        let log = fs::read(self.log_path()).unwrap_or_default();
        panic!(
            "server did not become ready: {why}\n--- server log ---\n{}",
            String::from_utf8_lossy(&log)
        );
    }
}

/// Polls until the server at `addr` answers a request with a status line.
fn wait_ready(proc: &mut Proc, addr: &Addr) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let probe = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut last_err = String::from("never tried");
    while Instant::now() < deadline {
        if let Some(status) = proc.try_exit_status() {
            return Err(format!("server exited early with {status}"));
        }
        match addr.connect() {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Duration::from_secs(3));
                let _ = s.set_write_timeout(Duration::from_secs(3));
                if s.write_all(probe.as_bytes()).is_ok() {
                    let mut buf = [0u8; 16];
                    match s.read(&mut buf) {
                        Ok(n) if n >= 5 && &buf[..5] == b"HTTP/" => return Ok(()),
                        Ok(n) => last_err = format!("probe got {:?}", &buf[..n]),
                        Err(e) => last_err = format!("probe read: {e}"),
                    }
                }
            }
            Err(e) => last_err = format!("connect: {e}"),
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!("not ready after {READY_TIMEOUT:?} ({last_err})"))
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status if the master has exited. Peeks with WNOWAIT first
    /// and reaps only after that, so the pid (= the process group id) is not
    /// reused while kill_all may still signal the group.
    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        // SAFETY: waitid with WNOWAIT only inspects our own child; `info` is
        // a zeroed siginfo_t owned by this frame, which waitid fills in.
        let (rc, pid) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            (rc, info.si_pid())
        };
        if rc == 0 && pid != 0 {
            self.exited = self.child.wait().ok();
        }
        self.exited
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        poll_until(timeout, || {
            status = self.try_exit_status();
            status.is_some()
        });
        status
    }

    /// True while some process of the group (the master or a worker) is alive.
    fn group_alive(&self) -> bool {
        // SAFETY: kill with signal 0 only checks for existence/permission.
        unsafe { libc::kill(-self.pid(), 0) == 0 }
    }

    /// TERM to the master, then KILL to the whole group after 5 s; also
    /// KILLs workers that outlived their master.
    fn kill_all(&mut self) {
        if self.exited.is_none() {
            signal(self.pid(), libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                // SAFETY: kill(2) on our own child's process group, whose
                // leader is not reaped yet, so the id is still ours.
                unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
                let _ = self.wait_exit(Duration::from_secs(5));
            }
        }
        if self.group_alive() {
            // SAFETY: a process group with live members keeps its id, and
            // this one was created for our child by process_group(0).
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        }
    }
}

impl Server {
    pub fn builder(name: &str, app: &str) -> ServerBuilder {
        ServerBuilder::new(name, app)
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    /// Waits up to `timeout` for the master to exit; its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(timeout)
    }

    /// True while a process of the server's group is alive; after the
    /// master exited, that means a worker outlived it.
    pub fn group_alive(&self) -> bool {
        self.proc.group_alive()
    }

    /// The stderr of the master and its workers so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Waits up to `timeout` for `needle` to appear in the log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.log().contains(needle))
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr)
    }

    /// One request on a fresh connection.
    pub fn get(&self, target: &str) -> Response {
        self.client().get(target)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.proc.kill_all();
        if thread::panicking() {
            let log = self.log();
            let mut cut = log.len().saturating_sub(12_000);
            while !log.is_char_boundary(cut) {
                cut += 1;
            }
            eprintln!(
                "--- server stderr ({}) ---\n{}\n--- end of stderr ---",
                self.log_path.display(),
                &log[cut..]
            );
            let out = fs::read(self.dir.join("stdout.log")).unwrap_or_default();
            if !out.is_empty() {
                eprintln!("--- server stdout ---\n{}", String::from_utf8_lossy(&out));
            }
        }
    }
}

/// kill(2), ignoring ESRCH.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pids come from
    // processes this test started (the master, or a worker pid it reported).
    unsafe { libc::kill(pid, sig) };
}

/// True while process `pid` exists.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The parent pid of `pid`, read from /proc.
pub fn ppid_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Runs a command with a deadline; (status, stdout, stderr). Kills it on timeout.
pub fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let dir = TempDir::new("cmd");
    let out_path = dir.join("out");
    let err_path = dir.join("err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn command");
    let mut status = None;
    poll_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned();
    (status, out, err)
}

/// A real sd_notify socket (`NOTIFY_SOCKET`): a UNIX datagram socket whose
/// messages a background thread records with their arrival time.
#[derive(Debug)]
pub struct NotifySocket {
    pub path: PathBuf,
    messages: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    pub opened: Instant,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&messages);
        let opened = Instant::now();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Bounded: the thread ends when the test's temp dir (and the
            // socket with it) goes away or after ten minutes.
            while opened.elapsed() < Duration::from_secs(600) {
                match sock.recv(&mut buf) {
                    Ok(n) => sink.lock().unwrap().push((
                        Instant::now(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    )),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
        NotifySocket {
            path,
            messages,
            opened,
        }
    }

    /// Every message so far, with its arrival time.
    pub fn messages(&self) -> Vec<(Instant, String)> {
        self.messages.lock().unwrap().clone()
    }

    /// Wait until a message after `since` has a line equal to `line` (or
    /// starting with it, when it ends in `=`); returns its arrival and text.
    pub fn wait_for(
        &self,
        line: &str,
        since: Instant,
        timeout: Duration,
    ) -> Option<(Instant, String)> {
        let found = || {
            self.messages()
                .into_iter()
                .find(|(t, m)| *t >= since && has_line(m, line))
        };
        let mut hit = None;
        poll_until(timeout, || {
            hit = found();
            hit.is_some()
        });
        hit
    }

    /// How many messages after `since` carry `line`.
    pub fn count(&self, line: &str, since: Instant) -> usize {
        self.messages()
            .iter()
            .filter(|(t, m)| *t >= since && has_line(m, line))
            .count()
    }
}

/// Whether a notify message has `line` (a prefix if it ends in `=`).
pub fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| {
        if line.ends_with('=') {
            l.starts_with(line)
        } else {
            l == line
        }
    })
}

/// A steady client loop in the background: one request per connection
/// (`Connection: close`) to `target`, bounded to 20 s and 5,000 requests.
#[derive(Debug)]
pub struct SteadyLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<(usize, Vec<String>)>,
}

impl SteadyLoad {
    pub fn start(addr: &Addr, target: &str) -> SteadyLoad {
        SteadyLoad::paced(addr, target, Duration::ZERO)
    }

    /// As [`SteadyLoad::start`], with `pause` between requests, so that
    /// 5,000 requests last longer.
    pub fn paced(addr: &Addr, target: &str, pause: Duration) -> SteadyLoad {
        let (addr, target) = (addr.clone(), target.to_string());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(20)
                && ok + failed.len() < 5000
            {
                match addr.connect() {
                    Ok(stream) => {
                        let mut c = Client::from_stream(stream);
                        match c
                            .request("GET", &target, &[("Connection", "close")], b"")
                            .status
                        {
                            200 => ok += 1,
                            other => failed.push(format!("status {other}")),
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
                thread::sleep(pause);
            }
            (ok, failed)
        });
        SteadyLoad { stop, thread }
    }

    /// Stop the loop: `(answered with 200, what failed)`.
    pub fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}
