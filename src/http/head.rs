//! The request head: request line and field lines (RFC 9112 §2-§6), parsed
//! from a byte buffer into a [`Head`] that tells the caller how the body is
//! framed and whether the connection may be reused.
//!
//! Invariants: [`parse_head`] is a pure function of its input and limits;
//! it never reads beyond the head's final CRLFCRLF; it fails as soon as the
//! bytes it has prove the head invalid or over a limit, even before the head
//! is complete, so a client cannot make the caller buffer without bound; and
//! a `Head` it returns has a request line in one of the RFC 9112 §3.2 forms
//! the method allows, ASCII method and target, field names that are tokens,
//! field values without control characters other than HTAB, and exactly one
//! body framing (never both Content-Length and Transfer-Encoding).
//!
//! httparse validates the field lines; a pre-scan over the raw bytes enforces
//! what httparse tolerates or cannot report (bare LF, obs-fold, the limits on
//! incomplete input), and the request line is parsed here because Gunicorn's
//! method rules, the target forms and 505-vs-400 need more than httparse
//! exposes.

use super::error::{ParseError, snippet};

/// Gunicorn's default `limit_request_line`, in bytes.
pub const DEFAULT_LIMIT_REQUEST_LINE: usize = 4094;
/// Gunicorn's default `limit_request_fields`, in field lines.
pub const DEFAULT_LIMIT_REQUEST_FIELDS: usize = 100;
/// Gunicorn's default `limit_request_field_size`, in bytes.
pub const DEFAULT_LIMIT_REQUEST_FIELD_SIZE: usize = 8190;
/// Field-line count used when [`Limits::fields`] is 0 (Gunicorn's
/// `MAX_HEADERS`): a head always has some bound.
pub const MAX_FIELDS: usize = 32768;

/// The HTTP versions served (RFC 9112 §2.3). Any other well-formed version
/// is refused with 505.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

impl Version {
    /// `"HTTP/1.0"` or `"HTTP/1.1"`, as in `SERVER_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Head size limits, with Gunicorn's names, semantics and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// `limit_request_line`: most bytes in the request line, CRLF not
    /// counted; longer is 414. 0 = unlimited. (Values above 8190 are clamped
    /// by the configuration, not here.) Default 4094.
    pub request_line: usize,
    /// `limit_request_fields`: most field lines in the head (and in a
    /// trailer section); more is 431. 0 = [`MAX_FIELDS`]. Default 100.
    pub fields: usize,
    /// `limit_request_field_size`: most bytes in one field line, its CRLF
    /// counted (as Gunicorn counts it); longer is 431. 0 = unlimited.
    /// Default 8190.
    pub field_size: usize,
    /// `limit_request_body`: most bytes in a request body, whether its
    /// Content-Length says so (refused with the head) or its chunks add up
    /// to more (refused at the chunk-size line that passes it); either is
    /// 413 (RFC 9110 §15.5.14). 0 = unlimited, the default, as Gunicorn.
    #[serde(default)]
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: DEFAULT_LIMIT_REQUEST_LINE,
            fields: DEFAULT_LIMIT_REQUEST_FIELDS,
            field_size: DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
            body: 0,
        }
    }
}

/// How heads are parsed: the limits, and Gunicorn's switches that relax
/// its default rules (each off by default, each a setting of the same name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rules {
    /// The size limits.
    pub limits: Limits,
    /// `permit_obsolete_folding`: a field line continued on the next line
    /// (obs-fold, RFC 9112 §5.2) is unfolded, the fold replaced by one SP,
    /// instead of refused with 400. The continuation counts towards the
    /// field's `limit_request_field_size`.
    pub obsolete_folding: bool,
    /// `permit_unconventional_http_method`: any RFC 9110 §9.1 token is a
    /// method, not only 3 to 20 characters without lowercase or `#`.
    pub unconventional_method: bool,
    /// `permit_unconventional_http_version`: any `HTTP/D.D` is served, as
    /// HTTP/1.1 from 1.1 up and as HTTP/1.0 below, instead of 505.
    pub unconventional_version: bool,
    /// `casefold_http_method`: the method is uppercased.
    pub casefold_method: bool,
}

impl From<Limits> for Rules {
    fn from(limits: Limits) -> Rules {
        Rules {
            limits,
            ..Rules::default()
        }
    }
}

impl Limits {
    /// The field-line count in force: `fields`, or [`MAX_FIELDS`] for 0.
    pub fn max_fields(&self) -> usize {
        if self.fields == 0 {
            MAX_FIELDS
        } else {
            self.fields
        }
    }
}

/// One field line of the head, in the order received, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name as sent (original case); always an RFC 9110 §5.1 token, so
    /// ASCII. May contain `_` (the WSGI layer drops those, as Gunicorn).
    pub name: &'a str,
    /// The value without leading and trailing OWS (SP / HTAB). Bytes are
    /// VCHAR, SP, HTAB or obs-text (0x80-0xFF): RFC 9110 §5.5.
    pub value: &'a [u8],
}

/// Where a part of the head lies in [`Head`]'s text: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a subslice of `text`.
    fn of(text: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - text.as_ptr() as usize;
        debug_assert!(start + part.len() <= text.len());
        // A head is far below 4 GiB: its limits keep it to kilobytes.
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// How the request body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: no Content-Length and no Transfer-Encoding, or
    /// `Content-Length: 0`.
    Empty,
    /// `Content-Length: n` with n > 0, in bytes.
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked`: decode with
    /// [`ChunkedDecoder`](super::body::ChunkedDecoder).
    Chunked,
}

/// The form of a request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query` (§3.2.1).
    Origin,
    /// `scheme://authority/path?query` (§3.2.2).
    Absolute,
    /// `host:port`, only with CONNECT (§3.2.3).
    Authority,
    /// `*`, only with OPTIONS (§3.2.4).
    Asterisk,
}

/// A parsed request head. Its text is one copy of the head's bytes, and
/// the method, target and fields are spans of it: two allocations per
/// request rather than two per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The request line and the field lines as received.
    text: Box<[u8]>,
    method: Span,
    target: Span,
    /// Every field line in order, including names with `_`.
    fields: Vec<(Span, Span)>,
    /// The protocol version.
    pub version: Version,
    /// How the body that follows the head is framed.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this one
    /// (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only
    /// with `Connection: keep-alive`. Never after CONNECT (what follows is
    /// tunnel data) nor when a content coding precedes `chunked` in
    /// Transfer-Encoding (as Gunicorn: such framing is closed after use).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1: an
    /// HTTP/1.0 client's 100-continue is ignored).
    pub expect_continue: bool,
}

impl Head {
    /// The method, case-sensitive as sent (RFC 9110 §9.1).
    pub fn method(&self) -> &str {
        self.ascii(self.method)
    }

