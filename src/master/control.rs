//! The control socket's answers, and `ferrocorn status`, its client: a
//! live view of every worker and app thread — its state, the request it is
//! running and for how long — as `passenger-status` and `uwsgitop` give
//! their users, read from the scoreboard by the master.
//!
//! Protocol: the client sends one line, `status` or `status json`, and
//! reads the answer until the master closes the connection.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::metrics::Snapshot;
use crate::exit;
use crate::scoreboard::State;

/// The answer to a control command.
pub fn answer(command: &str, s: &Snapshot) -> Vec<u8> {
    match command {
        "status" => text(s).into_bytes(),
        "status json" => {
            let mut j = json(s).to_string();
            j.push('\n');
            j.into_bytes()
        }
        other => {
            format!("error: unknown command {other:?} (try: status, status json)\n").into_bytes()
        }
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Free => "free",
        State::Booting => "booting",
        State::Ready => "ready",
        State::Stopping => "stopping",
    }
}

/// `1h02m`, `5m03s`, `12.3s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn text(s: &Snapshot) -> String {
    let mut out = String::new();
    let ready = s
        .workers
        .iter()
        .filter(|w| w.state == State::Ready && w.generation == s.generation)
        .count();
    let (busy, idle) = s.threads();
    let t = &s.totals;
    let _ = writeln!(
        out,
        "ferrocorn {} · master {} · up {} · generation {} · workers {ready}/{} ready",
        env!("CARGO_PKG_VERSION"),
        s.pid,
        human(s.uptime),
        s.generation,
        s.wanted
    );
    let _ = writeln!(
        out,
        "requests {} (2xx {}, 3xx {}, 4xx {}, 5xx {}) · app threads {busy} busy, {idle} idle · restarts {} · timeouts {}",
        t.requests,
        t.by_class[2],
        t.by_class[3],
        t.by_class[4],
        t.by_class[5],
        s.restarts,
        s.timeouts
    );
    for (name, q) in &s.queues {
        if let Some(q) = q {
            let _ = writeln!(
                out,
                "listen queue {name}: {} waiting (of {})",
                q.waiting, q.size
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:<4} {:<9} {:>9} {:>8}",
        "PID", "GEN", "STATE", "REQUESTS", "AGE"
    );
    for w in &s.workers {
        let _ = writeln!(
            out,
            "{:<8} {:<4} {:<9} {:>9} {:>8}",
            w.pid,
            w.generation,
            state_name(w.state),
            w.totals.requests,
            human(w.age)
        );
        for (i, thread) in w.threads.iter().enumerate() {
            match thread {
                Some((request, ran)) => {
                    let _ = writeln!(out, "  thread {i:<3} busy {:>7}  {request}", human(*ran));
                }
                None => {
                    let _ = writeln!(out, "  thread {i:<3} idle");
                }
            }
        }
    }
    out
}

fn json(s: &Snapshot) -> serde_json::Value {
    let workers: Vec<serde_json::Value> = s
        .workers
        .iter()
        .map(|w| {
            let threads: Vec<serde_json::Value> = w
                .threads
                .iter()
                .map(|t| match t {
                    Some((request, ran)) => serde_json::json!({
                        "state": "busy", "request": request, "running_seconds": ran.as_secs_f64()
                    }),
                    None => serde_json::json!({"state": "idle"}),
                })
                .collect();
            serde_json::json!({
                "pid": w.pid, "generation": w.generation, "state": state_name(w.state),
                "requests": w.totals.requests, "age_seconds": w.age.as_secs_f64(),
                "threads": threads,
            })
        })
        .collect();
    let queues: Vec<serde_json::Value> = s
        .queues
        .iter()
        .map(|(name, q)| serde_json::json!({"listener": name, "waiting": q.map(|q| q.waiting), "size": q.map(|q| q.size)}))
        .collect();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"), "master": s.pid, "uptime_seconds": s.uptime.as_secs_f64(),
        "generation": s.generation, "workers_wanted": s.wanted, "requests": s.totals.requests,
        "requests_by_status": {
            "none": s.totals.by_class[0], "1xx": s.totals.by_class[1], "2xx": s.totals.by_class[2],
            "3xx": s.totals.by_class[3], "4xx": s.totals.by_class[4], "5xx": s.totals.by_class[5],
        },
        "restarts": s.restarts, "timeouts": s.timeouts, "listen_queues": queues, "workers": workers,
    })
}

/// `ferrocorn status [--control-socket PATH] [--json]`: print the answer
/// of the master at PATH (or `FERROCORN_CONTROL_SOCKET`). Returns the exit
/// status: 0, or 1 when the master cannot be reached, 78 for bad usage.
pub fn status_command(args: &[OsString]) -> i32 {
    let mut path: Option<PathBuf> = std::env::var_os("FERROCORN_CONTROL_SOCKET").map(PathBuf::from);
    let mut json = false;
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        match arg.split_once('=') {
            Some(("--control-socket", p)) => path = Some(p.into()),
            _ if arg == "--control-socket" => path = it.next().map(PathBuf::from),
            _ if arg == "--json" => json = true,
            _ if arg == "-h" || arg == "--help" => {
                println!(
                    "Usage: ferrocorn status [--control-socket PATH] [--json]\n\n\
                     Show what every worker and app thread of a running ferrocorn is doing, read from\n\
                     its control socket (--control-socket of the server, or the socket systemd passes\n\
                     it as FileDescriptorName=control). PATH may also come from FERROCORN_CONTROL_SOCKET."
                );
                return exit::OK;
            }
            _ => {
                eprintln!(
                    "ferrocorn status: unexpected argument {arg:?} (see ferrocorn status --help)"
                );
                return exit::CONFIG;
            }
        }
    }
    let Some(path) = path else {
        eprintln!(
            "ferrocorn status: no control socket: give --control-socket PATH (the server's \
             --control-socket, or the socket unit's ListenStream= for FileDescriptorName=control)"
        );
        return exit::CONFIG;
    };
    let ask = || -> std::io::Result<String> {
        let mut s = UnixStream::connect(&path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(if json { b"status json\n" } else { b"status\n" })?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    match ask() {
        Ok(answer) => {
            print!("{answer}");
            exit::OK
        }
        Err(e) => {
            eprintln!("ferrocorn status: cannot ask {}: {e}", path.display());
            exit::FAILURE
        }
    }
}
