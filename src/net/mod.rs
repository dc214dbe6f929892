//! What the worker's event loop and the WSGI bridge share about a client
//! connection (DESIGN §8): who the peer is ([`Peer`]) and the socket itself
//! ([`stream::Stream`]). Both layers use this module; it uses neither.

pub mod stream;

use std::fmt;
use std::net::SocketAddr;

pub use stream::{Stream, with_io_slices};

/// The client end of a connection.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A UNIX-socket client (a local proxy such as nginx); it has no address.
    Unix,
}

impl Peer {
    /// Whether forwarded-scheme headers from this peer are believed
    /// (Gunicorn's `forwarded_allow_ips` default `127.0.0.1,::1`, plus UNIX peers).
    pub fn is_trusted_proxy(&self) -> bool {
        match self {
            Peer::Unix => true,
            Peer::Tcp(a) => {
                a.ip() == std::net::Ipv4Addr::LOCALHOST || a.ip() == std::net::Ipv6Addr::LOCALHOST
            }
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix peer"),
        }
    }
}
