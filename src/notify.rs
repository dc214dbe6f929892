//! Telling systemd the truth through sd_notify(3): readiness, reload, stop,
//! status, watchdog pings and start-up timeout extensions.
//!
//! Only the master speaks (`NotifyAccess=main`); workers are started
//! without the variables in their environment, so the app cannot see them
//! (`master/spawn.rs`). Every
//! call is a no-op when `NOTIFY_SOCKET` is unset, and a failed send is only
//! logged: telling systemd must never take the server down.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// `READY=1` with a `STATUS=` line: the service accepts and serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` and `MONOTONIC_USEC=` (required by `Type=notify-reload`,
/// systemd ≥ 253); `READY=1` follows once the new generation serves.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `MAINPID=` and a status: the service's main process is now `pid` (a
/// binary upgrade hands over to the new master).
pub fn main_pid(pid: u32, status: &str) {
    send(&[NotifyState::MainPid(pid), NotifyState::Status(status)]);
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `STATUS=` a one-line summary shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `WATCHDOG=1`: the service is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// `EXTEND_TIMEOUT_USEC=`: the start (a slow app import) needs `by` more.
pub fn extend_timeout(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

/// A failed start: `STATUS=` saying why and `ERRNO=` when there is one.
pub fn failed(why: &str, errno: Option<i32>) {
    let status = format!("failed: {why}");
    match errno.and_then(|e| u32::try_from(e).ok()) {
        Some(e) => send(&[NotifyState::Status(&status), NotifyState::Errno(e)]),
        None => send(&[NotifyState::Status(&status)]),
    }
}

/// How often to ping: half of `WATCHDOG_USEC` (sd_watchdog_enabled(3)),
/// `None` when systemd watches nothing for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
