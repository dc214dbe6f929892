//! The access log: one line per request in Gunicorn's `access_log_format`,
//! to a file or to stdout (`-`), exactly as Gunicorn 27 writes it: its
//! atoms (`%(h)s %(r)s %(s)s ...`, `%({header}i)s`, `%({header}o)s`,
//! `%({key}e)s`), Python's `%` formatting of them (`%(D)d`, `%(h)-15s`,
//! `%%`), and `-` for an atom it does not know. When stdout is the journal
//! (under systemd), entries go natively to journald with fields of their
//! own (`HTTP_METHOD`, `HTTP_PATH`, `HTTP_STATUS`, `DURATION_US`,
//! `REMOTE_ADDR`, `REQUEST_ID`).
//!
//! Off unless `--access-logfile` is given; when off, a request costs one
//! atomic load here.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::file::{LogFile, Owner};
use crate::config::AccessLog;
use crate::http::Head;
use crate::net::Peer;
use crate::wsgi::{CaptureSpec, Captured};

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `%(KEY)SPEC`: an atom, with Python's conversion spec after it.
    Atom {
        key: Key,
        spec: Spec,
    },
}

/// What an atom names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A one-letter atom, e.g. `h`.
    Letter(char),
    /// `{name}i`: a request header (lower-case).
    Header(String),
    /// `{name}o`: a response header (index into the captured ones).
    Response(usize),
    /// `{key}e`: an environ value (index into the captured ones).
    Environ(usize),
    /// Anything else: Gunicorn writes `-`.
    Unknown,
}

/// Python's `%` conversion spec: flags, width, precision, conversion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Spec {
    left: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    conversion: char,
}

/// A parsed format and what it needs from the WSGI bridge.
#[derive(Debug, Clone, Default)]
struct Format {
    pieces: Vec<Piece>,
    capture: CaptureSpec,
}

fn parse_format(format: &str) -> Format {
    let mut out = Format::default();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(more) = after.strip_prefix('%') {
            text.push('%');
            rest = more;
            continue;
        }
        let parsed = after
            .strip_prefix('(')
            .and_then(|a| a.find(')').map(|end| (&a[..end], &a[end + 1..])))
            .and_then(|(name, tail)| {
                parse_spec(tail).map(|(spec, used)| (name, spec, &tail[used..]))
            });
        let Some((name, spec, tail)) = parsed else {
            // Not a mapping key: Python would raise; keep the text.
            text.push('%');
            rest = after;
            continue;
        };
        if !text.is_empty() {
            out.pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        let key = key_of(name, &mut out.capture);
        out.pieces.push(Piece::Atom { key, spec });
        rest = tail;
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.pieces.push(Piece::Text(text));
    }
    out
}

/// `[flags][width][.precision][length]conversion` at the start of `s`;
/// returns the spec and the bytes it used.
fn parse_spec(s: &str) -> Option<(Spec, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut spec = Spec::default();
    while let Some(&c) = b.get(i) {
        match c {
            b'-' => spec.left = true,
            b'0' => spec.zero = true,
            b'+' | b' ' | b'#' => {}
            _ => break,
        }
        i += 1;
    }
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        spec.width = spec.width * 10 + usize::from(d - b'0');
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut p = 0;
        while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            p = p * 10 + usize::from(d - b'0');
            i += 1;
        }
        spec.precision = Some(p);
    }
    while matches!(b.get(i), Some(b'h' | b'l' | b'L')) {
        i += 1;
    }
    let c = *b.get(i)?;
    matches!(c, b's' | b'r' | b'a' | b'd' | b'i' | b'u' | b'f' | b'F').then(|| {
        spec.conversion = char::from(c);
        (spec, i + 1)
    })
}

/// The key an atom's name means; environ and response-header atoms are
/// added to `capture` (Gunicorn matches `{...}` names whatever their case).
fn key_of(name: &str, capture: &mut CaptureSpec) -> Key {
    let lower = name.to_ascii_lowercase();
    if let Some(inner) = lower.strip_prefix('{') {
        if let Some(h) = inner.strip_suffix("}i") {
            return Key::Header(h.to_string());
        }
        if let Some(h) = inner.strip_suffix("}o") {
            capture.response_headers.push(h.to_string());
            return Key::Response(capture.response_headers.len() - 1);
        }
        if let Some(e) = inner.strip_suffix("}e") {
            capture.environ.push(e.to_string());
            return Key::Environ(capture.environ.len() - 1);
        }
        return Key::Unknown;
    }
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if "hlutrsmUqHbBfaTDMLp".contains(c) => {
            if c == 'U' {
                capture.path_info = true;
            }
            Key::Letter(c)
        }
        _ => Key::Unknown,
    }
}