    /// The request-target exactly as sent (becomes `RAW_URI`); printable
    /// ASCII only.
    pub fn target(&self) -> &str {
        self.ascii(self.target)
    }

    /// Every field line in order, including names with `_`.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = Field<'_>> + '_ {
        self.fields.iter().map(|&(name, value)| Field {
            name: self.ascii(name),
            value: &self.text[value.range()],
        })
    }

    /// A part that [`parse_head`] checked to be ASCII (a token or a
    /// request-target), as a `str`; the fallback is never taken.
    fn ascii(&self, span: Span) -> &str {
        std::str::from_utf8(&self.text[span.range()]).unwrap_or_default()
    }

    /// The form of [`Head::target`], derived from the method and target that
    /// [`parse_head`] checked against each other.
    pub fn target_form(&self) -> TargetForm {
        let t = self.target().as_bytes();
        if self.method() == "CONNECT" {
            TargetForm::Authority
        } else if t == b"*" {
            TargetForm::Asterisk
        } else if t.first() == Some(&b'/') {
            TargetForm::Origin
        } else {
            TargetForm::Absolute
        }
    }

    /// `(path, query)` of the request-target, both still percent-encoded (the
    /// WSGI layer decodes the path into `PATH_INFO`; the query is
    /// `QUERY_STRING` as is). A `#fragment` belongs to neither.
    ///
    /// - origin-form `/a/b?x=1` → `("/a/b", "x=1")`; `//a` stays `//a`.
    /// - absolute-form `http://h:80/a?x` → `("/a", "x")`; an empty path is
    ///   `"/"` (RFC 9110 §4.2.3).
    /// - asterisk-form `*` → `("*", "")`.
    /// - authority-form (CONNECT `h:443`) → `("", "")`: it names no resource.
    pub fn path_and_query(&self) -> (&str, &str) {
        let t = self.target();
        match self.target_form() {
            TargetForm::Origin => split_path_query(t),
            TargetForm::Absolute => {
                let after_scheme = match t.find("://") {
                    Some(i) => &t[i + 3..],
                    None => t,
                };
                let path_start = after_scheme
                    .bytes()
                    .position(|b| matches!(b, b'/' | b'?' | b'#'))
                    .unwrap_or(after_scheme.len());
                // No path is an empty path (PATH_INFO ''), as Gunicorn's
                // urlsplit and the other reference parsers have it; only
                // the origin-form a client makes of such a URI must say
                // "/" (RFC 9112 §3.2.1).
                split_path_query(&after_scheme[path_start..])
            }
            TargetForm::Asterisk => ("*", ""),
            TargetForm::Authority => ("", ""),
        }
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }
}

/// Splits `path[?query][#fragment]`.
fn split_path_query(s: &str) -> (&str, &str) {
    let end = s
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(s.len());
    let path = &s[..end];
    let query = match s[end..].strip_prefix('?') {
        Some(q) => &q[..q.bytes().position(|b| b == b'#').unwrap_or(q.len())],
        None => "",
    };
    (path, query)
}

/// Parses one request head from the start of `buf`.
///
/// - `Ok(None)`: the head is not complete yet; call again with more bytes.
///   Limits are still enforced on what is there: an over-long request line
///   (414), a field line over `field_size` or one field line too many (431)
///   fail at once, without waiting for the terminating CRLF.
/// - `Ok(Some((head, n)))`: `n` bytes were the head, including one optional
///   leading empty line (RFC 9112 §2.2) and the final CRLFCRLF; the body, if
///   any, starts at `buf[n]`.
/// - `Err(e)`: the request must be refused with `e.status()`; see
///   [`ParseError`] for the rules (RFC 9112 §2-§7, RFC 9110 §5, §8.6, §10.1.1).
pub fn parse_head(buf: &[u8], rules: &Rules) -> Result<Option<(Head, usize)>, ParseError> {
    let limits = &rules.limits;
    let Some(start) = skip_leading_empty_line(buf)? else {
        return Ok(None);
    };
    let Some(line_len) = find_request_line(&buf[start..], limits.request_line)? else {
        return Ok(None);
    };
    let line = parse_request_line(&buf[start..start + line_len], rules)?;
    let fields_start = start + line_len + 2;
    let scan = scan_field_lines(&buf[fields_start..], limits, rules.obsolete_folding)?;
    let Some(Scan { count, len, folded }) = scan else {
        return Ok(None);
    };
    let end = fields_start + len;
    if folded {
        let head = parse_folded(&buf[start..end], line_len, line, count, rules)?;
        return Ok(Some((head, end)));
    }
    let block = &buf[fields_start..end];
    let text = &buf[start..end];
    let (fields, framing) = parse_field_lines(text, block, count, line.version)?;
    let head = framing.into_head(text, line, fields, rules)?;
    Ok(Some((head, end)))
}

/// A head with folded field lines (`permit_obsolete_folding`): its text is
/// a copy anyway, so it is copied unfolded and parsed from the copy. Out of
/// line: the common path stays small.
#[cold]
#[inline(never)]
fn parse_folded(
    head: &[u8],
    line_len: usize,
    line: RequestLine<'_>,
    count: usize,
    rules: &Rules,
) -> Result<Head, ParseError> {
    let text = unfold(head, line_len + 2);
    // The request line is copied as it was: the same parts, in the copy.
    let old = &head[..line_len];
    let line = RequestLine {
        method: &text[Span::of(old, line.method).range()],
        target: &text[Span::of(old, line.target).range()],
        version: line.version,
    };
    let (fields, framing) = parse_field_lines(&text, &text[line_len + 2..], count, line.version)?;
    framing.into_head(&text, line, fields, rules)
}

