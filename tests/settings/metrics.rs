//! Metrics: Gunicorn's StatsD metrics received by a real UDP (and UNIX
//! datagram) socket; the Prometheus endpoint scraped and parsed by
//! `prometheus_client`'s own text parser; `ferrocorn status` showing a
//! request while it runs.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use super::{mode_of, tools_venv, venv_python};
use crate::common::*;

/// Datagrams received until `done` says enough, or 5 s.
fn collect(
    mut recv: impl FnMut(&mut [u8]) -> Option<usize>,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = std::time::Instant::now() + 5 * crate::SEC;
    while std::time::Instant::now() < deadline && !done(&got) {
        if let Some(n) = recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn statsd_gets_gunicorns_metric_names_with_prefix_and_tags() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = udp.local_addr().unwrap().port();
    let s = Server::builder("statsd-udp", "testapp:app")
        .args([
            "--statsd-host",
            &format!("127.0.0.1:{port}"),
            "--statsd-prefix",
            "shop",
        ])
        .args([
            "--dogstatsd-tags",
            "env:test,team:web",
            "--enable-backlog-metric",
        ])
        .start();
    assert_eq!(s.get("/").status, 200);
    assert_eq!(s.get("/status?code=404").status, 404);
    let got = collect(
        |b| udp.recv(b).ok(),
        |g| {
            g.iter().any(|m| m.contains("status.404"))
                && g.iter().any(|m| m.contains("gunicorn.backlog"))
        },
    );
    let tags = "|#env:test,team:web";
    for want in [
        format!("shop.gunicorn.requests:1|c|@1.0{tags}"),
        format!("shop.gunicorn.request.status.200:1|c|@1.0{tags}"),
        format!("shop.gunicorn.request.status.404:1|c|@1.0{tags}"),
        format!("shop.gunicorn.workers:1|g{tags}"),
    ] {
        assert!(got.contains(&want), "no {want:?} in {got:?}");
    }
    // The queue may hold one of our own requests when it is sampled.
    assert!(
        got.iter()
            .any(|m| m.starts_with("shop.gunicorn.backlog:") && m.ends_with(&format!("|h{tags}"))),
        "no backlog histogram in {got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m.starts_with("shop.gunicorn.request.duration:")
                && m.ends_with(&format!("|ms{tags}"))),
        "{got:?}"
    );
}

#[test]
fn statsd_over_a_unix_socket_counts_warnings() {
    let dir = TempDir::new("statsd-unix-sock");
    let path = dir.join("statsd.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // --worker-tmp-dir logs a warning (it has no effect here).
    let s = Server::builder("statsd-unix", "testapp:app")
        .args([
            "--statsd-host",
            &format!("unix://{}", path.display()),
            "--worker-tmp-dir",
            "/dev/shm",
        ])
        .start();
    assert_eq!(s.get("/").status, 200);
    let got = collect(
        |b| sock.recv(b).ok(),
        |g| g.iter().any(|m| m.starts_with("gunicorn.requests:")),
    );
    assert!(
        got.iter().any(|m| m.starts_with("gunicorn.requests:1|c")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|m| m == "gunicorn.log.warning:1|c|@1.0"),
        "{got:?}"
    );
}

#[test]
fn prometheus_scrapes_parse_and_match_the_requests_sent() {
    let Some(venv) = tools_venv() else { return };
    let port = free_port();
    let s = Server::builder("prometheus", "testapp:app")
        .args([
            "-w",
            "2",
            "--threads",
            "2",
            "--metrics-bind",
            &format!("127.0.0.1:{port}"),
        ])
        .start();
    // The harness's readiness probe was one 200; add 5 more, 3 404s, a 500.
    for _ in 0..5 {
        assert_eq!(s.get("/").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(s.get("/status?code=404").status, 404);
    }
    assert_eq!(s.get("/error/before").status, 500);
    let metrics = Addr::Tcp(([127, 0, 0, 1], port).into());
    // A worker counts a request once its response is out, so the client
    // can ask before the last one is counted; and the second worker may
    // still be booting. Both settle within moments.
    assert!(
        poll_until(10 * crate::SEC, || {
            let text = exchange_metrics(&metrics).text();
            text.contains("ferrocorn_request_duration_seconds_count 10")
                && text.contains("ferrocorn_workers{state=\"ready\"} 2")
        }),
        "{}",
        exchange_metrics(&metrics).text()
    );
    let scrape = exchange_metrics(&metrics);
    assert_eq!(scrape.status, 200, "{}", scrape.summary());
    assert!(
        scrape
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4")
    );
    let parsed = venv_python(
        &venv,
        "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families\n\
         out = {}\nfor fam in text_string_to_metric_families(sys.stdin.read()):\n\
         \x20   for s in fam.samples:\n\
         \x20       key = s.name + ''.join('{%s=%s}' % kv for kv in sorted(s.labels.items()))\n\
         \x20       out[key] = s.value\nprint(json.dumps(out))\n",
        scrape.text().as_bytes(),
    );
    let m: serde_json::Value = serde_json::from_str(&parsed).unwrap();
    let v = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("no {k} in {m}"))
    };
    assert_eq!(v("ferrocorn_requests_total{status=2xx}"), 6.0, "{m}");
    assert_eq!(v("ferrocorn_requests_total{status=4xx}"), 3.0, "{m}");
    assert_eq!(v("ferrocorn_requests_total{status=5xx}"), 1.0, "{m}");
    assert_eq!(v("ferrocorn_request_duration_seconds_count"), 10.0, "{m}");
    assert_eq!(
        v("ferrocorn_request_duration_seconds_bucket{le=+Inf}"),
        10.0,
        "{m}"
    );
    assert_eq!(v("ferrocorn_workers{state=ready}"), 2.0, "{m}");
    assert_eq!(
        v("ferrocorn_app_threads{state=busy}") + v("ferrocorn_app_threads{state=idle}"),
        4.0,
        "{m}"
    );
    assert_eq!(v("ferrocorn_worker_restarts_total"), 0.0, "{m}");
    let sock = s.addr.unix_path();
    let listener = format!("ferrocorn_listen_queue{{listener=unix:{}}}", sock.display());
    assert_eq!(v(&listener), 0.0, "{m}");
    // A crashed worker is a restart, and its requests are still counted.
    let mut c = s.client();
    c.send(&request("GET", "/crash", &[("Host", "x")], b""));
    let _ = c.try_read_response("GET");
    assert!(poll_until(10 * crate::SEC, || exchange_metrics(&metrics)
        .text()
        .contains("ferrocorn_worker_restarts_total 1")));
    assert!(
        exchange_metrics(&metrics)
            .text()
            .contains("ferrocorn_requests_total{status=\"4xx\"} 3")
    );
    // Anything but GET /metrics is not the app.
    let mut c = Client::connect(&metrics);
    assert_eq!(c.get("/").status, 404);
}