#[derive(Debug)]
enum Destination {
    File(LogFile),
    Stdout,
    Journal,
}

#[derive(Debug)]
struct Config {
    format: Format,
    dest: Destination,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static REQUEST_IDS: AtomicU64 = AtomicU64::new(0);

fn destination(
    dest: &AccessLog,
    file: impl FnOnce(&Path) -> std::io::Result<LogFile>,
) -> std::io::Result<Destination> {
    Ok(match dest {
        AccessLog::File(path) => Destination::File(file(path)?),
        AccessLog::Stdout if super::stdout_is_journal() && super::journal_active() => {
            Destination::Journal
        }
        AccessLog::Stdout => Destination::Stdout,
    })
}

/// Turn the access log on (once per process; the master), creating the
/// file for `owner` (the workers' user).
///
/// Errors: the log file cannot be opened for appending (named).
pub fn init(dest: Option<&AccessLog>, format: &str, owner: Owner) -> std::io::Result<()> {
    let Some(dest) = dest else { return Ok(()) };
    let dest = destination(dest, |p| LogFile::open(p, owner))?;
    let _ = CONFIG.set(Config {
        format: parse_format(format),
        dest,
    });
    Ok(())
}

/// Turn the access log on in a worker, with the file the master opened
/// (`None` when it logs to stdout), before it dropped privileges.
pub fn init_worker(dest: Option<&AccessLog>, format: &str, file: Option<File>) {
    let Some(dest) = dest else { return };
    let dest = match (dest, file) {
        (AccessLog::File(path), Some(file)) => Destination::File(LogFile::adopt(path, file)),
        (dest, _) => match destination(dest, |p| LogFile::open(p, None)) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("access log: {e}");
                return;
            }
        },
    };
    let _ = CONFIG.set(Config {
        format: parse_format(format),
        dest,
    });
}

/// What the WSGI bridge must collect for this format (empty when off).
pub fn capture_spec() -> CaptureSpec {
    CONFIG
        .get()
        .map(|c| c.format.capture.clone())
        .unwrap_or_default()
}

/// The open access log file's descriptor, to pass to a worker; `None`
/// when the access log is off or does not go to a file.
pub fn file_fd() -> Option<std::os::fd::RawFd> {
    match &CONFIG.get()?.dest {
        Destination::File(f) => Some(f.raw_fd()),
        _ => None,
    }
}

/// Reopen the log file (USR1, after logrotate moved it).
///
/// Errors: open(2) failed; the old file stays in use.
pub fn reopen(owner: Owner) -> std::io::Result<()> {
    match CONFIG.get().map(|c| &c.dest) {
        Some(Destination::File(f)) => f.reopen(owner),
        _ => Ok(()),
    }
}

/// Whether requests are logged at all.
pub fn enabled() -> bool {
    CONFIG.get().is_some()
}

/// What is known of a request once its response is sent.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The request head.
    pub head: &'a Head,
    /// The client (`REMOTE_ADDR`).
    pub peer: &'a Peer,
    /// The response status code, `None` if no response was sent.
    pub status: Option<u16>,
    /// Body bytes sent.
    pub sent: u64,
    /// From the head's arrival to the end of the response.
    pub duration: Duration,
    /// What the WSGI bridge collected for the format.
    pub captured: &'a Captured,
}

