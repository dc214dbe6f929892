//! ferrocorn's HTTP/1.1 request parsing, sans I/O (DESIGN §3): bytes in,
//! a typed [`Head`], body bytes or a typed [`ParseError`] out.
//!
//! - [`head`]: [`parse_head`] turns the request line and field lines into a
//!   [`Head`] (RFC 9112 §2-§6, RFC 9110 §5), enforcing Gunicorn's limits
//!   ([`Limits`]) even on incomplete input.
//! - [`body`]: [`LengthDecoder`] and [`ChunkedDecoder`] (RFC 9112 §6.2,
//!   §7.1), state machines fed arbitrary slices.
//! - [`response`]: response heads and body framing (RFC 9112 §6-7).
//! - [`forwarded`]: what header fields from a trusted proxy say about the
//!   scheme and the mount point, and which names with `_` are kept
//!   (Gunicorn's `secure_scheme_headers`, `forwarder_headers`, `header_map`).
//! - [`proxy`]: the PROXY protocol header a load balancer sends first.
//! - [`error`]: every fault is one [`ParseError`]; [`ParseError::status`] is
//!   the one mapping to 400/403/413/414/417/431/500/501/505 and
//!   [`error_response`] the canned answer, always with `Connection: close`.
//!
//! Invariants: nothing here does I/O, blocks, logs or panics on any input;
//! no `unsafe`; the submodules refer to each other through `super::` only,
//! so this tree works as `crate::http` of the server.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod body;
pub mod error;
pub mod forwarded;
pub mod head;
pub mod proxy;
pub mod response;

#[cfg(test)]
mod corpus_tests;

pub use body::{BodyDecoder, ChunkedDecoder, Decoded, LengthDecoder};
pub use error::{ParseError, error_response};
pub use forwarded::HeaderMap;
pub use head::{BodyKind, Field, Head, Limits, Rules, TargetForm, Version, parse_head};