/// `head` (request line and field lines; the block starts at `block_start`)
/// with every obs-fold — OWS, CRLF and the whitespace that starts the
/// continuation line — replaced by one SP, as Gunicorn joins the stripped
/// parts of a folded value.
fn unfold(head: &[u8], block_start: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    out.extend_from_slice(&head[..block_start]);
    let block = &head[block_start..];
    let mut i = 0;
    while i < block.len() {
        let folds = block[i] == b'\r'
            && block.get(i + 1) == Some(&b'\n')
            && matches!(block.get(i + 2), Some(b' ' | b'\t'));
        if folds {
            while matches!(out.last(), Some(b' ' | b'\t')) {
                out.pop();
            }
            out.push(b' ');
            i += 2;
            while matches!(block.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
        } else {
            out.push(block[i]);
            i += 1;
        }
    }
    out
}

/// RFC 9112 §2.2: one empty line before the request line is ignored (some
/// clients send CRLF after a POST body); a second one is refused, as Gunicorn
/// does. `None` if there are too few bytes to tell.
fn skip_leading_empty_line(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    match buf {
        [] | [b'\r'] => Ok(None),
        [b'\r', b'\n', rest @ ..] => match rest {
            [b'\r'] => Ok(None),
            [b'\r', b'\n', ..] => Err(ParseError::LeadingEmptyLines),
            [b'\r', ..] => Err(ParseError::BareCr),
            [b'\n', ..] => Err(ParseError::BareLf),
            _ => Ok(Some(2)),
        },
        [b'\r', ..] => Err(ParseError::BareCr),
        [b'\n', ..] => Err(ParseError::BareLf),
        _ => Ok(Some(0)),
    }
}

/// Length of the request line at the start of `rest` (CRLF excluded), or
/// `None` if its end has not arrived and it may still fit the limit.
fn find_request_line(rest: &[u8], limit: usize) -> Result<Option<usize>, ParseError> {
    // A line of `limit` bytes has its LF at index limit + 1: no need to look
    // further, and not finding it there already proves the line too long.
    let window = if limit == 0 {
        rest
    } else {
        &rest[..rest.len().min(limit.saturating_add(2))]
    };
    match find_byte(b'\n', window) {
        Some(i) => {
            if i == 0 || window[i - 1] != b'\r' {
                return Err(ParseError::BareLf);
            }
            Ok(Some(i - 1))
        }
        None if limit > 0 && rest.len() >= limit.saturating_add(2) => {
            Err(ParseError::RequestLineTooLong { limit })
        }
        None => Ok(None),
    }
}

/// The validated parts of a request line.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: Version,
}

/// `method SP request-target SP HTTP-version` (RFC 9112 §3), single spaces.
fn parse_request_line<'a>(line: &'a [u8], rules: &Rules) -> Result<RequestLine<'a>, ParseError> {
    let malformed = || ParseError::InvalidRequestLine(snippet(line));
    let sp1 = find_byte(b' ', line).ok_or_else(malformed)?;
    let (method, after) = (&line[..sp1], &line[sp1 + 1..]);
    let sp2 = find_byte(b' ', after).ok_or_else(malformed)?;
    let (target, version) = (&after[..sp2], &after[sp2 + 1..]);
    check_method(method, rules.unconventional_method)?;
    // The version before the target, so an HTTP/2 preface ("PRI * HTTP/2.0")
    // gets 505 rather than a complaint about its target.
    let version = parse_version(version, rules.unconventional_version)?;
    check_target(target, method)?;
    Ok(RequestLine {
        method,
        target,
        version,
    })
}

/// Gunicorn 27's default method rule: an RFC 9110 §9.1 token of 3 to 20
/// characters without lowercase letters or `#`, compared case-sensitively;
/// with `permit_unconventional_http_method`, any token.
fn check_method(method: &[u8], unconventional: bool) -> Result<(), ParseError> {
    let ok = if unconventional {
        !method.is_empty() && method.iter().all(|&b| is_tchar(b))
    } else {
        (3..=20).contains(&method.len())
            && method
                .iter()
                .all(|&b| is_tchar(b) && !b.is_ascii_lowercase() && b != b'#')
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::InvalidMethod(snippet(method)))
    }
}

/// `HTTP/` DIGIT `.` DIGIT (RFC 9112 §2.3; the name is case-sensitive).
/// With `permit_unconventional_http_version` every such version is served:
/// as HTTP/1.1 from 1.1 up (RFC 9110 §6.2: the highest minor version we
/// support), as HTTP/1.0 below.
fn parse_version(v: &[u8], unconventional: bool) -> Result<Version, ParseError> {
    let [
        b'H',
        b'T',
        b'T',
        b'P',
        b'/',
        major @ b'0'..=b'9',
        b'.',
        minor @ b'0'..=b'9',
    ] = v
    else {
        return Err(ParseError::InvalidVersion(snippet(v)));
    };
    match (major - b'0', minor - b'0') {
        (1, 1) => Ok(Version::Http11),
        (1, 0) => Ok(Version::Http10),
        (major, minor) if unconventional => Ok(if (major, minor) >= (1, 1) {
            Version::Http11
        } else {
            Version::Http10
        }),
        (major, minor) => Err(ParseError::UnsupportedVersion { major, minor }),
    }
}

/// RFC 9112 §3.2: printable ASCII only (RFC 3986 §2: the rest must be
/// percent-encoded), in a form the method allows.
fn check_target(target: &[u8], method: &[u8]) -> Result<(), ParseError> {
    let bad = |reason| ParseError::InvalidTarget {
        target: snippet(target),
        reason,
    };
    if target.is_empty() {
        return Err(bad("empty"));
    }
    // Branch-free so it vectorises: one pass, no early exit on the hot path.
    let outside = target
        .iter()
        .fold(0u8, |acc, &b| acc | u8::from(!(0x21..=0x7e).contains(&b)));
    if outside != 0 {
        return Err(bad(
            "byte outside printable ASCII (must be percent-encoded)",
        ));
    }
    if method == b"CONNECT" {
        return if is_authority_form(target) {
            Ok(())
        } else {
            Err(bad("CONNECT needs authority-form host:port"))
        };
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok(())
        } else {
            Err(bad("asterisk-form is only allowed with OPTIONS"))
        };
    }
    if target[0] == b'/' {
        return Ok(());
    }
    match find_subslice(target, b"://") {
        Some(i) if is_scheme(&target[..i]) => {
            let rest = &target[i + 3..];
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            if is_uri_authority(&rest[..end]) {
                Ok(())
            } else {
                Err(bad("invalid authority in absolute-form"))
            }
        }
        Some(_) => Err(bad("invalid scheme in absolute-form")),
        None if is_authority_form(target) => {
            Err(bad("authority-form is only allowed with CONNECT"))
        }
        None => Err(bad(
            "not origin-form (/path) nor absolute-form (scheme://authority/path)",
        )),
    }
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &[u8]) -> bool {
    match s.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphabetic()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// The authority of an absolute-form target: `[userinfo "@"] host [":" port]`
/// (RFC 3986 §3.2) with a non-empty host (RFC 9110 §4.2.1).
fn is_uri_authority(a: &[u8]) -> bool {
    let host_port = match a.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            if !a[..at]
                .iter()
                .all(|&b| is_unreserved_or_sub_delim(b) || b == b':')
            {
                return false;
            }
            &a[at + 1..]
        }
        None => a,
    };
    is_host(host_port)
}

