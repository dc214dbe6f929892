//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1
//! and 2) that a load balancer such as HAProxy or stunnel sends before a
//! connection's first request, naming the client it accepted. Sans I/O:
//! [`parse_proxy_header`] reads it from the start of a connection's bytes.
//!
//! As in Gunicorn (`proxy_protocol`), the header is optional: a connection
//! that starts with anything else is served as plain HTTP. Unlike Gunicorn,
//! whose keep-alive requests after the first lose it, the client it names
//! holds for every request on the connection (the header describes the
//! connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::{ParseError, snippet};

/// The version-2 signature (§2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A version-1 line is at most 107 bytes with its CRLF (§2.1).
const V1_MAX: usize = 107;

/// Which header versions are read (`proxy_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// The text header only.
    V1,
    /// The binary header only.
    V2,
    /// Either.
    Both,
}

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// `TCP4`, `TCP6`, `UNKNOWN` (v1), `LOCAL` or `UNSPEC` (v2): the
    /// environ's `PROXY_PROTOCOL`, as Gunicorn sets it.
    pub protocol: &'static str,
    /// The client's address and port, when the header carries one.
    pub client: Option<SocketAddr>,
    /// The address and port the client connected to (the proxy's).
    pub proxy: Option<SocketAddr>,
}

/// Read a PROXY header at the start of `buf`:
///
/// - `Ok(None)`: too few bytes to tell; call again with more;
/// - `Ok(Some((None, 0)))`: the connection does not start with one;
/// - `Ok(Some((Some(header), n)))`: the header is the first `n` bytes.
///
/// Errors: a header that starts as one but is malformed (400).
pub fn parse_proxy_header(
    buf: &[u8],
    accept: Accept,
) -> Result<Option<(Option<ProxyHeader>, usize)>, ParseError> {
    let v1 = accept != Accept::V2;
    let v2 = accept != Accept::V1;
    let prefix_of = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    if (v2 && prefix_of(V2_SIGNATURE)) || (v1 && prefix_of(b"PROXY ")) {
        return Ok(None);
    }
    if v2 && buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf);
    }
    if v1 && buf.starts_with(b"PROXY ") {
        return parse_v1(buf);
    }
    Ok(Some((None, 0)))
}

fn invalid(what: impl Into<String>) -> ParseError {
    ParseError::InvalidProxyHeader(what.into())
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Option<(Option<ProxyHeader>, usize)>, ParseError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(invalid("version 1 line longer than 107 bytes"));
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| invalid(snippet(&buf[..end])))?;
    let bits: Vec<&str> = line.split(' ').collect();
    if bits.get(1) == Some(&"UNKNOWN") {
        // §2.1: the receiver must ignore the rest and use the real peer.
        let header = ProxyHeader {
            protocol: "UNKNOWN",
            client: None,
            proxy: None,
        };
        return Ok(Some((Some(header), end + 2)));
    }
    let [_, family, src, dst, sport, dport] = bits[..] else {
        return Err(invalid(snippet(line.as_bytes())));
    };
    let (protocol, ip): (&str, fn(&str) -> Option<IpAddr>) = match family {
        "TCP4" => ("TCP4", |s| s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)),
        "TCP6" => ("TCP6", |s| s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)),
        other => {
            return Err(invalid(format!(
                "protocol {:?} not supported",
                snippet(other.as_bytes())
            )));
        }
    };
    let bad_line = || invalid(snippet(line.as_bytes()));
    let port = |p: &str| {
        (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u16>().ok())
            .flatten()
    };
    let (src, dst) = (ip(src).ok_or_else(bad_line)?, ip(dst).ok_or_else(bad_line)?);
    let (sport, dport) = (
        port(sport).ok_or_else(bad_line)?,
        port(dport).ok_or_else(bad_line)?,
    );
    let header = ProxyHeader {
        protocol,
        client: Some(SocketAddr::new(src, sport)),
        proxy: Some(SocketAddr::new(dst, dport)),
    };
    Ok(Some((Some(header), end + 2)))
}

