//! The arbiter: with a `gunicorn.conf.py`, the Python half of the master
//! (docs/architecture.md, "Server hooks").
//!
//! The master stays Rust and Python-free; it starts one arbiter, the app's
//! interpreter, which runs the configuration file and its master-side hooks
//! (`on_starting`, `when_ready`, `on_reload`, `pre_fork`, `child_exit`,
//! `nworkers_changed`, `pre_exec`, `on_exit`) and forks every worker, so
//! that what the file and `on_starting` set up in the interpreter is
//! inherited by the workers as under Gunicorn's fork. The master sends it
//! one command per line on a socket and never waits for an answer, so a
//! hook that hangs delays new workers but not the master:
//!
//! ```text
//! fork G N SLOT     fork a worker of generation G into SLOT (N wanted)
//! exited SLOT PID   a worker exited (child_exit)
//! workers NEW OLD   TTIN/TTOU (nworkers_changed)
//! reload NEW OLD S  HUP: the next generation's settings S (JSON); run the
//!                   file again, nworkers_changed, on_reload
//! exec              USR2 (pre_exec)
//! exit              the workers are gone (on_exit), then exit
//! ```
//!
//! A worker is forked twice (the middle process exits at once), so that it
//! becomes the master's child (the master is a subreaper) and the master
//! reaps, signals and times it out as any worker; its pid reaches the
//! master through its scoreboard slot. With `--preload` the arbiter forks
//! one zygote per generation, which imports the app and forks that
//! generation's workers (so HUP still loads new code); a zygote that cannot
//! load the app says `failed G CODE` on the socket.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use super::{Inherited, load_app, worker};
use crate::exit;
use crate::wsgi::{App, Forked, Hooks, HooksSpec};

/// This generation's zygote (`--preload`): its pid and the pipe its fork
/// requests go down.
struct Zygote {
    generation: u32,
    pid: Pid,
    requests: std::fs::File,
}

/// A worker to fork: its scoreboard slot, the workers wanted
/// (`server.num_workers`) and its age (`worker.age`).
#[derive(Debug, Clone, Copy)]
struct Job {
    slot: usize,
    wanted: usize,
    age: usize,
}

/// What a fork returned in this process.
enum Side {
    /// The arbiter (or zygote): carry on.
    Parent,
    /// A forked process done with its part: return this exit status.
    Done(i32),
}

