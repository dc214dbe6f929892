//! Real proxies in front of ferrocorn, as deployments have them.
//!
//! - nginx, its workers running as www-data, proxying to a UNIX socket that
//!   ferrocorn (started as root) created: Gunicorn's umask default 0 makes
//!   the socket 0777, so nginx connects; and a location that mounts a
//!   Flask app under a prefix with `proxy_set_header SCRIPT_NAME`.
//! - HAProxy with `send-proxy` and `send-proxy-v2` (the PROXY protocol).
//!
//! They need the Debian packages (nginx-light, haproxy) and root; without
//! them they say so and pass.

use std::process::{Child, Command, Stdio};

use super::{app_venv, is_root, mode_of, which};
use crate::common::*;

/// A proxy process of this test, killed when dropped.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on 127.0.0.1:port, waiting until the proxy answers something.
fn get_via(port: u16, path: &str) -> Response {
    let addr = Addr::Tcp(([127, 0, 0, 1], port).into());
    assert!(
        poll_until(READY_TIMEOUT, || addr.connect().is_ok()),
        "the proxy does not listen on {port}"
    );
    let mut c = Client::connect(&addr);
    c.get(path)
}

fn nginx(dir: &TempDir, port: u16, upstream: &std::path::Path) -> Option<Proxy> {
    let nginx = which(&["nginx"])?;
    let conf = dir.join("nginx.conf");
    let sock = upstream.display();
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "user www-data;\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n\
             error_log {d}/nginx-error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
               fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
               server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://unix:{sock}:; proxy_set_header Host $host; }}\n\
                 location /flasktodo/ {{ proxy_pass http://unix:{sock}:; proxy_set_header SCRIPT_NAME /flasktodo; }}\n\
               }}\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new(nginx)
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            dir.path().to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nginx.stderr")).unwrap())
        .spawn()
        .ok()?;
    Some(Proxy(child))
}

/// Starts `b` on its UNIX socket in a directory www-data (nginx's workers)
/// can search, as `/run/app` is in a deployment; returns the socket's path.
fn start_for_www_data(b: ServerBuilder) -> (Server, std::path::PathBuf) {
    std::fs::set_permissions(b.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = b.start();
    let sock = s.addr.unix_path().to_path_buf();
    (s, sock)
}

#[test]
fn nginx_as_www_data_reaches_a_unix_socket_and_mounts_the_app() {
    if !is_root() || which(&["nginx"]).is_none() {
        eprintln!("note: needs root and nginx (Debian's nginx-light); test skipped");
        return;
    }
    let Some(venv) = app_venv() else { return };
    let b = Server::builder("nginx-umask", "flasktodo:app")
        .chdir(Some(repo_root().join("tests/apps/guides")))
        .arg("--virtualenv")
        .arg(&venv);
    let (s, sock) = start_for_www_data(b);
    assert_eq!(
        mode_of(&sock),
        0o777,
        "Gunicorn's umask 0 makes the socket 0777"
    );
    let port = free_port();
    let _nginx = nginx(&s.dir, port, &sock).expect("start nginx");
    let r = get_via(port, "/");
    assert_eq!(
        r.status,
        200,
        "nginx: {}\n{}",
        r.summary(),
        std::fs::read_to_string(s.dir.join("nginx-error.log")).unwrap_or_default()
    );
    let r = get_via(port, "/flasktodo/");
    assert_eq!(r.status, 200, "{}", r.summary());
    let j = r.json();
    assert_eq!(j["links"]["self"], "/flasktodo/", "{j}");
    assert_eq!(j["links"]["item"], "/flasktodo/todo/0", "{j}");
    // A client cannot send the field itself: nginx passes it on only where
    // it sets it, and a peer outside forwarded_allow_ips is not believed.
    let r = get_via(port, "/");
    assert_eq!(r.json()["script_name"], "", "{}", r.text());
}

#[test]
fn with_a_umask_the_socket_refuses_nginx() {
    if !is_root() || which(&["nginx"]).is_none() {
        eprintln!("note: needs root and nginx; test skipped");
        return;
    }
    let b = Server::builder("nginx-umask77", "testapp:app").args(["-m", "0o077"]);
    let (s, sock) = start_for_www_data(b);
    assert_eq!(mode_of(&sock), 0o700);
    let port = free_port();
    let _nginx = nginx(&s.dir, port, &sock).expect("start nginx");
    assert_eq!(
        get_via(port, "/").status,
        502,
        "www-data must not reach a 0700 socket"
    );
}

fn haproxy(dir: &TempDir, port: u16, upstream: u16, send: &str) -> Option<Proxy> {
    let haproxy = which(&["haproxy"])?;
    let conf = dir.join(&format!("haproxy-{send}.cfg"));
    std::fs::write(
        &conf,
        format!(
            "global\n  log stderr local0\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 10s\n\
             timeout server 10s\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\
             backend b\n  server s1 127.0.0.1:{upstream} {send}\n"
        ),
    )
    .unwrap();
    let child = Command::new(haproxy)
        .args(["-db", "-f", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(&format!("haproxy-{send}.log"))).unwrap())
        .spawn()
        .ok()?;
    Some(Proxy(child))
}

#[test]
fn haproxy_send_proxy_names_the_client_in_both_versions() {
    if which(&["haproxy"]).is_none() {
        eprintln!("note: needs haproxy (Debian's haproxy); test skipped");
        return;
    }
    let s = Server::builder("haproxy-pp", "testapp:app")
        .tcp()
        .args(["--proxy-protocol", "auto"])
        .start();
    let Addr::Tcp(upstream) = s.addr.clone() else {
        unreachable!()
    };
    for (send, protocol) in [("send-proxy", "TCP4"), ("send-proxy-v2", "TCP4")] {
        let port = free_port();
        let _h = haproxy(&s.dir, port, upstream.port(), send).expect("start haproxy");
        let r = get_via(port, "/environ");
        assert_eq!(r.status, 200, "{send}: {}", r.summary());
        let j = r.json();
        assert_eq!(j["PROXY_PROTOCOL"], protocol, "{send}: {j}");
        assert_eq!(j["REMOTE_ADDR"], "127.0.0.1", "{send}: {j}");
        // The client's port is HAProxy's client's, not HAProxy's own.
        assert_eq!(
            j["PROXY_PORT"].as_str(),
            Some(port.to_string().as_str()),
            "{send}: {j}"
        );
    }
    // A direct request, without a header, is served as plain HTTP.
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn a_proxy_header_from_a_peer_not_allowed_is_403() {
    let s = Server::builder("pp-forbidden", "testapp:app")
        .tcp()
        .args(["--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.1"])
        .start();
    let mut c = s.client();
    c.send(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /environ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().status, 403);
    // Without a header the same peer is served, as plain HTTP.
    assert_eq!(s.get("/").status, 200);
}
