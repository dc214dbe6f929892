//! HTTP/1.1 framing, sans I/O (DESIGN §3): bytes in, typed values or a
//! typed error out; nothing here touches a socket.
pub mod body;
pub mod error;
pub mod head;
pub mod response;

pub use body::{ChunkedDecoder, Decoded, LengthDecoder};
pub use error::{ParseError, error_response};
pub use head::{BodyKind, Field, Head, Limits, Version, parse_head};
