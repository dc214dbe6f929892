//! The pool of `docs/scale-out.md`, for real: two ferrocorn hosts, each in
//! a network namespace of its own (a veth pair to this one), behind
//! HAProxy speaking the PROXY protocol v2 and checking
//! `health_check_path`. Under a steady load through HAProxy, a rolling
//! HUP and then a rolling restart of the hosts lose no request.
//!
//! Needs root, `ip` (iproute2) and HAProxy (Debian's `haproxy`); without
//! them it says so and passes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{is_root, which};
use crate::common::*;

const SEC: Duration = Duration::from_secs(1);
/// The port every host listens on, in its own namespace.
const HOST_PORT: u16 = 8000;

/// A network namespace with a veth pair to this one: the host's address
/// is `10.251.N.2`, ours `10.251.N.1`. Deleted when dropped.
struct Netns {
    name: String,
    ours: String,
    host: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl Netns {
    fn new(n: u8) -> Netns {
        let tag = std::process::id() % 10_000;
        let name = format!("fc-pool{n}-{tag}");
        let (veth, peer) = (format!("fcp{n}h{tag}"), format!("fcp{n}n{tag}"));
        let (ours, host) = (format!("10.251.{n}.1"), format!("10.251.{n}.2"));
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        let ns = Netns { name, ours, host };
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/30", ns.ours), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", ns.host), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// A ferrocorn host in this namespace, as the guide runs it.
    fn start_host(&self, name: &str) -> Server {
        let addr = Addr::Tcp(format!("{}:{HOST_PORT}", self.host).parse().unwrap());
        Server::builder(name, "testapp:app")
            .wrapper(["ip", "netns", "exec", &self.name])
            .binds(vec![addr])
            .args(["-w", "2", "--graceful-timeout", "10"])
            .args(["--proxy-protocol", "v2", "--proxy-allow-from", &self.ours])
            .args(["--health-check-path", "/_health"])
            .start()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// HAProxy in front of `hosts`, as docs/scale-out.md configures it.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(dir: &TempDir, port: u16, hosts: &[&Netns]) -> Haproxy {
    let haproxy = which(&["haproxy"]).expect("haproxy");
    let servers: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            format!(
                "  server host{i} {}:{HOST_PORT} send-proxy-v2 check\n",
                h.host
            )
        })
        .collect();
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  log stderr local0 info\n\
             defaults\n  mode http\n  log global\n  option httplog\n\
             timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout\n\
             frontend www\n  bind 127.0.0.1:{port}\n  default_backend pool\n\
             backend pool\n  balance roundrobin\n\
             option httpchk\n  http-check send meth GET uri /_health ver HTTP/1.1 hdr Host pool\n\
             http-check expect status 200\n\
             default-server inter 250ms fall 1 rise 2\n{servers}"
        ),
    )
    .unwrap();
    let child = Command::new(haproxy)
        .args(["-db", "-f", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .spawn()
        .expect("start haproxy");
    Haproxy(child)
}

/// `GET /environ` through HAProxy until it answers 200.
fn environ_via(addr: &Addr) -> serde_json::Value {
    let deadline = Instant::now() + 10 * SEC;
    loop {
        if let Ok(stream) = addr.connect() {
            let mut c = Client::from_stream(stream);
            if let Ok(r) = {
                c.send(&request("GET", "/environ", &[], b""));
                c.try_read_response("GET")
            } {
                if r.status == 200 {
                    return r.json();
                }
            }
        }
        assert!(Instant::now() < deadline, "HAProxy never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn expect_no_loss(load: SteadyLoad, what: &str, haproxy_log: &std::path::Path, since: Instant) {
    let took = since.elapsed();
    let (ok, failed) = load.finish();
    // The load (at most 5,000 requests in 20 s) lasted through it all.
    assert!(
        ok + failed.len() < 5000 && took < 20 * SEC,
        "{what}: the load ended early"
    );
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed: {failed:?}\n{}",
        failed.len(),
        ok + failed.len(),
        std::fs::read_to_string(haproxy_log).unwrap_or_default()
    );
    assert!(ok > 50, "{what}: only {ok} requests");
    eprintln!("{what}: {ok} requests, all answered 200");
}

#[test]
fn a_pool_behind_haproxy_loses_no_request_in_a_rolling_hup_and_restart() {
    if !is_root() || which(&["ip"]).is_none() || which(&["haproxy"]).is_none() {
        eprintln!("note: needs root, ip (iproute2) and haproxy; test skipped");
        return;
    }
    let (a, b) = (Netns::new(1), Netns::new(2));
    let mut hosts = [a.start_host("pool-a"), b.start_host("pool-b")];
    let dir = TempDir::new("pool-haproxy");
    let port = free_port();
    let _haproxy = haproxy(&dir, port, &[&a, &b]);
    let front = Addr::Tcp(([127, 0, 0, 1], port).into());

    // PROXY v2 names the client, and both hosts serve.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let env = environ_via(&front);
        assert_eq!(env.key("REMOTE_ADDR").str(), "127.0.0.1", "{env}");
        assert_eq!(env.key("PROXY_PROTOCOL").str(), "TCP4", "{env}");
        seen.insert(env.key("SERVER_NAME").str().to_string());
    }
    assert_eq!(seen.len(), 2, "HAProxy used {seen:?}");

    // Rolling HUP: each host reloads its workers in turn.
    let since = Instant::now();
    let load = SteadyLoad::paced(&front, "/pid", Duration::from_millis(2));
    std::thread::sleep(SEC);
    for host in &hosts {
        host.signal(libc::SIGHUP);
        assert!(
            host.wait_log("Reload complete: generation 1", 20 * SEC),
            "no new generation: {}",
            host.log()
        );
        std::thread::sleep(SEC);
    }
    expect_no_loss(load, "rolling HUP", &dir.join("haproxy.log"), since);

    // Rolling restart: each host stopped (TERM), then started again; HAProxy
    // sees it down, sends its requests to the other, and takes it back.
    let since = Instant::now();
    let load = SteadyLoad::paced(&front, "/pid", Duration::from_millis(2));
    std::thread::sleep(SEC);
    for (i, ns) in [&a, &b].into_iter().enumerate() {
        hosts[i].signal(libc::SIGTERM);
        assert!(
            hosts[i].wait_exit(20 * SEC).is_some(),
            "host {i} did not stop"
        );
        std::thread::sleep(SEC);
        hosts[i] = ns.start_host(&format!("pool-{i}-again"));
        // rise 2 × inter 250ms: back in the pool within a second.
        std::thread::sleep(2 * SEC);
    }
    expect_no_loss(load, "rolling restart", &dir.join("haproxy.log"), since);
}
