//! Listening sockets: adopted from systemd (`LISTEN_FDS`) or bound from `-b`.
//!
//! The master owns every listener; workers inherit them when the master
//! starts them and all accept from the same sockets (DESIGN §1), so a
//! restarting worker never strands queued connections. Invariants: every listener is non-blocking
//! and close-on-exec; a UNIX socket path is unlinked on exit only if this
//! process created it (never one systemd or another process owns).

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

pub mod queue;

use crate::config::Bind;

/// Where a listener listens, for logs and for the environ's SERVER_NAME/PORT.
#[derive(Debug, Clone)]
pub enum ListenAddr {
    /// A TCP socket's local address.
    Tcp(SocketAddr),
    /// A UNIX socket's path (None for an unnamed or abstract socket).
    Unix(Option<PathBuf>),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "http://{addr}"),
            ListenAddr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            ListenAddr::Unix(None) => write!(f, "unix:(unnamed)"),
        }
    }
}

/// A listening socket the master owns.
#[derive(Debug)]
pub struct Listener {
    /// The socket, non-blocking and close-on-exec.
    pub socket: Socket,
    /// Its local address.
    pub addr: ListenAddr,
    /// The path to unlink on exit: set only for UNIX sockets we created.
    created_path: Option<PathBuf>,
}

/// Why the listeners could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// bind(2)/listen(2)/socket(2) failed for one address.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        /// The address as given.
        what: String,
        /// The system call's error.
        source: io::Error,
    },
    /// A live server already answers on this UNIX socket path.
    #[error("cannot listen on unix:{}: another server is accepting connections there", .0.display())]
    UnixInUse(PathBuf),
    /// The path exists and is not a socket: refuse to delete it.
    #[error("cannot listen on unix:{}: the path exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// An inherited descriptor is not a listening stream socket.
    #[error("inherited fd {fd} is not a usable listening socket: {reason}")]
    BadFd {
        /// The descriptor number.
        fd: RawFd,
        /// What is wrong with it.
        reason: String,
    },
    /// A host name resolved to no address.
    #[error("cannot resolve {0}")]
    Resolve(String),
}

impl ListenError {
    /// The errno behind the failure, for sd_notify's `ERRNO=`.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ListenError::Bind { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl Listener {
    /// Accept a connection with accept4(2), made non-blocking and
    /// close-on-exec by the same call (no fcntl(2) after it): its socket and
    /// the peer's address.
    ///
    /// Errors: accept4's (`WouldBlock` when none is queued).
    pub fn accept(&self) -> io::Result<(Socket, SockAddr)> {
        use std::os::fd::AsRawFd;
        let listener = self.socket.as_raw_fd();
        // SAFETY: try_init hands accept4 a zeroed sockaddr_storage and its
        // length, which accept4 fills with the peer's address (never more
        // than the length it is given); a descriptor accept4 returns is a
        // new socket that only the `Socket` made here owns.
        unsafe {
            SockAddr::try_init(|storage, len| {
                let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                match libc::accept4(listener, storage.cast(), len, flags) {
                    -1 => Err(io::Error::last_os_error()),
                    fd => Ok(Socket::from_raw_fd(fd)),
                }
            })
        }
    }

    /// Set TCP_NODELAY on a TCP listener, which Linux copies to every
    /// connection it accepts (one setsockopt(2) per worker instead of one
    /// per connection). Returns whether the connections will have it.
    pub fn nodelay_for_connections(&self) -> bool {
        matches!(self.addr, ListenAddr::Tcp(_)) && self.socket.set_tcp_nodelay(true).is_ok()
    }

    /// Unlink the UNIX socket file if this process created it.
    pub fn remove_created_path(&self) {
        if let Some(path) = &self.created_path {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Wrap an inherited listening socket (systemd or `fd://N`): check it
    /// is a TCP or UNIX stream socket, make it non-blocking and close-on-exec.
    fn adopt(socket: Socket) -> Result<Listener, ListenError> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let bad = |reason: String| ListenError::BadFd { fd, reason };
        if socket.r#type().map_err(|e| bad(e.to_string()))? != Type::STREAM {
            return Err(bad("not a stream socket".into()));
        }
        let local = socket.local_addr().map_err(|e| bad(e.to_string()))?;
        let addr = if let Some(tcp) = local.as_socket() {
            ListenAddr::Tcp(tcp)
        } else if local.is_unix() {
            ListenAddr::Unix(local.as_pathname().map(Path::to_path_buf))
        } else {
            return Err(bad("neither TCP nor a UNIX socket".into()));
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| bad(e.to_string()))?;
        socket.set_cloexec(true).map_err(|e| bad(e.to_string()))?;
        Ok(Listener {
            socket,
            addr,
            created_path: None,
        })
    }
}

/// Names of inherited sockets that carry another role than the app's HTTP
/// (`FileDescriptorName=` in the socket unit; DESIGN §5): the master
/// serves them itself (metrics, the control socket).
const NON_HTTP_NAMES: [&str; 2] = ["metrics", "control"];

