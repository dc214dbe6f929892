//! Response heads and body framing, sans I/O: bytes out, never a syscall.
//!
//! The framing of a response is decided once, when its head is written
//! (RFC 9112 §6.3 read from the server's side): no body for HEAD, 1xx, 204
//! and 304 (RFC 9110 §6.4.1); the app's Content-Length when it gave one;
//! chunked on HTTP/1.1 otherwise; close-delimited on HTTP/1.0.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use super::head::Version;

/// How the body of a response is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body may be sent (HEAD, 1xx, 204, 304); anything the app yields is dropped.
    NoBody,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// `Transfer-Encoding: chunked` (RFC 9112 §7.1), HTTP/1.1 only.
    Chunked,
    /// Until the connection closes (HTTP/1.0 without a length).
    Close,
}

impl Framing {
    /// Whether the connection can carry another request after this response.
    pub fn allows_keep_alive(self) -> bool {
        self != Framing::Close
    }
}

/// Whether a response with status `code` carries no body: 1xx, 204, 304, or
/// any answer to HEAD (RFC 9110 §6.4.1, §9.3.2).
pub fn is_bodyless(code: u16, head_request: bool) -> bool {
    head_request || (100..200).contains(&code) || code == 204 || code == 304
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) a WSGI app must not set (PEP 3333,
/// "Other HTTP Features"); the server drops them and does its own framing.
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A field name is a token (RFC 9110 §5.1, §5.6.2).
pub fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// A field value has no CR, LF, NUL or other control bytes but HTAB
/// (RFC 9110 §5.5), so an app cannot inject a field line or split a response.
pub fn is_valid_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `text` as ISO-8859-1 bytes, as PEP 3333 encodes the header values and
/// status of a response ("native strings" holding code points up to
/// U+00FF); `None` if it holds a code point above U+00FF.
pub fn latin1(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parse the status code of a WSGI status string `"200 OK"`: three digits
/// then a space and a reason (PEP 3333 §"The start_response() Callable").
pub fn status_code(status: &str) -> Option<u16> {
    let b = status.as_bytes();
    if b.len() < 4 || b[3] != b' ' || !b[..3].iter().all(u8::is_ascii_digit) || b[0] == b'0' {
        return None;
    }
    status[..3].parse().ok()
}

/// What goes into a response head besides the app's own fields.
#[derive(Debug, Clone, Copy)]
pub struct HeadSpec<'a> {
    /// The request's version, echoed in the status line as Gunicorn does.
    pub version: Version,
    /// The WSGI status string, e.g. `"200 OK"`.
    pub status: &'a str,
    /// The chosen framing.
    pub framing: Framing,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
    /// Whether the app's fields already include Content-Length.
    pub app_sent_length: bool,
}

/// Append one field line, `name: value` and CRLF, to `out`; the name and
/// value must already be valid (see [`is_valid_field_name`],
/// [`is_valid_field_value`]). The value is bytes: a WSGI value is latin-1
/// encoded first ([`latin1`]).
pub fn push_field_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Append a complete response head (status line, fields, final CRLF) to `out`.
///
/// `field_lines` are the app's fields as written by [`push_field_line`],
/// already validated and with hop-by-hop fields removed.
pub fn write_head(out: &mut Vec<u8>, spec: HeadSpec<'_>, field_lines: &[u8]) {
    out.extend_from_slice(spec.version.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.status.as_bytes());
    out.extend_from_slice(b"\r\nServer: ferrocorn\r\nDate: ");
    with_date(|date| out.extend_from_slice(date));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(field_lines);
    match spec.framing {
        Framing::Length(n) if !spec.app_sent_length => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    match (spec.keep_alive, spec.version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The size line that opens a chunk of `len` bytes: hex digits then CRLF.
pub fn chunk_size_line(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

/// The last chunk and the empty trailer section ending a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim response to `Expect: 100-continue` (RFC 9110 §10.1.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The answer to `health_check_path`: `200 OK` with body `OK`, or, from a
/// stopping worker, `503 Service Unavailable` with body `stopping` (a load
/// balancer then drains the host); no body for HEAD. `keep_alive` as for
/// [`HeadSpec`].
pub fn health_response(
    version: Version,
    ok: bool,
    head_request: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let (status, body): (&str, &[u8]) = if ok {
        ("200 OK", b"OK\n")
    } else {
        ("503 Service Unavailable", b"stopping\n")
    };
    let mut out = Vec::with_capacity(160);
    let fields = b"Content-Type: text/plain\r\nCache-Control: no-store\r\n";
    write_head(
        &mut out,
        HeadSpec {
            version,
            status,
            framing: Framing::Length(body.len() as u64),
            keep_alive,
            app_sent_length: false,
        },
        fields,
    );
    if !head_request {
        out.extend_from_slice(body);
    }
    out
}

/// A complete `500 Internal Server Error` response that closes the connection.
pub fn internal_error_response() -> Vec<u8> {
    plain_response(500, "Internal Server Error", "Internal Server Error\n")
}

/// A complete short `text/plain` response with `Connection: close`, for
/// answers the server gives itself (errors).
pub fn plain_response(code: u16, reason: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(
        format!("HTTP/1.1 {code} {reason}\r\nServer: ferrocorn\r\nDate: ").as_bytes(),
    );
    with_date(|date| out.extend_from_slice(date));
    out.extend_from_slice(
        format!(
            "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    out
}

thread_local! {
    /// (unix second, IMF-fixdate): formatting the Date once per second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Call `f` with the current `Date` value (RFC 9110 §5.6.7 IMF-fixdate).
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, date)| {
        if *cached != secs || date.is_empty() {
            *cached = secs;
            *date = httpdate::fmt_http_date(now);
        }
        f(date.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(spec: HeadSpec<'_>, fields: &[(&str, &str)]) -> String {
        let mut lines = Vec::new();
        for (name, value) in fields {
            push_field_line(&mut lines, name, value.as_bytes());
        }
        let mut out = Vec::new();
        write_head(&mut out, spec, &lines);
        String::from_utf8(out).unwrap()
    }

    fn spec(version: Version, framing: Framing, keep_alive: bool) -> HeadSpec<'static> {
        HeadSpec {
            version,
            status: "200 OK",
            framing,
            keep_alive,
            app_sent_length: false,
        }
    }

    #[test]
    fn chunked_head_on_http11() {
        let h = head(
            spec(Version::Http11, Framing::Chunked, true),
            &[("X-A", "1")],
        );
        assert!(h.starts_with("HTTP/1.1 200 OK\r\nServer: ferrocorn\r\nDate: "));
        assert!(h.ends_with("\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"));
    }

    #[test]
    fn http10_keep_alive_is_announced_and_close_is_said() {
        let h = head(spec(Version::Http10, Framing::Length(5), true), &[]);
        assert!(h.ends_with("Content-Length: 5\r\nConnection: keep-alive\r\n\r\n"));
        let h = head(spec(Version::Http10, Framing::Close, false), &[]);
        assert!(h.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn app_length_is_not_repeated() {
        let mut s = spec(Version::Http11, Framing::Length(2), true);
        s.app_sent_length = true;
        let h = head(s, &[("Content-Length", "2")]);
        assert_eq!(h.matches("Content-Length").count(), 1);
    }

    #[test]
    fn status_codes_need_three_digits_and_a_reason() {
        assert_eq!(status_code("200 OK"), Some(200));
        assert_eq!(status_code("404 "), Some(404));
        assert_eq!(status_code("200"), None);
        assert_eq!(status_code("20 OK"), None);
        assert_eq!(status_code("abc OK"), None);
        assert_eq!(status_code("099 x"), None);
    }

    #[test]
    fn injected_values_are_refused() {
        assert!(is_valid_field_value(b"text/html; charset=utf-8\tx"));
        assert!(
            is_valid_field_value(b"caf\xe9"),
            "obs-text (RFC 9110 \u{a7}5.5)"
        );
        assert!(!is_valid_field_value(b"a\r\nSet-Cookie: x"));
        assert!(!is_valid_field_value(b"a\0"));
        assert_eq!(latin1("caf\u{e9}").as_deref(), Some(&b"caf\xe9"[..]));
        assert_eq!(latin1("\u{65e5}\u{672c}"), None);
        assert!(!is_valid_field_name("X Bad"));
        assert!(!is_valid_field_name(""));
        assert!(is_valid_field_name("X-Good_1"));
    }

    #[test]
    fn bodyless_statuses() {
        assert!(is_bodyless(204, false));
        assert!(is_bodyless(304, false));
        assert!(is_bodyless(101, false));
        assert!(is_bodyless(200, true));
        assert!(!is_bodyless(200, false));
    }
}