fn exchange_metrics(addr: &Addr) -> Response {
    let mut c = Client::connect(addr);
    c.get("/metrics")
}

#[test]
fn ferrocorn_status_shows_the_running_request_and_its_worker() {
    let b = Server::builder("status", "testapp:app").markers();
    let control = b.dir().join("control.sock");
    let s = b
        .args(["--threads", "2", "--control-socket"])
        .arg(&control)
        .start();
    assert_eq!(mode_of(&control), 0o600, "--control-socket-mode's default");
    let addr = s.addr.clone();
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(&addr);
        c.get("/sleep?s=2&tag=watched").status
    });
    assert!(poll_until(5 * crate::SEC, || s
        .dir
        .join("sleep-watched")
        .exists()));
    std::thread::sleep(Duration::from_millis(400));
    let out = std::process::Command::new(bin())
        .args(["status", "--control-socket"])
        .arg(&control)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("workers 1/1 ready"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("busy") && l.contains("GET /sleep?s=2&tag=watched")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("idle")), "{text}");
    let out = std::process::Command::new(bin())
        .args(["status", "--json", "--control-socket"])
        .arg(&control)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let threads = j["workers"][0]["threads"].as_array().unwrap();
    let busy: Vec<_> = threads.iter().filter(|t| t["state"] == "busy").collect();
    assert_eq!(busy.len(), 1, "{j}");
    assert_eq!(busy[0]["request"], "GET /sleep?s=2&tag=watched");
    assert!(busy[0]["running_seconds"].as_f64().unwrap() >= 0.4);
    assert_eq!(slow.join().unwrap(), 200);
    // Without a socket to ask: a usage error naming what to give.
    let out = std::process::Command::new(bin())
        .arg("status")
        .env_remove("FERROCORN_CONTROL_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--control-socket"));
}

#[test]
fn the_control_socket_systemd_names_control_answers_ferrocorn_status() {
    let Some(ssa) = [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("note: systemd-socket-activate not installed; test skipped");
        return;
    };
    let b = Server::builder("status-systemd", "testapp:app");
    let (http, control) = (b.dir().join("http.sock"), b.dir().join("control.sock"));
    let s = b
        .wrapper([
            ssa,
            "-l",
            http.to_str().unwrap(),
            "-l",
            control.to_str().unwrap(),
            "--fdname=http:control",
        ])
        .no_bind(Addr::Unix(http.clone()))
        .start();
    assert_eq!(s.get("/").status, 200);
    let out = std::process::Command::new(bin())
        .arg("status")
        .env("FERROCORN_CONTROL_SOCKET", &control)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("workers 1/1 ready"),
        "{text}"
    );
}

#[test]
fn no_control_socket_serves_none() {
    let b = Server::builder("no-control", "testapp:app");
    let control = b.dir().join("control.sock");
    let s = b
        .arg("--control-socket")
        .arg(&control)
        .arg("--no-control-socket")
        .start();
    assert_eq!(s.get("/").status, 200);
    assert!(!control.exists());
}