/// Run the arbiter until the master says `exit` or goes away; returns the
/// exit status (78 when the file's hooks cannot be loaded or `on_starting`
/// or `when_ready` raised). In the processes it forks this returns too,
/// with their status.
pub(super) fn run(boot: Inherited, control: OwnedFd) -> i32 {
    // Signals stay blocked (as exec left them): the master speaks to us
    // through the socket, and a TERM meant for the service's processes
    // must not cut on_exit short. Its death ends us.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != boot.master {
        return exit::OK;
    }
    crate::proctitle::set(&format!("ferrocorn: arbiter [{}]", boot.settings.proc_name));
    let settings = &boot.settings;
    let Some(location) = settings.hooks_file() else {
        tracing::error!("arbiter started without a gunicorn.conf.py");
        return exit::CONFIG;
    };
    tracing::info!("Arbiter running {location} (pid: {})", std::process::id());
    let spec = HooksSpec {
        location,
        cfg_json: settings.cfg.clone().unwrap_or_else(|| "{}".into()),
        master: boot.master.as_raw(),
        num_workers: settings.workers,
        proc_name: settings.proc_name.clone(),
        pythonpath: settings.pythonpath.clone(),
        argv: boot.argv.clone(),
    };
    let hooks = match Hooks::load(&spec) {
        Ok(hooks) => hooks,
        Err(e) => {
            tracing::error!("{e}");
            return exit::CONFIG;
        }
    };
    // As Gunicorn's arbiter, which sets its worker count (calling
    // nworkers_changed with None) before on_starting.
    hooks.nworkers_changed(settings.workers, None);
    for name in ["on_starting", "when_ready"] {
        if !hooks.run(name) {
            tracing::error!("Shutting down: the {name} server hook failed (see above)");
            return exit::CONFIG;
        }
    }
    let mut replies = match control.try_clone() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            tracing::error!("arbiter: {e}");
            return exit::WORKER_BOOT_ERROR;
        }
    };
    let mut boot = Some(boot);
    let mut zygote: Option<Zygote> = None;
    // Gunicorn's worker age: one more per worker forked, and each slot's.
    let mut age = 0usize;
    let mut ages = std::collections::HashMap::new();
    let own_fds = [control.as_raw_fd(), replies.as_raw_fd()];
    let own_fds = &own_fds[..];
    let commands = BufReader::new(std::fs::File::from(control));
    for line in commands.lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<usize>().ok());
        match (words.first().copied(), number(1), number(2), number(3)) {
            (Some("fork"), Some(generation), Some(wanted), Some(slot)) => {
                let Some(inherited) = boot.as_mut() else {
                    break;
                };
                age += 1;
                ages.insert(slot, age);
                let job = Job { slot, wanted, age };
                if !inherited.settings.preload {
                    if let Side::Done(code) = fork_worker(&mut boot, hooks, job, &mut None, own_fds)
                    {
                        return code;
                    }
                    continue;
                }
                let generation = generation as u32;
                if zygote.as_ref().is_none_or(|z| z.generation != generation) {
                    // The older generation's zygote ends at EOF (closed
                    // before the fork, or the new zygote would hold it).
                    drop(zygote.take());
                    match start_zygote(&mut boot, hooks, generation, &mut replies, own_fds) {
                        Ok(Some(z)) => zygote = Some(z),
                        Ok(None) => return exit::OK,
                        Err(code) => return code,
                    }
                }
                if let Some(z) = zygote.as_mut() {
                    if let Err(e) = writeln!(z.requests, "{slot} {wanted} {age}") {
                        tracing::error!("arbiter: the zygote (pid: {}) is gone: {e}", z.pid);
                        zygote = None;
                    }
                }
            }
            (Some("exited"), Some(slot), Some(pid), _) => {
                let age = ages.remove(&slot).unwrap_or(0);
                hooks.child_exit(slot, pid as i32, age);
            }
            (Some("workers"), Some(new), Some(old), _) => {
                hooks.nworkers_changed(new, Some(old));
            }
            (Some("reload"), Some(new), Some(old), _) => {
                // The settings of the generations forked from now on.
                let json = line.splitn(4, ' ').nth(3).unwrap_or_default();
                match (
                    serde_json::from_str::<crate::config::Settings>(json),
                    boot.as_mut(),
                ) {
                    (Ok(settings), Some(inherited)) => {
                        hooks.set_environment(&settings.raw_env);
                        hooks.set_cfg(settings.cfg.as_deref().unwrap_or("{}"));
                        inherited.settings = settings;
                    }
                    (Err(e), _) => tracing::error!("arbiter: bad settings on reload: {e}"),
                    (_, None) => {}
                }
                hooks.on_reload(new, old);
            }
            (Some("exec"), ..) => {
                hooks.run("pre_exec");
            }
            (Some("exit"), ..) => {
                drop(zygote);
                hooks.run("on_exit");
                return exit::OK;
            }
            _ => tracing::warn!("arbiter: unknown command {line:?}"),
        }
        reap_children();
    }
    exit::OK
}

/// Collect exited zygotes (ours; the workers are the master's).
fn reap_children() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status.pid().is_none() {
            break;
        }
    }
}

/// `--preload`: fork this generation's zygote, which imports the app and
/// then forks a worker for each slot written down its pipe. `Ok(None)` and
/// `Err` are the zygote's own return (it has ended).
fn start_zygote(
    boot: &mut Option<Inherited>,
    hooks: &'static Hooks,
    generation: u32,
    replies: &mut std::fs::File,
    own_fds: &[RawFd],
) -> Result<Option<Zygote>, i32> {
    let (read, write) = nix::unistd::pipe().map_err(|_| exit::WORKER_BOOT_ERROR)?;
    match crate::wsgi::fork() {
        Ok(Forked::Parent(pid)) => Ok(Some(Zygote {
            generation,
            pid: Pid::from_raw(pid),
            requests: std::fs::File::from(write),
        })),
        Ok(Forked::Child) => {
            drop(write);
            let code = zygote(boot, hooks, generation, read, replies, own_fds);
            if code == exit::OK {
                Ok(None)
            } else {
                Err(code)
            }
        }
        Err(e) => {
            tracing::error!("arbiter cannot fork a zygote: {e}");
            Ok(None)
        }
    }
}