/// How ferrocorn binds the sockets it creates itself.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// listen(2) backlog (`backlog`).
    pub backlog: i32,
    /// SO_REUSEPORT on TCP sockets (`reuse_port`).
    pub reuse_port: bool,
    /// The file mode creation mask while a UNIX socket is created (Gunicorn's
    /// `umask`, default 0: the socket is 0777, so a proxy running as another
    /// user can connect).
    pub umask: u32,
    /// The owner a UNIX socket is given (the workers' user and group), as
    /// Gunicorn chowns its sockets.
    pub owner: (Option<nix::unistd::Uid>, Option<nix::unistd::Gid>),
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            backlog: 2048,
            reuse_port: false,
            umask: 0,
            owner: (None, None),
        }
    }
}

/// What systemd or the command line gave us to listen on.
#[derive(Debug, Default)]
pub struct Sockets {
    /// The sockets served as HTTP.
    pub http: Vec<Listener>,
    /// Inherited sockets with another role, by name (close-on-exec): the
    /// master's own endpoints; workers never see them.
    pub reserved: Vec<(String, OwnedFd)>,
}

/// The listeners to serve: systemd's when `LISTEN_FDS`/`LISTEN_PID` name us
/// (the variables, and `LISTEN_FDNAMES`, are unset either way), else one per
/// `binds` entry. Inherited sockets are used as they are: no second listen(2).
///
/// Errors: the first address that cannot be bound or adopted, or an
/// inherited socket that is a connection (`Accept=yes`), not a listener.
pub fn open(binds: &[Bind], options: &BindOptions) -> Result<Sockets, ListenError> {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    let mut inherited = listenfd::ListenFd::from_env();
    // SAFETY: called from the single-threaded start-up; nothing reads the
    // environment concurrently.
    unsafe { std::env::remove_var("LISTEN_FDNAMES") };
    if inherited.len() == 0 {
        let http = binds
            .iter()
            .map(|b| bind(b, options))
            .collect::<Result<_, _>>()?;
        return Ok(Sockets {
            http,
            reserved: Vec::new(),
        });
    }
    let mut sockets = Sockets::default();
    for idx in 0..inherited.len() {
        let fd = 3 + idx as RawFd;
        let name = names.next().unwrap_or_default().to_string();
        let raw = inherited
            .take_raw_fd(idx)
            .ok()
            .flatten()
            .ok_or_else(|| ListenError::BadFd {
                fd,
                reason: "not passed by systemd".into(),
            })?;
        if NON_HTTP_NAMES.contains(&name.as_str()) {
            // SAFETY: systemd passed this fd for this process to own.
            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
            let _ = nix::fcntl::fcntl(
                &owned,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            tracing::debug!("inherited fd {raw} named {name:?}: the master's, not the app's");
            sockets.reserved.push((name, owned));
            continue;
        }
        let listener = adopt_fd(raw)?;
        if !listener.socket.is_listener().unwrap_or(false) {
            return Err(ListenError::BadFd {
                fd: raw,
                reason: "it is a connection, not a listening socket: socket units with \
                         Accept=yes start one process per connection, which a pre-fork \
                         server is not; use Accept=no"
                    .into(),
            });
        }
        sockets.http.push(listener);
    }
    Ok(sockets)
}

/// A socket systemd passed under another role (`metrics`, `control`), as
/// a listener of ours.
///
/// Errors: it is not a listening stream socket.
pub fn adopt_reserved(fd: OwnedFd) -> Result<Listener, ListenError> {
    let listener = Listener::adopt(Socket::from(fd))?;
    if !listener.socket.is_listener().unwrap_or(false) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener.socket);
        return Err(ListenError::BadFd {
            fd,
            reason: "it is a connection, not a listening socket (use Accept=no)".into(),
        });
    }
    Ok(listener)
}

/// A listener the master passed to this worker at `fd` (made
/// non-blocking and close-on-exec, as every listener is).
///
/// Errors: `fd` is not an open listening stream socket.
pub fn inherited(fd: RawFd) -> Result<Listener, ListenError> {
    adopt_fd(fd)
}

