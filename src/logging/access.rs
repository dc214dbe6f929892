//! The access log: one entry per request, in Gunicorn's `access_log_format`
//! (its atoms: `%(h)s %(r)s %(s)s ...`, `%({header}i)s`, `%({var}e)s`), to a
//! file or through the log target — where the journal gets the entry's
//! fields too (`HTTP_METHOD`, `HTTP_PATH`, `HTTP_STATUS`, `DURATION_US`,
//! `REMOTE_ADDR`, `REQUEST_ID`).
//!
//! Off unless `--access-logfile` is given; when off, a request costs one
//! atomic load here.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::config::AccessLog;
use crate::http::Head;
use crate::net::Peer;

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A one-letter atom, e.g. `h`.
    Atom(char),
    /// `%({name}i)s`: a request header.
    Header(String),
    /// `%({name}e)s`: an environment variable.
    Env(String),
}

fn parse_format(format: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find("%(") {
        text.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find(")s") else {
            text.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        let piece = match name.strip_prefix('{') {
            Some(inner) if inner.ends_with("}i") => {
                Some(Piece::Header(inner[..inner.len() - 2].to_string()))
            }
            Some(inner) if inner.ends_with("}e") => {
                Some(Piece::Env(inner[..inner.len() - 2].to_string()))
            }
            None if name.chars().count() == 1 => name.chars().next().map(Piece::Atom),
            _ => None,
        };
        match piece {
            Some(p) => {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(p);
            }
            None => text.push_str(&rest[i..i + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

#[derive(Debug)]
struct Config {
    pieces: Vec<Piece>,
    file: Option<(PathBuf, Mutex<File>)>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static REQUEST_IDS: AtomicU64 = AtomicU64::new(0);

/// Turn the access log on (once per process).
///
/// Errors: the log file cannot be opened for appending.
pub fn init(dest: Option<&AccessLog>, format: &str) -> std::io::Result<()> {
    let Some(dest) = dest else { return Ok(()) };
    let file = match dest {
        AccessLog::LogTarget => None,
        AccessLog::File(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            Some((path.clone(), Mutex::new(f)))
        }
    };
    let _ = CONFIG.set(Config {
        pieces: parse_format(format),
        file,
    });
    Ok(())
}

/// Turn the access log on with a file the master opened (in a worker it
/// started: the master opened it before dropping privileges).
pub fn init_with_file(settings: &crate::config::Settings, file: File) {
    let path = match &settings.access_log {
        Some(AccessLog::File(path)) => path.clone(),
        _ => PathBuf::new(),
    };
    let _ = CONFIG.set(Config {
        pieces: parse_format(&settings.access_log_format),
        file: Some((path, Mutex::new(file))),
    });
}

/// The open access log file's descriptor, to pass to a worker; `None`
/// when the access log is off or goes to the log target.
pub fn file_fd() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    let (_, file) = CONFIG.get()?.file.as_ref()?;
    Some(file.lock().unwrap_or_else(|p| p.into_inner()).as_raw_fd())
}

/// Reopen the log file (USR1, after logrotate moved it).
pub fn reopen() {
    if let Some(Config {
        file: Some((path, file)),
        ..
    }) = CONFIG.get()
    {
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            *file.lock().unwrap_or_else(|p| p.into_inner()) = f;
        }
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
    /// Who sent it.
    pub peer: &'a Peer,
    /// The response status code, `None` if no response was sent.
    pub status: Option<u16>,
    /// Body bytes sent.
    pub sent: u64,
    /// From the head's arrival to the end of the response.
    pub duration: Duration,
}

/// Log one request.
pub fn log(entry: &Entry<'_>) {
    let Some(config) = CONFIG.get() else { return };
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
    let line = format_line(&config.pieces, entry);
    match &config.file {
        Some((_, file)) => {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{line}");
        }
        None => {
            let (path, _) = entry.head.path_and_query();
            tracing::info!(
                target: "ferrocorn::access",
                http_method = entry.head.method(),
                http_path = path,
                http_status = entry.status.unwrap_or(0),
                duration_us = entry.duration.as_micros() as u64,
                remote_addr = %remote(entry.peer),
                request_id = request_id.as_str(),
                "{line}"
            );
        }
    }
}

fn remote(peer: &Peer) -> String {
    match peer {
        Peer::Tcp(a) => a.ip().to_string(),
        Peer::Unix => "-".to_string(),
    }
}

fn format_line(pieces: &[Piece], e: &Entry<'_>) -> String {
    let mut out = String::with_capacity(160);
    let header = |name: &str| {
        e.head.field(name).map_or_else(
            || "-".to_string(),
            |v| String::from_utf8_lossy(v).into_owned(),
        )
    };
    let (path, query) = e.head.path_and_query();
    for piece in pieces {
        let _ = match piece {
            Piece::Text(t) => write!(out, "{t}"),
            Piece::Header(name) => write!(out, "{}", header(name)),
            Piece::Env(name) => write!(out, "{}", std::env::var(name).unwrap_or("-".into())),
            Piece::Atom(c) => match c {
                'h' => write!(out, "{}", remote(e.peer)),
                'l' | 'u' => write!(out, "-"),
                't' => write!(out, "[{}]", clf_time(SystemTime::now())),
                'r' => write!(
                    out,
                    "{} {} {}",
                    e.head.method(),
                    e.head.target(),
                    e.head.version.as_str()
                ),
                'm' => write!(out, "{}", e.head.method()),
                'U' => write!(out, "{path}"),
                'q' => write!(out, "{query}"),
                'H' => write!(out, "{}", e.head.version.as_str()),
                's' => write!(out, "{}", e.status.map_or("-".into(), |s| s.to_string())),
                'B' => write!(out, "{}", e.sent),
                'b' if e.sent == 0 => write!(out, "-"),
                'b' => write!(out, "{}", e.sent),
                'f' => write!(out, "{}", header("referer")),
                'a' => write!(out, "{}", header("user-agent")),
                'T' => write!(out, "{}", e.duration.as_secs()),
                'D' => write!(out, "{}", e.duration.as_micros()),
                'M' => write!(out, "{}", e.duration.as_millis()),
                'L' => write!(out, "{:.6}", e.duration.as_secs_f64()),
                'p' => write!(out, "<{}>", std::process::id()),
                other => write!(out, "%({other})s"),
            },
        };
    }
    out
}

/// Common Log Format time: `21/Nov/2026:23:42:20 +0000`.
fn clf_time(t: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from(t)
        .format(format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, parse_head};

    #[test]
    fn default_format_renders_like_gunicorn() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\n\r\n";
        let (head, _) = parse_head(raw, &Limits::default()).unwrap().unwrap();
        let peer = Peer::Tcp("127.0.0.1:5555".parse().unwrap());
        let e = Entry {
            head: &head,
            peer: &peer,
            status: Some(200),
            sent: 13,
            duration: Duration::from_micros(1500),
        };
        let line = format_line(&parse_format(crate::config::DEFAULT_ACCESS_LOG_FORMAT), &e);
        let (start, end) = line.split_once(" [").unwrap();
        assert_eq!(start, "127.0.0.1 - -");
        assert!(
            end.ends_with(r#"] "GET /a?b=1 HTTP/1.1" 200 13 "-" "curl/8""#),
            "{line}"
        );
        let custom = format_line(
            &parse_format("%(m)s %(U)s %(q)s %(D)s %({host}i)s %(x)s"),
            &e,
        );
        assert_eq!(custom, "GET /a b=1 1500 x %(x)s");
    }

    #[test]
    fn clf_time_is_common_log_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_304_540);
        assert_eq!(clf_time(t), "21/Nov/2026:23:42:20 +0000");
    }
}
