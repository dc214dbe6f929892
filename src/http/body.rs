//! Request body decoders: Content-Length (RFC 9112 §6.2) and chunked
//! transfer coding (RFC 9112 §7.1), as state machines fed whatever slices
//! the socket gives.
//!
//! Invariants: a decoder never consumes a byte past the end of its message
//! (pipelined requests stay with the caller); it appends at most `max` bytes
//! of body data per call and buffers nothing itself (no allocation per byte
//! or per call: chunk data is copied straight from input to output, and the
//! framing is checked one byte at a time as it arrives, so a chunk-size line
//! or a trailer may be split at any byte); it enforces bounds on every line
//! it reads, so a peer cannot keep it scanning forever without progress; and
//! once it has returned an error it must not be fed again: the connection is
//! to be closed.

use super::error::ParseError;
use super::head::{
    BodyKind, DEFAULT_LIMIT_REQUEST_FIELD_SIZE, Limits, is_field_value_byte, is_tchar,
};

/// What one `decode` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of `input` consumed (framing and data); the caller drops them
    /// and feeds the rest again later.
    pub consumed: usize,
    /// The message body is complete: for chunked, the last chunk, the
    /// trailer section and its final CRLF have been read.
    pub done: bool,
}

/// Decoder of a body framed by `Content-Length` (RFC 9112 §6.2): passes the
/// next `remaining` bytes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthDecoder {
    remaining: u64,
}

impl LengthDecoder {
    /// A decoder for a body of `length` bytes.
    pub fn new(length: u64) -> Self {
        LengthDecoder { remaining: length }
    }

    /// Body bytes not yet decoded.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Appends to `out` at most `max` bytes of `input` that belong to the
    /// body. Never fails; the signature matches [`ChunkedDecoder::decode`].
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Decoded, ParseError> {
        let n = input
            .len()
            .min(max)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        out.extend_from_slice(&input[..n]);
        self.remaining -= n as u64;
        Ok(Decoded {
            consumed: n,
            done: self.remaining == 0,
        })
    }

    /// Account for `n` body bytes the caller took itself (read from the
    /// connection straight into its own buffer); at most `remaining`.
    pub fn advance(&mut self, n: u64) {
        debug_assert!(n <= self.remaining);
        self.remaining -= n.min(self.remaining);
    }

    /// All `length` bytes have been decoded.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Call when the peer closed its side: `Err(IncompleteBody)` unless the
    /// body is complete.
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(ParseError::IncompleteBody)
        }
    }
}

/// Where the chunked decoder is in `chunked-body` (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a chunk size.
    SizeStart,
    /// In the hex digits.
    Size,
    /// Whitespace after the size: only a chunk extension may follow (BWS).
    SizeBws,
    /// After `;`, before the extension name.
    ExtBeforeName,
    ExtName,
    /// Whitespace after the name: `=` or `;` must follow.
    ExtAfterName,
    /// After `=`, before the value.
    ExtBeforeValue,
    ExtToken,
    ExtQuoted,
    ExtQuotedPair,
    /// Right after a closing quote.
    ExtAfterQuoted,
    /// Whitespace after a value: `;` must follow.
    ExtAfterValue,
    /// CR of the chunk-size line seen.
    SizeLf,
    /// In chunk data; `size` bytes left.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
    Done,
}

/// Bytes of a trailer name kept to match it against [`FORBIDDEN_TRAILERS`];
/// a longer name cannot be one of them.
const NAME_BUF: usize = 20;

/// Fields refused in a trailer section, lowercase. RFC 9110 §6.5.1 forbids
/// framing, routing, authentication and request-modifier fields there; this
/// is Gunicorn 27's list (Host, Content-Length, Transfer-Encoding, Trailer,
/// Authorization, TE) plus the other connection and authentication fields a
/// trailer could use to change what the head said. Content-Type stays
/// allowed: Gunicorn accepts it, and so does its corpus.
const FORBIDDEN_TRAILERS: &[&[u8]] = &[
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"trailer",
    b"authorization",
    b"te",
    b"proxy-authorization",
    b"connection",
    b"keep-alive",
    b"upgrade",
    b"expect",
    b"cookie",
];

