//! Integration tests: the real `ferrocorn` binary, real sockets, real Python
//! applications from `tests/apps/` (and `examples/`). Each test is named
//! after the behaviour it proves; the harness is in `tests/common/`.
//!
//! Servers listen on a UNIX socket in a per-test temp dir unless the test is
//! about TCP, so tests run in parallel without port races. Every wait is
//! bounded. Nothing but loopback and UNIX sockets is used.

mod common;
mod settings;

use common::*;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

fn testapp(name: &str) -> ServerBuilder {
    Server::builder(name, "testapp:app")
}

#[track_caller]
fn expect_status(r: &Response, status: u16) {
    assert_eq!(r.status, status, "unexpected response: {}", r.summary());
}

/// Compares two large byte strings without printing megabytes on failure.
#[track_caller]
fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

/// Percent-encodes a query value (everything but unreserved characters and '/').
fn qs(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn exit_code(status: Option<std::process::ExitStatus>) -> Option<i32> {
    status.and_then(|s| s.code())
}

/// The lines of the log containing every one of `needles`.
fn log_lines_with(log: &str, needles: &[&str]) -> Vec<String> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// The pids of the "Booting worker with pid: N" lines.
fn booted_pids(log: &str) -> Vec<i32> {
    log.lines()
        .filter_map(|l| l.split("Booting worker with pid:").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|p| p.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .collect()
}

fn worker_pid(server: &Server) -> i32 {
    let r = server.get("/pid");
    expect_status(&r, 200);
    r.text().trim().parse().expect("pid")
}

/// A GET on a fresh connection that may fail (worker restarting).
fn try_get(addr: &Addr, target: &str) -> Option<Response> {
    let stream = addr.connect().ok()?;
    let mut c = Client::from_stream(stream);
    c.stream.write_all(&request("GET", target, &[], b"")).ok()?;
    c.try_read_response("GET").ok()
}

// ---------------------------------------------------------------------------
// HTTP/1.1 connection handling
// ---------------------------------------------------------------------------

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let s = testapp("ka").start();
    let mut c = s.client();
    let r1 = c.get("/");
    expect_status(&r1, 200);
    assert_eq!(r1.body, b"ok\n");
    assert!(
        !r1.header_has_token("connection", "close"),
        "{}",
        r1.summary()
    );
    let r2 = c.request("POST", "/echo", &[], b"second request");
    expect_status(&r2, 200);
    assert_eq!(r2.text(), "second request");
    let r3 = c.get("/nolength?n=2");
    expect_status(&r3, 200);
    assert_eq!(r3.text(), "chunk 0\nchunk 1\n");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = testapp("pipe").start();
    let mut c = s.client();
    let mut bytes = request("POST", "/echo", &[], b"first");
    bytes.extend(request("GET", "/nolength?n=2", &[], b""));
    bytes.extend(request("POST", "/echo", &[], b"third"));
    bytes.extend(request("HEAD", "/", &[], b""));
    bytes.extend(request("POST", "/echo", &[], b"fifth"));
    c.send(&bytes);
    let bodies: Vec<String> = ["POST", "GET", "POST", "HEAD", "POST"]
        .iter()
        .map(|m| {
            let r = c.read_response_for(m);
            expect_status(&r, 200);
            r.text()
        })
        .collect();
    assert_eq!(
        bodies,
        ["first", "chunk 0\nchunk 1\n", "third", "", "fifth"]
    );
}

#[test]
fn pipelined_requests_stay_in_order_with_app_threads() {
    // The first request is the slowest: with 4 app threads the later ones
    // finish first, but their responses must wait their turn.
    let s = testapp("pipethr").args(["--threads", "4"]).start();
    let mut c = s.client();
    let mut bytes = request("GET", "/sleep?s=0.3", &[], b"");
    bytes.extend(request("POST", "/echo", &[], b"second"));
    bytes.extend(request("GET", "/sleep?s=0.1", &[], b""));
    bytes.extend(request("POST", "/echo", &[], b"fourth"));
    c.send(&bytes);
    let first = c.read_response();
    expect_status(&first, 200);
    assert_eq!(first.json().key("slept").num(), 0.3, "{}", first.summary());
    assert_eq!(c.read_response().text(), "second");
    assert_eq!(c.read_response().json().key("slept").num(), 0.1);
    assert_eq!(c.read_response().text(), "fourth");
}

#[test]
fn connection_close_is_honoured() {
    let s = testapp("close").start();
    let mut c = s.client();
    let r = c.request("GET", "/", &[("Connection", "close")], b"");
    expect_status(&r, 200);
    assert!(r.header_has_token("connection", "close"), "{}", r.summary());
    assert!(
        c.closed_within(3 * SEC),
        "server kept the connection open after Connection: close"
    );
}

#[test]
fn http10_response_without_length_is_close_delimited() {
    let s = testapp("h10c").start();
    let mut c = s.client();
    c.send(b"GET /nolength?n=3 HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let r = c.read_response();
    expect_status(&r, 200);
    assert!(
        !r.header_has_token("transfer-encoding", "chunked"),
        "chunked on HTTP/1.0: {}",
        r.summary()
    );
    assert_eq!(r.framing, Framing::Close, "{}", r.summary());
    assert!(
        r.complete,
        "the server did not close the connection: {}",
        r.summary()
    );
    assert_eq!(r.text(), "chunk 0\nchunk 1\nchunk 2\n");
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let s = testapp("h10").start();
    let mut c = s.client();
    c.send(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let r = c.read_response();
    expect_status(&r, 200);
    assert_eq!(r.body, b"ok\n");
    assert!(
        c.closed_within(3 * SEC),
        "HTTP/1.0 without keep-alive must close"
    );
}

#[test]
fn http10_keep_alive_is_honoured() {
    let s = testapp("h10ka").start();
    let mut c = s.client();
    for i in 0..3 {
        c.send(b"GET / HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
        let r = c.read_response();
        expect_status(&r, 200);
        assert_eq!(r.body, b"ok\n", "request {i}");
        assert!(
            r.header_has_token("connection", "keep-alive"),
            "HTTP/1.0 keep-alive must be confirmed in the response: {}",
            r.summary()
        );
    }
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_timeout() {
    let s = testapp("idle").args(["--keep-alive", "1"]).start();
    let mut c = s.client();
    expect_status(&c.get("/"), 200);
    let t0 = Instant::now();
    assert!(
        c.closed_within(5 * SEC),
        "idle connection still open 5 s after --keep-alive 1"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        t0.elapsed()
    );
}

#[test]
fn head_has_same_headers_and_no_body() {
    let s = testapp("head").start();
    let mut c = s.client();
    let get = c.get("/big?size=1000");
    let head = c.request("HEAD", "/big?size=1000", &[], b"");
    expect_status(&get, 200);
    expect_status(&head, 200);
    assert_eq!(get.header("content-length"), Some("1000"));
    assert_eq!(
        head.header("content-length"),
        Some("1000"),
        "{}",
        head.summary()
    );
    assert_eq!(get.header("content-type"), head.header("content-type"));
    // Had the server sent a body, it would be parsed as the next response.
    let after = c.get("/");
    assert_eq!(
        after.body,
        b"ok\n",
        "stray bytes after a HEAD response: {}",
        after.summary()
    );
    // The same for a response the app gives no length for.
    let head2 = c.request("HEAD", "/nolength?n=3", &[], b"");
    expect_status(&head2, 200);
    let after2 = c.get("/");
    assert_eq!(
        after2.body,
        b"ok\n",
        "stray bytes after a HEAD response: {}",
        after2.summary()
    );
}

#[test]
fn header_values_go_out_as_latin1_as_pep_3333_says() {
    use std::io::{Read, Write};
    let s = testapp("latin1").start();
    let mut stream = s.addr.connect().unwrap();
    stream
        .write_all(b"GET /headers?form=latin1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let wanted: &[u8] = b"\r\nX-Cafe: caf\xe9\r\n";
    assert!(
        raw.windows(wanted.len()).any(|w| w == wanted),
        "no latin-1 X-Cafe in {:?}",
        String::from_utf8_lossy(&raw)
    );
    // A code point above U+00FF cannot be: 500, and a line that says why.
    expect_status(&s.get("/headers?form=wide"), 500);
    assert!(
        s.wait_log("the value of header \"X-Wide\" is not latin-1", 5 * SEC),
        "{}",
        s.log()
    );
}

#[test]
fn app_header_lists_are_checked_before_anything_is_sent() {
    let s = testapp("headers").start();
    for form in ["tuples", "lists"] {
        let r = s.get(&format!("/headers?form={form}"));
        expect_status(&r, 200);
        assert_eq!(r.header("x-form"), Some(form), "{}", r.summary());
    }
    for form in ["inject", "badname", "bytes", "triple", "conflict", "wide"] {
        let r = s.get(&format!("/headers?form={form}"));
        expect_status(&r, 500);
        assert!(
            r.header("set-cookie").is_none() && r.header("x-bad").is_none(),
            "a refused field reached the wire: {}",
            r.summary()
        );
    }
    let mut c = s.client();
    let r = c.get("/headers?form=hop");
    expect_status(&r, 200);
    assert_eq!(r.body, b"abc");
    assert!(r.header("transfer-encoding").is_none(), "{}", r.summary());
    assert!(r.header_has_token("connection", "close"), "{}", r.summary());
    assert!(c.closed_within(Duration::from_secs(2)));
    assert!(s.log().contains("invalid value for header \"X-Bad\""));
}

#[test]
fn status_204_and_304_have_no_body() {
    let s = testapp("nobody").start();
    let mut c = s.client();
    for code in [204u16, 304] {
        let r = c.get(&format!("/status?code={code}"));
        expect_status(&r, code);
        assert!(
            !r.header_has_token("transfer-encoding", "chunked"),
            "{}",
            r.summary()
        );
        let after = c.get("/");
        assert_eq!(
            after.body,
            b"ok\n",
            "stray bytes after {code}: {}",
            after.summary()
        );
    }
}

#[test]
fn response_carries_server_and_date_headers() {
    let s = testapp("hdrs").start();
    let r = s.get("/");
    expect_status(&r, 200);
    let server = r.header("server").unwrap_or_default();
    assert!(server.starts_with("ferrocorn"), "Server: {server:?}");
    let date = r.header("date").unwrap_or_default();
    // IMF-fixdate, RFC 9110 §5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT"
    assert!(
        date.len() == 29 && date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "Date: {date:?}"
    );
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

#[test]
fn chunked_request_body_is_decoded() {
    let s = testapp("chreq").start();
    let mut c = s.client();
    let body = b"6;ext=1\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n";
    let r = c.request("POST", "/echo", &[("Transfer-Encoding", "chunked")], body);
    expect_status(&r, 200);
    assert_eq!(r.text(), "hello chunked world");
    // 1 MiB in 1000-byte chunks, read by iterating wsgi.input; then the
    // connection must still be usable (the last chunk and trailers consumed).
    let data = upload_data(1 << 20, 7);
    let parts: Vec<&[u8]> = data.chunks(1000).collect();
    let r = c.request(
        "POST",
        "/sha256?mode=iter",
        &[("Transfer-Encoding", "chunked")],
        &chunked(&parts),
    );
    expect_status(&r, 200);
    let j = r.json();
    assert_eq!(j.key("len").num() as usize, data.len());
    assert_eq!(j.key("sha256").str(), python_sha256(&data));
    assert_eq!(c.get("/").body, b"ok\n");
}

#[test]
fn response_without_length_is_chunked_on_http11() {
    let s = testapp("chresp").start();
    let mut c = s.client();
    let r = c.get("/nolength?n=3");
    expect_status(&r, 200);
    assert_eq!(r.framing, Framing::Chunked, "{}", r.summary());
    assert!(r.complete);
    assert_eq!(r.text(), "chunk 0\nchunk 1\nchunk 2\n");
    assert_eq!(
        c.get("/").body,
        b"ok\n",
        "connection unusable after a chunked response"
    );
}

#[test]
fn one_item_list_gets_a_content_length() {
    let s = testapp("onelist").start();
    let r = s.get("/onelist");
    expect_status(&r, 200);
    assert_eq!(r.framing, Framing::Length, "{}", r.summary());
    assert_eq!(r.header("content-length"), Some("17"));
    assert_eq!(r.text(), "exactly one item\n");
}

#[test]
fn expect_100_continue_is_answered_when_the_app_reads() {
    let s = testapp("expect").start();
    let mut c = s.client();
    c.send(
        b"POST /sha256?mode=read HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\
          Expect: 100-continue\r\n\r\n",
    );
    let interim = c.read_response();
    assert_eq!(
        interim.status,
        100,
        "expected 100 Continue first: {}",
        interim.summary()
    );
    c.send(b"hello world");
    let r = c.read_response();
    expect_status(&r, 200);
    assert_eq!(r.json().key("len").num(), 11.0);
    assert_eq!(r.json().key("sha256").str(), python_sha256(b"hello world"));
}

#[test]
fn large_bodies_read_in_bulk_after_100_continue_a_line_or_a_short_send() {
    let s = testapp("bulk").start();
    let data = upload_data(300 * 1024, 4);
    // 100 Continue, then a body read by one read() straight into its bytes.
    let mut c = s.client();
    c.send(
        format!(
            "POST /sha256?mode=readall HTTP/1.1\r\nHost: localhost\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            data.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().status, 100);
    c.send(&data);
    let r = c.read_response();
    expect_status(&r, 200);
    assert_eq!(r.json().key("sha256").str(), python_sha256(&data));
    // readline() buffers ahead of the line; read() continues from there.
    let r = c.request("POST", "/sha256?mode=line-then-rest", &[], &data);
    expect_status(&r, 200);
    assert_eq!(r.json().key("len").num() as usize, data.len());
    assert_eq!(r.json().key("sha256").str(), python_sha256(&data));
    // A client that sends less than its Content-Length and closes: the
    // request is incomplete (RFC 9112 §8), read() raises, the answer is 400.
    let mut c = s.client();
    let sent = 100 * 1024;
    let mut partial = format!(
        "POST /sha256?mode=readall HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    partial.extend_from_slice(&data[..sent]);
    c.send(&partial);
    c.stream.shutdown_write();
    let r = c.read_response();
    expect_status(&r, 400);
    assert!(r.text().contains("body was complete"), "{}", r.summary());
    // A declared terabyte is not allocated up front for read(): the worker
    // reads the kilobyte that came and answers 400, alive.
    let mut c = s.client();
    let mut liar = b"POST /sha256?mode=readall HTTP/1.1\r\nHost: localhost\r\n\
                     Content-Length: 1099511627776\r\n\r\n"
        .to_vec();
    liar.extend_from_slice(&data[..1024]);
    c.send(&liar);
    c.stream.shutdown_write();
    expect_status(&c.read_response(), 400);
    expect_status(&s.get("/sha256"), 200);
}

/// RFC 9112 §8: a body cut short by the client's EOF makes the request
/// incomplete; it "must not be processed as complete". `wsgi.input` raises
/// after the bytes that arrived, and the app's own answer — even from an
/// app that swallows the error and says 200 — never goes out: the client
/// gets a 400 and the connection closes. Gunicorn hands the app the short
/// body as if it were whole.
#[test]
fn a_body_cut_short_by_eof_is_400_and_the_apps_answer_never_goes_out() {
    let s = testapp("short-body").start();
    let big = upload_data(64 * 1024, 9);
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "5 of 10 bytes",
            request("POST", "/ROUTE", &[("Content-Length", "10")], b"hello"),
        ),
        ("20 KiB of 64 KiB (read in bulk)", {
            let mut r = request(
                "POST",
                "/ROUTE",
                &[("Content-Length", &big.len().to_string())],
                b"",
            );
            r.extend_from_slice(&big[..20 * 1024]);
            r
        }),
        ("chunked without its last chunk", {
            let mut r = request("POST", "/ROUTE", &[("Transfer-Encoding", "chunked")], b"");
            r.extend_from_slice(b"5\r\nhello\r\n");
            r
        }),
    ];
    for route in ["echo", "swallow"] {
        for (what, raw) in &cases {
            let raw = String::from_utf8_lossy(raw).replace("/ROUTE", &format!("/{route}"));
            let mut c = s.client();
            c.send(raw.as_bytes());
            c.stream.shutdown_write();
            let r = c.read_response();
            assert_eq!(r.status, 400, "/{route}, {what}: {}", r.summary());
            assert!(r.header_has_token("connection", "close"), "{}", r.summary());
            assert!(
                !r.text().contains("swallowed"),
                "the app's answer went out: {}",
                r.summary()
            );
            assert!(c.closed_within(3 * SEC), "/{route}, {what}: left open");
        }
    }
    // The complete request is served, and the worker is the same one.
    let r = s.client().request("POST", "/swallow", &[], b"hello");
    expect_status(&r, 200);
    assert_eq!(r.text(), "read 5 bytes\n");
}

#[test]
fn expect_100_continue_is_not_sent_when_the_app_does_not_read() {
    let s = testapp("noexpect").start();
    let mut c = s.client();
    c.send(
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response();
    expect_status(&r, 200);
    assert_eq!(r.body, b"ok\n");
}

#[test]
fn upload_of_10_mib_arrives_intact() {
    let s = testapp("up10").start();
    let data = upload_data(10 << 20, 1);
    let want = python_sha256(&data);
    let mut c = s.client();
    let r = c.request("POST", "/sha256?mode=read&n=65536", &[], &data);
    expect_status(&r, 200);
    let j = r.json();
    assert_eq!(j.key("len").num() as usize, data.len());
    assert_eq!(j.key("sha256").str(), want);
    // Same bytes back through /echo, compared byte for byte.
    let r = c.request(
        "POST",
        "/echo",
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    expect_status(&r, 200);
    assert_bytes_eq(&r.body, &data, "echoed upload");
}

#[test]
fn every_wsgi_input_read_style_sees_the_same_body() {
    let s = testapp("readers").start();
    let data = upload_data(256 * 1024, 3);
    let want = python_sha256(&data);
    let mut c = s.client();
    for target in [
        "/sha256?mode=read&n=1000",
        "/sha256?mode=read&n=1",
        "/sha256?mode=read-cl&n=4096",
        "/sha256?mode=readall",
        "/sha256?mode=readline",
        "/sha256?mode=readline-sized&n=100",
        "/sha256?mode=readlines",
        "/sha256?mode=iter",
    ] {
        let body: &[u8] = if target.ends_with("n=1") {
            &data[..4096]
        } else {
            &data
        };
        let want = if target.ends_with("n=1") {
            python_sha256(body)
        } else {
            want.clone()
        };
        let r = c.request("POST", target, &[], body);
        expect_status(&r, 200);
        let j = r.json();
        assert_eq!(j.key("len").num() as usize, body.len(), "{target}: {j}");
        assert_eq!(j.key("sha256").str(), want, "{target}");
    }
}

#[test]
fn download_of_10_mib_matches_the_pattern() {
    let s = testapp("down10").start();
    let want = pattern(10 << 20);
    let mut c = s.client();
    for (target, framing) in [
        ("/big?mib=10&mode=one", Framing::Length),
        ("/big?mib=10&mode=chunks", Framing::Length),
        ("/big?mib=10&mode=write", Framing::Length),
        ("/big?mib=10&mode=chunks&length=0", Framing::Chunked),
        ("/big?mib=10&mode=list", Framing::Length),
        ("/big?mib=10&mode=iter", Framing::Length),
        ("/big?mib=10&mode=list&length=0", Framing::Chunked),
        ("/big?mib=10&mode=iter&length=0", Framing::Chunked),
    ] {
        let r = c.get(target);
        expect_status(&r, 200);
        assert_eq!(r.framing, framing, "{target}");
        assert!(r.complete, "{target}: incomplete");
        assert_bytes_eq(&r.body, &want, target);
    }
}

/// A list's items go out together, but sendmsg(2) takes at most 1024
/// buffers per call: a list of 2,000 items must still arrive whole, with
/// a Content-Length and chunked.
#[test]
fn a_list_of_more_items_than_one_sendmsg_takes_arrives_whole() {
    let s = testapp("iovmax").start();
    let size = 2000 * 16 * 1024;
    let want = pattern(size);
    let mut c = s.client();
    for length in ["1", "0"] {
        let r = c.get(&format!("/big?size={size}&mode=list&length={length}"));
        expect_status(&r, 200);
        assert!(r.complete, "length={length}: incomplete");
        assert_bytes_eq(&r.body, &want, &format!("length={length}"));
    }
}

#[test]
fn body_past_the_declared_length_is_cut_and_the_next_response_is_clean() {
    let s = testapp("cut").start();
    let mut c = s.client();
    // 80 chunks of 16 KiB exist at once and go out several per write; the
    // app declared less than all of them and less than a whole chunk.
    let declared = 5 * 65536 + 100;
    for mode in ["list", "iter"] {
        let r = c.get(&format!(
            "/big?size={}&mode={mode}&declare={declared}",
            20 * 65536
        ));
        expect_status(&r, 200);
        assert_bytes_eq(&r.body, &pattern(20 * 65536)[..declared], mode);
        assert_eq!(c.get("/").body, b"ok\n", "stray bytes after {mode}");
    }
}

#[test]
fn file_wrapper_sends_the_file() {
    let b = testapp("fwrap");
    let path = b.dir().join("data.bin");
    let data = pattern(3 * 1024 * 1024 + 123);
    fs::write(&path, &data).unwrap();
    let s = b.start();
    let mut c = s.client();
    let q = qs(path.to_str().unwrap());
    let r = c.get(&format!("/file?path={q}"));
    expect_status(&r, 200);
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_bytes_eq(&r.body, &data, "file_wrapper with Content-Length");
    let r = c.get(&format!("/file?path={q}&length=0"));
    expect_status(&r, 200);
    assert!(r.complete);
    assert_bytes_eq(&r.body, &data, "file_wrapper without Content-Length");
    let r = c.request("HEAD", &format!("/file?path={q}"), &[], b"");
    expect_status(&r, 200);
    assert_eq!(c.get("/").body, b"ok\n", "stray bytes after HEAD of a file");
}

// ---------------------------------------------------------------------------
// Bad requests: answered by the server, never by the app
// ---------------------------------------------------------------------------

/// Sends `raw` on a fresh connection; checks the status, `Connection: close`
/// and that the server closes. Returns a description of what went wrong.
fn check_rejected(s: &Server, name: &str, raw: &[u8], status: u16) -> Option<String> {
    let mut c = s.client();
    c.send(raw);
    let r = match c.try_read_response("GET") {
        Ok(r) => r,
        Err(e) => return Some(format!("{name}: no response ({e})")),
    };
    if r.status != status {
        return Some(format!("{name}: want {status}, got {}", r.summary()));
    }
    if !r.header_has_token("connection", "close") {
        return Some(format!("{name}: no Connection: close in {}", r.summary()));
    }
    if !c.closed_within(3 * SEC) {
        return Some(format!("{name}: connection left open after {status}"));
    }
    None
}

/// The tags `/record` saw (testapp.py writes them to requests.log).
fn recorded(s: &Server) -> Vec<String> {
    fs::read_to_string(s.dir.join("requests.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn malformed_requests_get_400_and_never_reach_the_app() {
    let s = testapp("bad400").markers().start();
    let cases: &[(&str, &[u8])] = &[
        ("no-colon", b"GET /record?tag=no-colon HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"),
        ("bad-cl", b"POST /record?tag=bad-cl HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        (
            "cl-and-te",
            b"POST /record?tag=cl-and-te HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two-cl",
            b"POST /record?tag=two-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
              Content-Length: 4\r\n\r\nabcd",
        ),
        ("space-before-colon", b"GET /record?tag=space-before-colon HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("nul-in-value", b"GET /record?tag=nul-in-value HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"),
        (
            "gzip-not-final",
            b"POST /record?tag=gzip-not-final HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        ),
        ("bad-version", b"GET /record?tag=bad-version HTTP/1.x\r\nHost: x\r\n\r\n"),
        (
            "chunked-on-1.0",
            b"POST /record?tag=chunked-on-1.0 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        // RFC 9112 §3.2: HTTP/1.1 without Host, two Hosts, an invalid Host.
        ("no-host", b"GET /record?tag=no-host HTTP/1.1\r\nX-A: a\r\n\r\n"),
        ("two-hosts", b"GET /record?tag=two-hosts HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
        ("bad-host", b"GET /record?tag=bad-host HTTP/1.1\r\nHost: x y\r\n\r\n"),
        ("userinfo-host", b"GET /record?tag=userinfo-host HTTP/1.1\r\nHost: u@x\r\n\r\n"),
        // RFC 9112 §3.2.3, §3.2.4: the authority form only with CONNECT,
        // the asterisk form only with OPTIONS.
        ("authority-get", b"GET localhost:8000 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("asterisk-get", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    let mut failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, raw)| check_rejected(&s, name, raw, 400))
        .collect();
    expect_status(&s.get("/record?tag=good"), 200);
    let seen = recorded(&s);
    assert!(
        seen.contains(&"good".to_string()),
        "requests.log works: {seen:?}"
    );
    for (name, _) in cases {
        if seen.iter().any(|t| t == name) {
            failures.push(format!("{name}: the app was called"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Request smuggling: each framing trick below carries a second request
/// that a lenient parser (or a proxy and server that disagree) would run.
/// Whatever the trick, that request never reaches the app: the connection
/// is answered once and closed, or the bytes stay the first request's body.
#[test]
fn a_request_smuggled_behind_a_framing_trick_never_reaches_the_app() {
    let s = testapp("smuggle").markers().start();
    let smuggled = |i: usize| format!("GET /record?tag=smuggled-{i} HTTP/1.1\r\nHost: x\r\n\r\n");
    // (the trick, the head of the front request, what follows its head)
    let tricks: &[(&str, &str, &str)] = &[
        (
            "CL.TE",
            "Content-Length: 6\r\nTransfer-Encoding: chunked",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "TE.CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 3",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "two Content-Lengths",
            "Content-Length: 0\r\nContent-Length: 5",
            "SMUGGLED",
        ),
        ("Content-Length list", "Content-Length: 0, 5", "SMUGGLED"),
        ("signed Content-Length", "Content-Length: +0", "SMUGGLED"),
        (
            "space before colon",
            "Transfer-Encoding : chunked",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "xchunked",
            "Transfer-Encoding: xchunked",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "chunked not last",
            "Transfer-Encoding: chunked, identity",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "two TE lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "obs-fold TE",
            "Transfer-Encoding:\r\n chunked",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "vertical tab",
            "Transfer-Encoding:\x0bchunked",
            "0\r\n\r\nSMUGGLED",
        ),
        (
            "bare LF in chunk",
            "Transfer-Encoding: chunked",
            "0\n\nSMUGGLED",
        ),
        (
            "chunk size 0x",
            "Transfer-Encoding: chunked",
            "0x0\r\n\r\nSMUGGLED",
        ),
        (
            "chunk size overflow",
            "Transfer-Encoding: chunked",
            "10000000000000000\r\n\r\nSMUGGLED",
        ),
        (
            "chunk without CRLF",
            "Transfer-Encoding: chunked",
            "3\r\nabcSMUGGLED",
        ),
        (
            "bad chunk extension",
            "Transfer-Encoding: chunked",
            "0;\x01\r\n\r\nSMUGGLED",
        ),
        (
            "trailer Content-Length",
            "Transfer-Encoding: chunked",
            "0\r\nContent-Length: 5\r\n\r\nSMUGGLED",
        ),
        (
            "NUL in a field",
            "X-A: a\0b\r\nContent-Length: 0",
            "SMUGGLED",
        ),
        ("bare CR", "X-A: a\rContent-Length: 0", "SMUGGLED"),
    ];
    let mut failures = Vec::new();
    for (i, (trick, fields, after)) in tricks.iter().enumerate() {
        // /echo reads the body, so a trick in it is found before the answer.
        let raw = format!("POST /echo HTTP/1.1\r\nHost: x\r\n{fields}\r\n\r\n{after}")
            .replace("SMUGGLED", &smuggled(i));
        let mut c = s.client();
        c.send(raw.as_bytes());
        match c.try_read_response("POST") {
            Ok(r) if (400..=501).contains(&r.status) => {}
            Ok(r) => failures.push(format!("{trick}: {}", r.summary())),
            Err(e) => failures.push(format!("{trick}: no answer ({e})")),
        }
        if !c.closed_within(3 * SEC) {
            failures.push(format!("{trick}: connection left open"));
        }
    }
    // A request inside a body is body bytes, with either framing.
    let mut c = s.client();
    let inner = smuggled(100);
    let r = c.request("POST", "/echo", &[], inner.as_bytes());
    assert_eq!(r.body, inner.as_bytes());
    let mut chunked_raw = request("POST", "/echo", &[("Transfer-Encoding", "chunked")], b"");
    chunked_raw.extend_from_slice(&chunked(&[smuggled(101).as_bytes()]));
    c.send(&chunked_raw);
    assert_eq!(c.read_response().body, smuggled(101).as_bytes());
    let seen = recorded(&s);
    let reached: Vec<_> = seen.iter().filter(|t| t.starts_with("smuggled")).collect();
    assert!(
        reached.is_empty(),
        "smuggled requests reached the app: {reached:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A body the app did not read is read and thrown away, never parsed as the
/// next request (a request inside it never runs); one that does not come
/// within 100 ms, or is over 1 MiB, closes the connection instead, so a
/// client trickling it cannot hold the worker.
#[test]
fn an_unread_body_is_drained_never_parsed_and_a_trickled_one_closes() {
    let s = testapp("drain").markers().start();
    let inner = "GET /record?tag=smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut c = s.client();
    let mut raw = request("POST", "/record?tag=front", &[], inner.as_bytes());
    raw.extend_from_slice(&request("GET", "/record?tag=next", &[], b""));
    c.send(&raw);
    expect_status(&c.read_response(), 200);
    expect_status(&c.read_response(), 200);
    assert_eq!(recorded(&s), ["front", "next"]);
    // 10 of 100,000 bytes, then nothing: answered, then closed (our FIN
    // at once, a lingering close) after the drain's 100 ms, not after
    // --timeout (30 s).
    let mut c = s.client();
    let mut raw = request(
        "POST",
        "/record?tag=trickle",
        &[("Content-Length", "100000")],
        b"",
    );
    raw.extend_from_slice(b"0123456789");
    c.send(&raw);
    expect_status(&c.read_response(), 200);
    let started = Instant::now();
    assert!(c.closed_within(5 * SEC), "left open");
    assert!(
        started.elapsed() < 3 * SEC,
        "closed after {:?}",
        started.elapsed()
    );
    expect_status(&s.get("/record?tag=after"), 200);
}

/// A response to a request whose body the app did not read reaches the
/// client whole, while the client is still sending that body: the worker
/// closes with a lingering close (FIN after the response, the body read
/// and dropped), never over unread bytes, which makes the kernel send a
/// RST that throws away what of the response it still holds (RFC 9112
/// §9.6). The client's small receive buffer keeps most of the 4 MiB
/// response in the worker's send buffer when the worker closes.
#[test]
fn a_response_survives_a_body_still_coming_when_the_connection_closes() {
    for threads in ["1", "4"] {
        let s = testapp("linger").tcp().args(["--threads", threads]).start();
        response_survives_unread_body(&s, threads);
    }
}

fn response_survives_unread_body(s: &Server, threads: &str) {
    let Addr::Tcp(addr) = s.addr else {
        panic!("a TCP listener expected")
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    sock.connect_timeout(&addr.into(), 5 * SEC).unwrap();
    let mut stream: std::net::TcpStream = sock.into();
    let size = 4 << 20;
    // 64 MiB declared: far more than the drain takes (1 MiB).
    let head = format!(
        "POST /big?size={size} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut sender = stream.try_clone().unwrap();
    sender.set_write_timeout(Some(SEC)).unwrap();
    // Body bytes for 2 s, or until the worker stops taking them.
    let sending = thread::spawn(move || {
        let block = vec![b'b'; 64 * 1024];
        let until = Instant::now() + 2 * SEC;
        let mut sent = 0usize;
        while Instant::now() < until && sender.write_all(&block).is_ok() {
            sent += block.len();
        }
        sent
    });
    thread::sleep(Duration::from_millis(500));
    stream.set_read_timeout(Some(10 * SEC)).unwrap();
    let mut got = Vec::new();
    let read = std::io::Read::read_to_end(&mut stream, &mut got);
    let sent = sending.join().unwrap();
    let text = String::from_utf8_lossy(&got[..got.len().min(200)]).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let body = got.len() - head_end;
    assert!(
        read.is_ok() && body == size,
        "--threads {threads}: {body} of {size} body bytes, then {read:?} (the client had sent {sent} body bytes)"
    );
}

/// A lingering close is bounded: a client that goes on sending a body
/// nobody reads, after its response, is cut off after 5 s.
#[test]
fn a_lingering_close_ends_after_5_s() {
    let s = testapp("linger-bound").start();
    let mut c = s.client();
    let mut raw = request(
        "POST",
        "/record?tag=ignored",
        &[("Content-Length", "100000000")],
        b"",
    );
    raw.extend_from_slice(&[b'b'; 1024]);
    c.send(&raw);
    expect_status(&c.read_response(), 200);
    let started = Instant::now();
    c.stream.set_write_timeout(SEC).unwrap();
    let cut = loop {
        thread::sleep(Duration::from_millis(100));
        if let Err(e) = c.stream.write_all(&[b'b'; 1024]) {
            break e;
        }
        assert!(started.elapsed() < 15 * SEC, "still open after 15 s");
    };
    let after = started.elapsed();
    assert!(
        (4 * SEC..9 * SEC).contains(&after),
        "cut after {after:?} ({cut})"
    );
    expect_status(&s.get("/record?tag=after"), 200);
}

/// `--limit-request-body`: a Content-Length over it is refused with the
/// head, chunks that add up to more when the app reads them; both 413 and
/// the connection closed. At the limit the request is served.
#[test]
fn limit_request_body_gives_413() {
    let s = testapp("413")
        .markers()
        .args(["--limit-request-body", "10"])
        .start();
    let over = request("POST", "/record?tag=over", &[], b"0123456789X");
    let mut chunks = request("POST", "/echo", &[("Transfer-Encoding", "chunked")], b"");
    chunks.extend_from_slice(&chunked(&[b"01234", b"567890"]));
    let failures: Vec<String> = [("Content-Length 11", over), ("chunks of 11 bytes", chunks)]
        .iter()
        .filter_map(|(name, raw)| check_rejected(&s, name, raw, 413))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(recorded(&s).is_empty(), "the app saw {:?}", recorded(&s));
    let r = s.client().request("POST", "/echo", &[], b"0123456789");
    expect_status(&r, 200);
    assert_eq!(r.body, b"0123456789");
}

#[test]
fn overlong_request_line_gets_414() {
    // The default limit (4094 bytes) and a configured one.
    let line = |tag: &str, pad: usize| {
        let mut l = format!("GET /record?tag={tag}&pad= HTTP/1.1\r\nHost: x\r\n\r\n");
        l.insert_str(l.find(" HTTP").unwrap(), &"a".repeat(pad));
        l
    };
    let mut failures = Vec::new();
    for (args, long, short) in [
        (&[][..], 5000, 3900),
        (&["--limit-request-line", "200"], 300, 100),
    ] {
        let s = testapp("414").markers().args(args.iter().copied()).start();
        failures.extend(check_rejected(
            &s,
            &format!("{long}-byte line {args:?}"),
            line("long", long).as_bytes(),
            414,
        ));
        let mut c = s.client();
        c.send(line("short", short).as_bytes());
        expect_status(&c.read_response(), 200);
        assert_eq!(recorded(&s), ["short"], "{args:?}: {failures:#?}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn header_limits_give_431() {
    let s = testapp("431")
        .markers()
        .args(["--limit-request-fields", "5"])
        .start();
    let many: String = (0..10).map(|i| format!("X-H{i}: v\r\n")).collect();
    let too_many = format!("GET /record?tag=many HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let big_field = format!(
        "GET /record?tag=big HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let mut failures: Vec<String> = [("10 fields", too_many), ("9000-byte field", big_field)]
        .iter()
        .filter_map(|(name, raw)| check_rejected(&s, name, raw.as_bytes(), 431))
        .collect();
    let r = s
        .client()
        .request("GET", "/record?tag=few", &[("X-A", "1"), ("X-B", "2")], b"");
    expect_status(&r, 200);
    assert_eq!(recorded(&s), ["few"], "{failures:#?}");
    let s2 = testapp("431b")
        .args(["--limit-request-field_size", "100"])
        .start();
    let field = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200)
    );
    failures.extend(check_rejected(
        &s2,
        "200-byte field with limit 100",
        field.as_bytes(),
        431,
    ));
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn unknown_transfer_coding_gets_501() {
    // RFC 9112 §6.1 and Gunicorn: a transfer coding the server does not know
    // -> 501. (`gzip` alone is a 400: chunked is not final, so the length is
    // unknown; `gzip, chunked` is a *valid* case of the Gunicorn corpus.)
    let s = testapp("501").markers().start();
    let raw = b"POST /record?tag=x-custom HTTP/1.1\r\nHost: x\r\n\
                Transfer-Encoding: x-custom, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let failure = check_rejected(&s, "Transfer-Encoding: x-custom, chunked", raw, 501);
    expect_status(&s.get("/record?tag=good"), 200);
    assert_eq!(recorded(&s), ["good"], "{failure:?}");
    assert!(failure.is_none(), "{failure:?}");
}

#[test]
fn unknown_expectation_gets_417() {
    let s = testapp("417").markers().start();
    let raw = b"POST /record?tag=expect HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: something-else\r\n\r\n";
    let failure = check_rejected(&s, "Expect: something-else", raw, 417);
    expect_status(&s.get("/record?tag=good"), 200);
    assert_eq!(recorded(&s), ["good"], "{failure:?}");
    assert!(failure.is_none(), "{failure:?}");
}

// ---------------------------------------------------------------------------
// Application errors and close()
// ---------------------------------------------------------------------------

#[test]
fn app_exception_gives_500_and_a_traceback_in_the_log() {
    let s = testapp("exc").start();
    let r = s.get("/error/before");
    expect_status(&r, 500);
    assert!(
        s.wait_log("boom-before-start-response", 5 * SEC),
        "the exception message is not in the log"
    );
    let log = s.log();
    assert!(
        log.contains("Traceback (most recent call last)") && log.contains("in route_error_before"),
        "no traceback (with the app's frame) in the log"
    );
    expect_status(&s.get("/"), 200);
}

#[test]
fn exception_after_start_response_before_the_body_gives_500() {
    let s = testapp("exc2").start();
    let r = s.get("/error/after-start");
    expect_status(&r, 500);
    assert!(
        s.wait_log("boom-after-start-response", 5 * SEC),
        "exception not logged"
    );
    expect_status(&s.get("/"), 200);
}

#[test]
fn exception_mid_body_closes_the_connection() {
    let s = testapp("exc3").start();
    for (framing, want) in [("length", Framing::Length), ("chunked", Framing::Chunked)] {
        let mut c = s.client();
        c.set_timeout(3 * SEC);
        let r = c.get(&format!("/error/mid-body?framing={framing}"));
        expect_status(&r, 200);
        assert!(c.closed_within(SEC), "{framing}: connection not closed");
        assert_eq!(r.framing, want, "{}", r.summary());
        assert!(
            !r.complete,
            "{framing}: a complete body after an exception: {}",
            r.summary()
        );
        assert!(
            r.text().starts_with("first part of the body"),
            "{}",
            r.summary()
        );
    }
    assert!(s.wait_log("boom-mid-body", 5 * SEC), "exception not logged");
    expect_status(&s.get("/"), 200);
}

fn wait_close_marker(s: &Server, token: &str) -> Option<String> {
    let path = s.dir.join(&format!("close-{token}"));
    poll_until(8 * SEC, || path.exists()).then(|| fs::read_to_string(&path).unwrap_or_default())
}

#[test]
fn close_is_called_after_a_normal_response() {
    let s = testapp("closeok").markers().start();
    let r = s.get("/closing?token=ok&mode=ok");
    expect_status(&r, 200);
    assert_eq!(r.text(), "closing iterable\n!");
    assert_eq!(wait_close_marker(&s, "ok").as_deref(), Some("chunks=3\n"));
}

#[test]
fn close_is_called_when_iteration_raises() {
    let s = testapp("closeerr").markers().start();
    let mut c = s.client();
    c.set_timeout(3 * SEC);
    let r = c.get("/closing?token=err&mode=raise");
    expect_status(&r, 200);
    assert!(c.closed_within(SEC), "connection not closed");
    assert!(!r.complete, "{}", r.summary());
    assert_eq!(
        wait_close_marker(&s, "err").as_deref(),
        Some("chunks=1\n"),
        "close() not called"
    );
}

#[test]
fn client_disconnect_mid_response_calls_close() {
    let s = testapp("disc").markers().start();
    {
        let mut c = s.client();
        c.send(&request("GET", "/closing?token=disc&mode=stream", &[], b""));
        c.read_some(200_000);
        // Dropping the socket with unread data makes the kernel send RST.
    }
    let marker = wait_close_marker(&s, "disc").expect("close() not called after the client left");
    let chunks: usize = marker.trim().trim_start_matches("chunks=").parse().unwrap();
    assert!(
        chunks < 2000,
        "the app was iterated to the end after the client left ({chunks} chunks)"
    );
    expect_status(&s.get("/"), 200);
}

// ---------------------------------------------------------------------------
// The environ
// ---------------------------------------------------------------------------

#[test]
fn environ_has_what_gunicorn_sets() {
    let s = testapp("environ").tcp().start();
    let Addr::Tcp(server_addr) = s.addr.clone() else {
        unreachable!()
    };
    let mut c = s.client();
    let client_port = c.stream.local_port().unwrap();
    let r = c.request(
        "POST",
        "/%65nviron?a=1&b=%20x",
        &[
            ("X-Custom", "yes"),
            ("X_Under", "dropped"),
            ("X-Dup", "a"),
            ("X-Dup", "b"),
            ("Content-Type", "text/plain"),
        ],
        b"body!",
    );
    expect_status(&r, 200);
    let e = r.json();
    let s_ = |k: &str| e.key(k).str().to_string();
    assert_eq!(s_("REQUEST_METHOD"), "POST");
    assert_eq!(s_("PATH_INFO"), "/environ", "PATH_INFO is percent-decoded");
    assert_eq!(s_("QUERY_STRING"), "a=1&b=%20x");
    assert_eq!(s_("RAW_URI"), "/%65nviron?a=1&b=%20x");
    assert_eq!(s_("SCRIPT_NAME"), "");
    assert_eq!(s_("SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(s_("SERVER_NAME"), "127.0.0.1");
    assert_eq!(s_("SERVER_PORT"), server_addr.port().to_string());
    assert_eq!(s_("REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(s_("REMOTE_PORT"), client_port.to_string());
    assert_eq!(s_("CONTENT_TYPE"), "text/plain");
    assert_eq!(s_("CONTENT_LENGTH"), "5");
    assert_eq!(s_("HTTP_HOST"), "localhost");
    assert_eq!(s_("HTTP_X_CUSTOM"), "yes");
    assert_eq!(
        s_("HTTP_X_DUP"),
        "a,b",
        "repeated fields are joined with ','"
    );
    assert!(
        !e.has("HTTP_X_UNDER"),
        "a header name with '_' must be dropped"
    );
    assert!(!e.has("HTTP_CONTENT_TYPE") && !e.has("HTTP_CONTENT_LENGTH"));
    assert_eq!(s_("wsgi.url_scheme"), "http");
    assert_eq!(e.key("wsgi.version"), &serde_json::json!([1, 0]));
    assert!(e.key("wsgi.input_terminated").bool());
    assert!(!e.key("wsgi.run_once").bool());
    assert!(!e.key("wsgi.multithread").bool(), "default --threads 1");
    assert!(!e.key("wsgi.multiprocess").bool(), "default -w 1");
    for k in ["wsgi.input", "wsgi.errors", "wsgi.file_wrapper"] {
        assert!(e.has(k), "no {k}");
    }
    // PEP 3333: every key without a dot is a native string.
    if let Value::Object(members) = &e {
        for (k, v) in members {
            if !k.contains('.') {
                assert!(matches!(v, Value::String(_)), "{k} is not a str: {v}");
            }
        }
    }
}

#[test]
fn environ_server_name_comes_from_host_on_a_unix_socket() {
    let s = testapp("envunix").start();
    let mut c = s.client();
    let e = c
        .request("GET", "/environ", &[("Host", "example.test:8080")], b"")
        .json();
    assert_eq!(e.key("SERVER_NAME").str(), "example.test");
    assert_eq!(e.key("SERVER_PORT").str(), "8080");
    assert_eq!(e.key("HTTP_HOST").str(), "example.test:8080");
}

#[test]
fn wsgi_errors_reach_the_log() {
    let s = testapp("errors").start();
    expect_status(&s.get("/log?msg=written-to-wsgi-errors-1234"), 200);
    assert!(
        s.wait_log("written-to-wsgi-errors-1234", 5 * SEC),
        "wsgi.errors output not in the log"
    );
}

#[test]
fn validator_finds_no_pep3333_violation() {
    let s = Server::builder("lint", "validated:app").markers().start();
    let mut c = s.client();
    let r = c.get("/");
    expect_status(&r, 200);
    assert_eq!(r.text(), "validated\n");
    let r = c.get("/write");
    expect_status(&r, 200);
    assert_eq!(r.text(), "written-returned\n");
    let r = c.get("/lazy");
    expect_status(&r, 200);
    assert!(r.complete, "{}", r.summary());
    assert_eq!(
        r.text(),
        "lazy-body\n",
        "an empty chunk ended the response early?"
    );
    let r = c.get("/excinfo-before");
    expect_status(&r, 500);
    assert_eq!(r.text(), "handled\n");
    let text = b"line one\nline two\nthird line\nfourth\nlast-no-newline";
    let r = c.request("POST", "/input?mode=mixed", &[], text);
    expect_status(&r, 200);
    let pieces: Vec<String> = r
        .json()
        .key("pieces")
        .arr()
        .iter()
        .map(|v| v.str().to_string())
        .collect();
    assert_eq!(
        pieces,
        [
            "line one\n",
            "line ",
            "two",
            "\n",
            "third line\n",
            "fourth\n",
            "last-no-newline",
            ""
        ],
        "readline()/read(n)/readline(n)/readlines() semantics"
    );
    let data = upload_data(64 * 1024, 9);
    let want = python_sha256(&data);
    for mode in ["read", "readline", "readline-sized", "readlines", "iter"] {
        let r = c.request("POST", &format!("/input?mode={mode}"), &[], &data);
        expect_status(&r, 200);
        assert_eq!(r.json().key("sha256").str(), want, "wsgi.input mode {mode}");
    }
    let r = c.get("/close");
    expect_status(&r, 200);
    assert_eq!(r.text(), "closing-body\n");
    assert!(
        poll_until(5 * SEC, || s.dir.join("close-validated").exists()),
        "close() not called"
    );
    let r = c.get("/file");
    expect_status(&r, 200);
    assert_bytes_eq(
        &r.body,
        &fs::read(apps_dir().join("validated.py")).unwrap(),
        "/file",
    );
    let r = c.get("/errors");
    expect_status(&r, 200);
    let r = c.request("HEAD", "/", &[], b"");
    expect_status(&r, 200);
    let r = c.get("/nocontent");
    expect_status(&r, 204);
    // Last: this one must end the connection.
    c.set_timeout(3 * SEC);
    let r = c.get("/excinfo-after");
    expect_status(&r, 200);
    assert!(
        c.closed_within(SEC),
        "connection not closed after the re-raise"
    );
    assert!(
        !r.complete,
        "start_response(exc_info) after the headers must re-raise: {}",
        r.summary()
    );
    assert!(
        !r.text().contains("NOT-RERAISED"),
        "start_response(exc_info) did not raise"
    );
    assert!(
        s.wait_log("excinfo-after-headers", 5 * SEC),
        "the re-raised exception is not logged"
    );
    assert!(
        s.wait_log("validated-errors-writelines-2", 5 * SEC),
        "wsgi.errors.writelines lost"
    );
    // Stop the server so that iterators the server dropped without close()
    // are collected and reported.
    let mut s = s;
    s.signal(libc::SIGTERM);
    assert_eq!(exit_code(s.wait_exit(15 * SEC)), Some(0));
    let log = s.log();
    for bad in [
        "AssertionError",
        "WSGIWarning",
        "garbage collected without being closed",
    ] {
        assert!(!log.contains(bad), "the validator reported {bad}:\n{log}");
    }
}

// ---------------------------------------------------------------------------
// Workers, threads, signals
// ---------------------------------------------------------------------------

#[test]
fn killed_worker_is_respawned() {
    let s = testapp("respawn").start();
    let pid1 = worker_pid(&s);
    assert_ne!(pid1, s.pid(), "the master must not serve requests");
    assert_eq!(
        ppid_of(pid1),
        Some(s.pid()),
        "the worker is the master's child"
    );
    signal(pid1, libc::SIGKILL);
    let mut pid2 = None;
    poll_until(10 * SEC, || {
        pid2 = try_get(&s.addr, "/pid")
            .filter(|r| r.status == 200)
            .and_then(|r| r.text().trim().parse::<i32>().ok())
            .filter(|&p| p != pid1);
        pid2.is_some()
    });
    let pid2 = pid2.expect("no new worker answered within 10 s");
    assert!(
        poll_until(5 * SEC, || !pid_alive(pid1)),
        "the dead worker was not reaped"
    );
    assert!(s.wait_log(&format!("Booting worker with pid: {pid2}"), 5 * SEC));
}

#[test]
fn worker_dying_mid_request_is_respawned() {
    let s = testapp("crash").start();
    for (route, name) in [("/crash", "SIGKILL"), ("/exit", "os._exit(17)")] {
        let before = worker_pid(&s);
        let r = try_get(&s.addr, route);
        assert!(
            r.as_ref().is_none_or(|r| r.status != 200),
            "{name}: {:?}",
            r.map(|r| r.summary())
        );
        let mut after = None;
        poll_until(10 * SEC, || {
            after = try_get(&s.addr, "/pid")
                .filter(|r| r.status == 200)
                .and_then(|r| r.text().trim().parse::<i32>().ok());
            after.is_some()
        });
        let after = after.unwrap_or_else(|| panic!("{name}: no worker answered within 10 s"));
        assert_ne!(after, before, "{name}: same worker pid");
    }
}

#[test]
fn term_lets_the_in_flight_request_finish_and_exits_0() {
    let mut s = testapp("term").markers().start();
    let addr = s.addr.clone();
    let inflight = thread::spawn(move || Client::connect(&addr).get("/sleep?s=2&tag=term"));
    assert!(
        poll_until(10 * SEC, || s.dir.join("sleep-term").exists()),
        "request never started"
    );
    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    let r = inflight.join().expect("in-flight request failed");
    expect_status(&r, 200);
    assert_eq!(r.json().key("slept").num(), 2.0);
    let status = s.wait_exit(15 * SEC);
    assert_eq!(
        exit_code(status),
        Some(0),
        "master status after TERM: {status:?}"
    );
    assert!(t0.elapsed() < 12 * SEC);
    assert!(!s.group_alive(), "a worker outlived the master");
}

#[test]
fn term_serves_the_connections_already_queued_for_the_workers() {
    // Two sync workers each inside a request; four more connections wait in
    // the listen queue, not yet accepted, when TERM comes (as under
    // `supervisorctl stop` with nginx in front). All six are answered.
    let mut s = testapp("term-queued")
        .markers()
        .tcp()
        .args(["-w", "2"])
        .start();
    let client = |tag: String| {
        let addr = s.addr.clone();
        thread::spawn(move || {
            let mut c = Client::connect(&addr);
            c.set_timeout(30 * SEC);
            c.send(&request("GET", &format!("/sleep?s=3&tag={tag}"), &[], b""));
            c.try_read_response("GET").map(|r| r.status)
        })
    };
    let mut clients: Vec<_> = (0..2).map(|i| client(format!("busy{i}"))).collect();
    assert!(
        poll_until(10 * SEC, || {
            s.dir.join("sleep-busy0").exists() && s.dir.join("sleep-busy1").exists()
        }),
        "the two requests never started"
    );
    clients.extend((0..4).map(|i| client(format!("queued{i}"))));
    thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    let got: Vec<String> = clients
        .into_iter()
        .map(|c| format!("{:?}", c.join().unwrap()))
        .collect();
    assert!(got.iter().all(|g| g == "Ok(200)"), "{got:?}\n{}", s.log());
    assert_eq!(exit_code(s.wait_exit(30 * SEC)), Some(0));
}

/// `--health-check-path`: ferrocorn answers it without the app — 200 while
/// serving (no body for HEAD, the query ignored, kept alive), 503 with
/// `Connection: close` from a stopping worker, so a load balancer drains
/// it; any other method, or a path beside it, is the app's.
#[test]
fn the_health_check_path_is_answered_without_the_app() {
    let mut s = testapp("health")
        .markers()
        .args(["--health-check-path", "/_health", "--access-logfile", "-"])
        .start();
    let mut c = s.client();
    let r = c.get("/_health");
    expect_status(&r, 200);
    assert_eq!(r.text(), "OK\n");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = c.request("HEAD", "/_health?probe=1", &[], b"");
    expect_status(&r, 200);
    assert!(r.body.is_empty());
    // The same connection goes on to the app.
    expect_status(&c.get("/record?tag=after"), 200);
    expect_status(&s.client().request("POST", "/_health", &[], b"x"), 404);
    expect_status(&s.get("/_healthz"), 404);
    assert_eq!(recorded(&s), ["after"]);
    assert!(
        !s.log().contains("/_health?probe"),
        "health checks are not logged"
    );
    // A check queued behind a request when TERM comes: 503, closed.
    let addr = s.addr.clone();
    let busy = thread::spawn(move || {
        let mut c = Client::connect(&addr);
        c.set_timeout(30 * SEC);
        c.send(&request("GET", "/sleep?s=2&tag=busy", &[], b""));
        c.try_read_response("GET").map(|r| r.status)
    });
    assert!(poll_until(10 * SEC, || s.dir.join("sleep-busy").exists()));
    let mut check = s.client();
    check.send(&request("GET", "/_health", &[], b""));
    thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    let r = check.read_response();
    assert_eq!(r.status, 503, "{}", r.summary());
    assert!(r.header_has_token("connection", "close"));
    assert_eq!(busy.join().unwrap().ok(), Some(200));
    assert_eq!(exit_code(s.wait_exit(30 * SEC)), Some(0));
}

/// Starts a server with a 30 s request in flight, sends `sig` and returns
/// (exit code, seconds until exit, what the in-flight client got).
fn stop_with_request_in_flight(name: &str, sig: i32, args: &[&str]) -> (Option<i32>, f64, String) {
    let mut s = testapp(name).markers().args(args.iter().copied()).start();
    let addr = s.addr.clone();
    let inflight = thread::spawn(move || {
        let mut c = Client::connect(&addr);
        c.send(&request("GET", "/sleep?s=30&tag=x", &[], b""));
        match c.try_read_response("GET") {
            Ok(r) => r.summary(),
            Err(e) => format!("error: {e}"),
        }
    });
    assert!(
        poll_until(10 * SEC, || s.dir.join("sleep-x").exists()),
        "request never started"
    );
    let t0 = Instant::now();
    s.signal(sig);
    let status = s.wait_exit(20 * SEC);
    let took = t0.elapsed().as_secs_f64();
    assert!(status.is_some(), "still running 20 s after signal {sig}");
    assert!(
        poll_until(5 * SEC, || !s.group_alive()),
        "a worker outlived the master"
    );
    (exit_code(status), took, inflight.join().unwrap())
}

#[test]
fn int_and_quit_stop_quickly() {
    for (sig, name) in [(libc::SIGINT, "INT"), (libc::SIGQUIT, "QUIT")] {
        let (code, took, client) = stop_with_request_in_flight("quick", sig, &[]);
        assert!(took < 5.0, "{name} took {took:.1} s");
        assert_eq!(code, Some(0), "exit status after {name}");
        assert!(
            client.starts_with("error"),
            "{name}: the in-flight request completed: {client}"
        );
    }
}

#[test]
fn graceful_timeout_bounds_a_term_stop() {
    let (code, took, client) =
        stop_with_request_in_flight("gtimeout", libc::SIGTERM, &["--graceful-timeout", "1"]);
    assert!(
        (0.8..6.0).contains(&took),
        "TERM with --graceful-timeout 1 took {took:.1} s"
    );
    assert_eq!(code, Some(0));
    assert!(
        client.starts_with("error"),
        "the in-flight request completed: {client}"
    );
}

#[test]
fn threads_serve_requests_concurrently() {
    let s = testapp("threads").args(["--threads", "4"]).start();
    let e = s.get("/environ").json();
    assert!(
        e.key("wsgi.multithread").bool(),
        "--threads 4 means multithread"
    );
    assert!(!e.key("wsgi.multiprocess").bool());
    let t0 = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let addr = s.addr.clone();
            thread::spawn(move || Client::connect(&addr).get("/sleep?s=0.5"))
        })
        .collect();
    let answers: Vec<Value> = handles
        .into_iter()
        .map(|h| {
            let r = h.join().unwrap();
            expect_status(&r, 200);
            r.json()
        })
        .collect();
    let elapsed = t0.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "4 x sleep(0.5) took {elapsed:?}"
    );
    let mut threads: Vec<i64> = answers
        .iter()
        .map(|a| a.key("thread").num() as i64)
        .collect();
    threads.sort();
    threads.dedup();
    assert_eq!(threads.len(), 4, "{answers:?}");
}

#[test]
fn two_workers_are_booted_and_environ_says_multiprocess() {
    let s = testapp("w2").args(["-w", "2"]).start();
    assert!(
        poll_until(10 * SEC, || booted_pids(&s.log()).len() >= 2),
        "{}",
        s.log()
    );
    let pids = booted_pids(&s.log());
    assert_eq!(pids.len(), 2, "{pids:?}");
    for p in &pids {
        assert_eq!(
            ppid_of(*p),
            Some(s.pid()),
            "worker {p} is not the master's child"
        );
    }
    let e = s.get("/environ").json();
    assert!(e.key("wsgi.multiprocess").bool(), "-w 2 means multiprocess");
    assert!(!e.key("wsgi.multithread").bool());
}

#[test]
fn web_concurrency_sets_the_default_worker_count() {
    let s = testapp("webc").env("WEB_CONCURRENCY", "3").start();
    assert!(
        poll_until(10 * SEC, || booted_pids(&s.log()).len() >= 3),
        "{}",
        s.log()
    );
    let s1 = testapp("webc1")
        .env("WEB_CONCURRENCY", "3")
        .args(["-w", "1"])
        .start();
    thread::sleep(SEC);
    assert_eq!(
        booted_pids(&s1.log()).len(),
        1,
        "-w overrides WEB_CONCURRENCY"
    );
}

#[test]
fn concurrent_clients_all_get_answers() {
    let s = testapp("load").args(["-w", "2", "--threads", "2"]).start();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let addr = s.addr.clone();
            thread::spawn(move || {
                let mut c = Client::connect(&addr);
                for i in 0..50 {
                    let body = format!("client {t} request {i}");
                    let r = c.request("POST", "/echo", &[], body.as_bytes());
                    assert_eq!(r.status, 200);
                    assert_eq!(r.text(), body);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a client failed");
    }
}

// ---------------------------------------------------------------------------
// Loading the app
// ---------------------------------------------------------------------------

/// Spawns a server that must fail, and returns (exit code, log).
fn failing_start(name: &str, app: &str) -> (Option<i32>, String) {
    let mut s = Server::builder(name, app).spawn();
    let status = s.wait_exit(20 * SEC);
    (exit_code(status), s.log())
}

#[test]
fn missing_module_exits_4_naming_it() {
    let (code, log) = failing_start("nomod", "no_such_module_xyz:app");
    assert_eq!(code, Some(4), "{log}");
    assert!(
        !log_lines_with(&log, &["no_such_module_xyz", "ModuleNotFoundError"]).is_empty(),
        "no line names the module and the exception:\n{log}"
    );
}

#[test]
fn module_raising_at_import_exits_4() {
    let (code, log) = failing_start("imperr", "import_error:app");
    assert_eq!(code, Some(4), "{log}");
    assert!(
        !log_lines_with(&log, &["import_error", "ImportTimeBoom"]).is_empty(),
        "no line names the module and the exception:\n{log}"
    );
}

#[test]
fn missing_callable_exits_4() {
    let (code, log) = failing_start("nocall", "testapp:no_such_callable");
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains("no_such_callable"), "{log}");
}

#[test]
fn non_callable_app_exits_4() {
    let (code, log) = failing_start("notcall", "factory:not_callable");
    assert_eq!(code, Some(4), "{log}");
}

#[test]
fn factory_form_calls_the_factory() {
    for (spec, want) in [
        ("factory:create_app()", "hi\n"),
        ("factory:create_app(\"hello\")", "hello\n"),
    ] {
        let s = Server::builder("factory", spec).start();
        let r = s.get("/");
        expect_status(&r, 200);
        assert_eq!(r.text(), want, "{spec}");
    }
}

#[test]
fn module_alone_means_module_application() {
    let s = Server::builder("modonly", "testapp").start();
    assert_eq!(s.get("/").body, b"ok\n");
}

#[test]
fn pythonpath_makes_the_module_importable() {
    let s = Server::builder("pypath", "factory:create_app()")
        .chdir(None)
        .args(["--pythonpath".into(), apps_dir().into_os_string()])
        .start();
    assert_eq!(s.get("/").text(), "hi\n");
}

#[test]
fn example_hello_answers_hello_world() {
    for app in ["hello:app", "hello"] {
        let s = Server::builder("hello", app)
            .chdir(Some(repo_root().join("examples")))
            .start();
        let r = s.get("/");
        expect_status(&r, 200);
        assert_eq!(r.text(), "Hello, World!\n");
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("text/plain")
        );
    }
}

// ---------------------------------------------------------------------------
// Listeners, pid file, CLI
// ---------------------------------------------------------------------------

#[test]
fn binds_ipv4_and_ipv6_on_one_port() {
    if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("note: no IPv6 loopback on this machine; dual-stack test skipped");
        return;
    }
    let port = (0..50)
        .map(|_| free_port())
        .find(|&p| TcpListener::bind((Ipv6Addr::LOCALHOST, p)).is_ok())
        .expect("a port free on both families");
    let v4 = Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    let v6 = Addr::Tcp(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
    let s = testapp("dual").binds(vec![v4.clone(), v6.clone()]).start();
    assert_eq!(Client::connect(&v4).get("/").body, b"ok\n");
    let e = Client::connect(&v6).get("/environ").json();
    assert_eq!(e.key("REMOTE_ADDR").str(), "::1");
    let (status, out, err) = run_with_timeout(
        Command::new("curl").args([
            "-sS",
            "-g",
            "--max-time",
            "10",
            &format!("http://[::1]:{port}/"),
        ]),
        15 * SEC,
    );
    assert!(status.is_some_and(|s| s.success()), "curl failed: {err}");
    assert_eq!(out, "ok\n");
    let log = s.log();
    let listening = log_lines_with(&log, &["Listening at"]).join("\n");
    assert!(
        listening.contains(&format!("127.0.0.1:{port}"))
            && listening.contains(&format!("[::1]:{port}")),
        "Listening at lines do not name both listeners:\n{log}"
    );
}

#[test]
fn curl_talks_over_the_unix_socket() {
    let s = testapp("curl").start();
    let sock = s.addr.unix_path().to_path_buf();
    let sock = sock.to_str().unwrap().to_string();
    let curl = |extra: &[&str]| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--unix-socket", &sock])
            .args(extra);
        let (status, out, err) = run_with_timeout(&mut cmd, 15 * SEC);
        assert!(
            status.is_some_and(|s| s.success()),
            "curl {extra:?} failed: {err}"
        );
        out
    };
    assert_eq!(curl(&["http://localhost/"]), "ok\n");
    let head = curl(&["-i", "http://localhost/"]).to_ascii_lowercase();
    assert!(
        head.contains("\nserver: ferrocorn") && head.contains("\ndate: "),
        "{head}"
    );
    assert_eq!(curl(&["-d", "a=1&b=2", "http://localhost/echo"]), "a=1&b=2");
    let file = s.dir.join("upload.bin");
    fs::write(&file, upload_data(300_000, 5)).unwrap();
    let chunked_echo = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        "http://localhost/sha256",
    ]);
    assert!(
        chunked_echo.contains(&python_sha256(&fs::read(&file).unwrap())),
        "{chunked_echo}"
    );
    let log = s.log();
    assert!(
        !log_lines_with(&log, &["Listening at", &format!("unix:{sock}")]).is_empty(),
        "{log}"
    );
}

#[test]
fn stale_unix_socket_file_is_replaced() {
    let b = testapp("stale");
    let sock = b.dir().join("s.sock");
    // Bound by a process that then exits: a listener bound here could live
    // on for a moment in a child another test is forking.
    let bound = std::process::Command::new(python())
        .args([
            "-c",
            "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
        ])
        .arg(&sock)
        .status()
        .unwrap();
    assert!(bound.success());
    assert!(
        sock.exists(),
        "a stale socket file is left by the exited process"
    );
    assert!(UnixStream::connect(&sock).is_err());
    let s = b.start();
    assert_eq!(s.get("/").body, b"ok\n");
}

#[test]
fn live_unix_socket_is_an_error() {
    let b = testapp("live");
    let sock = b.dir().join("s.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut s = b.spawn();
    let status = s.wait_exit(15 * SEC);
    assert!(
        status.is_some(),
        "the server started on a socket another process listens on"
    );
    assert!(!status.unwrap().success(), "exit status {status:?}");
    assert!(
        UnixStream::connect(&sock).is_ok(),
        "the server removed a live socket"
    );
    drop(listener);
}

#[test]
fn unix_socket_is_removed_on_exit() {
    let mut s = testapp("rmsock").start();
    let sock = s.addr.unix_path().to_path_buf();
    assert!(sock.exists());
    s.signal(libc::SIGTERM);
    assert_eq!(exit_code(s.wait_exit(15 * SEC)), Some(0));
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn pid_file_is_written_and_removed() {
    let b = testapp("pidfile");
    let pidfile = b.dir().join("app.pid");
    let mut s = b.arg("-p").arg(&pidfile).start();
    let content = fs::read_to_string(&pidfile).expect("pid file");
    assert_eq!(content.trim(), s.pid().to_string());
    s.signal(libc::SIGTERM);
    assert_eq!(exit_code(s.wait_exit(15 * SEC)), Some(0));
    assert!(!pidfile.exists(), "pid file left behind");
}

#[test]
fn inherited_fd_is_served() {
    let b = testapp("fdbind");
    let sock = b.dir().join("fd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let fd = listener.as_raw_fd();
    let s = b
        .inherit_fd(fd)
        .arg("-b")
        .arg(format!("fd://{fd}"))
        .no_bind(Addr::Unix(sock))
        .start();
    assert_eq!(s.get("/").body, b"ok\n");
    drop(listener);
}

#[test]
fn systemd_socket_activation_serves() {
    let ssa = [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let Some(ssa) = ssa else {
        eprintln!("note: systemd-socket-activate not installed; socket activation test skipped");
        return;
    };
    let b = testapp("ssa");
    let sock = b.dir().join("a.sock");
    let mut s = b
        .wrapper([
            ssa,
            "-E",
            "PYTHONDONTWRITEBYTECODE=1",
            "-l",
            sock.to_str().unwrap(),
        ])
        .no_bind(Addr::Unix(sock.clone()))
        .start();
    assert_eq!(s.get("/").body, b"ok\n");
    for key in ["LISTEN_FDS", "LISTEN_PID"] {
        let v = s.get(&format!("/osenv?key={key}")).json();
        assert_eq!(
            v.key("value"),
            &Value::Null,
            "{key} leaked into the app's environment"
        );
    }
    s.signal(libc::SIGTERM);
    assert_eq!(exit_code(s.wait_exit(15 * SEC)), Some(0));
    assert!(
        sock.exists(),
        "the server unlinked a socket it did not create"
    );
}

#[test]
fn address_in_use_exits_1() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::Tcp(holder.local_addr().unwrap());
    let mut s = testapp("inuse").binds(vec![addr]).spawn();
    let status = s.wait_exit(20 * SEC);
    assert_eq!(exit_code(status), Some(1), "{}", s.log());
}

#[test]
fn bad_cli_values_exit_78() {
    for bad in [
        &["-w", "lots"][..],
        &["--threads", "x"],
        &["-b", "127.0.0.1:notaport"],
        &["--keep-alive", "-3"],
    ] {
        let mut s = testapp("badcli").args(bad.iter().copied()).spawn();
        let status = s.wait_exit(10 * SEC);
        assert_eq!(exit_code(status), Some(78), "{bad:?}: {}", s.log());
    }
}

#[test]
fn version_flag_prints_the_version() {
    let (status, out, err) = run_with_timeout(Command::new(bin()).arg("--version"), 10 * SEC);
    assert_eq!(exit_code(status), Some(0), "{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("ferrocorn") && all.contains(env!("CARGO_PKG_VERSION")),
        "{all}"
    );
}

// ---------------------------------------------------------------------------
// Flask in a virtualenv
// ---------------------------------------------------------------------------

#[test]
fn flask_app_serves_from_virtualenv() {
    // FERROCORN_TEST_VENV: a wheel's venv (make wheel-test), with Flask.
    let venv = std::env::var_os("FERROCORN_TEST_VENV")
        .map_or_else(|| repo_root().join(".venv"), std::path::PathBuf::from);
    if !venv.join("bin").join("python").exists() {
        if std::env::var("FERROCORN_SKIP_VENV_TESTS").as_deref() == Ok("1") {
            eprintln!("note: FERROCORN_SKIP_VENV_TESTS=1; virtualenv test skipped");
            return;
        }
        panic!(
            "{} is missing: run `make venv` (or set FERROCORN_SKIP_VENV_TESTS=1)",
            venv.display()
        );
    }
    let s = Server::builder("flask", "flask_app:app")
        .chdir(Some(repo_root().join("examples")))
        .arg("--virtualenv")
        .arg(&venv)
        .start();
    let mut c = s.client();
    let r = c.get("/");
    expect_status(&r, 200);
    assert!(
        r.text().contains("ferrocorn") && r.text().contains("<form"),
        "{}",
        r.summary()
    );
    let r = c.request(
        "POST",
        "/greet",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=Ada+Lovelace",
    );
    expect_status(&r, 303);
    let location = r.header("location").unwrap_or_default().to_string();
    assert!(
        location.ends_with("/hello/Ada%20Lovelace"),
        "Location: {location}"
    );
    let path = location.trim_start_matches("http://localhost");
    let r = c.get(path);
    expect_status(&r, 200);
    assert!(r.text().contains("Hello, Ada Lovelace!"), "{}", r.summary());
    let r = c.get("/api/info");
    expect_status(&r, 200);
    let j = r.json();
    assert_eq!(j.key("method").str(), "GET");
    assert_eq!(j.key("server").str(), "ferrocorn");
    assert!(!j.key("multithread").bool());
    let prefix = fs::canonicalize(j.key("prefix").str()).unwrap();
    assert_eq!(
        prefix,
        fs::canonicalize(&venv).unwrap(),
        "sys.prefix is not the virtualenv"
    );
    let r = c.get("/stream?n=4");
    expect_status(&r, 200);
    assert_eq!(r.framing, Framing::Chunked);
    assert_eq!(r.text().lines().count(), 4, "{}", r.summary());
    assert!(r.text().starts_with("chunk 0 of 4 (/stream)\n"));
    // flask_probe.py: Flask itself must come from the virtualenv.
    let s = Server::builder("flaskprobe", "flask_probe:app")
        .arg("--virtualenv")
        .arg(&venv)
        .start();
    let j = s.get("/").json();
    let flask_file = fs::canonicalize(j.key("flask").str()).unwrap();
    assert!(
        flask_file.starts_with(fs::canonicalize(&venv).unwrap()),
        "flask imported from {flask_file:?}"
    );
}

// ---------------------------------------------------------------------------
// systemd: sd_notify over a real notify socket, socket roles, privileges
// ---------------------------------------------------------------------------

/// A server of `versioned:app` with `NOTIFY_SOCKET` set; returns it with
/// its notify socket and version file.
fn notified(
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (ServerBuilder, NotifySocket, std::path::PathBuf) {
    let mut b = Server::builder(name, "versioned:app").args(extra.iter().copied());
    let notify = NotifySocket::bind(b.dir());
    let version = b.dir().join("version");
    fs::write(&version, "v1").unwrap();
    b = b
        .arg("-e")
        .arg(format!("VERSION_FILE={}", version.display()))
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap());
    for (k, v) in env {
        b = b.env(k, v);
    }
    (b, notify, version)
}

#[test]
fn ready_is_sent_only_after_every_worker_imported_the_app() {
    let (b, notify, _) = notified("ready", &["-w", "2", "-e", "SLOW_IMPORT=1.5"], &[]);
    let spawned = Instant::now();
    let s = b.spawn();
    let (ready_at, ready) = notify
        .wait_for("READY=1", spawned, 20 * SEC)
        .unwrap_or_else(|| panic!("no READY=1; got {:?}\n{}", notify.messages(), s.log()));
    assert!(
        ready_at.duration_since(spawned) >= Duration::from_millis(1400),
        "READY=1 came {:?} after start, before the 1.5 s import ended",
        ready_at.duration_since(spawned)
    );
    assert!(ready.contains("STATUS=workers 2/2 ready"), "{ready}");
    let extended = notify
        .messages()
        .iter()
        .any(|(t, m)| *t < ready_at && has_line(m, "EXTEND_TIMEOUT_USEC="));
    assert!(
        extended,
        "no EXTEND_TIMEOUT_USEC during the import: {:?}",
        notify.messages()
    );
    assert_eq!(notify.count("READY=1", spawned), 1);
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn reload_serves_new_code_without_failed_requests() {
    let (b, notify, version) = notified("reload", &["-w", "2", "-e", "SLOW=0.05"], &[]);
    let s = b.start();
    assert!(s.get("/").text().starts_with("v1 "));
    notify
        .wait_for("READY=1", notify.opened, 10 * SEC)
        .expect("first READY=1");

    let load = SteadyLoad::start(&s.addr, "/slow");
    thread::sleep(Duration::from_millis(500));
    fs::write(&version, "v2").unwrap();
    let hup = Instant::now();
    s.signal(libc::SIGHUP);
    let (reload_at, reloading) = notify
        .wait_for("RELOADING=1", hup, 10 * SEC)
        .expect("RELOADING=1");
    assert!(has_line(&reloading, "MONOTONIC_USEC="), "{reloading}");
    let (_, ready) = notify
        .wait_for("READY=1", reload_at, 20 * SEC)
        .expect("READY=1 after the reload");
    assert!(ready.contains("workers 2/2 ready"), "{ready}");
    // Right after READY=1 the new generation answers.
    assert!(
        s.get("/").text().starts_with("v2 "),
        "old code served after READY=1"
    );
    thread::sleep(Duration::from_millis(500));
    let (ok, failed) = load.finish();
    assert!(ok > 10, "the load loop made only {ok} requests");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the reload: {:?}\n{}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)],
        s.log()
    );
}

#[test]
fn reload_with_broken_code_keeps_the_old_generation_serving() {
    let (b, notify, version) = notified("badreload", &["-w", "2"], &[]);
    let mut s = b.start();
    notify
        .wait_for("READY=1", notify.opened, 10 * SEC)
        .expect("first READY=1");
    fs::write(&version, "broken").unwrap();
    let hup = Instant::now();
    s.signal(libc::SIGHUP);
    let (_, ready) = notify
        .wait_for("READY=1", hup, 20 * SEC)
        .expect("READY=1 ends the failed reload");
    assert!(ready.contains("reload failed"), "{ready}");
    for _ in 0..5 {
        assert!(s.get("/").text().starts_with("v1 "), "{}", s.log());
    }
    assert!(
        s.log().contains("does not import"),
        "the import error is not logged:\n{}",
        s.log()
    );
    assert!(
        s.wait_exit(Duration::from_millis(500)).is_none(),
        "the master exited"
    );
    // A later good reload still works.
    fs::write(&version, "v3").unwrap();
    let hup = Instant::now();
    s.signal(libc::SIGHUP);
    notify
        .wait_for("READY=1", hup, 20 * SEC)
        .expect("READY=1 after the good reload");
    assert!(s.get("/").text().starts_with("v3 "));
}

#[test]
fn stop_sends_stopping_and_workers_cannot_speak_for_the_service() {
    let b = testapp("stopping");
    let notify = NotifySocket::bind(b.dir());
    let mut s = b
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .env("WATCHDOG_USEC", "30000000")
        .start();
    for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        let v = s.get(&format!("/osenv?key={key}")).json();
        assert_eq!(v.key("value"), &Value::Null, "{key} reached the app");
    }
    let term = Instant::now();
    s.signal(libc::SIGTERM);
    notify
        .wait_for("STOPPING=1", term, 10 * SEC)
        .expect("STOPPING=1");
    assert_eq!(exit_code(s.wait_exit(15 * SEC)), Some(0));
}

#[test]
fn watchdog_pings_stop_while_the_master_is_frozen() {
    let b = testapp("watchdog");
    let notify = NotifySocket::bind(b.dir());
    let s = b
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .env("WATCHDOG_USEC", "1000000")
        .start();
    let t0 = Instant::now();
    thread::sleep(2 * SEC);
    let healthy = notify.count("WATCHDOG=1", t0);
    assert!(
        healthy >= 3,
        "{healthy} pings in 2 s at WATCHDOG_USEC=1s (want one per 0.5 s)"
    );
    s.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_millis(300));
    let frozen = Instant::now();
    thread::sleep(Duration::from_millis(1500));
    let while_frozen = notify.count("WATCHDOG=1", frozen);
    s.signal(libc::SIGCONT);
    assert_eq!(
        while_frozen, 0,
        "pings went on while the master was stopped"
    );
    let thawed = Instant::now();
    assert!(
        notify.wait_for("WATCHDOG=1", thawed, 3 * SEC).is_some(),
        "pings did not resume"
    );
}

#[test]
fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
    // WATCHDOG_USEC alone (no socket) must not break anything either.
    let s = testapp("nonotify").env("WATCHDOG_USEC", "500000").start();
    assert_eq!(s.get("/").status, 200);
    assert!(!s.log().contains("sd_notify"), "{}", s.log());
}

fn socket_activate() -> Option<&'static str> {
    [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

#[test]
fn a_socket_named_metrics_serves_prometheus_metrics_not_the_app() {
    let Some(ssa) = socket_activate() else {
        eprintln!("note: systemd-socket-activate not installed; test skipped");
        return;
    };
    let b = testapp("fdnames");
    let http = b.dir().join("http.sock");
    let metrics = b.dir().join("metrics.sock");
    let s = b
        .wrapper([
            ssa,
            "-E",
            "PYTHONDONTWRITEBYTECODE=1",
            "-l",
            http.to_str().unwrap(),
            "-l",
            metrics.to_str().unwrap(),
            "--fdname=http:metrics",
        ])
        .no_bind(Addr::Unix(http.clone()))
        .start();
    assert_eq!(s.get("/").status, 200);
    let ask = |path: &str| {
        let mut c = Client::from_stream(Addr::Unix(metrics.clone()).connect().expect("connect"));
        c.send(&request("GET", path, &[("Host", "x")], b""));
        c.read_response()
    };
    let app = ask("/");
    assert_eq!(app.status, 404, "the metrics socket served the app");
    let scrape = ask("/metrics");
    assert_eq!(scrape.status, 200);
    let body = scrape.text();
    let answered: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("ferrocorn_requests_total{status=\"2xx\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(answered >= 1, "{body}");
}

#[test]
fn accept_yes_sockets_are_refused() {
    let Some(ssa) = socket_activate() else {
        eprintln!("note: systemd-socket-activate not installed; test skipped");
        return;
    };
    let b = testapp("acceptyes");
    let sock = b.dir().join("a.sock");
    let s = b
        .wrapper([ssa, "--accept", "-l", sock.to_str().unwrap()])
        .no_bind(Addr::Unix(sock.clone()))
        .spawn();
    assert!(poll_until(5 * SEC, || sock.exists()), "socket not created");
    // The connection makes systemd-socket-activate start one ferrocorn for it.
    let mut c = Client::from_stream(Addr::Unix(sock).connect().expect("connect"));
    c.set_timeout(5 * SEC);
    c.send(&request("GET", "/", &[("Host", "x")], b""));
    assert!(
        c.try_read_response("GET").is_err(),
        "a per-connection server answered"
    );
    assert!(
        s.wait_log("Accept=no", 10 * SEC),
        "no clear refusal in the log:\n{}",
        s.log()
    );
}

#[test]
fn access_log_lines_follow_gunicorns_format() {
    let b = testapp("access").tcp();
    let path = b.dir().join("access.log");
    let s = b.arg("--access-logfile").arg(&path).start();
    let mut c = s.client();
    let r = c.request(
        "GET",
        "/?x=1",
        &[("User-Agent", "probe/1"), ("Referer", "http://r/")],
        b"",
    );
    expect_status(&r, 200);
    assert!(file_gets(&path, "probe/1", 5 * SEC));
    let text = fs::read_to_string(&path).unwrap();
    let line = text.lines().find(|l| l.contains("probe/1")).unwrap();
    let (start, rest) = line.split_once(" [").expect(line);
    assert_eq!(start, "127.0.0.1 - -", "{line}");
    assert!(
        rest.ends_with(r#"] "GET /?x=1 HTTP/1.1" 200 3 "http://r/" "probe/1""#),
        "{line}"
    );
}

#[test]
fn ferrocorn_cmd_args_come_before_the_command_line() {
    let s = testapp("cmdargs")
        .env("FERROCORN_CMD_ARGS", "-w 2 --threads '3'")
        .start();
    let env = s.get("/environ").json();
    assert_eq!(env.key("wsgi.multiprocess"), &Value::Bool(true));
    assert_eq!(env.key("wsgi.multithread"), &Value::Bool(true));
    drop(s);
    let s = testapp("cmdargs2")
        .env("FERROCORN_CMD_ARGS", "-w 2")
        .args(["-w", "1"])
        .start();
    let env = s.get("/environ").json();
    assert_eq!(
        env.key("wsgi.multiprocess"),
        &Value::Bool(false),
        "the command line must win"
    );
}

/// `(uid, CapEff)` from /proc/PID/status.
fn uid_and_caps(pid: i32) -> (u32, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    let uid = field("Uid:")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (uid, field("CapEff:"))
}

#[test]
fn user_flag_drops_root_and_every_capability() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root; privilege test skipped");
        return;
    }
    // Debian's python3, which nobody may run (pyenv's, under /root, not).
    let s = testapp("user")
        .args([
            "--user",
            "nobody",
            "--group",
            "nogroup",
            "--python",
            python(),
        ])
        .start();
    let worker: i32 = s.get("/pid").text().trim().parse().expect("worker pid");
    for (who, pid) in [("master", s.pid()), ("worker", worker)] {
        let (uid, cap_eff) = uid_and_caps(pid);
        assert_eq!(uid, 65534, "{who} runs as uid {uid}");
        assert_eq!(cap_eff, "0000000000000000", "{who} kept capabilities");
    }
}

// ---------------------------------------------------------------------------
// The master's life cycle: timeouts, recycling, TTIN/TTOU, USR1
// ---------------------------------------------------------------------------

/// Pids of the master's worker children.
fn worker_pids(master: i32) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| ppid_of(pid) == Some(master))
        .collect();
    pids.sort();
    pids
}

fn timeout_aborts_the_stuck_request(name: &str, threads: &str) {
    let s = testapp(name)
        .args(["--threads", threads, "--timeout", "2"])
        .start();
    let first = s.get("/pid").text();
    let addr = s.addr.clone();
    let stuck = thread::spawn(move || {
        let mut c = Client::connect(&addr);
        c.set_timeout(20 * SEC);
        c.send(&request("GET", "/sleep?s=60", &[("Host", "x")], b""));
        c.try_read_response("GET").map(|r| r.status)
    });
    let t0 = Instant::now();
    assert!(
        s.wait_log("timeout: \"GET /sleep?s=60\"", 10 * SEC),
        "no timeout line naming the request:\n{}",
        s.log()
    );
    let result = stuck.join().unwrap();
    assert!(
        result.is_err(),
        "the stuck request got a response: {result:?}"
    );
    assert!(t0.elapsed() < 8 * SEC, "the abort took {:?}", t0.elapsed());
    assert!(
        s.wait_log("in route_sleep", 5 * SEC),
        "no Python traceback of the stuck thread:\n{}",
        s.log()
    );
    assert!(
        s.wait_log("after a request timeout", 5 * SEC),
        "{}",
        s.log()
    );
    // A replacement serves.
    let r = s.get("/pid");
    expect_status(&r, 200);
    assert_ne!(r.text(), first, "the aborted worker still answers");
}

#[test]
fn timeout_aborts_a_stuck_request_in_a_threaded_worker() {
    timeout_aborts_the_stuck_request("timeout-threads", "4");
}

#[test]
fn timeout_aborts_a_stuck_request_in_an_inline_worker() {
    timeout_aborts_the_stuck_request("timeout-inline", "1");
}

#[test]
fn threaded_worker_serves_others_while_one_request_is_stuck() {
    let s = testapp("timeout-others")
        .args(["--threads", "4", "--timeout", "3"])
        .start();
    let addr = s.addr.clone();
    let _stuck = thread::spawn(move || {
        let mut c = Client::connect(&addr);
        c.set_timeout(20 * SEC);
        c.send(&request("GET", "/sleep?s=60", &[("Host", "x")], b""));
        let _ = c.try_read_response("GET");
    });
    thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        expect_status(&s.get("/"), 200);
    }
}

#[test]
fn max_requests_with_jitter_recycles_workers_without_failures() {
    let s = testapp("maxreq")
        .args([
            "-w",
            "2",
            "--max-requests",
            "15",
            "--max-requests-jitter",
            "5",
        ])
        .start();
    let mut pids = std::collections::BTreeSet::new();
    for i in 0..150 {
        let r = s.get("/pid");
        assert_eq!(
            r.status,
            200,
            "request {i} failed: {}\n{}",
            r.summary(),
            s.log()
        );
        pids.insert(r.text());
    }
    // 150 requests at most 20 per worker: at least 8 workers took part.
    assert!(
        pids.len() >= 8,
        "only {} workers served 150 requests",
        pids.len()
    );
    assert!(
        s.log().contains("Autorestarting worker after"),
        "{}",
        s.log()
    );
}

#[test]
fn max_worker_memory_restarts_a_bloated_worker() {
    let s = testapp("maxmem")
        .args(["--max-worker-memory", "80"])
        .start();
    let before = s.get("/hog?mb=100").text();
    assert!(
        s.wait_log("above the 80 MiB limit", 10 * SEC),
        "{}",
        s.log()
    );
    assert!(
        poll_until(10 * SEC, || s.get("/pid").text() != before),
        "the bloated worker still serves"
    );
}

#[test]
fn ttin_and_ttou_add_and_remove_a_worker() {
    let s = testapp("ttin").args(["-w", "2"]).start();
    assert!(poll_until(10 * SEC, || worker_pids(s.pid()).len() == 2));
    s.signal(libc::SIGTTIN);
    assert!(
        poll_until(10 * SEC, || worker_pids(s.pid()).len() == 3),
        "TTIN: {:?}",
        worker_pids(s.pid())
    );
    s.signal(libc::SIGTTOU);
    assert!(
        poll_until(10 * SEC, || worker_pids(s.pid()).len() == 2),
        "TTOU: {:?}",
        worker_pids(s.pid())
    );
    expect_status(&s.get("/"), 200);
}

#[test]
fn usr1_reopens_the_access_log() {
    let b = testapp("usr1");
    let path = b.dir().join("access.log");
    let rotated = b.dir().join("access.log.1");
    let s = b.arg("--access-logfile").arg(&path).start();
    expect_status(&s.get("/?before=rotate"), 200);
    fs::rename(&path, &rotated).unwrap();
    s.signal(libc::SIGUSR1);
    assert!(s.wait_log("reopening log files", 5 * SEC));
    // Workers reopen on their next loop turn.
    thread::sleep(Duration::from_millis(600));
    expect_status(&s.get("/?after=rotate"), 200);
    assert!(
        file_gets(&path, "after=rotate", 5 * SEC),
        "the new file did not get the line; old file: {:?}",
        fs::read_to_string(&rotated)
    );
}

#[test]
fn killed_worker_is_replaced_within_a_second() {
    let s = testapp("respawn-latency").start();
    let old: i32 = s.get("/pid").text().trim().parse().unwrap();
    let t0 = Instant::now();
    signal(old, libc::SIGKILL);
    let replaced = poll_until(5 * SEC, || {
        s.get("/pid")
            .text()
            .trim()
            .parse::<i32>()
            .is_ok_and(|p| p != old)
    });
    assert!(replaced, "{}", s.log());
    let took = t0.elapsed();
    eprintln!("respawn latency after SIGKILL: {took:?}");
    assert!(took < 2 * SEC, "replacement took {took:?}");
}

// ---------------------------------------------------------------------------
// --preload: a zygote per generation
// ---------------------------------------------------------------------------

/// `(Rss, Pss)` in KiB from /proc/PID/smaps_rollup.
fn rss_pss(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    (field("Rss:"), field("Pss:"))
}

#[test]
fn preloaded_workers_share_the_apps_memory() {
    let s = Server::builder("preload-mem", "bigimport:app")
        .args(["--preload", "-w", "2"])
        .start();
    expect_status(&s.get("/"), 200);
    // The zygote exits right after forking; then only the workers remain.
    assert!(
        poll_until(10 * SEC, || worker_pids(s.pid()).len() == 2),
        "workers must be the master's children: {:?}",
        worker_pids(s.pid())
    );
    let workers = worker_pids(s.pid());
    for pid in workers {
        let (rss, pss) = rss_pss(pid);
        assert!(
            rss > 64 * 1024,
            "worker {pid} RSS {rss} KiB lacks the 64 MiB blob"
        );
        assert!(
            pss * 10 < rss * 7,
            "worker {pid}: PSS {pss} KiB is not well below RSS {rss} KiB: nothing shared"
        );
    }
}

#[test]
fn preload_reload_serves_new_code() {
    let (b, notify, version) = notified("preload-hup", &["--preload", "-w", "2"], &[]);
    let s = b.start();
    assert!(s.get("/").text().starts_with("v1 "));
    notify
        .wait_for("READY=1", notify.opened, 10 * SEC)
        .expect("first READY=1");
    fs::write(&version, "v2").unwrap();
    let hup = Instant::now();
    s.signal(libc::SIGHUP);
    notify
        .wait_for("READY=1", hup, 20 * SEC)
        .expect("READY=1 after the reload");
    for _ in 0..4 {
        assert!(s.get("/").text().starts_with("v2 "), "{}", s.log());
    }
}

#[test]
fn preload_import_failure_exits_4() {
    let mut s = Server::builder("preload-fail", "import_error:app")
        .args(["--preload", "-w", "2"])
        .spawn();
    let status = s.wait_exit(20 * SEC);
    assert_eq!(exit_code(status), Some(4), "{}", s.log());
}

#[test]
fn preloaded_worker_is_respawned_after_a_kill() {
    let s = testapp("preload-respawn").args(["--preload"]).start();
    let old: i32 = s.get("/pid").text().trim().parse().unwrap();
    signal(old, libc::SIGKILL);
    let replaced = poll_until(10 * SEC, || {
        s.get("/pid")
            .text()
            .trim()
            .parse::<i32>()
            .is_ok_and(|p| p != old)
    });
    assert!(replaced, "{}", s.log());
    // The replacement's zygote exits right after forking it.
    assert!(
        poll_until(10 * SEC, || worker_pids(s.pid()).len() == 1),
        "{:?}",
        worker_pids(s.pid())
    );
}

// ---------------------------------------------------------------------------
// USR2: binary upgrade
// ---------------------------------------------------------------------------

#[test]
fn usr2_hands_over_to_a_new_master_without_failed_requests() {
    let b = testapp("usr2").args(["-w", "2"]);
    let notify = NotifySocket::bind(b.dir());
    let mut s = b
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .start();
    notify
        .wait_for("READY=1", notify.opened, 10 * SEC)
        .expect("READY=1");
    let old = s.pid();
    let load = SteadyLoad::start(&s.addr, "/");
    thread::sleep(Duration::from_millis(300));
    let usr2 = Instant::now();
    s.signal(libc::SIGUSR2);
    let (_, handover) = notify
        .wait_for("MAINPID=", usr2, 20 * SEC)
        .unwrap_or_else(|| panic!("no MAINPID=\n{}", s.log()));
    let new: i32 = handover
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(
        exit_code(s.wait_exit(20 * SEC)),
        Some(0),
        "the old master did not retire:\n{}",
        s.log()
    );
    // The new master's workers serve; the old master's are gone.
    let worker: i32 = s.get("/pid").text().trim().parse().unwrap();
    assert_eq!(
        ppid_of(worker),
        Some(new),
        "worker {worker} is not the new master's"
    );
    thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    assert!(ok > 10, "only {ok} requests made");
    assert!(
        failed.is_empty(),
        "{} requests failed across the upgrade: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    signal(new, libc::SIGTERM);
    assert!(
        poll_until(15 * SEC, || !pid_alive(new)),
        "the new master did not stop"
    );
}

#[test]
fn killing_a_worker_under_load_fails_only_its_in_flight_requests() {
    let s = testapp("kill-under-load").args(["-w", "2"]).start();
    let victim: i32 = s.get("/pid").text().trim().parse().unwrap();
    let addr = s.addr.clone();
    let load = thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let t0 = Instant::now();
        while t0.elapsed() < 3 * SEC && ok + failed < 20_000 {
            let answered = addr.connect().ok().and_then(|stream| {
                let mut c = Client::from_stream(stream);
                c.set_timeout(5 * SEC);
                c.send(&request(
                    "GET",
                    "/",
                    &[("Host", "x"), ("Connection", "close")],
                    b"",
                ));
                c.try_read_response("GET").ok()
            });
            match answered {
                Some(r) if r.status == 200 => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    });
    thread::sleep(Duration::from_millis(800));
    signal(victim, libc::SIGKILL);
    let (ok, failed) = load.join().unwrap();
    assert!(ok > 100, "only {ok} requests answered");
    // An inline worker has at most one request in flight when it dies.
    assert!(
        failed <= 1,
        "{failed} requests failed (of {}) after killing one worker",
        ok + failed
    );
    assert!(
        s.wait_log(
            &format!("Worker (pid: {victim}) was killed by SIGKILL"),
            5 * SEC
        ),
        "{}",
        s.log()
    );
}

/// Regression: a retiring worker closed connections it had accepted but
/// not yet read from, so requests in flight during a reload got a RST
/// (8 of ~30,000 over 20 HUPs in scripts/lifecycle-bench.py).
#[test]
fn stopping_worker_answers_a_connection_it_accepted_before_term() {
    let s = testapp("term-fresh").start();
    let worker: i32 = s.get("/pid").text().trim().parse().unwrap();
    let mut c = Client::connect(&s.addr);
    c.set_timeout(5 * SEC);
    thread::sleep(Duration::from_millis(300)); // accepted by the worker, nothing sent
    signal(worker, libc::SIGTERM);
    thread::sleep(Duration::from_millis(300)); // the worker is stopping
    c.send(&request("GET", "/pid", &[("Host", "x")], b""));
    let r = c
        .try_read_response("GET")
        .expect("the request on the accepted connection was dropped");
    expect_status(&r, 200);
    assert_eq!(
        r.text().trim(),
        worker.to_string(),
        "answered by another worker?"
    );
    assert!(r.header_has_token("connection", "close"), "{}", r.summary());
}

// ---------------------------------------------------------------------------
// The configuration file (-c, TOML with Gunicorn's setting names)
// ---------------------------------------------------------------------------

#[test]
fn config_file_settings_apply_and_the_command_line_wins() {
    let b = testapp("config");
    let cfg = b.dir().join("ferrocorn.toml");
    fs::write(
        &cfg,
        "workers = 2\nthreads = 3\nraw_env = [\"FROM_FILE=yes\"]\n",
    )
    .unwrap();
    let s = b.arg("-c").arg(&cfg).start();
    let env = s.get("/environ").json();
    assert_eq!(
        env.key("wsgi.multiprocess"),
        &Value::Bool(true),
        "workers = 2 not applied"
    );
    assert_eq!(
        env.key("wsgi.multithread"),
        &Value::Bool(true),
        "threads = 3 not applied"
    );
    assert_eq!(
        s.get("/osenv?key=FROM_FILE").json().key("value").str(),
        "yes"
    );
    drop(s);
    let b = testapp("config-cli");
    let cfg = b.dir().join("ferrocorn.toml");
    fs::write(&cfg, "workers = 2\n").unwrap();
    let s = b.arg("-c").arg(&cfg).args(["-w", "1"]).start();
    let env = s.get("/environ").json();
    assert_eq!(
        env.key("wsgi.multiprocess"),
        &Value::Bool(false),
        "the command line must win"
    );
}

#[test]
fn config_file_errors_name_the_setting_and_exit_78() {
    let dir = TempDir::new("config-bad");
    let cfg = dir.join("bad.toml");
    fs::write(&cfg, "wokers = 2\n").unwrap();
    let (status, _, err) = run_with_timeout(
        Command::new(bin()).args(["-c", cfg.to_str().unwrap(), "testapp:app"]),
        10 * SEC,
    );
    assert_eq!(exit_code(status), Some(78), "{err}");
    assert!(
        err.contains("unknown setting \"wokers\"") && err.contains("bad.toml"),
        "{err}"
    );
    // The app may come from the file; without it anywhere, say so.
    fs::write(&cfg, "workers = 1\n").unwrap();
    let (status, _, err) = run_with_timeout(
        Command::new(bin()).args(["-c", cfg.to_str().unwrap()]),
        10 * SEC,
    );
    assert_eq!(exit_code(status), Some(78), "{err}");
    assert!(err.contains("wsgi_app"), "{err}");
}

#[test]
fn hup_rereads_the_config_file() {
    let b = testapp("config-hup");
    let notify = NotifySocket::bind(b.dir());
    let cfg = b.dir().join("ferrocorn.toml");
    fs::write(&cfg, "raw_env = [\"GREETING=one\"]\n").unwrap();
    let s = b
        .arg("-c")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .start();
    assert_eq!(
        s.get("/osenv?key=GREETING").json().key("value").str(),
        "one"
    );
    // The start's READY=1 may trail the first answer: take it first, or it
    // passes for the reload's.
    notify
        .wait_for("READY=1", notify.opened, 10 * SEC)
        .expect("first READY=1");
    fs::write(&cfg, "raw_env = [\"GREETING=two\"]\nworkers = 2\n").unwrap();
    let hup = Instant::now();
    s.signal(libc::SIGHUP);
    let (_, ready) = notify
        .wait_for("READY=1", hup, 20 * SEC)
        .expect("READY=1 after the reload");
    assert!(
        ready.contains("workers 2/2 ready"),
        "workers = 2 not re-read: {ready}"
    );
    assert_eq!(
        s.get("/osenv?key=GREETING").json().key("value").str(),
        "two"
    );
    // A broken file keeps the current settings and still reloads.
    fs::write(&cfg, "workers = \"many\"\n").unwrap();
    let hup = Instant::now();
    s.signal(libc::SIGHUP);
    notify
        .wait_for("READY=1", hup, 20 * SEC)
        .expect("READY=1 after a reload with a bad file");
    assert!(
        s.log().contains("cannot re-read the configuration"),
        "{}",
        s.log()
    );
    assert_eq!(
        s.get("/osenv?key=GREETING").json().key("value").str(),
        "two"
    );
}

#[test]
fn graceful_worker_exit_runs_the_apps_atexit_handlers() {
    let b = Server::builder("atexit", "atexit_app:app");
    let marker = b.dir().join("atexit.out");
    let mut s = b
        .arg("-e")
        .arg(format!("ATEXIT_FILE={}", marker.display()))
        .start();
    let worker = s.get("/").text();
    s.signal(libc::SIGTERM);
    assert_eq!(exit_code(s.wait_exit(15 * SEC)), Some(0));
    let text = fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(
        text,
        format!("bye {}", worker),
        "atexit handlers did not run:\n{}",
        s.log()
    );
}

#[test]
fn app_print_output_is_not_held_back_under_journald() {
    // Under systemd stdout is the journal's stream socket: a block-buffered
    // print() would reach the journal late. With JOURNAL_STREAM set the
    // workers write through; the captured stdout shows it at once.
    let s = testapp("print")
        .env("JOURNAL_STREAM", "0:0")
        .without_env("PYTHONUNBUFFERED")
        .start();
    expect_status(&s.get("/print?msg=printed-right-away"), 200);
    let stdout = s.dir.join("stdout.log");
    assert!(
        file_gets(&stdout, "printed-right-away", 3 * SEC),
        "print() output still buffered: {:?}",
        fs::read_to_string(&stdout)
    );
}

#[test]
fn a_slow_reload_extends_the_start_timeout() {
    let (b, notify, _) = notified("reload-extend", &["-e", "SLOW_IMPORT=1.5"], &[]);
    let s = b.start();
    notify
        .wait_for("READY=1", notify.opened, 20 * SEC)
        .expect("first READY=1");
    let hup = Instant::now();
    s.signal(libc::SIGHUP);
    let (reloading, _) = notify
        .wait_for("RELOADING=1", hup, 10 * SEC)
        .expect("RELOADING=1");
    let (ready, _) = notify
        .wait_for("READY=1", reloading, 20 * SEC)
        .expect("READY=1");
    let extended = notify
        .messages()
        .iter()
        .any(|(t, m)| *t > reloading && *t < ready && has_line(m, "EXTEND_TIMEOUT_USEC="));
    assert!(
        extended,
        "no EXTEND_TIMEOUT_USEC during the reload's import: {:?}",
        notify.messages()
    );
}

// ---------------------------------------------------------------------------
// Interpreters: workers run in the app's own Python, the master in none
// ---------------------------------------------------------------------------

/// `/python` of a server: the interpreter its worker runs in.
fn python_of(s: &Server) -> serde_json::Value {
    let r = s.get("/python");
    expect_status(&r, 200);
    serde_json::from_str(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.summary()))
}

/// The CPythons of this machine that ferrocorn supports: Debian's and
/// pyenv's 3.9 and later.
fn supported_pythons() -> Vec<std::path::PathBuf> {
    let mut found = vec![std::path::PathBuf::from("/usr/bin/python3.11")];
    let pyenv = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    for minor in 9..=20 {
        let Ok(entries) = fs::read_dir(Path::new(&pyenv).join("versions")) else {
            break;
        };
        let prefix = format!("3.{minor}.");
        found.extend(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path().join("bin/python3"))
                .filter(|p| p.is_file()),
        );
    }
    found.retain(|p| p.is_file());
    found
}

#[test]
fn the_master_links_no_libpython() {
    let (status, out, err) = run_with_timeout(Command::new("ldd").arg(bin()), 10 * SEC);
    assert_eq!(exit_code(status), Some(0), "{err}");
    assert!(out.contains("libc.so"), "ldd output:\n{out}");
    assert!(
        !out.contains("libpython"),
        "the master links Python:\n{out}"
    );
}

#[test]
fn the_master_process_maps_no_libpython_while_serving() {
    let s = testapp("nolibpy").start();
    let maps = fs::read_to_string(format!("/proc/{}/maps", s.pid())).unwrap();
    assert!(
        !maps.contains("libpython"),
        "libpython is mapped in the master"
    );
    let worker = s.get("/pid").text().trim().parse::<i32>().unwrap();
    assert_ne!(worker, s.pid());
    // Its command line is the process title now; the executable tells.
    let exe = fs::read_link(format!("/proc/{worker}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().contains("python"),
        "the worker is not a Python interpreter: {}",
        exe.display()
    );
}

#[test]
fn every_cpython_on_the_machine_serves_with_the_build_trees_module() {
    let pythons = supported_pythons();
    assert!(!pythons.is_empty(), "no CPython 3.9+ found");
    for python in pythons {
        let s = testapp("anypython").arg("--python").arg(&python).start();
        let j = python_of(&s);
        let (status, want, _) = run_with_timeout(
            Command::new(&python)
                .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]),
            10 * SEC,
        );
        assert_eq!(exit_code(status), Some(0));
        assert_eq!(
            j["version"].as_str(),
            Some(want.trim()),
            "{}",
            python.display()
        );
        // The module built with the master: the build tree's, or the
        // wheel's when the suite runs against a wheel's ferrocorn; under
        // make wheel-test (FERROCORN_TEST_NATIVE=specific) the one built
        // for this interpreter's SOABI, which the wheel carries.
        let native = j["native"].as_str().unwrap_or_default();
        if std::env::var("FERROCORN_TEST_NATIVE").as_deref() == Ok("specific") {
            let (_, soabi, _) = run_with_timeout(
                Command::new(&python).args([
                    "-c",
                    "import sysconfig; print(sysconfig.get_config_var('SOABI'))",
                ]),
                10 * SEC,
            );
            let want = format!("/_native.{}.so", soabi.trim());
            assert!(native.ends_with(&want), "{}: {native:?}", python.display());
        } else {
            assert!(
                native.ends_with("/libferrocorn.so")
                    || native.ends_with("/ferrocorn/_native.abi3.so")
                    || native.contains("/_native.cpython-"),
                "{}: native module {native:?}",
                python.display()
            );
        }
        assert!(
            s.log()
                .contains(&format!("Using Python: {}", python.display())),
            "{}",
            s.log()
        );
    }
}

#[test]
fn pythons_older_than_3_9_are_refused_with_exit_78() {
    let pyenv = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    let old: Vec<_> = fs::read_dir(Path::new(&pyenv).join("versions"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            ["2.", "3.6.", "3.7.", "3.8."]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                e.path().join("bin/python"),
            )
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    if old.is_empty() {
        eprintln!("note: no Python older than 3.9 on this machine; nothing to refuse");
        return;
    }
    for (version, python) in old {
        let mut s = testapp("oldpython").arg("--python").arg(&python).spawn();
        let status = s.wait_exit(20 * SEC);
        let log = s.log();
        assert_eq!(exit_code(status), Some(78), "{version}: {log}");
        let line = format!(
            "Python interpreter {}: Python {version} is not supported",
            python.display()
        );
        assert!(log.contains(&line), "no line {line:?} in:\n{log}");
    }
}

#[test]
fn a_virtualenv_whose_python_is_missing_or_broken_is_exit_78_naming_it() {
    let dir = TempDir::new("badvenvs");
    let make = |name: &str| {
        let venv = dir.join(name);
        fs::create_dir_all(venv.join("bin")).unwrap();
        fs::write(venv.join("pyvenv.cfg"), "home = /nonexistent\n").unwrap();
        venv
    };
    // No bin/python at all.
    let missing = make("missing");
    // The venv's base Python is gone: bin/python dangles.
    let dangling = make("dangling");
    std::os::unix::fs::symlink("/nonexistent/python3.99", dangling.join("bin/python")).unwrap();
    // bin/python exists but cannot start (a missing shared library).
    let broken = make("broken");
    let script = "#!/bin/sh\necho 'error while loading shared libraries: libpython3.99.so.1.0' >&2\nexit 127\n";
    fs::write(broken.join("bin/python"), script).unwrap();
    fs::set_permissions(
        broken.join("bin/python"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cases = [
        (&missing, "has no bin/python"),
        (&dangling, "a broken virtualenv"),
        (&broken, "libpython3.99.so.1.0"),
    ];
    for (venv, what) in cases {
        let mut s = testapp("badvenv").arg("--virtualenv").arg(venv).spawn();
        let status = s.wait_exit(20 * SEC);
        let log = s.log();
        assert_eq!(exit_code(status), Some(78), "{}: {log}", venv.display());
        let path = format!("Python interpreter {}", venv.join("bin/python").display());
        let lines = log_lines_with(&log, &[&path, what]);
        assert!(
            !lines.is_empty(),
            "no line names {path:?} and {what:?}:\n{log}"
        );
    }
}

#[test]
fn the_interpreter_is_the_named_one_or_the_apps_venv() {
    let dir = TempDir::new("choose");
    let make_venv = |name: &str| {
        let venv = dir.join(name);
        let (status, _, err) = run_with_timeout(
            Command::new(python())
                .args(["-m", "venv", "--without-pip"])
                .arg(&venv),
            60 * SEC,
        );
        assert_eq!(exit_code(status), Some(0), "python -m venv: {err}");
        fs::canonicalize(venv).unwrap()
    };
    let app_dir = dir.join("app");
    fs::create_dir_all(&app_dir).unwrap();
    fs::copy(apps_dir().join("testapp.py"), app_dir.join("testapp.py")).unwrap();
    let beside = make_venv("app/.venv");
    let activated = make_venv("activated");
    let prefix = |s: &Server| fs::canonicalize(python_of(s)["prefix"].as_str().unwrap()).unwrap();

    // A ferrocorn installed in a venv (a wheel's, under make wheel-test)
    // runs its own venv's python before VIRTUAL_ENV or the app's venv.
    let own_venv = bin()
        .parent()
        .and_then(Path::parent)
        .filter(|d| d.join("pyvenv.cfg").is_file())
        .map(|d| fs::canonicalize(d).unwrap());
    // The venv beside the app (DIR/.venv).
    let s = testapp("venvbeside").chdir(Some(app_dir.clone())).start();
    assert_eq!(
        prefix(&s),
        own_venv.clone().unwrap_or(beside.clone()),
        "{}",
        s.log()
    );
    let why = match own_venv {
        Some(_) => "the virtualenv of ferrocorn",
        None => "the app's virtualenv",
    };
    assert!(s.log().contains(why), "{}", s.log());
    drop(s);
    // VIRTUAL_ENV (an activated venv) wins over the app's.
    let s = testapp("venvactive")
        .chdir(Some(app_dir.clone()))
        .env("VIRTUAL_ENV", activated.to_str().unwrap())
        .start();
    assert_eq!(
        prefix(&s),
        own_venv.unwrap_or(activated.clone()),
        "{}",
        s.log()
    );
    drop(s);
    // --python wins over both.
    let s = testapp("venvnamed")
        .chdir(Some(app_dir.clone()))
        .env("VIRTUAL_ENV", activated.to_str().unwrap())
        .arg("--python")
        .arg(beside.join("bin/python"))
        .start();
    assert_eq!(prefix(&s), beside, "{}", s.log());
}

#[test]
fn a_version_specific_module_that_does_not_load_gives_way_to_the_stable_abi_one() {
    // A copy of the build tree's layout: bin/ferrocorn with the stable-ABI
    // module beside it, and in native/ a "module built for this Python"
    // that is no module at all (as a stale or broken one would be).
    let dir = TempDir::new("nativepick");
    let bin_dir = dir.join("bin");
    fs::create_dir_all(&bin_dir).unwrap();
    fs::create_dir_all(dir.join("native")).unwrap();
    let real = bin();
    fs::copy(&real, bin_dir.join("ferrocorn")).unwrap();
    let abi3 = [
        real.with_file_name("libferrocorn.so"),
        real.parent()
            .unwrap()
            .join("../lib/ferrocorn/_native.abi3.so"),
    ];
    let Some(abi3) = abi3.iter().find(|p| p.is_file()) else {
        eprintln!(
            "note: no stable-ABI module beside {}; nothing to copy",
            real.display()
        );
        return;
    };
    fs::copy(abi3, bin_dir.join("libferrocorn.so")).unwrap();
    let (_, soabi, _) = run_with_timeout(
        Command::new(python()).args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('SOABI'))",
        ]),
        10 * SEC,
    );
    let specific = dir
        .join("native")
        .join(format!("_native.{}.so", soabi.trim()));
    fs::write(&specific, b"not an ELF file").unwrap();
    let s = testapp("nativepick")
        .binary(bin_dir.join("ferrocorn"))
        .arg("--python")
        .arg(python())
        .start();
    let j = python_of(&s);
    assert_eq!(
        j["native"].as_str(),
        Some(bin_dir.join("libferrocorn.so").to_str().unwrap()),
        "{}",
        s.log()
    );
    let warned = log_lines_with(&s.log(), &["not using", specific.to_str().unwrap()]);
    assert!(
        !warned.is_empty(),
        "no warning names {}:\n{}",
        specific.display(),
        s.log()
    );
}