/// RFC 9112 §3.2.3: authority-form = uri-host ":" port, no userinfo; we also
/// want a port number.
fn is_authority_form(a: &[u8]) -> bool {
    match split_host_port(a) {
        Some((host, Some(port))) => {
            !host.is_empty() && !port.is_empty() && port.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// A Host value: `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2,
/// §3.2.3: the port is `*DIGIT`, so `host:` is valid).
fn is_host(value: &[u8]) -> bool {
    match split_host_port(value) {
        Some((host, port)) => {
            !host.is_empty() && port.is_none_or(|p| p.iter().all(u8::is_ascii_digit))
        }
        None => false,
    }
}

/// Splits `host[:port]` where host is an IP-literal `[...]` or a reg-name
/// (RFC 3986 §3.2.2); `None` if the host has a byte those forbid.
fn split_host_port(hp: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (host, after) = if hp.first() == Some(&b'[') {
        let close = hp.iter().position(|&b| b == b']')?;
        let inner = &hp[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| is_unreserved_or_sub_delim(b) || b == b':')
        {
            return None;
        }
        (&hp[..=close], &hp[close + 1..])
    } else {
        let end = hp.iter().position(|&b| b == b':').unwrap_or(hp.len());
        if !hp[..end].iter().all(|&b| is_unreserved_or_sub_delim(b)) {
            return None;
        }
        (&hp[..end], &hp[end..])
    };
    match after.split_first() {
        None => Some((host, None)),
        Some((b':', port)) => Some((host, Some(port))),
        Some(_) => None,
    }
}

/// RFC 3986 unreserved / sub-delims, plus `%` of pct-encoded.
fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// What [`scan_field_lines`] found: `count` field lines (continuation
/// lines not counted) in `len` bytes including the final empty line;
/// `folded` if some field was continued (obs-fold).
struct Scan {
    count: usize,
    len: usize,
    folded: bool,
}

/// Pre-scans the field lines that follow the request line, or returns
/// `None` if the block has not ended and still fits the limits. Refuses
/// what httparse would let through or could not report on incomplete
/// input: bare LF and bare CR line endings (RFC 9112 §2.2), lines starting
/// with whitespace (obs-fold, §5.2, unless `folding`; whitespace before the
/// first field line always, §2.2), and the count and size limits (a folded
/// field's size counts all its lines, as Gunicorn counts it).
fn scan_field_lines(
    block: &[u8],
    limits: &Limits,
    folding: bool,
) -> Result<Option<Scan>, ParseError> {
    let max_fields = limits.max_fields();
    let size_limit = limits.field_size;
    let mut pos = 0;
    let mut count = 0;
    let mut folded = false;
    // Bytes of the current field's lines before this one (folding only).
    let mut field_so_far = 0;
    loop {
        let rest = &block[pos..];
        match rest {
            [] | [b'\r'] => return Ok(None),
            [b'\r', b'\n', ..] => {
                return Ok(Some(Scan {
                    count,
                    len: pos + 2,
                    folded,
                }));
            }
            [b'\r', ..] => return Err(ParseError::BareCr),
            [b'\n', ..] => return Err(ParseError::BareLf),
            [b' ' | b'\t', ..] if !folding || count == 0 => return Err(ParseError::ObsFold),
            [b' ' | b'\t', ..] => folded = true,
            _ => {
                field_so_far = 0;
                count += 1;
                if count > max_fields {
                    return Err(ParseError::TooManyFields { limit: max_fields });
                }
            }
        }
        // A line that fills what is left of `size_limit` with its CRLF has
        // its LF at the last index of that: no need to look further.
        let room = if folding {
            size_limit.saturating_sub(field_so_far)
        } else {
            size_limit
        };
        let too_large = || ParseError::FieldTooLarge { limit: size_limit };
        if folding && size_limit > 0 && room == 0 {
            return Err(too_large());
        }
        let window = if size_limit == 0 {
            rest
        } else {
            &rest[..rest.len().min(room)]
        };
        match find_byte(b'\n', window) {
            // i >= 1: rest[0] is not LF.
            Some(i) if rest[i - 1] == b'\r' => {
                pos += i + 1;
                if folding {
                    field_so_far += i + 1;
                }
            }
            Some(_) => return Err(ParseError::BareLf),
            None if size_limit > 0 && rest.len() >= room => return Err(too_large()),
            None => return Ok(None),
        }
    }
}

/// Field lines kept on the stack for httparse before spilling to the heap.
const STACK_FIELDS: usize = 32;

/// Runs httparse over the pre-scanned block of `count` field lines and
/// builds the fields, applying the framing rules as it goes.
/// Fields are returned as spans of `text`, which contains `block`.
fn parse_field_lines<'a>(
    text: &[u8],
    block: &'a [u8],
    count: usize,
    version: Version,
) -> Result<(Vec<(Span, Span)>, Framing<'a>), ParseError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_FIELDS];
    let mut heap = Vec::new();
    let slots: &mut [httparse::Header<'_>] = if count <= STACK_FIELDS {
        &mut stack[..count]
    } else {
        heap.resize(count, httparse::EMPTY_HEADER);
        &mut heap
    };
    let parsed = match httparse::parse_headers(block, slots) {
        Ok(httparse::Status::Complete((n, parsed)))
            if n == block.len() && parsed.len() == count =>
        {
            parsed
        }
        // The pre-scan found `count` well-terminated lines, so any other
        // outcome is a byte httparse refused; find it and say which.
        _ => return Err(diagnose_field_lines(block)),
    };
    let mut fields = Vec::with_capacity(count);
    let mut framing = Framing::new(version);
    for h in parsed.iter() {
        let value = trim_ows(h.value);
        framing.observe(h.name, value)?;
        fields.push((Span::of(text, h.name.as_bytes()), Span::of(text, value)));
    }
    Ok((fields, framing))
}

/// The slow path after httparse refused a block: the first fault, named.
/// The block has only CRLF-terminated lines (the pre-scan saw to that).
fn diagnose_field_lines(block: &[u8]) -> ParseError {
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = find_byte(b':', line) else {
            if line.iter().all(|&b| is_tchar(b)) {
                return ParseError::MissingColon(snippet(line));
            }
            return ParseError::InvalidFieldName(snippet(line));
        };
        let name = &line[..colon];
        let trimmed = name.trim_ascii_end();
        if !trimmed.is_empty() && trimmed.len() < name.len() && trimmed.iter().all(|&b| is_tchar(b))
        {
            return ParseError::WhitespaceBeforeColon(snippet(trimmed));
        }
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return ParseError::InvalidFieldName(snippet(name));
        }
        if !line[colon + 1..].iter().all(|&b| is_field_value_byte(b)) {
            return ParseError::InvalidFieldValue(snippet(name));
        }
    }
    // httparse refused a block in which no line breaks a rule above; name
    // its first line rather than accept it.
    let first = block.split(|&b| b == b'\r').next().unwrap_or(block);
    ParseError::InvalidFieldName(snippet(first))
}

