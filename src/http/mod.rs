//! ferrocorn's HTTP/1.1 request parsing, sans I/O (DESIGN §3): bytes in,
//! a typed [`Head`], body bytes or a typed [`ParseError`] out.
//!
//! - [`head`]: [`parse_head`] turns the request line and field lines into a
//!   [`Head`] (RFC 9112 §2-§6, RFC 9110 §5), enforcing Gunicorn's limits
//!   ([`Limits`]) even on incomplete input.
//! - [`body`]: [`LengthDecoder`] and [`ChunkedDecoder`] (RFC 9112 §6.2,
//!   §7.1), state machines fed arbitrary slices.
//! - [`response`]: response heads and body framing (RFC 9112 §6-7).
//! - [`error`]: every fault is one [`ParseError`]; [`ParseError::status`] is
//!   the one mapping to 400/413/414/417/431/501/505 and [`error_response`]
//!   the canned answer, always with `Connection: close`.
//!
//! Invariants: nothing here does I/O, blocks, logs or panics on any input;
//! no `unsafe`; the submodules refer to each other through `super::` only,
//! so this tree works as `crate::http` of the server.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod body;
pub mod error;
pub mod head;
pub mod response;

#[cfg(test)]
mod corpus_tests;

pub use body::{BodyDecoder, ChunkedDecoder, Decoded, LengthDecoder};
pub use error::{ParseError, error_response};
pub use head::{BodyKind, Field, Head, Limits, TargetForm, Version, parse_head};