fn adopt_fd(fd: RawFd) -> Result<Listener, ListenError> {
    let is_fd = nix::fcntl::fcntl(
        // SAFETY: only queried; the fd is not closed or retained here.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    );
    if is_fd.is_err() {
        return Err(ListenError::BadFd {
            fd,
            reason: "not an open file descriptor".into(),
        });
    }
    // SAFETY: the fd was handed to this process (LISTEN_FDS or fd://N) for it to
    // own, and was checked open above; nothing else in this process holds it.
    // Doubt: with fd://N the user could name a descriptor we use ourselves
    // (0-2); adopt() then fails on the socket-type check and we exit.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    Listener::adopt(socket)
}

/// Which of the addresses `host` resolved to a `-b HOST:PORT` binds, as
/// Gunicorn does: a name (`localhost`) over IPv4, as Python's AF_INET
/// socket resolves it; only an IPv6 literal (`[::1]`) over IPv6. A name
/// with no IPv4 address takes its first.
fn bind_address(host: &str, addrs: &[std::net::SocketAddr]) -> Option<std::net::SocketAddr> {
    let literal_v6 = host.parse::<std::net::Ipv6Addr>().is_ok();
    addrs
        .iter()
        .find(|a| a.is_ipv6() == literal_v6)
        .or(addrs.first())
        .copied()
}

/// Have the kernel hand over a TCP connection only once its first bytes
/// are there (TCP_DEFER_ACCEPT, tcp(7)), as nginx's `deferred`, Apache's
/// `AcceptFilter` and uWSGI do on Linux: a worker wakes for a request it
/// can read, not for the handshake, and a connection that stays silent
/// waits in the kernel, not in `worker_connections`, until the SYN-ACK
/// is sent again after [`DEFER_ACCEPT_SECS`] (then it is accepted, and
/// `header_timeout` applies). Best effort: a kernel without it accepts
/// as usual. Sockets from systemd are left as the unit made them
/// (`DeferAcceptSec=`).
fn defer_accept(socket: &Socket) {
    let secs: libc::c_int = DEFER_ACCEPT_SECS;
    // SAFETY: setsockopt(2) on an open socket, reading a c_int of the
    // length given.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// How long a silent connection waits in the kernel (see `defer_accept`).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Bind one address ferrocorn listens on itself (a `-b` entry, or the
/// metrics or control socket's).
///
/// Errors: the address cannot be resolved, bound or listened on.
pub fn bind(b: &Bind, options: &BindOptions) -> Result<Listener, ListenError> {
    match b {
        Bind::Fd(fd) => adopt_fd(*fd),
        Bind::Tcp { host, port } => {
            let what = format!("{host}:{port}");
            let addrs: Vec<std::net::SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| ListenError::Bind {
                    what: what.clone(),
                    source: e,
                })?
                .collect();
            let addr =
                bind_address(host, &addrs).ok_or_else(|| ListenError::Resolve(what.clone()))?;
            let err = |source| ListenError::Bind {
                what: what.clone(),
                source,
            };
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)
                .map_err(err)?;
            socket.set_reuse_address(true).map_err(err)?;
            if options.reuse_port {
                socket.set_reuse_port(true).map_err(err)?;
            }
            if addr.is_ipv6() {
                // So that `-b 0.0.0.0:P -b [::]:P` can both be bound.
                socket.set_only_v6(true).map_err(err)?;
            }
            socket.bind(&addr.into()).map_err(err)?;
            socket.listen(options.backlog).map_err(err)?;
            defer_accept(&socket);
            socket.set_nonblocking(true).map_err(err)?;
            let local = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
            Ok(Listener {
                socket,
                addr: ListenAddr::Tcp(local),
                created_path: None,
            })
        }
        Bind::Unix(path) => bind_unix(path, options),
    }
}

fn bind_unix(path: &Path, options: &BindOptions) -> Result<Listener, ListenError> {
    let err = |source| ListenError::Bind {
        what: format!("unix:{}", path.display()),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ListenError::NotASocket(path.to_path_buf()));
        }
        // A socket file left by a crash refuses connections; a live one accepts.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError::UnixInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None).map_err(err)?;
    let addr = SockAddr::unix(path).map_err(err)?;
    // bind(2) creates the file with 0777 & ~umask: Gunicorn's umask
    // applies, only while binding (single-threaded start-up).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(options.umask));
    let bound = socket.bind(&addr);
    nix::sys::stat::umask(old);
    bound.map_err(err)?;
    let (uid, gid) = options.owner;
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(path, uid, gid).map_err(|e| err(e.into()))?;
    }
    socket.listen(options.backlog).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(Listener {
        socket,
        addr: ListenAddr::Unix(Some(path.to_path_buf())),
        created_path: Some(path.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_binds_ipv4_and_only_an_ipv6_literal_binds_ipv6() {
        let v6: std::net::SocketAddr = "[::1]:8080".parse().unwrap();
        let v4: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        // glibc lists ::1 first for localhost when /etc/hosts names both.
        assert_eq!(bind_address("localhost", &[v6, v4]), Some(v4));
        assert_eq!(bind_address("::1", &[v6]), Some(v6));
        assert_eq!(bind_address("v6only.example", &[v6]), Some(v6));
        assert_eq!(bind_address("nothing.example", &[]), None);
    }

    #[test]
    fn stale_unix_socket_is_replaced_and_live_one_refused() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-lt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let opts = BindOptions::default();
        let first = bind_unix(&path, &opts).unwrap();
        assert!(matches!(
            bind_unix(&path, &opts),
            Err(ListenError::UnixInUse(_))
        ));
        drop(first); // closed but the file stays: stale
        let again = bind_unix(&path, &opts).unwrap();
        again.remove_created_path();
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(
            bind_unix(&path, &opts),
            Err(ListenError::NotASocket(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
