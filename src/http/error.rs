//! Parse errors of the HTTP/1.1 request parser, and the one place where they
//! become HTTP statuses and canned responses.
//!
//! Invariants: every fault the head parser or a body decoder can detect is
//! one [`ParseError`] variant; [`ParseError::status`] is the only mapping from
//! fault to status code (DESIGN §3), so callers never branch on an error's
//! text; and no `Display` message carries raw client bytes: anything the
//! client sent is truncated to [`SNIPPET_MAX`] bytes and ASCII-escaped, so a
//! message is safe to log and to echo in [`error_response`].

use std::fmt::Write as _;

/// Most bytes of client input that an error message quotes; the rest is cut
/// and marked with `...`, so a 8 KiB header cannot bloat logs or responses.
pub const SNIPPET_MAX: usize = 64;

/// A request the server must refuse, with what was wrong with it.
///
/// Produced by [`parse_head`](super::head::parse_head) and by the body
/// decoders in [`body`](super::body). After any of these errors the framing
/// of the connection can no longer be trusted: the caller answers with
/// [`error_response`] (which says `Connection: close`) and closes the
/// connection, so no request can be smuggled behind a malformed one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    // ---- request line (RFC 9112 §2.2, §3) ----
    /// More than one empty line (CRLF) before the request line; RFC 9112
    /// §2.2 lets a server ignore "at least one", Gunicorn ignores exactly one.
    #[error("more than one empty line before the request line")]
    LeadingEmptyLines,
    /// A line of the head, a chunk-size line or a trailer line ends in LF
    /// without CR (RFC 9112 §2.2: we do not accept bare LF).
    #[error("bare LF line ending (lines must end with CRLF)")]
    BareLf,
    /// A CR that is not followed by LF (RFC 9112 §2.2).
    #[error("bare CR not followed by LF")]
    BareCr,
    /// The request line (without its CRLF) is longer than
    /// `limit_request_line` bytes.
    #[error("request line longer than {limit} bytes")]
    RequestLineTooLong {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// The request line is not `method SP request-target SP HTTP-version`
    /// (RFC 9112 §3).
    #[error("malformed request line \"{0}\"")]
    InvalidRequestLine(String),
    /// The method is not a token (RFC 9110 §9.1), or breaks Gunicorn's
    /// default restriction: 3 to 20 characters, no lowercase letter, no `#`.
    #[error("invalid request method \"{0}\"")]
    InvalidMethod(String),
    /// The request-target has a byte outside printable ASCII, or a form the
    /// method does not allow (RFC 9112 §3.2).
    #[error("invalid request-target \"{target}\": {reason}")]
    InvalidTarget {
        /// The target as sent (escaped, truncated).
        target: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The HTTP-version is not `HTTP/` DIGIT `.` DIGIT (RFC 9112 §2.3).
    #[error("invalid HTTP version \"{0}\"")]
    InvalidVersion(String),
    /// A well-formed HTTP-version other than 1.0 and 1.1 (RFC 9110 §15.6.6).
    #[error("HTTP/{major}.{minor} is not supported (only HTTP/1.0 and HTTP/1.1)")]
    UnsupportedVersion {
        /// Major version digit.
        major: u8,
        /// Minor version digit.
        minor: u8,
    },

    // ---- field lines (RFC 9112 §5, RFC 9110 §5) ----
    /// More field lines than `limit_request_fields`.
    #[error("more than {limit} header fields")]
    TooManyFields {
        /// The limit in force, in field lines.
        limit: usize,
    },
    /// A field line (with its CRLF) longer than `limit_request_field_size`.
    #[error("header field line longer than {limit} bytes")]
    FieldTooLarge {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// A field name that is empty or not a token (RFC 9110 §5.1).
    #[error("invalid header field name \"{0}\"")]
    InvalidFieldName(String),
    /// Whitespace between a field name and its colon (RFC 9112 §5.1: MUST
    /// be rejected with 400).
    #[error("whitespace between header field name \"{0}\" and the colon")]
    WhitespaceBeforeColon(String),
    /// A field line without a colon.
    #[error("header field line without a colon \"{0}\"")]
    MissingColon(String),
    /// A field line that starts with whitespace: obs-fold (RFC 9112 §5.2),
    /// or whitespace before the first field line (RFC 9112 §2.2).
    #[error("header field line starts with whitespace (obsolete line folding)")]
    ObsFold,
    /// A field value with a control character other than HTAB (CR, LF, NUL,
    /// DEL, ...), RFC 9110 §5.5.
    #[error("invalid character in the value of header field \"{0}\"")]
    InvalidFieldValue(String),
    /// A second occurrence of a field that must appear at most once
    /// (`Content-Length`, `Host`, `Content-Type`; RFC 9110 §5.3, RFC 9112
    /// §3.2 and §6.3).
    #[error("more than one {0} header field")]
    DuplicateField(&'static str),
    /// An HTTP/1.1 request without a Host field (RFC 9112 §3.2: "A server
    /// MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
    /// request message that lacks a Host header field").
    #[error("HTTP/1.1 request without a Host header field")]
    MissingHost,
    /// A Host value that is not `uri-host [":" port]` (RFC 9112 §3.2, RFC
    /// 3986 §3.2.2–§3.2.3).
    #[error("invalid Host value \"{0}\"")]
    InvalidHost(String),
    /// A `Content-Length` that is not 1*DIGIT fitting in 64 bits (RFC 9110
    /// §8.6; lists such as `1,2` and signs are refused).
    #[error("invalid Content-Length value \"{0}\"")]
    InvalidContentLength(String),
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3: a
    /// smuggling vector, refused rather than letting TE win).
    #[error("both Content-Length and Transfer-Encoding are present")]
    ContentLengthWithTransferEncoding,
    /// A `Transfer-Encoding` whose final coding is not `chunked`, or that
    /// applies `chunked` twice or puts a coding after it (RFC 9112 §6.3, §7).
    #[error("invalid Transfer-Encoding \"{0}\": chunked must be the final coding, applied once")]
    InvalidTransferEncoding(String),
    /// `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 §6.1: framing
    /// must be treated as faulty).
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingHttp10,
    /// A transfer coding we do not implement (RFC 9112 §6.1: 501).
    #[error("unsupported transfer coding \"{0}\"")]
    UnsupportedTransferCoding(String),
    /// An `Expect` value other than `100-continue` (RFC 9110 §10.1.1: 417).
    #[error("unsupported expectation \"{0}\" (only 100-continue is)")]
    UnsupportedExpectation(String),

    // ---- forwarding (Gunicorn's proxy settings; see `forwarded`) ----
    /// Two `secure_scheme_headers` fields from a trusted proxy disagree
    /// about the scheme (Gunicorn's `InvalidSchemeHeaders`).
    #[error("contradictory scheme header fields (at \"{0}\")")]
    ContradictingSchemeFields(String),
    /// A field name with `_` under `header_map = refuse`.
    #[error("header field name with an underscore \"{0}\" (header_map = refuse)")]
    UnderscoreInFieldName(String),
    /// The request path does not start with the mount point a trusted
    /// proxy or the environment gave (Gunicorn's `ConfigurationProblem`:
    /// 500, the deployment is wrong, not the client).
    #[error("request path \"{path}\" does not start with SCRIPT_NAME \"{script_name}\"")]
    PathOutsideScriptName {
        /// The request path (escaped, truncated).
        path: String,
        /// The mount point.
        script_name: String,
    },
    /// A malformed PROXY protocol header (Gunicorn's `InvalidProxyLine`).
    #[error("invalid PROXY protocol header: {0}")]
    InvalidProxyHeader(String),
    /// A PROXY protocol header from a peer not in `proxy_allow_ips`
    /// (Gunicorn's `ForbiddenProxyRequest`: 403).
    #[error("PROXY protocol header from a peer not in proxy_allow_ips")]
    ForbiddenProxyPeer,

    // ---- chunked body (RFC 9112 §7.1) ----
    /// A chunk-size line whose size is missing or has a non-hex byte, or has
    /// whitespace that is not followed by an extension.
    #[error("invalid byte '{}' in chunk size line", .0.escape_ascii())]
    InvalidChunkSize(u8),
    /// A chunk size that does not fit in 64 bits.
    #[error("chunk size does not fit in 64 bits")]
    ChunkSizeOverflow,
    /// A chunk extension that breaks `*( BWS ";" BWS name [ BWS "=" BWS
    /// ( token / quoted-string ) ] )` (RFC 9112 §7.1.1).
    #[error("invalid byte '{}' in chunk extension", .0.escape_ascii())]
    InvalidChunkExtension(u8),
    /// A chunk-size line (size and extensions) longer than the limit.
    #[error("chunk size line longer than {limit} bytes")]
    ChunkLineTooLong {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// Chunk data not followed by CRLF (RFC 9112 §7.1).
    #[error("chunk data not followed by CRLF")]
    ChunkMissingCrlf,
    /// A malformed trailer field line (RFC 9112 §7.1.2, field syntax of
    /// RFC 9110 §5).
    #[error("invalid byte '{}' in trailer section", .0.escape_ascii())]
    InvalidTrailer(u8),
    /// A field that must not be sent as a trailer (RFC 9110 §6.5.1: framing,
    /// routing, authentication, ...).
    #[error("field \"{0}\" is not allowed in a trailer section")]
    ForbiddenTrailer(String),
    /// More trailer field lines than `limit_request_fields`.
    #[error("more than {limit} trailer fields")]
    TooManyTrailerFields {
        /// The limit in force, in field lines.
        limit: usize,
    },
    /// A trailer field line (with its CRLF) longer than
    /// `limit_request_field_size`.
    #[error("trailer field line longer than {limit} bytes")]
    TrailerFieldTooLarge {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// The peer closed the connection before the body was complete
    /// (reported by the decoders' `finish`).
    #[error("connection closed before the request body was complete")]
    IncompleteBody,
    /// The body is longer than `limit_request_body`: its Content-Length
    /// (refused with the head), or its chunks (at the chunk-size line that
    /// passes the limit). RFC 9110 §15.5.14: 413.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in force, in bytes.
        limit: u64,
    },
}

impl ParseError {
    /// The HTTP status this fault is answered with: 414 for an over-long
    /// request line, 431 for too many or too large fields, 413 for a body over
    /// the limit, 417 for an unmet expectation, 501 for an unknown transfer
    /// coding, 505 for an unsupported version, 400 for anything else
    /// malformed. The one place errors become statuses (DESIGN §3).
    pub fn status(&self) -> u16 {
        use ParseError::*;
        match self {
            RequestLineTooLong { .. } => 414,
            TooManyFields { .. }
            | FieldTooLarge { .. }
            | TooManyTrailerFields { .. }
            | TrailerFieldTooLarge { .. } => 431,
            BodyTooLarge { .. } => 413,
            UnsupportedExpectation(_) => 417,
            UnsupportedTransferCoding(_) => 501,
            UnsupportedVersion { .. } => 505,
            PathOutsideScriptName { .. } => 500,
            ForbiddenProxyPeer => 403,
            ContradictingSchemeFields(_)
            | UnderscoreInFieldName(_)
            | InvalidProxyHeader(_)
            | LeadingEmptyLines
            | BareLf
            | BareCr
            | InvalidRequestLine(_)
            | InvalidMethod(_)
            | InvalidTarget { .. }
            | InvalidVersion(_)
            | InvalidFieldName(_)
            | WhitespaceBeforeColon(_)
            | MissingColon(_)
            | ObsFold
            | InvalidFieldValue(_)
            | DuplicateField(_)
            | MissingHost
            | InvalidHost(_)
            | InvalidContentLength(_)
            | ContentLengthWithTransferEncoding
            | InvalidTransferEncoding(_)
            | TransferEncodingHttp10
            | InvalidChunkSize(_)
            | ChunkSizeOverflow
            | InvalidChunkExtension(_)
            | ChunkLineTooLong { .. }
            | ChunkMissingCrlf
            | InvalidTrailer(_)
            | ForbiddenTrailer(_)
            | IncompleteBody => 400,
        }
    }
}

/// The reason phrase of a status that [`ParseError::status`] can return
/// (RFC 9110 §15; RFC 6585 §5 for 431); `"Error"` for any other status.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        500 => "Internal Server Error",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// The full bytes of the canned response to `err`:
///
/// ```text
/// HTTP/1.1 {status} {reason}\r\n
/// Content-Type: text/plain; charset=utf-8\r\n
/// Content-Length: {n}\r\n
/// Connection: close\r\n
/// \r\n
/// {reason}: {err}\n
/// ```
///
/// The body names the fault with its `Display` text, which quotes client
/// bytes only escaped and truncated. `Connection: close` because the framing
/// of the rest of the connection is not to be trusted (DESIGN §3).
pub fn error_response(err: &ParseError) -> Vec<u8> {
    let status = err.status();
    let reason = reason_phrase(status);
    super::response::plain_response(status, reason, &format!("{reason}: {err}\n"))
}

/// Client bytes made safe to quote in an error message: at most
/// [`SNIPPET_MAX`] bytes, ASCII-escaped (`\r`, `\x00`, `\"`, ...), with `...`
/// when cut.
pub(super) fn snippet(bytes: &[u8]) -> String {
    let cut = bytes.len() > SNIPPET_MAX;
    let shown = &bytes[..bytes.len().min(SNIPPET_MAX)];
    let mut s = String::with_capacity(shown.len() + 3);
    // Writing to a String cannot fail.
    let _ = write!(s, "{}", shown.escape_ascii());
    if cut {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_covers_each_class() {
        assert_eq!(ParseError::RequestLineTooLong { limit: 4094 }.status(), 414);
        assert_eq!(ParseError::TooManyFields { limit: 100 }.status(), 431);
        assert_eq!(ParseError::FieldTooLarge { limit: 8190 }.status(), 431);
        assert_eq!(ParseError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(ParseError::UnsupportedExpectation("x".into()).status(), 417);
        assert_eq!(
            ParseError::UnsupportedTransferCoding("br".into()).status(),
            501
        );
        assert_eq!(
            ParseError::UnsupportedVersion { major: 2, minor: 0 }.status(),
            505
        );
        assert_eq!(ParseError::InvalidContentLength("1,2".into()).status(), 400);
        assert_eq!(ParseError::IncompleteBody.status(), 400);
    }

    #[test]
    fn messages_name_the_fault() {
        assert_eq!(
            ParseError::InvalidContentLength(snippet(b"1,2")).to_string(),
            "invalid Content-Length value \"1,2\""
        );
        assert_eq!(
            ParseError::RequestLineTooLong { limit: 4094 }.to_string(),
            "request line longer than 4094 bytes"
        );
        assert_eq!(
            ParseError::InvalidChunkSize(b'\r').to_string(),
            "invalid byte '\\r' in chunk size line"
        );
    }

    #[test]
    fn snippet_escapes_and_truncates_client_bytes() {
        assert_eq!(snippet(b"a\r\n\x00\"\xff"), "a\\r\\n\\x00\\\"\\xff");
        let long = [b'x'; 100];
        let s = snippet(&long);
        assert_eq!(s.len(), SNIPPET_MAX + 3);
        assert!(s.ends_with("..."));
    }

    #[test]
    fn error_response_is_a_complete_closing_response() {
        let err = ParseError::InvalidContentLength(snippet(b"1,2"));
        let resp = String::from_utf8(error_response(&err)).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.ends_with("\r\nConnection: close"));
        assert_eq!(body, "Bad Request: invalid Content-Length value \"1,2\"\n");
    }

    #[test]
    fn error_response_cannot_be_split_by_client_bytes() {
        let err = ParseError::InvalidMethod(snippet(b"GET\r\nX-Injected: 1"));
        let resp = error_response(&err);
        let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        // Status, Server, Date, Content-Type, Content-Length, Connection, the
        // blank line, and the body's own newline: no injected line.
        assert_eq!(resp.iter().filter(|&&b| b == b'\n').count(), 7 + 1);
        assert!(head_end < resp.len());
    }
}