/// What the field lines say about framing and the connection, collected in
/// one pass (RFC 9112 §6, §9.3; RFC 9110 §10.1.1).
struct Framing<'a> {
    version: Version,
    /// The last Transfer-Encoding value, to name it in an error.
    last_transfer_encoding: &'a [u8],
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    /// A content coding precedes `chunked`: Gunicorn closes afterwards.
    coded: bool,
    close: bool,
    keep_alive: bool,
    host: bool,
    content_type: bool,
    expect_continue: bool,
}

impl<'a> Framing<'a> {
    fn new(version: Version) -> Self {
        Framing {
            version,
            last_transfer_encoding: b"",
            content_length: None,
            transfer_encoding: false,
            chunked: false,
            coded: false,
            close: false,
            keep_alive: false,
            host: false,
            content_type: false,
            expect_continue: false,
        }
    }

    /// Takes one field into account; names with `_` never match, so
    /// `Content_Length` is not framing.
    fn observe(&mut self, name: &str, value: &'a [u8]) -> Result<(), ParseError> {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        match name.len() {
            4 if is("host") => {
                // RFC 9112 §3.2: more than one Host, or one whose value is
                // not uri-host [":" port], is 400. The value may be empty
                // (a target URI without an authority).
                seen_once(&mut self.host, "Host")?;
                if !value.is_empty() && !is_host(value) {
                    return Err(ParseError::InvalidHost(snippet(value)));
                }
            }
            6 if is("expect") => {
                if !value.eq_ignore_ascii_case(b"100-continue") {
                    return Err(ParseError::UnsupportedExpectation(snippet(value)));
                }
                // RFC 9110 §10.1.1: ignored from an HTTP/1.0 client.
                self.expect_continue = self.version == Version::Http11;
            }
            10 if is("connection") => {
                for token in value.split(|&b| b == b',').map(trim_ows) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    }
                }
            }
            12 if is("content-type") => {
                // RFC 9110 §5.3: a singleton; Gunicorn 27 refuses repeats.
                seen_once(&mut self.content_type, "Content-Type")?;
            }
            14 if is("content-length") => {
                // RFC 9112 §6.3 allows folding identical repeats; Gunicorn
                // refuses any repeat, and so do we: nothing sends them.
                if self.content_length.is_some() {
                    return Err(ParseError::DuplicateField("Content-Length"));
                }
                let n = parse_content_length(value)
                    .ok_or_else(|| ParseError::InvalidContentLength(snippet(value)))?;
                self.content_length = Some(n);
            }
            17 if is("transfer-encoding") => self.observe_transfer_encoding(value)?,
            _ => {}
        }
        Ok(())
    }

    /// RFC 9112 §6.1, §7: the codings, across all Transfer-Encoding lines in
    /// order, must end in exactly one `chunked`. Content codings before it are
    /// passed through undecoded (the app sees the header), as Gunicorn does;
    /// `identity` before it is a no-op; anything else is 501.
    fn observe_transfer_encoding(&mut self, value: &'a [u8]) -> Result<(), ParseError> {
        self.transfer_encoding = true;
        self.last_transfer_encoding = value;
        // RFC 9110 §5.6.1: empty list elements are ignored.
        for coding in value
            .split(|&b| b == b',')
            .map(trim_ows)
            .filter(|c| !c.is_empty())
        {
            let is = |known: &[u8]| coding.eq_ignore_ascii_case(known);
            if is(b"chunked") {
                if self.chunked {
                    return Err(ParseError::InvalidTransferEncoding(snippet(value)));
                }
                self.chunked = true;
            } else if is(b"identity") || is(b"gzip") || is(b"x-gzip") || is(b"deflate") {
                if self.chunked {
                    return Err(ParseError::InvalidTransferEncoding(snippet(value)));
                }
                self.coded |= !is(b"identity");
            } else if is(b"compress") || is(b"x-compress") {
                if self.chunked {
                    return Err(ParseError::InvalidTransferEncoding(snippet(value)));
                }
                self.coded = true;
            } else {
                return Err(ParseError::UnsupportedTransferCoding(snippet(coding)));
            }
        }
        Ok(())
    }

    fn into_head(
        self,
        text: &[u8],
        line: RequestLine<'_>,
        fields: Vec<(Span, Span)>,
        rules: &Rules,
    ) -> Result<Head, ParseError> {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is 400 (Gunicorn
        // serves it; the MUST wins).
        if self.version == Version::Http11 && !self.host {
            return Err(ParseError::MissingHost);
        }
        let body = if self.transfer_encoding {
            // RFC 9112 §6.3: without a final chunked the length of a request
            // cannot be known: 400, whatever Content-Length says.
            if !self.chunked {
                return Err(ParseError::InvalidTransferEncoding(snippet(
                    self.last_transfer_encoding,
                )));
            }
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
            if self.version == Version::Http10 {
                return Err(ParseError::TransferEncodingHttp10);
            }
            // RFC 9112 §6.3: both is a smuggling attempt until proven
            // otherwise; refuse rather than let Transfer-Encoding win.
            if self.content_length.is_some() {
                return Err(ParseError::ContentLengthWithTransferEncoding);
            }
            BodyKind::Chunked
        } else {
            match self.content_length {
                None | Some(0) => BodyKind::Empty,
                Some(n) if rules.limits.body > 0 && n > rules.limits.body => {
                    return Err(ParseError::BodyTooLarge {
                        limit: rules.limits.body,
                    });
                }
                Some(n) => BodyKind::Length(n),
            }
        };
        let persistent = match self.version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive && !self.close,
        };
        let keep_alive = persistent && !self.coded && line.method != b"CONNECT";
        let (method, target) = (Span::of(text, line.method), Span::of(text, line.target));
        let mut text: Box<[u8]> = text.into();
        if rules.casefold_method {
            text[method.range()].make_ascii_uppercase();
        }
        Ok(Head {
            method,
            target,
            text,
            fields,
            version: line.version,
            body,
            keep_alive,
            expect_continue: self.expect_continue,
        })
    }
}

/// Marks a singleton field as seen; its second occurrence is an error.
fn seen_once(seen: &mut bool, name: &'static str) -> Result<(), ParseError> {
    if std::mem::replace(seen, true) {
        Err(ParseError::DuplicateField(name))
    } else {
        Ok(())
    }
}

/// 1*DIGIT that fits in a u64 (RFC 9110 §8.6); no sign, list, or space.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Strips leading and trailing OWS (SP / HTAB), RFC 9110 §5.6.3.
pub(super) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// RFC 9110 §5.6.2 tchar.
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let specials = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] = true;
        i += 1;
    }
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            t[c] = true;
        }
        c += 1;
    }
    t
};

