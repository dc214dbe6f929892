//! Starting a worker (or, with `--preload`, a zygote): the app's
//! interpreter, exec'd with the listeners, the scoreboard, the report pipe
//! and its boot description (DESIGN §1; [`crate::boot`]).

use std::os::fd::{AsRawFd, RawFd};

use nix::unistd::Pid;

use super::{Master, exec};
use crate::boot::{self, Boot};

/// Variables that would let a worker, or the app, speak for the service:
/// only the master talks to systemd (`NotifyAccess=main`, DESIGN §5).
const SYSTEMD_ONLY: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Start a child for the scoreboard `slots`: a worker (one slot), or with
/// `--preload` a zygote that forks a worker into each.
///
/// Errors: memfd_create(2) or fork(2) failures (out of processes or
/// memory); an interpreter that fails to start shows as the child's exit.
pub(super) fn spawn_child(master: &Master, slots: Vec<usize>) -> std::io::Result<Pid> {
    let listeners: Vec<RawFd> = master
        .sockets
        .http
        .iter()
        .map(|l| l.socket.as_raw_fd())
        .collect();
    let access_log = crate::logging::access::file_fd();
    let mut fds = listeners.clone();
    fds.extend([master.board_fd.as_raw_fd(), master.reports.1.as_raw_fd()]);
    fds.extend(access_log);
    // Where each lands in the child: 3, 4, ... in this order.
    let at = |i: usize| 3 + i as RawFd;
    let n = listeners.len();
    let description = Boot {
        version: boot::VERSION.to_string(),
        build: boot::BUILD.to_string(),
        settings: master.settings.clone(),
        listeners: (0..n).map(at).collect(),
        scoreboard: at(n),
        report: at(n + 1),
        access_log: access_log.map(|_| at(n + 2)),
        slots,
        master: std::process::id() as i32,
        argv: std::env::args().collect(),
    };
    let memfd = description.to_memfd()?;
    let boot_fd = at(fds.len());
    fds.push(memfd.as_raw_fd());
    let python = &master.python;
    let exe = python.exe();
    let argv = python.worker_argv(boot_fd);
    let env = exec::environment_without(&SYSTEMD_ONLY);
    let pid = exec::spawn(&exec::Program {
        exe: &exe,
        argv: &argv,
        env: &env,
        pid_vars: &[],
        fds: &fds,
        cwd: None,
        signals: exec::Signals::Blocked,
    })?;
    Ok(pid)
}
