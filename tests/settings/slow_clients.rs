//! Slow and hostile clients against one worker (`min_send_rate`,
//! `write_budget`, `header_timeout`, `worker_connections`): clients that
//! never read their response, and slowloris connections that never finish
//! a head, must not stall the worker for a normal client; the worker's
//! memory stays under a stated bound; a client reading slower than
//! `min_send_rate` is cut, and the app's `close()` still runs.
//!
//! Every wait is bounded; the hostile sockets are closed when a test ends.

use crate::common::*;
use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

fn testapp(name: &str) -> ServerBuilder {
    ServerBuilder::new(name, "testapp:app")
}

/// The worker's resident memory in MiB (`VmRSS` of /proc/PID/status).
fn rss_mib(pid: i32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn tcp_addr(s: &Server) -> SocketAddr {
    match &s.addr {
        Addr::Tcp(a) => *a,
        Addr::Unix(p) => panic!("{} is not TCP", p.display()),
    }
}

/// `n` clients that ask for `target` and never read a byte (their receive
/// buffers made small, so the server's writes block early).
fn non_readers(addr: SocketAddr, n: usize, target: &str) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
            s.connect_timeout(&addr.into(), 5 * SEC).expect("connect");
            let mut s = TcpStream::from(s);
            write!(s, "GET {target} HTTP/1.1\r\nHost: slow\r\n\r\n").expect("send");
            s
        })
        .collect()
}

/// `n` fresh requests for `/pid`, each given `timeout`: their latencies,
/// or why one failed.
fn normal_client(s: &Server, n: usize, timeout: Duration) -> Vec<Result<Duration, String>> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            let mut c = s.client();
            c.set_timeout(timeout);
            c.send(&request("GET", "/pid", &[], b""));
            match c.try_read_response("GET") {
                Ok(r) if r.status == 200 => Ok(start.elapsed()),
                Ok(r) => Err(r.summary()),
                Err(e) => Err(format!("{e} after {:?}", start.elapsed())),
            }
        })
        .collect()
}

fn assert_all_answered(results: &[Result<Duration, String>], what: &str) {
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
}

/// The first scenario, bounded: 50 clients that never read an
/// 8 MiB answer, then 8 that never read a 50 MiB one with four app
/// threads. The app threads hand the bodies to the I/O thread, so every
/// request of a normal client is answered at once, and the worker holds
/// at most about twice `write_budget` (64 MiB) of them.
#[test]
fn clients_that_never_read_do_not_stall_the_worker_and_memory_stays_bounded() {
    const RSS_BOUND_MIB: f64 = 300.0;
    for (threads, clients, mib) in [("1", 50, 8), ("4", 8, 50)] {
        let s = testapp("non-readers")
            .tcp()
            .args(["--threads", threads])
            .start();
        let worker = s.get("/pid").text().trim().parse::<i32>().expect("pid");
        let target = format!("/big?mib={mib}");
        let hostile = non_readers(tcp_addr(&s), clients, &target);
        std::thread::sleep(Duration::from_millis(500));
        let results = normal_client(&s, 20, 3 * SEC);
        let rss = rss_mib(worker);
        assert_all_answered(
            &results,
            &format!("--threads {threads}, {clients} non-readers"),
        );
        assert!(
            rss < RSS_BOUND_MIB,
            "--threads {threads}: worker RSS {rss:.0} MiB with {clients} × {mib} MiB unread"
        );
        let slowest = results.iter().flatten().max().copied().unwrap_or_default();
        assert!(slowest < 2 * SEC, "a normal request took {slowest:?}");
        drop(hostile);
    }
}

