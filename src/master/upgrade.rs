//! Binary upgrade (USR2, DESIGN §6): start the binary now on disk as a new
//! master that inherits the listeners, and hand the service over to it once
//! it serves.
//!
//! The new master gets the listening sockets at fds 3.. with `LISTEN_FDS`,
//! `LISTEN_PID` and `LISTEN_FDNAMES` set for it — the socket-activation
//! protocol, so it adopts them exactly as it would systemd's — plus
//! `FERROCORN_UPGRADE_FD`, a pipe on which it writes one line when its first
//! generation is ready. The old master then sends `MAINPID=` (so that
//! `NotifyAccess=main` follows the new master), and retires gracefully.
//! Until then nothing changes: a new master that fails simply exits and is
//! reaped, and the old one keeps serving.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::Pid;

use super::exec;
use crate::listeners::Sockets;

/// The environment variable naming the new master's readiness pipe.
pub const UPGRADE_FD_VAR: &str = "FERROCORN_UPGRADE_FD";

/// How this process was started, captured first thing in `main` (before
/// `--chdir`), so a binary upgrade can start the new master the same way.
#[derive(Debug, Clone)]
pub struct Relaunch {
    /// The executable's path (the file a package upgrade replaces).
    pub exe: std::path::PathBuf,
    /// The command line, `argv[0]` included.
    pub argv: Vec<CString>,
    /// The working directory at start.
    pub cwd: std::path::PathBuf,
}

impl Relaunch {
    /// Capture this process's executable, arguments and working directory.
    pub fn capture() -> Relaunch {
        Relaunch {
            exe: std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
            argv: std::env::args_os()
                .filter_map(|a| CString::new(a.as_os_str().as_bytes()).ok())
                .collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| "/".into()),
        }
    }
}

/// A new master being started.
#[derive(Debug)]
pub struct Upgrade {
    /// Its pid (our child until we exit).
    pub pid: Pid,
    /// Read end of its readiness pipe (non-blocking).
    pub ready: OwnedFd,
}

/// Fork and exec the binary as `how` describes, as a new master that
/// inherits `sockets`.
///
/// Errors: pipe(2) or fork(2) failures; an exec failure shows as the child
/// exiting with status 127.
pub fn start(how: &Relaunch, sockets: &Sockets) -> nix::Result<Upgrade> {
    let (ready, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let exe = CString::new(how.exe.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let mut passed: Vec<(RawFd, &str)> = sockets
        .http
        .iter()
        .map(|l| (l.socket.as_raw_fd(), "http"))
        .collect();
    passed.extend(
        sockets
            .reserved
            .iter()
            .map(|(name, fd)| (fd.as_raw_fd(), name.as_str())),
    );
    let n = passed.len();
    let fds: Vec<RawFd> = passed
        .iter()
        .map(|(fd, _)| *fd)
        .chain([ready_w.as_raw_fd()])
        .collect();
    let names: Vec<&str> = passed.iter().map(|(_, name)| *name).collect();
    let mut env = exec::environment_without(&[
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "WATCHDOG_PID",
        UPGRADE_FD_VAR,
    ]);
    env.extend(
        [
            format!("LISTEN_FDS={n}"),
            format!("LISTEN_FDNAMES={}", names.join(":")),
            format!("{UPGRADE_FD_VAR}={}", 3 + n),
        ]
        .into_iter()
        .filter_map(|kv| CString::new(kv).ok()),
    );
    // The watchdog (if any) follows the main PID the child is to become.
    let mut pid_vars = vec!["LISTEN_PID"];
    if std::env::var_os("WATCHDOG_USEC").is_some() {
        pid_vars.push("WATCHDOG_PID");
    }
    let pid = exec::spawn(&exec::Program {
        exe: &exe,
        argv: &how.argv,
        env: &env,
        pid_vars: &pid_vars,
        fds: &fds,
        // Relative paths on the command line (--chdir, -p, unix:) mean
        // what they meant at the first start.
        cwd: Some(&how.cwd),
        signals: exec::Signals::Default,
    })?;
    drop(ready_w);
    Ok(Upgrade { pid, ready })
}

/// In a new master started by [`start`]: the readiness pipe, if any
/// (`FERROCORN_UPGRADE_FD`); the variable is removed either way.
///
/// # Safety
/// Call once, while the process is single-threaded.
pub unsafe fn inherited_ready_pipe() -> Option<OwnedFd> {
    let fd = std::env::var(UPGRADE_FD_VAR).ok()?.parse::<RawFd>().ok();
    // SAFETY: single-threaded (the caller's contract).
    unsafe { std::env::remove_var(UPGRADE_FD_VAR) };
    let fd = fd.filter(|&fd| fd > 2)?;
    // SAFETY: only queried, not retained. A stale variable from a
    // hand-written environment could name any number; F_GETFD at least
    // makes sure it is open before we take it.
    let open = fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        FcntlArg::F_GETFD,
    );
    open.ok()?;
    // SAFETY: the old master placed this fd for us and nothing else in this
    // fresh process owns it. Doubt: as above, a forged variable.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = fcntl(&owned, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    Some(owned)
}