/// The binary header: signature, version/command, family/protocol, length,
/// addresses (§2.2).
fn parse_v2(buf: &[u8]) -> Result<Option<(Option<ProxyHeader>, usize)>, ParseError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, fam_proto) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(invalid(format!("unsupported version {}", ver_cmd >> 4)));
    }
    let total = 16 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let none = |protocol| {
        Ok(Some((
            Some(ProxyHeader {
                protocol,
                client: None,
                proxy: None,
            }),
            total,
        )))
    };
    match ver_cmd & 0x0f {
        // LOCAL: the proxy's own connection (a health check): the real peer.
        0 => return none("LOCAL"),
        1 => {}
        other => return Err(invalid(format!("unsupported command {other}"))),
    }
    let addr = &buf[16..total];
    let (family, transport) = (fam_proto >> 4, fam_proto & 0x0f);
    if family == 0 {
        return none("UNSPEC");
    }
    if transport != 1 {
        return Err(invalid("only TCP (STREAM) is supported"));
    }
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let (protocol, client, proxy) = match family {
        1 if addr.len() >= 12 => {
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            (
                "TCP4",
                SocketAddr::new(ip(&addr[0..4]), be16(&addr[8..10])),
                SocketAddr::new(ip(&addr[4..8]), be16(&addr[10..12])),
            )
        }
        2 if addr.len() >= 36 => {
            let ip =
                |b: &[u8]| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or([0; 16])));
            (
                "TCP6",
                SocketAddr::new(ip(&addr[0..16]), be16(&addr[32..34])),
                SocketAddr::new(ip(&addr[16..32]), be16(&addr[34..36])),
            )
        }
        1 | 2 => return Err(invalid("address block too short for its family")),
        // AF_UNIX: no IP address to report; the real peer stands.
        3 => return none("UNIX"),
        other => return Err(invalid(format!("unsupported address family {other}"))),
    };
    let header = ProxyHeader {
        protocol,
        client: Some(client),
        proxy: Some(proxy),
    };
    Ok(Some((Some(header), total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_names_the_client() {
        let buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        let (h, n) = parse_proxy_header(buf, Accept::Both).unwrap().unwrap();
        let h = h.unwrap();
        assert_eq!(&buf[n..n + 3], b"GET");
        assert_eq!(h.client, Some("192.168.0.1:56324".parse().unwrap()));
        assert_eq!(h.proxy, Some("192.168.0.11:443".parse().unwrap()));
        assert_eq!(h.protocol, "TCP4");
        for cut in 0..n {
            assert_eq!(
                parse_proxy_header(&buf[..cut], Accept::Both),
                Ok(None),
                "{cut}"
            );
        }
    }

    #[test]
    fn version_2_names_the_client() {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.extend([
            0x21, 0x11, 0x00, 0x0c, 192, 168, 1, 10, 192, 168, 1, 1, 0x30, 0x39, 0x01, 0xbb,
        ]);
        buf.extend(b"GET");
        let (h, n) = parse_proxy_header(&buf, Accept::Both).unwrap().unwrap();
        assert_eq!(n, 28);
        assert_eq!(
            h.unwrap().client,
            Some("192.168.1.10:12345".parse().unwrap())
        );
        assert_eq!(parse_proxy_header(&buf, Accept::V1), Ok(Some((None, 0))));
    }

    #[test]
    fn plain_http_has_none_and_malformed_headers_are_400() {
        assert_eq!(
            parse_proxy_header(b"GET / HTTP/1.1\r\n", Accept::Both),
            Ok(Some((None, 0)))
        );
        for bad in [
            &b"PROXY TCP4 192.168.0.1 192.16...\r\n"[..],
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65iii 100000\r\n",
            b"PROXY TCP4 not-an-ip 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 1 70000\r\n",
        ] {
            let e = parse_proxy_header(bad, Accept::Both).unwrap_err();
            assert_eq!(e.status(), 400, "{}", bad.escape_ascii());
        }
        assert!(parse_proxy_header(&[b'P'; 200][..], Accept::Both).unwrap() == Some((None, 0)));
        let long = [&b"PROXY "[..], &[b'1'; 120][..]].concat();
        assert!(parse_proxy_header(&long, Accept::V1).is_err());
    }
}