/// The second scenario: 1,500 connections (more than the default
/// `worker_connections`, 1000) send a partial head and then a byte every
/// 2 s. At the limit the worker closes those that have waited longest
/// for a head, and under pressure gives each 2 s to finish one, so a
/// normal client is answered.
#[test]
fn slowloris_connections_over_the_limit_do_not_lock_out_a_normal_client() {
    // This process holds the 1,500 connections: up to the hard limit of
    // open files (a shell's soft limit may be 1024).
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _ = setrlimit(Resource::RLIMIT_NOFILE, soft.max(hard.min(4096)), hard);
    let s = testapp("slowloris").tcp().start();
    let worker = s.get("/pid").text().trim().parse::<i32>().expect("pid");
    let addr = tcp_addr(&s);
    let mut loris: Vec<TcpStream> = (0..1500)
        .filter_map(|_| {
            let mut c = TcpStream::connect_timeout(&addr, 5 * SEC).ok()?;
            c.write_all(b"GET /pid HTTP/1.1\r\nHost: loris\r\nX-Slow: ")
                .ok()?;
            Some(c)
        })
        .collect();
    assert!(
        loris.len() >= 1400,
        "only {} slowloris connections",
        loris.len()
    );
    let stop = Instant::now() + 12 * SEC;
    let mut results = Vec::new();
    let mut next_drip = Instant::now();
    while Instant::now() < stop {
        if Instant::now() >= next_drip {
            // The server closes some: keep dripping into the others.
            loris.retain_mut(|c| c.write_all(b"x").is_ok());
            next_drip += 2 * SEC;
        }
        results.extend(normal_client(&s, 1, 5 * SEC));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(results.len() >= 8, "{} requests in 12 s", results.len());
    assert_all_answered(&results, "1,500 slowloris connections");
    let rss = rss_mib(worker);
    assert!(rss < 150.0, "worker RSS {rss:.0} MiB");
    assert!(
        s.log()
            .contains("connections get 2 s to send a complete head"),
        "{}",
        s.log()
    );
}

/// A client that stops reading is cut once a 30 s window passes below
/// `min_send_rate` — a body left to the I/O thread (a list, or a file it
/// sends with sendfile) and a streamed one whose app thread waits (a
/// generator) alike — the cut is logged, and close() runs: the streamed
/// iterable's, and the file's (through `wsgi.file_wrapper`).
#[test]
fn a_client_below_min_send_rate_is_cut_and_close_still_runs() {
    let s = testapp("min-send-rate")
        .tcp()
        .markers()
        .args(["--threads", "2", "--access-logfile", "-"])
        .start();
    let addr = tcp_addr(&s);
    let mut list = non_readers(addr, 1, "/big?mib=8&mode=list");
    let mut stream = non_readers(addr, 1, "/closing?mode=stream&token=slow");
    let big = s.dir.join("big.bin");
    std::fs::write(&big, vec![b'f'; 16 << 20]).unwrap();
    let target = format!("/file?token=slowfile&path={}", big.display());
    let mut file = non_readers(addr, 1, &target);
    let cut = |c: &mut TcpStream| {
        // Drain what the kernel holds: a cut connection then ends.
        c.set_read_timeout(Some(SEC)).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(c, &mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    // Not before the window ends.
    std::thread::sleep(10 * SEC);
    assert_all_answered(
        &normal_client(&s, 3, 3 * SEC),
        "while two clients read nothing",
    );
    assert!(!s.log().contains("below min_send_rate"), "{}", s.log());
    assert!(
        s.wait_log("below min_send_rate", 40 * SEC),
        "no cut logged: {}",
        s.log()
    );
    assert!(
        file_gets(&s.dir.join("close-slow"), "chunks=", 10 * SEC),
        "the streamed iterable's close() did not run: {}",
        s.log()
    );
    assert!(cut(&mut list[0]) && cut(&mut stream[0]) && cut(&mut file[0]));
    assert!(
        poll_until(10 * SEC, || s.log().matches("below min_send_rate").count()
            >= 3),
        "all three responses cut: {}",
        s.log()
    );
    assert!(
        file_gets(&s.dir.join("close-slowfile"), "closed at", 10 * SEC),
        "the file's close() did not run: {}",
        s.log()
    );
}

/// Under pressure (three quarters of `worker_connections` open) a head
/// under way gets 2 s, but an idle keep-alive connection keeps its
/// `--keep-alive`: it is dropped only when room is needed.
#[test]
fn under_pressure_heads_get_2_s_but_idle_keep_alive_connections_keep_theirs() {
    let s = testapp("pressure")
        .args(["--worker-connections", "20", "--keep-alive", "30"])
        .start();
    let mut idle: Vec<Client> = (0..14)
        .map(|_| {
            let mut c = s.client();
            assert_eq!(c.get("/pid").status, 200);
            c
        })
        .collect();
    let mut partial: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = s.client();
            c.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n");
            c
        })
        .collect();
    std::thread::sleep(4 * SEC);
    for c in &mut partial {
        assert!(
            c.closed_within(SEC),
            "a partial head outlived 2 s under pressure"
        );
    }
    for c in &mut idle {
        assert_eq!(
            c.get("/pid").status,
            200,
            "an idle keep-alive connection was cut"
        );
    }
    assert!(s.log().contains("connections get 2 s"), "{}", s.log());
}

/// `--header-timeout`: a head not complete that long after the connection
/// is closed, whatever `--timeout` says; a complete one is served.
#[test]
fn a_head_not_complete_within_header_timeout_is_closed() {
    let s = testapp("header-timeout")
        .args(["--header-timeout", "1", "--timeout", "60"])
        .start();
    let mut slow = s.client();
    let started = Instant::now();
    slow.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n");
    assert!(slow.closed_within(5 * SEC), "a partial head was kept");
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(900)..3 * SEC).contains(&took),
        "closed after {took:?}"
    );
    assert_eq!(s.get("/pid").status, 200);
}

/// The soft limit of a process's open files (`Max open files` of
/// /proc/PID/limits).
fn nofile_soft(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Out of descriptors (RLIMIT_NOFILE 64, soft and hard: the worker cannot
/// raise it), 100 connections that send one byte of a head make accept(2)
/// fail with EMFILE. The worker makes room as at `worker_connections`, closing the
/// one that has waited longest for a head, so a normal client is answered
/// at once rather than after `header_timeout` (10 s). Given room under
/// the hard limit, the worker raises its soft limit to fit
/// `worker_connections` (1000) and its app's files.
#[test]
fn out_of_descriptors_the_worker_makes_room_and_raises_its_soft_limit() {
    let s = testapp("emfile")
        .tcp()
        .wrapper(["prlimit", "--nofile=64:64"])
        .start();
    let addr = tcp_addr(&s);
    let worker = s.get("/pid").text().trim().parse::<i32>().expect("pid");
    assert_eq!(nofile_soft(worker), 64);
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut c = TcpStream::connect_timeout(&addr, 5 * SEC).expect("connect");
            c.write_all(b"G").expect("send");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_all_answered(
        &normal_client(&s, 3, 3 * SEC),
        "with 100 heads begun and 64 descriptors",
    );
    drop(idle);

    let s = testapp("nofile")
        .wrapper(["prlimit", "--nofile=256:4096"])
        .start();
    let worker = s.get("/pid").text().trim().parse::<i32>().expect("pid");
    assert_eq!(nofile_soft(worker), 2024, "1000 connections + 1024");
}
