//! Starting a worker (or, with `--preload`, a zygote; or, for
//! `--check-config`, a child that only imports the app): the app's
//! interpreter, exec'd with the listeners, the scoreboard, the report pipe,
//! the log files and its boot description (DESIGN §1; [`crate::boot`]).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::unistd::Pid;

use super::interpreter::Interpreter;
use super::{Master, exec};
use crate::boot::{self, Boot};
use crate::config::Settings;

/// Variables that would let a worker, or the app, speak for the service:
/// only the master talks to systemd (`NotifyAccess=main`, DESIGN §5).
const SYSTEMD_ONLY: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Start a child for the scoreboard `slots`: a worker (one slot), or with
/// `--preload` a zygote that forks a worker into each.
///
/// Errors: memfd_create(2) or fork(2) failures (out of processes or
/// memory); an interpreter that fails to start shows as the child's exit.
pub(super) fn spawn_child(master: &Master, slots: Vec<usize>) -> std::io::Result<Pid> {
    let (listeners, shared) = served(master);
    start(
        &master.python,
        &master.settings,
        &listeners,
        Some(shared),
        slots,
        Role::Serve,
    )
}

/// What every serving child gets: the HTTP listeners, then the scoreboard
/// and the report pipe.
fn served(master: &Master) -> (Vec<RawFd>, [RawFd; 2]) {
    let listeners = master
        .sockets
        .http
        .iter()
        .map(|l| l.socket.as_raw_fd())
        .collect();
    let shared = [master.board_fd.as_raw_fd(), master.reports.1.as_raw_fd()];
    (listeners, shared)
}

/// Start the arbiter, the Python process that runs a `gunicorn.conf.py`'s
/// server hooks and forks the workers (docs/architecture.md, "Server
/// hooks"); returns its pid and the master's end of its command socket
/// (non-blocking).
///
/// Errors: as [`spawn_child`], and socketpair(2).
pub(super) fn spawn_arbiter(master: &Master) -> std::io::Result<(Pid, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    // The arbiter reads its commands blocking.
    let flags = nix::fcntl::OFlag::from_bits_truncate(nix::fcntl::fcntl(
        &theirs,
        nix::fcntl::FcntlArg::F_GETFL,
    )?);
    nix::fcntl::fcntl(
        &theirs,
        nix::fcntl::FcntlArg::F_SETFL(flags - nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    let (listeners, shared) = served(master);
    let pid = start(
        &master.python,
        &master.settings,
        &listeners,
        Some(shared),
        Vec::new(),
        Role::Arbiter(theirs.as_raw_fd()),
    )?;
    Ok((pid, ours))
}

/// `--check-config`: start a child that imports the app and exits 0 if it
/// loads (1 with the reason logged if not); returns its pid.
///
/// Errors: as [`spawn_child`].
pub(super) fn spawn_check(python: &Interpreter, settings: &Settings) -> std::io::Result<Pid> {
    start(python, settings, &[], None, Vec::new(), Role::Check)
}

/// What the started interpreter is to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A worker, or a `--preload` zygote.
    Serve,
    /// The arbiter, with its end of the command socket.
    Arbiter(RawFd),
    /// A `--check-config` child.
    Check,
}

fn start(
    python: &Interpreter,
    settings: &Settings,
    listeners: &[RawFd],
    shared: Option<[RawFd; 2]>,
    slots: Vec<usize>,
    role: Role,
) -> std::io::Result<Pid> {
    let check = role == Role::Check;
    let mut fds = listeners.to_vec();
    // Where each lands in the child: 3, 4, ... in the order pushed.
    let place = |fds: &mut Vec<RawFd>, fd: RawFd| {
        fds.push(fd);
        2 + fds.len() as RawFd
    };
    let (scoreboard, report) = match shared {
        Some([board, report]) => (place(&mut fds, board), place(&mut fds, report)),
        None => (-1, -1),
    };
    let access_log = crate::logging::access::file_fd().map(|fd| place(&mut fds, fd));
    let error_log = crate::logging::error_log_fd().map(|fd| place(&mut fds, fd));
    let control = match role {
        Role::Arbiter(fd) => Some(place(&mut fds, fd)),
        _ => None,
    };
    let description = Boot {
        version: boot::VERSION.to_string(),
        build: boot::BUILD.to_string(),
        settings: settings.clone(),
        listeners: (0..listeners.len()).map(|i| 3 + i as RawFd).collect(),
        scoreboard,
        report,
        access_log,
        error_log,
        slots,
        master: std::process::id() as i32,
        argv: boot::master_argv(),
        control,
    };
    let memfd = description.to_memfd()?;
    let boot_fd = place(&mut fds, memfd.as_raw_fd());
    let exe = python.exe();
    let argv = python.worker_argv(boot_fd, check);
    let env = exec::environment_without(&SYSTEMD_ONLY);
    let pid = exec::spawn(&exec::Program {
        exe: &exe,
        argv: &argv,
        env: &env,
        pid_vars: &[],
        fds: &fds,
        cwd: None,
        signals: if check {
            exec::Signals::Default
        } else {
            exec::Signals::Blocked
        },
    })?;
    Ok(pid)
}