/// Log one request.
pub fn log(entry: &Entry<'_>) {
    let Some(config) = CONFIG.get() else { return };
    let mut line = format_line(&config.format.pieces, entry, SystemTime::now());
    match &config.dest {
        Destination::File(f) => {
            line.push('\n');
            f.write_line(line.as_bytes());
        }
        Destination::Stdout => {
            line.push('\n');
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
        Destination::Journal => {
            let request_id = entry
                .head
                .field("x-request-id")
                .and_then(|v| std::str::from_utf8(v).ok())
                .map_or_else(
                    || {
                        let n = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
                        format!("{:x}-{n:x}", std::process::id())
                    },
                    str::to_string,
                );
            let (path, _) = entry.head.path_and_query();
            tracing::info!(
                target: "ferrocorn::access",
                http_method = entry.head.method(),
                http_path = path,
                http_status = entry.status.unwrap_or(0),
                duration_us = entry.duration.as_micros() as u64,
                remote_addr = remote(entry.peer).as_str(),
                request_id = request_id.as_str(),
                "{line}"
            );
        }
    }
}

/// `REMOTE_ADDR`: empty for a UNIX-socket peer, as in Gunicorn.
fn remote(peer: &Peer) -> String {
    match peer {
        Peer::Tcp(a) => a.ip().to_string(),
        Peer::Unix => String::new(),
    }
}

/// A value an atom stands for: Gunicorn's atoms are strings or integers.
enum Atom<'a> {
    Str(std::borrow::Cow<'a, str>),
    Int(u128),
}

/// The user of HTTP Basic authentication (Gunicorn's `_get_user`).
fn basic_user(head: &Head) -> Option<String> {
    use base64::Engine as _;
    let auth = std::str::from_utf8(head.field("authorization")?).ok()?;
    if !auth.to_ascii_lowercase().starts_with("basic") {
        return None;
    }
    let (_, encoded) = auth.split_once(' ')?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let user = decoded.split(|&b| b == b':').next()?;
    String::from_utf8(user.to_vec()).ok()
}

/// The last value of request header `name` (Gunicorn's atoms keep the last).
fn last_field<'h>(head: &'h Head, name: &str) -> Option<&'h [u8]> {
    head.fields()
        .filter(|f| f.name.eq_ignore_ascii_case(name))
        .last()
        .map(|f| f.value)
}

fn atom<'a>(key: &Key, e: &'a Entry<'_>, now: SystemTime) -> Atom<'a> {
    use std::borrow::Cow::{Borrowed, Owned};
    let head = e.head;
    let text = |v: Option<&'a [u8]>| Atom::Str(v.map_or(Borrowed("-"), String::from_utf8_lossy));
    let captured = |v: Option<&'a Option<String>>| {
        Atom::Str(v.and_then(Option::as_deref).map_or(Borrowed("-"), Borrowed))
    };
    let d = e.duration;
    match key {
        Key::Letter('h') => Atom::Str(Owned(remote(e.peer))),
        Key::Letter('l') => Atom::Str(Borrowed("-")),
        Key::Letter('u') => Atom::Str(basic_user(head).map_or(Borrowed("-"), Owned)),
        Key::Letter('t') => Atom::Str(Owned(format!("[{}]", clf_time(now)))),
        Key::Letter('r') => Atom::Str(Owned(format!(
            "{} {} {}",
            head.method(),
            head.target(),
            head.version.as_str()
        ))),
        Key::Letter('s') => Atom::Str(e.status.map_or(Borrowed("-"), |s| Owned(s.to_string()))),
        Key::Letter('m') => Atom::Str(Borrowed(head.method())),
        Key::Letter('U') => match &e.captured.path_info {
            Some(p) => Atom::Str(Borrowed(p)),
            None => Atom::Str(Borrowed(head.path_and_query().0)),
        },
        Key::Letter('q') => Atom::Str(Borrowed(head.path_and_query().1)),
        Key::Letter('H') => Atom::Str(Borrowed(head.version.as_str())),
        // Gunicorn: str(resp.sent), so an empty body is "0", not "-".
        Key::Letter('b') | Key::Letter('B') => Atom::Int(e.sent.into()),
        Key::Letter('f') => text(head.field("referer")),
        Key::Letter('a') => text(head.field("user-agent")),
        Key::Letter('T') => Atom::Int(d.as_secs().into()),
        Key::Letter('D') => Atom::Int(d.as_micros()),
        Key::Letter('M') => Atom::Int(d.as_millis()),
        Key::Letter('L') => Atom::Str(Owned(format!("{}.{:06}", d.as_secs(), d.subsec_micros()))),
        Key::Letter('p') => Atom::Str(Owned(format!("<{}>", std::process::id()))),
        Key::Header(name) => text(last_field(head, name)),
        Key::Response(i) => captured(e.captured.response_headers.get(*i)),
        Key::Environ(i) => captured(e.captured.environ.get(*i)),
        Key::Letter(_) | Key::Unknown => Atom::Str(Borrowed("-")),
    }
}

