//! StatsD metrics (Gunicorn's `statsd_host`, `statsd_prefix`,
//! `dogstatsd_tags`), with Gunicorn's metric names so that existing
//! dashboards keep working: per request `gunicorn.request.duration` (a
//! timer, ms), `gunicorn.requests` and `gunicorn.request.status.CODE`
//! (counters), sent by the worker that answered; `gunicorn.workers` (a
//! gauge, when the count changes) and `gunicorn.backlog` (a histogram,
//! with `--enable-backlog-metric`) from the master; `gunicorn.log.warning`
//! and `gunicorn.log.error` counted for every such log line, anywhere.
//!
//! One datagram per metric, to a UDP `HOST:PORT` or a UNIX datagram socket
//! (`unix://PATH`), as Gunicorn sends them. Sending never blocks and never
//! fails the caller: a lost datagram is a lost sample.

use std::fmt::Write as _;
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::config::{Statsd as Settings, StatsdTarget};

/// The connected socket.
#[derive(Debug)]
enum Sock {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

/// Where metrics go, with the prefix and tags every one gets.
#[derive(Debug)]
pub struct Statsd {
    sock: Sock,
    prefix: String,
    tags: String,
}

static STATSD: OnceLock<Statsd> = OnceLock::new();

/// Start sending metrics, if `settings` says where (once per process).
///
/// Errors: the address cannot be resolved or the socket set up; the
/// message names the address. Gunicorn then sends nothing; so do we.
pub fn init(settings: Option<&Settings>) -> Result<(), String> {
    let Some(s) = settings else { return Ok(()) };
    let sock = match &s.target {
        StatsdTarget::Udp(host, port) => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("statsd_host {host}:{port}: cannot resolve"))?;
            let bind = if addr.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let udp = UdpSocket::bind(bind)
                .and_then(|u| u.connect(addr).map(|()| u))
                .map_err(|e| format!("statsd_host {addr}: {e}"))?;
            let _ = udp.set_nonblocking(true);
            Sock::Udp(udp)
        }
        StatsdTarget::Unix(path) => {
            let unix = UnixDatagram::unbound()
                .and_then(|u| u.connect(path).map(|()| u))
                .map_err(|e| format!("statsd_host unix://{}: {e}", path.display()))?;
            let _ = unix.set_nonblocking(true);
            Sock::Unix(unix)
        }
    };
    let _ = STATSD.set(Statsd {
        sock,
        prefix: s.prefix.clone(),
        tags: s.tags.clone(),
    });
    Ok(())
}

/// The process's sender, when metrics are on.
pub fn get() -> Option<&'static Statsd> {
    STATSD.get()
}

impl Statsd {
    /// A request answered with `status` (`None`: no response) in `took`.
    pub fn request(&self, status: Option<u16>, took: Duration) {
        self.send(
            "gunicorn.request.duration",
            &python_float(took.as_secs_f64() * 1000.0),
            "ms",
        );
        self.increment("gunicorn.requests", 1);
        if let Some(code) = status {
            self.increment(&format!("gunicorn.request.status.{code}"), 1);
        }
    }

    /// A counter (`|c|@1.0`, Gunicorn's sampling rate).
    pub fn increment(&self, name: &str, value: u64) {
        self.send(name, &value.to_string(), "c|@1.0");
    }

    /// A gauge (`|g`).
    pub fn gauge(&self, name: &str, value: u64) {
        self.send(name, &value.to_string(), "g");
    }

    /// A histogram sample (`|h`).
    pub fn histogram(&self, name: &str, value: u64) {
        self.send(name, &value.to_string(), "h");
    }

    fn send(&self, name: &str, value: &str, kind: &str) {
        let mut msg = String::with_capacity(64);
        let _ = write!(msg, "{}{name}:{value}|{kind}", self.prefix);
        if !self.tags.is_empty() {
            let _ = write!(msg, "|#{}", self.tags);
        }
        let _ = match &self.sock {
            Sock::Udp(s) => s.send(msg.as_bytes()),
            Sock::Unix(s) => s.send(msg.as_bytes()),
        };
    }
}

/// A float as Python's `str()` writes it (`12.0`, `0.532`), as Gunicorn's
/// duration values are.
fn python_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Counts warning and error log lines as `gunicorn.log.warning` and
/// `gunicorn.log.error`, as Gunicorn's StatsD logger does.
#[derive(Debug)]
pub struct LogCounter;

impl<S: Subscriber> Layer<S> for LogCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(statsd) = get() else { return };
        match *event.metadata().level() {
            Level::ERROR => statsd.increment("gunicorn.log.error", 1),
            Level::WARN => statsd.increment("gunicorn.log.warning", 1),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_written_as_gunicorn_writes_them() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(("127.0.0.1", port)).unwrap();
        let s = Statsd {
            sock: Sock::Udp(client),
            prefix: "app.".into(),
            tags: "env:prod".into(),
        };
        s.request(Some(200), Duration::from_micros(12_000));
        let mut buf = [0u8; 256];
        let got: Vec<String> = (0..3)
            .map(|_| {
                let n = server.recv(&mut buf).unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            })
            .collect();
        assert_eq!(
            got,
            [
                "app.gunicorn.request.duration:12.0|ms|#env:prod",
                "app.gunicorn.requests:1|c|@1.0|#env:prod",
                "app.gunicorn.request.status.200:1|c|@1.0|#env:prod",
            ]
        );
        assert_eq!(python_float(0.532), "0.532");
    }
}
