//! What the master knows of the server at one instant ([`Snapshot`], read
//! from the scoreboard and its own counters), written as Prometheus'
//! text exposition format (version 0.0.4) for `GET /metrics`.
//!
//! Metric names: `ferrocorn_requests_total{status="2xx"}`,
//! `ferrocorn_request_duration_seconds` (a histogram),
//! `ferrocorn_app_threads{state}`, `ferrocorn_workers{state}`,
//! `ferrocorn_worker_restarts_total`, `ferrocorn_worker_timeouts_total`,
//! `ferrocorn_listen_queue{listener}` and `ferrocorn_listen_queue_size`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::listeners::queue::Queue;
use crate::scoreboard::{DURATION_BUCKETS_MS, State, Totals};

/// One worker, as the master sees it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    /// Its pid.
    pub pid: i32,
    /// Its generation.
    pub generation: u32,
    /// Its state on the scoreboard, or `Stopping` once told to go.
    pub state: State,
    /// Since it was started.
    pub age: Duration,
    /// Its counters.
    pub totals: Totals,
    /// Per app thread: the request running and for how long, if any.
    pub threads: Vec<Option<(String, Duration)>>,
}

/// The server at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The master's pid.
    pub pid: u32,
    /// Since the master started.
    pub uptime: Duration,
    /// The generation being served.
    pub generation: u32,
    /// Workers wanted.
    pub wanted: usize,
    /// Every worker alive.
    pub workers: Vec<WorkerView>,
    /// Requests of every worker, the exited ones included.
    pub totals: Totals,
    /// Workers replaced after exiting on their own (crash, timeout,
    /// `--max-requests`, memory), as opposed to stopped or reloaded.
    pub restarts: u64,
    /// Workers aborted for a request past `--timeout`.
    pub timeouts: u64,
    /// Each HTTP listener and its queue, when known.
    pub queues: Vec<(String, Option<Queue>)>,
}

impl Snapshot {
    /// App threads running a request, and idle ones, in workers that serve.
    pub fn threads(&self) -> (usize, usize) {
        let serving = self.workers.iter().filter(|w| w.state == State::Ready);
        serving.fold((0, 0), |(busy, idle), w| {
            let b = w.threads.iter().filter(|t| t.is_some()).count();
            (busy + b, idle + w.threads.len() - b)
        })
    }
}

/// The exposition text.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP ferrocorn_requests_total Requests answered, by status class (none: the client left first).\n\
         # TYPE ferrocorn_requests_total counter"
    );
    let classes = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];
    for (class, n) in classes.iter().zip(s.totals.by_class) {
        let _ = writeln!(out, "ferrocorn_requests_total{{status=\"{class}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP ferrocorn_request_duration_seconds Time from a request's head to the end of its response.\n\
         # TYPE ferrocorn_request_duration_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, n) in s.totals.durations.iter().enumerate() {
        cumulative += n;
        let le = DURATION_BUCKETS_MS
            .get(i)
            .map_or("+Inf".to_string(), |ms| format!("{}", *ms as f64 / 1000.0));
        let _ = writeln!(
            out,
            "ferrocorn_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "ferrocorn_request_duration_seconds_sum {}\nferrocorn_request_duration_seconds_count {cumulative}",
        s.totals.duration_us as f64 / 1e6
    );
    let (busy, idle) = s.threads();
    let _ = writeln!(
        out,
        "# HELP ferrocorn_app_threads App threads of serving workers, busy with a request or idle.\n\
         # TYPE ferrocorn_app_threads gauge\n\
         ferrocorn_app_threads{{state=\"busy\"}} {busy}\nferrocorn_app_threads{{state=\"idle\"}} {idle}"
    );
    let count = |state: State| s.workers.iter().filter(|w| w.state == state).count();
    let _ = writeln!(
        out,
        "# HELP ferrocorn_workers Worker processes, by state.\n# TYPE ferrocorn_workers gauge\n\
         ferrocorn_workers{{state=\"booting\"}} {}\nferrocorn_workers{{state=\"ready\"}} {}\n\
         ferrocorn_workers{{state=\"stopping\"}} {}",
        count(State::Booting),
        count(State::Ready),
        count(State::Stopping)
    );
    let _ = writeln!(
        out,
        "# HELP ferrocorn_worker_restarts_total Workers replaced after exiting on their own (crash, timeout, max_requests, memory).\n\
         # TYPE ferrocorn_worker_restarts_total counter\nferrocorn_worker_restarts_total {}\n\
         # HELP ferrocorn_worker_timeouts_total Workers aborted for a request past --timeout.\n\
         # TYPE ferrocorn_worker_timeouts_total counter\nferrocorn_worker_timeouts_total {}",
        s.restarts, s.timeouts
    );
    queue_gauge(
        &mut out,
        s,
        "ferrocorn_listen_queue",
        "Connections waiting in a listener's queue to be accepted.",
        |q| q.waiting,
    );
    queue_gauge(
        &mut out,
        s,
        "ferrocorn_listen_queue_size",
        "The most connections a listener's queue holds (its backlog).",
        |q| q.size,
    );
    out
}

/// A gauge family with one sample per listener whose queue is known.
fn queue_gauge(out: &mut String, s: &Snapshot, family: &str, help: &str, value: fn(&Queue) -> u32) {
    let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
    for (name, q) in &s.queues {
        if let Some(q) = q {
            let _ = writeln!(
                out,
                "{family}{{listener=\"{}\"}} {}",
                escape(name),
                value(q)
            );
        }
    }
}

/// A label value: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
