//! What the worker's event loop and the WSGI bridge share about a client
//! connection (DESIGN §8): who the peer is ([`Peer`]) and the socket itself
//! ([`stream::Stream`]). Both layers use this module; it uses neither.

pub mod stream;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

pub use stream::{SendPace, Stream, with_io_slices};

/// The client end of a connection.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A UNIX-socket client (a local proxy such as nginx); it has no address.
    Unix,
}

impl Peer {
    /// Whether `allowed` lists this peer. A UNIX-socket peer always is: it
    /// is a process on this machine (Gunicorn: "connections not associated
    /// with an IP address are treated as allowed, unconditionally").
    pub fn is_in(&self, allowed: &AllowList) -> bool {
        match self {
            Peer::Unix => true,
            Peer::Tcp(a) => allowed.contains(a.ip()),
        }
    }
}

/// Peers a setting trusts (Gunicorn's `forwarded_allow_ips`,
/// `proxy_allow_ips`): IP addresses and CIDR networks, or `*` for any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowList {
    /// `*`: every peer.
    pub any: bool,
    /// The networks (a single address is a /32 or /128).
    pub nets: Vec<ipnet::IpNet>,
}

impl AllowList {
    /// Read Gunicorn's spelling: items like `10.0.0.1`, `10.0.0.0/8`,
    /// `::1` or `*`.
    ///
    /// Errors: an item that is neither an address nor a network (named).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for item in items {
            let item = item.as_ref().trim();
            if item == "*" {
                list.any = true;
            } else if let Ok(net) = item.parse::<ipnet::IpNet>() {
                list.nets.push(net.trunc());
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                list.nets.push(ipnet::IpNet::from(ip));
            } else {
                return Err(format!("{item:?} is not an IP address, a network or *"));
            }
        }
        Ok(list)
    }

    /// Whether `ip` is listed; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// from a dual-stack socket) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_take_addresses_networks_and_any() {
        let list = AllowList::parse(&["127.0.0.1", "::1", "10.0.0.0/8"]).unwrap();
        assert!(list.contains("10.1.2.3".parse().unwrap()));
        assert!(list.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!list.contains("192.168.1.1".parse().unwrap()));
        assert!(Peer::Unix.is_in(&AllowList::default()));
        assert!(
            AllowList::parse(&["*"])
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            AllowList::parse(&["10.0.0.300"])
                .unwrap_err()
                .contains("10.0.0.300")
        );
    }
}