fn format_line(pieces: &[Piece], e: &Entry<'_>, now: SystemTime) -> String {
    let mut out = String::with_capacity(160);
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Atom { key, spec } => {
                let value = atom(key, e, now);
                let rendered = match (&value, spec.conversion) {
                    (Atom::Str(s), 'r' | 'a') => format!("'{s}'"),
                    (Atom::Str(s), _) => match spec.precision {
                        Some(p) if matches!(spec.conversion, 's') => s.chars().take(p).collect(),
                        _ => s.to_string(),
                    },
                    (Atom::Int(n), 'f' | 'F') => {
                        format!("{:.*}", spec.precision.unwrap_or(6), *n as f64)
                    }
                    (Atom::Int(n), _) => n.to_string(),
                };
                let pad = spec.width.saturating_sub(rendered.chars().count());
                let numeric =
                    matches!(value, Atom::Int(_)) && !matches!(spec.conversion, 's' | 'r' | 'a');
                if spec.left {
                    out.push_str(&rendered);
                    out.extend(std::iter::repeat_n(' ', pad));
                } else {
                    let fill = if spec.zero && numeric { '0' } else { ' ' };
                    out.extend(std::iter::repeat_n(fill, pad));
                    out.push_str(&rendered);
                }
            }
        }
    }
    out
}

/// Common Log Format time in local time, as Gunicorn's
/// `time.strftime('%d/%b/%Y:%H:%M:%S %z')`: `21/Nov/2026:23:42:20 +0000`.
fn clf_time(t: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    super::local_time(t).format(format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Rules, parse_head};

    fn entry_line(format: &str, raw: &[u8], captured: &Captured) -> String {
        let (head, _) = parse_head(raw, &Rules::default()).unwrap().unwrap();
        let peer = Peer::Tcp("127.0.0.1:5555".parse().unwrap());
        let e = Entry {
            head: &head,
            peer: &peer,
            status: Some(200),
            sent: 13,
            duration: Duration::from_micros(1_500),
            captured,
        };
        format_line(&parse_format(format).pieces, &e, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn default_format_renders_like_gunicorn() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\n\r\n";
        let line = entry_line(
            crate::config::DEFAULT_ACCESS_LOG_FORMAT,
            raw,
            &Captured::default(),
        );
        let (start, end) = line.split_once(" [").unwrap();
        assert_eq!(start, "127.0.0.1 - -");
        assert!(
            end.ends_with(r#"] "GET /a?b=1 HTTP/1.1" 200 13 "-" "curl/8""#),
            "{line}"
        );
    }

    #[test]
    fn atoms_specs_and_unknown_names_follow_python() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n";
        let captured = Captured {
            path_info: Some("/decoded".into()),
            environ: vec![Some("e-value".into())],
            response_headers: vec![Some("text/plain".into()), None],
        };
        let line = entry_line(
            "%(m)s %(U)s %(q)s %(D)d %({HOST}i)s %(x)s %(u)s %(L)s %(T)s %(M)s 100%% \
             %({Content-Type}o)s %({nope}o)s %({REMOTE_USER}e)s %(h)-12s| %(B)05d %(s)r",
            raw,
            &captured,
        );
        assert_eq!(
            line,
            "GET /decoded b=1 1500 x - user 0.001500 0 1 100% text/plain - e-value \
             127.0.0.1   | 00013 '200'"
        );
    }

    #[test]
    fn only_what_the_format_names_is_captured() {
        let f = parse_format("%(U)s %({a}e)s %({B}o)s");
        assert!(f.capture.path_info);
        assert_eq!(f.capture.environ, vec!["a"]);
        assert_eq!(f.capture.response_headers, vec!["b"]);
        let f = parse_format(crate::config::DEFAULT_ACCESS_LOG_FORMAT);
        assert!(!f.capture.path_info && f.capture.environ.is_empty());
    }
}