/// Decoder of the chunked transfer coding (RFC 9112 §7.1).
///
/// Accepts chunk sizes of hex digits (leading zeros and uppercase allowed; no
/// sign, no whitespace before; at most a u64), chunk extensions `;name` or
/// `;name=token` or `;name="quoted string"` with BWS around `;` and `=`
/// (§7.1.1; ignored), and a trailer section validated like field lines and
/// then discarded (§7.1.2). Refuses bare CR and LF, chunk data not followed
/// by CRLF, forbidden trailer fields (RFC 9110 §6.5.1), and lines over the
/// limits.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read, then the chunk data left to copy, in bytes.
    size: u64,
    /// Bytes of the current chunk-size line or trailer line so far.
    line_len: usize,
    /// Most bytes in a chunk-size line (size, extensions, CRLF).
    line_limit: usize,
    /// Most bytes in a trailer line with its CRLF; 0 = unlimited.
    field_size: usize,
    /// Most trailer lines.
    max_fields: usize,
    /// Trailer lines seen.
    trailers: usize,
    /// Lowercased start of the current trailer name.
    name: [u8; NAME_BUF],
    /// Its length; NAME_BUF + 1 when the name is longer than the buffer.
    name_len: usize,
    /// `limit_request_body`: most bytes of chunk data; 0 = unlimited.
    body_limit: u64,
    /// Chunk data announced so far, in bytes.
    total: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder with the default [`Limits`].
    pub fn new() -> Self {
        ChunkedDecoder::with_limits(&Limits::default())
    }

    /// A decoder whose trailer section obeys `limits.fields` and
    /// `limits.field_size` (as the head does), whose chunk-size lines (the
    /// chunk extensions included) may be `limits.field_size` bytes long
    /// (8190 when that is 0), as Gunicorn, and whose chunks may add up to
    /// `limits.body` bytes (0 = unlimited).
    pub fn with_limits(limits: &Limits) -> Self {
        let line_limit = match limits.field_size {
            0 => DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
            n => n,
        };
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            line_len: 0,
            line_limit,
            field_size: limits.field_size,
            max_fields: limits.max_fields(),
            trailers: 0,
            name: [0; NAME_BUF],
            name_len: 0,
            body_limit: limits.body,
            total: 0,
        }
    }

    /// Decodes from `input`, appending at most `max` bytes of chunk data to
    /// `out`. Returns how many input bytes were consumed and whether the last
    /// chunk, the trailer section and its final CRLF are complete. Framing
    /// bytes are consumed even when `max` is reached, so `done` can be seen
    /// as soon as it is true; nothing after the message is consumed.
    ///
    /// Errors (all 400 but the trailer limits, 431): [`ParseError::InvalidChunkSize`],
    /// [`ParseError::ChunkSizeOverflow`], [`ParseError::InvalidChunkExtension`],
    /// [`ParseError::ChunkLineTooLong`], [`ParseError::ChunkMissingCrlf`],
    /// [`ParseError::BareCr`], [`ParseError::BareLf`], [`ParseError::ObsFold`],
    /// [`ParseError::InvalidTrailer`], [`ParseError::ForbiddenTrailer`],
    /// [`ParseError::TooManyTrailerFields`], [`ParseError::TrailerFieldTooLarge`].
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Decoded, ParseError> {
        let mut i = 0;
        let mut budget = max;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data => {
                    if budget == 0 {
                        break;
                    }
                    let left = usize::try_from(self.size).unwrap_or(usize::MAX);
                    let n = (input.len() - i).min(budget).min(left);
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    budget -= n;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    self.step(input[i])?;
                    i += 1;
                }
            }
        }
        Ok(Decoded {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    /// The whole chunked body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Call when the peer closed its side: `Err(IncompleteBody)` unless the
    /// body is complete (e.g. `0\r\n` without the final CRLF).
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(ParseError::IncompleteBody)
        }
    }

    /// One framing byte (anything but chunk data).
    fn step(&mut self, b: u8) -> Result<(), ParseError> {
        use State::*;
        self.line_len += 1;
        match self.state {
            SizeStart | Size | SizeBws | ExtBeforeName | ExtName | ExtAfterName
            | ExtBeforeValue | ExtToken | ExtQuoted | ExtQuotedPair | ExtAfterQuoted
            | ExtAfterValue | SizeLf => {
                if self.line_len > self.line_limit {
                    return Err(ParseError::ChunkLineTooLong {
                        limit: self.line_limit,
                    });
                }
            }
            TrailerName | TrailerValue | TrailerLf => {
                if self.field_size > 0 && self.line_len > self.field_size {
                    return Err(ParseError::TrailerFieldTooLarge {
                        limit: self.field_size,
                    });
                }
            }
            Data | DataCr | DataLf | TrailerStart | EndLf | Done => {}
        }
        let ws = b == b' ' || b == b'\t';
        let ext_err = || {
            if b == b'\n' {
                ParseError::BareLf
            } else {
                ParseError::InvalidChunkExtension(b)
            }
        };
        self.state = match self.state {
            SizeStart => match hex_value(b) {
                Some(d) => {
                    self.size = d;
                    Size
                }
                None => return Err(ParseError::InvalidChunkSize(b)),
            },
            Size => match hex_value(b) {
                Some(d) => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or(ParseError::ChunkSizeOverflow)?;
                    Size
                }
                None => match b {
                    b'\r' => SizeLf,
                    b';' => ExtBeforeName,
                    // RFC 9112 §7.1.1: BWS only before an extension.
                    b' ' | b'\t' => SizeBws,
                    b'\n' => return Err(ParseError::BareLf),
                    _ => return Err(ParseError::InvalidChunkSize(b)),
                },
            },
            SizeBws => match b {
                b' ' | b'\t' => SizeBws,
                b';' => ExtBeforeName,
                _ => return Err(ParseError::InvalidChunkSize(b)),
            },
            ExtBeforeName if ws => ExtBeforeName,
            ExtBeforeName if is_tchar(b) => ExtName,
            ExtName if is_tchar(b) => ExtName,
            ExtName | ExtAfterName if ws => ExtAfterName,
            ExtName | ExtAfterName if b == b'=' => ExtBeforeValue,
            ExtName | ExtAfterName | ExtToken | ExtAfterQuoted | ExtAfterValue if b == b';' => {
                ExtBeforeName
            }
            ExtName | ExtToken | ExtAfterQuoted if b == b'\r' => SizeLf,
            ExtBeforeValue if ws => ExtBeforeValue,
            ExtBeforeValue if b == b'"' => ExtQuoted,
            ExtBeforeValue if is_tchar(b) => ExtToken,
            ExtToken if is_tchar(b) => ExtToken,
            ExtToken | ExtAfterQuoted | ExtAfterValue if ws => ExtAfterValue,
            ExtQuoted if b == b'"' => ExtAfterQuoted,
            ExtQuoted if b == b'\\' => ExtQuotedPair,
            // qdtext (RFC 9110 §5.6.4): field-value bytes but `"` and `\`.
            ExtQuoted if is_field_value_byte(b) => ExtQuoted,
            ExtQuotedPair if is_field_value_byte(b) => ExtQuoted,
            ExtBeforeName | ExtName | ExtAfterName | ExtBeforeValue | ExtToken | ExtQuoted
            | ExtQuotedPair | ExtAfterQuoted | ExtAfterValue => return Err(ext_err()),
            SizeLf => match b {
                b'\n' if self.size == 0 => self.line_start(TrailerStart),
                b'\n' => {
                    // limit_request_body, refused before the data arrives.
                    self.total = self.total.saturating_add(self.size);
                    if self.body_limit > 0 && self.total > self.body_limit {
                        return Err(ParseError::BodyTooLarge {
                            limit: self.body_limit,
                        });
                    }
                    Data
                }
                _ => return Err(ParseError::BareCr),
            },
            // Not reached: decode() copies data itself.
            Data => Data,
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => self.line_start(SizeStart),
            DataCr | DataLf => return Err(ParseError::ChunkMissingCrlf),
            TrailerStart => match b {
                b'\r' => EndLf,
                b'\n' => return Err(ParseError::BareLf),
                b' ' | b'\t' => return Err(ParseError::ObsFold),
                _ if is_tchar(b) => {
                    self.trailers += 1;
                    if self.trailers > self.max_fields {
                        return Err(ParseError::TooManyTrailerFields {
                            limit: self.max_fields,
                        });
                    }
                    self.name_len = 0;
                    self.push_name(b);
                    TrailerName
                }
                _ => return Err(ParseError::InvalidTrailer(b)),
            },
            TrailerName => match b {
                b':' => {
                    self.check_trailer_name()?;
                    TrailerValue
                }
                _ if is_tchar(b) => {
                    self.push_name(b);
                    TrailerName
                }
                _ => return Err(ParseError::InvalidTrailer(b)),
            },
            TrailerValue => match b {
                b'\r' => TrailerLf,
                b'\n' => return Err(ParseError::BareLf),
                _ if is_field_value_byte(b) => TrailerValue,
                _ => return Err(ParseError::InvalidTrailer(b)),
            },
            TrailerLf => match b {
                b'\n' => self.line_start(TrailerStart),
                _ => return Err(ParseError::BareCr),
            },
            EndLf => match b {
                b'\n' => Done,
                _ => return Err(ParseError::BareCr),
            },
            Done => Done,
        };
        Ok(())
    }

    /// Starts counting a new line.
    fn line_start(&mut self, state: State) -> State {
        self.line_len = 0;
        state
    }

    fn push_name(&mut self, b: u8) {
        if self.name_len < NAME_BUF {
            self.name[self.name_len] = b.to_ascii_lowercase();
            self.name_len += 1;
        } else {
            self.name_len = NAME_BUF + 1;
        }
    }

    /// RFC 9110 §6.5.1: refuse framing, routing and authentication fields.
    fn check_trailer_name(&self) -> Result<(), ParseError> {
        if self.name_len > NAME_BUF {
            return Ok(());
        }
        let name = &self.name[..self.name_len];
        if FORBIDDEN_TRAILERS.contains(&name) {
            return Err(ParseError::ForbiddenTrailer(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Either body decoder, chosen from a [`BodyKind`], so the I/O code drives
/// every body the same way.
#[derive(Debug)]
pub enum BodyDecoder {
    /// `Content-Length` (or no body: length 0).
    Length(LengthDecoder),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    /// The decoder for a head's `body`; trailer limits come from `limits`.
    pub fn new(kind: BodyKind, limits: &Limits) -> Self {
        match kind {
            BodyKind::Empty => BodyDecoder::Length(LengthDecoder::new(0)),
            BodyKind::Length(n) => BodyDecoder::Length(LengthDecoder::new(n)),
            BodyKind::Chunked => BodyDecoder::Chunked(ChunkedDecoder::with_limits(limits)),
        }
    }

    /// See [`ChunkedDecoder::decode`] and [`LengthDecoder::decode`].
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Decoded, ParseError> {
        match self {
            BodyDecoder::Length(d) => d.decode(input, out, max),
            BodyDecoder::Chunked(d) => d.decode(input, out, max),
        }
    }

    /// The body is complete.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length(d) => d.is_done(),
            BodyDecoder::Chunked(d) => d.is_done(),
        }
    }

    /// `Err(IncompleteBody)` unless the body is complete: what the peer's
    /// EOF (a read of 0 bytes: close or half-close) before the body's end
    /// means. RFC 9112 §8: "A message body that uses the chunked transfer
    /// coding is incomplete if the zero-sized chunk that terminates the
    /// encoding has not been received. A message that uses a valid
    /// Content-Length is incomplete if the size of the message body
    /// received (in octets) is less than the value given by
    /// Content-Length", and an incomplete request must not be processed as
    /// complete. Gunicorn's `LengthReader` hands the app what arrived (its
    /// corpus case valid/099 wants that); here `wsgi.input` raises instead.
    pub fn finish(&self) -> Result<(), ParseError> {
        match self {
            BodyDecoder::Length(d) => d.finish(),
            BodyDecoder::Chunked(d) => d.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` in one call.
    fn whole(input: &[u8]) -> Result<(Vec<u8>, Decoded), ParseError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let r = d.decode(input, &mut out, usize::MAX)?;
        Ok((out, r))
    }

    /// Decodes `input` one byte per call; returns the body and bytes consumed.
    fn bytewise(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ParseError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for b in input {
            if d.is_done() {
                break;
            }
            let r = d.decode(std::slice::from_ref(b), &mut out, usize::MAX)?;
            used += r.consumed;
        }
        Ok((out, used, d.is_done()))
    }

    const BODIES: &[(&[u8], &[u8])] = &[
        (
            b"1e\r\nall your base are belong to us\r\n0\r\n\r\n",
            b"all your base are belong to us",
        ),
        (b"5\r\nhello\r\n6\r\n world\r\n000\r\n\r\n", b"hello world"),
        (
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n",
            b"hello world",
        ),
        (
            b"5; some; parameters=stuff\r\nhello\r\n6; blahblah; blah\r\n world\r\n0\r\n\r\n",
            b"hello world",
        ),
        (
            b"5;foo=\"bar baz\"\r\nhello\r\n0;a=\"q\\\"\\\\\"\r\n\r\n",
            b"hello",
        ),
        (b"5 ; a = b ;c\t=\t\"d\" ;e\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"0005\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (
            b"a\r\n0123456789\r\n0\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\t\r\n\r\n",
            b"0123456789",
        ),
        (b"0\r\n\r\n", b""),
    ];

    #[test]
    fn decodes_whole_and_byte_by_byte() {
        for &(input, body) in BODIES {
            let mut pipelined = input.to_vec();
            pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let (out, r) = whole(&pipelined).unwrap();
            assert_eq!(out, body, "{}", input.escape_ascii());
            assert_eq!(
                r,
                Decoded {
                    consumed: input.len(),
                    done: true
                }
            );
            let (out, used, done) = bytewise(&pipelined).unwrap();
            assert_eq!((out.as_slice(), used, done), (body, input.len(), true));
        }
    }

    #[test]
    fn every_split_point_gives_the_same_body() {
        for &(input, body) in BODIES {
            for cut in 0..=input.len() {
                let mut d = ChunkedDecoder::new();
                let mut out = Vec::new();
                let r1 = d.decode(&input[..cut], &mut out, usize::MAX).unwrap();
                assert_eq!(r1.consumed, cut, "a decoder keeps no partial input");
                assert_eq!(r1.done, cut == input.len());
                let r2 = d.decode(&input[cut..], &mut out, usize::MAX).unwrap();
                assert_eq!(r1.consumed + r2.consumed, input.len());
                assert!(r2.done || cut == input.len());
                assert_eq!(out, body);
            }
        }
    }

    #[test]
    fn max_bounds_the_data_per_call() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut calls = 0;
        loop {
            let before = out.len();
            let r = d.decode(&input[pos..], &mut out, 2).unwrap();
            assert!(out.len() - before <= 2);
            pos += r.consumed;
            calls += 1;
            if r.done {
                break;
            }
            assert!(calls < 20);
        }
        assert_eq!(out, b"hello world");
        assert_eq!(&input[pos..], b"NEXT");
        // max = 0 consumes framing up to the data, and no data.
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let r = d.decode(b"5;x\r\nhello", &mut out, 0).unwrap();
        assert_eq!((r.consumed, r.done, out.len()), (5, false, 0));
        // The framing after the last data byte is read in the same call.
        let mut d = ChunkedDecoder::new();
        let r = d.decode(b"5\r\nhello\r\n0\r\n\r\n", &mut out, 5).unwrap();
        assert_eq!((r.consumed, r.done), (15, true));
    }

    fn err(input: &[u8]) -> ParseError {
        let e1 = whole(input).expect_err("whole");
        let e2 = bytewise(input).expect_err("bytewise");
        assert_eq!(e1, e2, "{}", input.escape_ascii());
        e1
    }

    #[test]
    fn chunk_size_rules() {
        assert_eq!(
            err(b"5\r\nhello\r\n6_0\r\n world\r\n0\r\n\r\n"),
            ParseError::InvalidChunkSize(b'_')
        );
        assert_eq!(
            err(b"5\r\nhello\r\n0 \r\n\r\n"),
            ParseError::InvalidChunkSize(b'\r')
        );
        assert_eq!(
            err(b"5\r\nhello\r\n 0\r\n\r\n"),
            ParseError::InvalidChunkSize(b' ')
        );
        assert_eq!(err(b"5\n;\r\nhello\r\n0\r\n\r\n"), ParseError::BareLf);
        assert_eq!(
            err(b" ;foo=bar\r\nhello\r\n0\r\n\r\n"),
            ParseError::InvalidChunkSize(b' ')
        );
        assert_eq!(
            err(b"\r\nhello\r\n0\r\n\r\n"),
            ParseError::InvalidChunkSize(b'\r')
        );
        assert_eq!(err(b";a\r\n"), ParseError::InvalidChunkSize(b';'));
        assert_eq!(
            err(b"-5\r\nhello\r\n0\r\n\r\n"),
            ParseError::InvalidChunkSize(b'-')
        );
        assert_eq!(
            err(b"+5\r\nhello\r\n0\r\n\r\n"),
            ParseError::InvalidChunkSize(b'+')
        );
        assert_eq!(
            err(b"0x5\r\nhello\r\n0\r\n\r\n"),
            ParseError::InvalidChunkSize(b'x')
        );
        assert_eq!(err(b"5\rhello"), ParseError::BareCr);
        // 16 hex digits fit in a u64, 17 significant ones do not.
        let mut d = ChunkedDecoder::new();
        let r = d
            .decode(
                b"00000000FFFFFFFFFFFFFFFF\r\nab",
                &mut Vec::new(),
                usize::MAX,
            )
            .unwrap();
        assert_eq!((r.consumed, r.done), (28, false));
        assert_eq!(err(b"10000000000000000\r\n"), ParseError::ChunkSizeOverflow);
        // An endless size line is cut off.
        let long = vec![b'0'; 9000];
        assert_eq!(err(&long), ParseError::ChunkLineTooLong { limit: 8190 });
    }

    #[test]
    fn chunk_extension_rules() {
        assert_eq!(
            err(b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n"),
            ParseError::BareCr
        );
        assert_eq!(
            err(b"5;\r\nhello\r\n0\r\n\r\n"),
            ParseError::InvalidChunkExtension(b'\r')
        );
        assert_eq!(err(b"5;=x\r\n"), ParseError::InvalidChunkExtension(b'='));
        assert_eq!(err(b"5;a=\r\n"), ParseError::InvalidChunkExtension(b'\r'));
        assert_eq!(err(b"5;a \r\n"), ParseError::InvalidChunkExtension(b'\r'));
        assert_eq!(err(b"5;a=b \r\n"), ParseError::InvalidChunkExtension(b'\r'));
        assert_eq!(
            err(b"5;a=\"b\r\n"),
            ParseError::InvalidChunkExtension(b'\r')
        );
        assert_eq!(
            err(b"5;a=\"b\"c\r\n"),
            ParseError::InvalidChunkExtension(b'c')
        );
        assert_eq!(err(b"5;a=b\"\r\n"), ParseError::InvalidChunkExtension(b'"'));
        assert_eq!(err(b"5;a=\x01\r\n"), ParseError::InvalidChunkExtension(1));
        assert_eq!(err(b"5;a\n"), ParseError::BareLf);
    }

    #[test]
    fn chunk_data_must_end_in_crlf() {
        assert_eq!(
            err(b"5\r\nhelloX\r\n0\r\n\r\n"),
            ParseError::ChunkMissingCrlf
        );
        assert_eq!(err(b"5\r\nhello\rX0\r\n\r\n"), ParseError::ChunkMissingCrlf);
        assert_eq!(err(b"5\r\nhello\n0\r\n\r\n"), ParseError::ChunkMissingCrlf);
    }

    #[test]
    fn trailer_rules() {
        for name in [
            "Content-Length",
            "HOST",
            "transfer-encoding",
            "Trailer",
            "TE",
            "Authorization",
        ] {
            let input = format!("5\r\nhello\r\n0\r\n{name}: x\r\n\r\n");
            assert_eq!(
                err(input.as_bytes()),
                ParseError::ForbiddenTrailer(name.to_ascii_lowercase()),
                "{name}"
            );
        }
        // A name longer than the buffer is not mistaken for a forbidden one.
        let (out, r) = whole(b"0\r\nContent-Length-And-More-Stuff: 1\r\n\r\n").unwrap();
        assert!(out.is_empty() && r.done);
        assert_eq!(err(b"0\r\nX: 1\r\n two\r\n\r\n"), ParseError::ObsFold);
        assert_eq!(err(b"0\r\nX: 1\n\r\n"), ParseError::BareLf);
        assert_eq!(err(b"0\r\nX: 1\r\n\n"), ParseError::BareLf);
        assert_eq!(err(b"0\r\nX: 1\r\n\rX"), ParseError::BareCr);
        assert_eq!(err(b"0\r\nX : 1\r\n\r\n"), ParseError::InvalidTrailer(b' '));
        assert_eq!(
            err(b"0\r\nX: a\x7fb\r\n\r\n"),
            ParseError::InvalidTrailer(0x7f)
        );
        assert_eq!(
            err(b"0\r\nX: a\x00b\r\n\r\n"),
            ParseError::InvalidTrailer(0)
        );
        assert_eq!(err(b"0\r\n:x\r\n\r\n"), ParseError::InvalidTrailer(b':'));
        assert_eq!(
            err(b"0\r\nNoColon\r\n\r\n"),
            ParseError::InvalidTrailer(b'\r')
        );
    }

    #[test]
    fn trailer_limits() {
        let limits = Limits {
            fields: 2,
            field_size: 10,
            ..Limits::default()
        };
        let run = |input: &[u8]| {
            ChunkedDecoder::with_limits(&limits).decode(input, &mut Vec::new(), usize::MAX)
        };
        assert!(run(b"0\r\nA: 12345\r\nB: 1\r\n\r\n").unwrap().done);
        let e = run(b"0\r\nA: 1\r\nB: 1\r\nC").unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (ParseError::TooManyTrailerFields { limit: 2 }, 431)
        );
        let e = run(b"0\r\nA: 12345678").unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (ParseError::TrailerFieldTooLarge { limit: 10 }, 431)
        );
    }

    #[test]
    fn limit_request_body_stops_chunks_at_the_size_line_that_passes_it() {
        let limits = Limits {
            body: 10,
            ..Limits::default()
        };
        let run = |input: &[u8]| {
            ChunkedDecoder::with_limits(&limits).decode(input, &mut Vec::new(), usize::MAX)
        };
        assert!(run(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n").unwrap().done);
        // Refused before the data of the chunk that passes the limit.
        let e = run(b"5\r\nhello\r\n6\r\n").unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (ParseError::BodyTooLarge { limit: 10 }, 413)
        );
        assert!(run(b"ffffffffffffffff\r\n").is_err());
    }

    #[test]
    fn finish_reports_a_truncated_body() {
        let mut d = ChunkedDecoder::new();
        let r = d.decode(b"0\r\n", &mut Vec::new(), usize::MAX).unwrap();
        assert_eq!((r.consumed, r.done), (3, false));
        assert_eq!(d.finish(), Err(ParseError::IncompleteBody));
        d.decode(b"\r\n", &mut Vec::new(), usize::MAX).unwrap();
        assert_eq!(d.finish(), Ok(()));
        // After done, nothing more is consumed.
        let r = d.decode(b"GET", &mut Vec::new(), usize::MAX).unwrap();
        assert_eq!((r.consumed, r.done), (0, true));
    }

    #[test]
    fn length_decoder() {
        let mut d = LengthDecoder::new(5);
        let mut out = Vec::new();
        assert_eq!(
            d.decode(b"he", &mut out, 1).unwrap(),
            Decoded {
                consumed: 1,
                done: false
            }
        );
        assert_eq!(d.remaining(), 4);
        assert_eq!(d.finish(), Err(ParseError::IncompleteBody));
        let r = d.decode(b"elloGET", &mut out, usize::MAX).unwrap();
        assert_eq!(
            r,
            Decoded {
                consumed: 4,
                done: true
            }
        );
        assert_eq!(out, b"hello");
        assert!(d.is_done());
        assert_eq!(d.finish(), Ok(()));
        assert_eq!(
            LengthDecoder::new(0)
                .decode(b"x", &mut out, 9)
                .unwrap()
                .consumed,
            0
        );
    }

    #[test]
    fn body_decoder_follows_the_body_kind() {
        let limits = Limits::default();
        let mut out = Vec::new();
        let mut d = BodyDecoder::new(BodyKind::Empty, &limits);
        assert!(d.is_done() && d.finish().is_ok());
        assert_eq!(
            d.decode(b"GET", &mut out, 9).unwrap(),
            Decoded {
                consumed: 0,
                done: true
            }
        );
        let mut d = BodyDecoder::new(BodyKind::Length(3), &limits);
        assert!(d.decode(b"abcd", &mut out, 9).unwrap().done);
        let mut d = BodyDecoder::new(BodyKind::Chunked, &limits);
        assert!(!d.decode(b"1\r\nx\r\n", &mut out, 9).unwrap().done);
        assert_eq!(d.finish(), Err(ParseError::IncompleteBody));
        let mut d = BodyDecoder::new(BodyKind::Length(3), &limits);
        d.decode(b"ab", &mut out, 9).unwrap();
        assert_eq!(
            d.finish(),
            Err(ParseError::IncompleteBody),
            "a Content-Length body cut short is incomplete (RFC 9112 §8)"
        );
        assert_eq!(out, b"abcxab");
    }

    /// On mutated chunked bodies: no panic, and the same outcome whether fed
    /// whole or one byte at a time.
    #[test]
    fn mutated_bodies_decode_the_same_at_any_split() {
        let alphabet = b"\r\n \t;=\"\\:0aF5gZ\x00\x80";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for round in 0..3000 {
            let (seed, _) = BODIES[round % BODIES.len()];
            let mut buf = seed.to_vec();
            for _ in 0..1 + next(3) {
                let at = next(buf.len());
                buf[at] = alphabet[next(alphabet.len())];
            }
            let a = whole(&buf).map(|(out, r)| (out, r.consumed, r.done));
            let b = bytewise(&buf);
            assert_eq!(a, b, "{}", buf.escape_ascii());
        }
    }
}