/// The zygote's life: import the app, then fork a worker per request.
fn zygote(
    boot: &mut Option<Inherited>,
    hooks: &'static Hooks,
    generation: u32,
    requests: OwnedFd,
    replies: &mut std::fs::File,
    own_fds: &[RawFd],
) -> i32 {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let Some(inherited) = boot.as_ref() else {
        return exit::OK;
    };
    crate::proctitle::set(&format!(
        "ferrocorn: zygote [{}]",
        inherited.settings.proc_name
    ));
    tracing::info!("Preloading the app (pid: {})", std::process::id());
    let app = match load_app(&inherited.settings, &inherited.argv) {
        Ok(app) => app,
        Err(code) => {
            let _ = writeln!(replies, "failed {generation} {code}");
            return code;
        }
    };
    app.freeze();
    let mut app = Some(app);
    for line in BufReader::new(std::fs::File::from(requests)).lines() {
        let Ok(line) = line else { break };
        let words: Vec<usize> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [slot, wanted, age] = words[..] else {
            continue;
        };
        let job = Job { slot, wanted, age };
        if let Side::Done(code) = fork_worker(boot, hooks, job, &mut app, own_fds) {
            // Only a worker gets here: the app it serves is its own now.
            return code;
        }
    }
    exit::OK
}

/// Fork the worker of `slot`: `pre_fork` here, then a middle process that
/// forks the worker, writes its pid into the slot and exits; the worker
/// runs `post_fork` and serves. Returns [`Side::Done`] in the middle
/// process and in the worker, once it has stopped.
fn fork_worker(
    boot: &mut Option<Inherited>,
    hooks: &'static Hooks,
    job: Job,
    app: &mut Option<App>,
    own_fds: &[RawFd],
) -> Side {
    let Some(inherited) = boot.as_ref() else {
        return Side::Parent;
    };
    let slot = job.slot;
    if slot >= inherited.board.len() {
        tracing::error!("arbiter: no scoreboard slot {slot}");
        return Side::Parent;
    }
    let board = inherited.board;
    let worker_obj = hooks.pre_fork(slot, job.wanted, job.age);
    match crate::wsgi::fork() {
        Ok(Forked::Parent(middle)) => {
            let _ = waitpid(Pid::from_raw(middle), None);
            let pid = board[slot].pid();
            if pid != 0 {
                hooks.forked(slot, pid);
            }
            Side::Parent
        }
        Ok(Forked::Child) => match crate::wsgi::fork() {
            Ok(Forked::Parent(pid)) => {
                board[slot].set_pid(pid);
                Side::Done(exit::OK)
            }
            Ok(Forked::Child) => {
                // The worker must not hold the arbiter's command socket.
                for &fd in own_fds {
                    blank(fd);
                }
                let mut inherited = boot.take().expect("checked above");
                inherited.slots = vec![slot];
                hooks.post_fork(worker_obj);
                Side::Done(worker(inherited, app.take(), true))
            }
            Err(e) => {
                tracing::error!("cannot fork a worker: {e}");
                Side::Done(exit::WORKER_BOOT_ERROR)
            }
        },
        Err(e) => {
            tracing::error!("arbiter cannot fork a worker: {e}");
            Side::Parent
        }
    }
}

/// Point `fd` at /dev/null: the descriptor it was is closed here, and the
/// number stays valid for whoever owns it.
fn blank(fd: RawFd) {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto a number this process owns; its owner's later
        // close closes /dev/null.
        unsafe { nix::libc::dup2(null.as_raw_fd(), fd) };
    }
}