/// A byte allowed in a field value: HTAB, SP, VCHAR or obs-text (RFC 9110
/// §5.5); CR, LF, NUL, DEL and the other controls are not.
pub(super) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Index of the first `needle` in `hay`, eight bytes at a time (SWAR): the
/// scan for line ends runs over every byte of every head.
pub(super) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // Sets the high bit of each zero byte of x; a borrow can only mark
        // bytes above a real zero, so the lowest mark is always exact.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, ParseError> {
        parse_head(buf, &Rules::default())
    }

    fn head(buf: &[u8]) -> Head {
        let (h, n) = parse(buf).unwrap().unwrap();
        assert_eq!(n, buf.len());
        h
    }

    fn err(buf: &[u8]) -> ParseError {
        match parse(buf) {
            Err(e) => e,
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                buf.escape_ascii().to_string()
            ),
        }
    }

    #[test]
    fn find_byte_matches_naive_search() {
        let hay: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        for needle in [0u8, 1, 10, 13, 37, 200, 255] {
            for start in 0..20 {
                let s = &hay[start..];
                assert_eq!(find_byte(needle, s), s.iter().position(|&b| b == needle));
            }
        }
        assert_eq!(
            find_byte(b'\n', b"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\n"),
            Some(8)
        );
        assert_eq!(find_byte(b'\n', b""), None);
    }

    #[test]
    fn simple_get() {
        let h = head(b"GET /a/b?x=1#frag HTTP/1.1\r\nHost: example.com\r\nX-Y:  z \t\r\n\r\n");
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/a/b?x=1#frag");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.fields().len(), 2);
        assert_eq!(
            h.fields().nth(1),
            Some(Field {
                name: "X-Y",
                value: b"z"
            })
        );
        assert_eq!(h.field("host"), Some(&b"example.com"[..]));
        assert_eq!(h.field("x-missing"), None);
        assert_eq!(h.body, BodyKind::Empty);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(h.path_and_query(), ("/a/b", "x=1"));
    }

    #[test]
    fn body_follows_the_head() {
        let buf = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
        let (h, n) = parse(buf).unwrap().unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(&buf[n..], b"helloGET");
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let buf = b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for end in 0..buf.len() {
            assert_eq!(parse(&buf[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(parse(buf).unwrap().is_some());
    }

    #[test]
    fn limit_request_body_refuses_a_larger_content_length_with_the_head() {
        let rules: Rules = Limits {
            body: 10,
            ..Limits::default()
        }
        .into();
        let req = |n: u64| format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {n}\r\n\r\n");
        let (h, _) = parse_head(req(10).as_bytes(), &rules).unwrap().unwrap();
        assert_eq!(h.body, BodyKind::Length(10));
        let e = parse_head(req(11).as_bytes(), &rules).unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (ParseError::BodyTooLarge { limit: 10 }, 413)
        );
        // 0, the default, is unlimited.
        assert!(parse(req(u64::MAX).as_bytes()).unwrap().is_some());
    }

    #[test]
    fn host_is_required_once_and_valid_on_http11() {
        // RFC 9112 §3.2: missing on HTTP/1.1, repeated, or invalid is 400.
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), ParseError::MissingHost);
        assert_eq!(ParseError::MissingHost.status(), 400);
        assert_eq!(
            err(b"GET http://h/ HTTP/1.1\r\n\r\n"),
            ParseError::MissingHost
        );
        assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").fields().len(), 0);
        for good in [
            &b""[..],
            b"h",
            b"h:",
            b"h:8000",
            b"[::1]:80",
            b"xn--caf-dma.example",
            b"1.2.3.4",
        ] {
            let mut req = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            req.extend_from_slice(good);
            req.extend_from_slice(b"\r\n\r\n");
            assert!(parse(&req).unwrap().is_some(), "{}", good.escape_ascii());
        }
        for bad in [
            &b"a b"[..],
            b"h:x",
            b"[::1",
            b"u@h",
            b"h/p",
            b":80",
            b"h:80:80",
        ] {
            let mut req = b"GET / HTTP/1.0\r\nHost: ".to_vec();
            req.extend_from_slice(bad);
            req.extend_from_slice(b"\r\n\r\n");
            assert!(
                matches!(err(&req), ParseError::InvalidHost(_)),
                "{}",
                bad.escape_ascii()
            );
        }
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            ParseError::DuplicateField("Host")
        );
    }

    #[test]
    fn one_leading_empty_line_is_skipped_not_two() {
        assert_eq!(
            head(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").method(),
            "GET"
        );
        assert_eq!(
            err(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::LeadingEmptyLines
        );
        assert_eq!(parse(b"\r\n\r"), Ok(None));
        assert_eq!(err(b"\r\n\rX"), ParseError::BareCr);
        assert_eq!(
            err(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::BareLf
        );
    }

    #[test]
    fn bare_lf_and_bare_cr_are_refused() {
        assert_eq!(err(b"GET / HTTP/1.1\n\r\n"), ParseError::BareLf);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n"),
            ParseError::BareLf
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), ParseError::BareLf);
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\n\rX"), ParseError::BareCr);
        // A bare LF fails at once, without waiting for the end of the head.
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\nB: 2"),
            ParseError::BareLf
        );
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"),
            ParseError::InvalidFieldValue(_)
        ));
    }

    #[test]
    fn request_line_limit_is_414_and_fails_early() {
        let limits = Limits {
            request_line: 20,
            ..Limits::default()
        };
        // "GET /" + k bytes + " HTTP/1.1" is a line of 14 + k bytes.
        let req =
            |k: usize| format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(k)).into_bytes();
        assert!(
            parse_head(&req(6), &limits.into()).unwrap().is_some(),
            "20 bytes: at the limit"
        );
        let e = parse_head(&req(7), &limits.into()).unwrap_err();
        assert_eq!(e, ParseError::RequestLineTooLong { limit: 20 });
        assert_eq!(e.status(), 414);
        // No LF yet: 21 bytes may still be a 20-byte line and its CR; 22
        // bytes without LF already prove the line too long.
        let incomplete = [b'A'; 22];
        assert_eq!(parse_head(&incomplete[..21], &limits.into()), Ok(None));
        assert_eq!(
            parse_head(&incomplete, &limits.into()),
            Err(ParseError::RequestLineTooLong { limit: 20 })
        );
        // 0 = unlimited.
        let unlimited = Limits {
            request_line: 0,
            ..Limits::default()
        };
        let mut long = req(100_000);
        assert!(parse_head(&long, &unlimited.into()).unwrap().is_some());
        long.truncate(50_000);
        assert_eq!(parse_head(&long, &unlimited.into()), Ok(None));
        // The default limit is Gunicorn's 4094.
        assert!(parse(&req(4094 - 14)).unwrap().is_some());
        assert_eq!(parse(&req(4095 - 14)).unwrap_err().status(), 414);
        assert_eq!(parse(&req(4095 - 14)[..4096]).unwrap_err().status(), 414);
    }

    #[test]
    fn field_count_limit_is_431_and_fails_early() {
        let limits = Limits {
            fields: 3,
            ..Limits::default()
        };
        assert!(
            parse_head(
                b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n",
                &limits.into()
            )
            .unwrap()
            .is_some()
        );
        let e = parse_head(
            b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC",
            &limits.into(),
        )
        .unwrap_err();
        assert_eq!(e, ParseError::TooManyFields { limit: 3 });
        assert_eq!(e.status(), 431);
        // Host and 99 more: the default limit of 100.
        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..99 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        assert!(
            parse(&[many.as_slice(), b"\r\n"].concat())
                .unwrap()
                .is_some()
        );
        many.extend_from_slice(b"X");
        assert_eq!(parse(&many), Err(ParseError::TooManyFields { limit: 100 }));
        // More than the stack slots for httparse.
        let limits = Limits {
            fields: 0,
            ..Limits::default()
        };
        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..200 {
            many.extend_from_slice(format!("H{i}: v{i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (h, _) = parse_head(&many, &limits.into()).unwrap().unwrap();
        assert_eq!(h.fields().len(), 201);
        assert_eq!(h.fields().nth(200).unwrap().value, b"v199");
    }

    #[test]
    fn field_size_limit_is_431_and_fails_early() {
        let limits = Limits {
            field_size: 10,
            ..Limits::default()
        };
        // "A: 12345\r\n" is 10 bytes with its CRLF: at the limit.
        assert!(
            parse_head(
                b"GET / HTTP/1.1\r\nHost: h\r\nA: 12345\r\n\r\n",
                &limits.into()
            )
            .unwrap()
            .is_some()
        );
        assert_eq!(
            parse_head(
                b"GET / HTTP/1.1\r\nHost: h\r\nA: 123456\r\n\r\n",
                &limits.into()
            ),
            Err(ParseError::FieldTooLarge { limit: 10 })
        );
        // Incomplete: 10 bytes without LF cannot be a line of 10 with CRLF.
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nA: 12345\r", &limits.into()),
            Ok(None)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nA: 123456\r", &limits.into()),
            Err(ParseError::FieldTooLarge { limit: 10 })
        );
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'y', 9000));
        assert_eq!(parse(&big).unwrap_err().status(), 431);
        let unlimited = Limits {
            field_size: 0,
            ..Limits::default()
        };
        assert_eq!(parse_head(&big, &unlimited.into()), Ok(None));
    }

    #[test]
    fn methods_follow_gunicorn_defaults() {
        for m in [
            "GET",
            "PROPFIND",
            "-BLARGH",
            "M-SEARCH",
            "ABCDEFGHIJKLMNOPQRST",
        ] {
            let buf = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(head(buf.as_bytes()).method(), m);
        }
        for m in [
            "get",
            "GE",
            "bla:rgh",
            "-bl",
            "G#T",
            "GET\0",
            "ABCDEFGHIJKLMNOPQRSTU",
            "GÉT",
        ] {
            let buf = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert!(
                matches!(err(buf.as_bytes()), ParseError::InvalidMethod(_)),
                "{m}"
            );
        }
        assert!(matches!(
            err(b"GET HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidRequestLine(_)
        ));
        assert_eq!(err(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n").status(), 400);
        assert!(matches!(
            err(b"GET  HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidTarget { .. }
        ));
    }

    #[test]
    fn versions() {
        assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
        assert_eq!(Version::Http10.as_str(), "HTTP/1.0");
        assert_eq!(Version::Http11.as_str(), "HTTP/1.1");
        for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2"] {
            let e = err(format!("GET / {v}\r\n\r\n").as_bytes());
            assert_eq!(e.status(), 505, "{v}");
        }
        for v in [
            "FTP/1.1",
            "HTTP/111",
            "HTTP/0.99",
            "http/1.1",
            "HTTP/1.1 ",
            "HTTP/1",
        ] {
            let e = err(format!("GET / {v}\r\n\r\n").as_bytes());
            assert!(matches!(e, ParseError::InvalidVersion(_)), "{v}: {e:?}");
        }
        assert_eq!(err(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").status(), 505);
    }

    #[test]
    fn target_forms() {
        let h = head(b"GET http://user:pw@example.com:8080/foo?q=1#f HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.target_form(), TargetForm::Absolute);
        assert_eq!(h.path_and_query(), ("/foo", "q=1"));
        assert_eq!(
            head(b"GET http://[::1]:8080 HTTP/1.1\r\nHost: h\r\n\r\n").path_and_query(),
            ("", "")
        );
        assert_eq!(
            head(b"GET https://h?x HTTP/1.1\r\nHost: h\r\n\r\n").path_and_query(),
            ("", "x")
        );
        let h = head(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (h.target_form(), h.path_and_query()),
            (TargetForm::Asterisk, ("*", ""))
        );
        let h = head(b"CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (h.target_form(), h.path_and_query()),
            (TargetForm::Authority, ("", ""))
        );
        assert!(!h.keep_alive, "after CONNECT the connection is a tunnel");
        assert_eq!(
            head(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: h\r\n\r\n").target(),
            "[::1]:443"
        );
        assert_eq!(
            head(b"GET ///x//y?a?b#c?d HTTP/1.1\r\nHost: h\r\n\r\n").path_and_query(),
            ("///x//y", "a?b")
        );
        assert_eq!(
            head(b"GET /p#f?x HTTP/1.1\r\nHost: h\r\n\r\n").path_and_query(),
            ("/p", "")
        );
        assert_eq!(
            head(b"GET /with_\"quotes\" HTTP/1.1\r\nHost: h\r\n\r\n").target(),
            "/with_\"quotes\""
        );

        for bad in [
            &b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET foo/bar HTTP/1.1\r\nHost: h\r\n\r\n",
            b"PUT s://]ufd/: HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http:///nohost HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h:8x/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\xe9 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT u@example.com:1 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"OPTIONS ** HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let e = err(bad);
            assert!(
                matches!(e, ParseError::InvalidTarget { .. }),
                "{}: {e:?}",
                bad.escape_ascii()
            );
        }
    }

    #[test]
    fn field_syntax() {
        let h = head(
            b"GET / HTTP/1.1\r\nX.Custom|Pipe: ok\r\nV: caf\xc3\xa9\r\nE:\r\nT:\tabc\t\r\nHost: h\r\n\r\n",
        );
        assert_eq!(h.fields().next().unwrap().name, "X.Custom|Pipe");
        assert_eq!(h.fields().nth(1).unwrap().value, b"caf\xc3\xa9");
        assert_eq!(h.fields().nth(2).unwrap().value, b"");
        assert_eq!(h.fields().nth(3).unwrap().value, b"abc");
        let h = head(
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: x\r\nContent_Length: -1\r\n\r\n",
        );
        assert_eq!(
            h.fields().len(),
            3,
            "names with _ are returned, not framing"
        );
        assert_eq!(h.body, BodyKind::Empty);

        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\n"),
            ParseError::WhitespaceBeforeColon("Content-Length".into())
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nLong: one\r\n two\r\n\r\n"),
            ParseError::ObsFold
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\n Lead: x\r\n\r\n"),
            ParseError::ObsFold
        );
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nba\0z: bar\r\n\r\n"),
            ParseError::InvalidFieldName(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nN\xc3\x9f: 3\r\n\r\n"),
            ParseError::InvalidFieldName(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n"),
            ParseError::InvalidFieldName(_)
        ));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"),
            ParseError::MissingColon(_)
        ));
        for ctl in [0u8, 7, 8, 0x0b, 0x0c, 0x1f, 0x7f] {
            let buf = [
                &b"GET / HTTP/1.1\r\nHost: h\r\nX-Value: a"[..],
                &[ctl],
                b"b\r\n\r\n",
            ]
            .concat();
            assert_eq!(
                err(&buf),
                ParseError::InvalidFieldValue("X-Value".into()),
                "ctl {ctl:#x}"
            );
        }
    }

    #[test]
    fn singleton_fields() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            ParseError::DuplicateField("Host")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Type: a\r\nContent-Type: a\r\n\r\n"),
            ParseError::DuplicateField("Content-Type")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            ParseError::DuplicateField("Content-Length")
        );
    }

    #[test]
    fn content_length_forms() {
        let h = head(b"POST / HTTP/1.1\r\nHost: h\r\nconTENT-Length: 0005\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").body,
            BodyKind::Empty
        );
        let max = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert_eq!(head(max).body, BodyKind::Length(u64::MAX));
        for v in [
            "-1",
            "+1",
            "-0",
            "0_1",
            "1,2",
            "5, 5",
            "0 1",
            "bla",
            "",
            "0x1",
            "18446744073709551616",
        ] {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\n");
            assert!(
                matches!(err(buf.as_bytes()), ParseError::InvalidContentLength(_)),
                "{v:?}"
            );
        }
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,2\r\n\r\n").to_string(),
            "invalid Content-Length value \"1,2\""
        );
    }

    #[test]
    fn transfer_encoding_forms() {
        let chunked = |te: &str| {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n\r\n");
            parse(buf.as_bytes()).map(|r| r.map(|(h, _)| (h.body, h.keep_alive)))
        };
        assert_eq!(chunked("chunked"), Ok(Some((BodyKind::Chunked, true))));
        assert_eq!(chunked("CHUNKED"), Ok(Some((BodyKind::Chunked, true))));
        assert_eq!(
            chunked("identity, chunked"),
            Ok(Some((BodyKind::Chunked, true)))
        );
        assert_eq!(
            chunked("gzip, chunked"),
            Ok(Some((BodyKind::Chunked, false)))
        );
        assert_eq!(chunked(" , chunked,"), Ok(Some((BodyKind::Chunked, true))));
        for bad in [
            "chunked, chunked",
            "chunked, identity",
            "chunked, gzip",
            "gzip",
            "identity",
            "",
        ] {
            let e = chunked(bad).unwrap_err();
            assert!(
                matches!(e, ParseError::InvalidTransferEncoding(_)),
                "{bad:?}: {e:?}"
            );
            assert_eq!(e.status(), 400);
        }
        for unknown in ["br", "chunked;x=1", "foo, chunked"] {
            let e = chunked(unknown).unwrap_err();
            assert!(
                matches!(e, ParseError::UnsupportedTransferCoding(_)),
                "{unknown:?}"
            );
            assert_eq!(e.status(), 501);
        }
        // Across field lines, in order.
        let h = head(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(matches!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"),
            ParseError::InvalidTransferEncoding(_)
        ));
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        for buf in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: \tchunked\r\n\r\n",
        ] {
            assert_eq!(err(buf), ParseError::ContentLengthWithTransferEncoding);
        }
        // identity alone does not end in chunked: 400 either way.
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn chunked_on_http10_is_refused() {
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::TransferEncodingHttp10
        );
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |req: &str| head(req.as_bytes()).keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: foo,keep-alive\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\nConnection: keep-alive-not\r\n\r\n"));
    }

    #[test]
    fn expect_rules() {
        assert!(head(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n").expect_continue);
        assert!(!head(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        let e = err(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n");
        assert_eq!(e, ParseError::UnsupportedExpectation("200-ok".into()));
        assert_eq!(e.status(), 417);
        assert_eq!(
            err(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n").status(),
            417
        );
    }

    #[test]
    fn error_messages_quote_client_bytes_safely() {
        let e = err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: \xff\"x\r\n\r\n");
        assert_eq!(e.to_string(), "invalid Content-Length value \"\\xff\\\"x\"");
    }

    /// Deterministic xorshift, so the mutation test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// On mutated requests: no panic, and failing early is never premature:
    /// a prefix is refused only if the whole input is refused the same way,
    /// and a head that parses has only incomplete prefixes.
    #[test]
    fn mutated_heads_fail_early_only_when_the_whole_fails() {
        let seeds: &[&[u8]] = &[
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"\r\nPOST http://h:1/p HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nA_B: \t v \r\n\r\n",
        ];
        let bytes = b"\r\n \t:,;\x00\x7f\x80/aZ0*";
        let limits = Limits {
            request_line: 40,
            fields: 3,
            field_size: 30,
            body: 0,
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let mut buf = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(buf.len() + 1);
                let b = bytes[rng.below(bytes.len())];
                match rng.below(3) {
                    0 => buf.insert(at, b),
                    1 if at < buf.len() => buf[at] = b,
                    _ if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => {}
                }
            }
            let whole = parse_head(&buf, &limits.into());
            for cut in 0..buf.len() {
                match (parse_head(&buf[..cut], &limits.into()), &whole) {
                    (Err(e), Err(w)) => assert_eq!(&e, w, "{}", buf.escape_ascii()),
                    (Err(e), _) => panic!("premature {e:?} at {cut} for {}", buf.escape_ascii()),
                    (Ok(Some((_, n))), Ok(Some((_, m)))) => assert_eq!(n, *m),
                    (Ok(Some(_)), _) => panic!("prefix parsed, whole did not"),
                    (Ok(None), Ok(Some((_, n)))) => assert!(cut < *n),
                    (Ok(None), _) => {}
                }
            }
        }
    }
}
