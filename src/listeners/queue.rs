//! The listen queue of a listening socket: connections the kernel has
//! accepted that no worker has taken yet (the "backlog", Gunicorn's
//! `gunicorn.backlog` metric), and its size, asked of the kernel through
//! sock_diag(7) — which answers for TCP and UNIX sockets alike, where
//! Gunicorn's TCP_INFO only knows TCP.
//!
//! One netlink dump of the listening sockets of a family per call,
//! matched by inode. Nothing here fails the caller: `None` when the
//! kernel does not say.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

use super::{ListenAddr, Listener};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_RQLEN: u16 = 4;

/// A listener's queue: connections waiting to be accepted, and the most
/// the kernel keeps (its effective backlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Connections waiting now.
    pub waiting: u32,
    /// The queue's size.
    pub size: u32,
}

/// The queue of each of `listeners`, in order (`None` where unknown).
pub fn queues(listeners: &[&Listener]) -> Vec<Option<Queue>> {
    let mut tcp4 = None;
    let mut tcp6 = None;
    let mut unix = None;
    listeners
        .iter()
        .map(|l| {
            let ino = nix::sys::stat::fstat(l.socket.as_fd()).ok()?.st_ino as u32;
            let table = match &l.addr {
                ListenAddr::Tcp(a) if a.is_ipv4() => tcp4.get_or_insert_with(|| dump(Kind::Tcp4)),
                ListenAddr::Tcp(_) => tcp6.get_or_insert_with(|| dump(Kind::Tcp6)),
                ListenAddr::Unix(_) => unix.get_or_insert_with(|| dump(Kind::Unix)),
            };
            table.iter().find(|(i, _)| *i == ino).map(|&(_, q)| q)
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp4,
    Tcp6,
    Unix,
}

/// Every listening socket of `kind` in this network namespace: (inode, queue).
fn dump(kind: Kind) -> Vec<(u32, Queue)> {
    try_dump(kind).unwrap_or_default()
}

fn try_dump(kind: Kind) -> Option<Vec<(u32, Queue)>> {
    let sock: OwnedFd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    let mut req = Vec::with_capacity(16 + 56);
    let body: Vec<u8> = match kind {
        Kind::Tcp4 | Kind::Tcp6 => {
            // inet_diag_req_v2: family, protocol, ext, pad, states, sockid (48 bytes).
            let family = if matches!(kind, Kind::Tcp4) {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            let mut b = vec![family as u8, libc::IPPROTO_TCP as u8, 0, 0];
            b.extend((1u32 << TCP_LISTEN).to_ne_bytes());
            b.extend([0u8; 48]);
            b
        }
        Kind::Unix => {
            // unix_diag_req: family, protocol, pad16, states, ino, show, cookie[2].
            let mut b = vec![libc::AF_UNIX as u8, 0, 0, 0];
            b.extend((1u32 << TCP_LISTEN).to_ne_bytes());
            b.extend(0u32.to_ne_bytes());
            b.extend(UDIAG_SHOW_RQLEN.to_ne_bytes());
            b.extend([0xffu8; 8]);
            b
        }
    };
    req.extend((16 + body.len() as u32).to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend(1u32.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend(body);
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()?;
        let mut msgs = &buf[..n];
        while msgs.len() >= 16 {
            let len = u32::from_ne_bytes(msgs[0..4].try_into().ok()?) as usize;
            let ty = u16::from_ne_bytes(msgs[4..6].try_into().ok()?);
            if len < 16 || len > msgs.len() {
                return Some(out);
            }
            match ty {
                NLMSG_DONE | NLMSG_ERROR => return Some(out),
                _ => out.extend(parse(kind, &msgs[16..len])),
            }
            // Messages are 4-byte aligned.
            msgs = &msgs[((len + 3) & !3).min(msgs.len())..];
        }
    }
}

/// One inet_diag_msg or unix_diag_msg (with its attributes).
fn parse(kind: Kind, msg: &[u8]) -> Option<(u32, Queue)> {
    let u32_at = |at: usize| {
        msg.get(at..at + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])))
    };
    match kind {
        Kind::Tcp4 | Kind::Tcp6 => {
            // family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid, inode.
            Some((
                u32_at(68)?,
                Queue {
                    waiting: u32_at(56)?,
                    size: u32_at(60)?,
                },
            ))
        }
        Kind::Unix => {
            // family, type, state, pad, ino, cookie[2]; then rtattrs.
            let ino = u32_at(4)?;
            let mut attrs = msg.get(16..)?;
            while attrs.len() >= 4 {
                let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
                let ty = u16::from_ne_bytes([attrs[2], attrs[3]]);
                if len < 4 || len > attrs.len() {
                    break;
                }
                if ty == UNIX_DIAG_RQLEN && len >= 12 {
                    let waiting = u32::from_ne_bytes(attrs[4..8].try_into().ok()?);
                    let size = u32::from_ne_bytes(attrs[8..12].try_into().ok()?);
                    return Some((ino, Queue { waiting, size }));
                }
                attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Bind;
    use crate::listeners::{BindOptions, bind};

    #[test]
    fn waiting_connections_are_counted_for_tcp_and_unix() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = BindOptions {
            backlog: 16,
            ..BindOptions::default()
        };
        let tcp = bind(&"127.0.0.1:0".parse::<Bind>().unwrap(), &opts).unwrap();
        let unix = bind(&Bind::Unix(dir.join("q.sock")), &opts).unwrap();
        let ListenAddr::Tcp(addr) = tcp.addr else {
            panic!()
        };
        // A TCP connection is queued once its first bytes came
        // (TCP_DEFER_ACCEPT, set by `bind`): a silent one is not, these
        // three that have begun a request are.
        let _silent = std::net::TcpStream::connect(addr).unwrap();
        let _clients: Vec<std::net::TcpStream> = (0..3)
            .map(|_| {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                std::io::Write::write_all(&mut c, b"G").unwrap();
                c
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let _unix_clients: Vec<_> = (0..2)
            .map(|_| std::os::unix::net::UnixStream::connect(dir.join("q.sock")).unwrap())
            .collect();
        let q = queues(&[&tcp, &unix]);
        assert_eq!(
            q[0],
            Some(Queue {
                waiting: 3,
                size: 16
            })
        );
        assert_eq!(
            q[1],
            Some(Queue {
                waiting: 2,
                size: 16
            })
        );
        unix.remove_created_path();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
