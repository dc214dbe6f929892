//! Gunicorn's server hooks: `tests/apps/hook_recorder.py`, a
//! gunicorn.conf.py whose every hook records its name, side and arguments,
//! run through one life cycle (start, a request, TTIN, TTOU, a worker
//! killed, a request past `--timeout`, HUP, USR2, TERM) under ferrocorn and
//! under Gunicorn 27, phase by phase. Then what the comparison does not
//! reach: the bad hooks that stop a start (exit 78), a hook that raises or
//! hangs, `worker_int`, `--preload` (the zygote's `pre_fork`), and HUP's
//! new settings in the arbiter's next generation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Gunicorn, exchange, tools_venv};
use crate::common::*;
use crate::{SEC, exit_code};

/// One recorded hook call, as compared: `hook side {seen...}`.
fn normalized(event: &serde_json::Value) -> String {
    let hook = event["hook"].as_str().unwrap_or("?");
    let mut seen = event["seen"].clone();
    // After USR2 Gunicorn's new master calls itself NAME.2 until the old
    // one has exited; ferrocorn's keeps NAME (docs/migrating-from-gunicorn.md).
    if let Some(name) = seen.pointer_mut("/server/proc_name") {
        if let Some(plain) = name.as_str().and_then(|n| n.strip_suffix(".2")) {
            *name = plain.into();
        }
    }
    // Which worker serves a request, times out or is retired on HUP is up
    // to the kernel: ages are compared where a fork fixes them.
    if !matches!(hook, "pre_fork" | "post_fork" | "post_worker_init") {
        if let Some(w) = seen.get_mut("worker").and_then(|w| w.as_object_mut()) {
            w.remove("age");
        }
    }
    format!("{hook} {} {seen}", event["side"].as_str().unwrap_or("?"))
}

fn events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn count(log: &Path, hook: &str) -> usize {
    events(log).iter().filter(|e| e["hook"] == hook).count()
}

/// Wait until `done` holds of the record, then until it stops growing.
fn settle(log: &Path, what: &str, done: impl Fn(&Path) -> bool) {
    assert!(
        poll_until(40 * SEC, || done(log)),
        "{what}: the hooks did not run; recorded:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    let mut last = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let mut still = Instant::now();
    while still.elapsed() < Duration::from_millis(700) {
        std::thread::sleep(Duration::from_millis(100));
        let now = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        if now != last {
            last = now;
            still = Instant::now();
        }
    }
}

/// The server under test: its address, master and pid file.
struct Subject<'a> {
    addr: Addr,
    master: i32,
    pidfile: &'a Path,
    /// Gunicorn's old master waits for TERM after USR2; ferrocorn's
    /// retires on its own once the new one serves.
    term_old_master: bool,
}

/// Drive one life cycle; the record split into its phases.
fn life_cycle(s: &Subject, log: &Path) -> Vec<(&'static str, Vec<String>)> {
    let mut phases = Vec::new();
    let mut mark = 0;
    let mut cut = |name: &'static str, phases: &mut Vec<(&'static str, Vec<String>)>| {
        let all = events(log);
        let mut phase: Vec<String> = all[mark..].iter().map(normalized).collect();
        phase.sort();
        mark = all.len();
        phases.push((name, phase));
    };
    let pid_of_age = |age: u64| -> i32 {
        events(log)
            .iter()
            .find(|e| e["hook"] == "post_fork" && e["seen"]["worker"]["age"] == age)
            .and_then(|e| e["pid"].as_i64())
            .expect("a worker of that age") as i32
    };
    settle(log, "start", |l| count(l, "post_worker_init") >= 2);
    cut("start", &mut phases);

    let raw = request("GET", "/?x=1", &[("Host", "example.com")], b"");
    assert_eq!(exchange(&s.addr, &raw).status, 200);
    settle(log, "request", |l| count(l, "post_request") >= 1);
    cut("request", &mut phases);

    signal(s.master, libc::SIGTTIN);
    settle(log, "TTIN", |l| count(l, "post_worker_init") >= 3);
    cut("TTIN", &mut phases);

    signal(s.master, libc::SIGTTOU);
    settle(log, "TTOU", |l| count(l, "child_exit") >= 1);
    cut("TTOU", &mut phases);

    signal(pid_of_age(3), libc::SIGKILL);
    settle(log, "a worker killed", |l| {
        count(l, "child_exit") >= 2 && count(l, "post_worker_init") >= 4
    });
    cut("kill -9", &mut phases);

    // Past --timeout 2: the worker is aborted and replaced.
    let addr = s.addr.clone();
    let slow = std::thread::spawn(move || {
        let raw = request("GET", "/sleep?s=8", &[("Host", "example.com")], b"");
        let mut c = Client::connect(&addr);
        c.set_timeout(15 * SEC);
        c.send(&raw);
        let _ = c.try_read_response("GET");
    });
    settle(log, "timeout", |l| {
        count(l, "worker_abort") >= 1
            && count(l, "child_exit") >= 3
            && count(l, "post_worker_init") >= 5
    });
    slow.join().unwrap();
    cut("timeout", &mut phases);

    signal(s.master, libc::SIGHUP);
    settle(log, "HUP", |l| {
        count(l, "on_reload") >= 1
            && count(l, "post_worker_init") >= 7
            && count(l, "child_exit") >= 5
    });
    cut("HUP", &mut phases);

    signal(s.master, libc::SIGUSR2);
    settle(log, "USR2", |l| {
        count(l, "when_ready") >= 2 && count(l, "post_worker_init") >= 9
    });
    // Gunicorn's new master writes PIDFILE.2 until the old one is gone.
    let new_master = || -> Option<i32> {
        let second = s.pidfile.with_extension("pid.2");
        [s.pidfile, second.as_path()].iter().find_map(|p| {
            let pid: i32 = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
            (pid != s.master).then_some(pid)
        })
    };
    assert!(
        poll_until(20 * SEC, || new_master().is_some()),
        "no new master in the pid file"
    );
    if s.term_old_master {
        signal(s.master, libc::SIGTERM);
    }
    settle(log, "the old master's exit", |l| count(l, "on_exit") >= 1);
    cut("USR2", &mut phases);

    signal(new_master().expect("the new master"), libc::SIGTERM);
    settle(log, "TERM", |l| count(l, "on_exit") >= 2);
    cut("TERM", &mut phases);
    phases
}

#[test]
fn every_hook_runs_at_gunicorns_moment_in_gunicorns_process_with_its_arguments() {
    if tools_venv().is_none() {
        return;
    }
    let recorder = apps_dir().join("hook_recorder.py");
    let recorder = recorder.to_str().unwrap();

    let g_dir = TempDir::new("hooks-g-files");
    let (g_log, g_pid) = (g_dir.join("hooks.jsonl"), g_dir.join("master.pid"));
    let guni = Gunicorn::start_with(
        "hooks-g",
        "testapp:app",
        &["-c", recorder, "--pid", g_pid.to_str().unwrap()],
        &[("HOOK_LOG", g_log.to_str().unwrap())],
    );
    let theirs = life_cycle(
        &Subject {
            addr: guni.addr(),
            master: guni.pid(),
            pidfile: &g_pid,
            term_old_master: true,
        },
        &g_log,
    );

    let f_dir = TempDir::new("hooks-f-files");
    let (f_log, f_pid) = (f_dir.join("hooks.jsonl"), f_dir.join("master.pid"));
    let ferro = Server::builder("hooks-f", "testapp:app")
        .tcp()
        .args(["-c", recorder, "--pid", f_pid.to_str().unwrap()])
        .env("HOOK_LOG", f_log.to_str().unwrap())
        // Not start(): its readiness probe is a request, which Gunicorn's
        // start (a connect) does not make; the hooks say when it is up.
        .spawn();
    let ours = life_cycle(
        &Subject {
            addr: ferro.addr.clone(),
            master: ferro.pid(),
            pidfile: &f_pid,
            term_old_master: false,
        },
        &f_log,
    );

    let mut differ = BTreeMap::new();
    for ((phase, ours), (_, theirs)) in ours.iter().zip(&theirs) {
        // Known and documented (docs/migrating-from-gunicorn.md): Gunicorn's
        // sync worker calls post_request for the request it aborts as the
        // SystemExit unwinds it; ferrocorn's abort ends the worker at once.
        let theirs: Vec<&String> = theirs
            .iter()
            .filter(|e| !(*phase == "timeout" && e.starts_with("post_request ")))
            .collect();
        let ours: Vec<&String> = ours.iter().collect();
        if ours != theirs {
            differ.insert(*phase, (ours, theirs));
        }
    }
    assert!(
        differ.is_empty(),
        "ferrocorn (first) and Gunicorn (second) differ:\n{differ:#?}"
    );
}

/// A server with `conf` as its ./gunicorn.conf.py, not waited for.
fn with_conf(name: &str, conf: &str) -> ServerBuilder {
    let b = Server::builder(name, "testapp:app").tcp();
    let path = b.dir().join("gunicorn.conf.py");
    std::fs::write(&path, conf).unwrap();
    b.args(["-c", path.to_str().unwrap()])
}

#[test]
fn a_bad_hook_stops_the_start_with_one_clear_line_and_exit_78() {
    let cases = [
        ("syntax", "workers = 1\nbind = (\n", "line 2: SyntaxError"),
        (
            "not-callable",
            "workers = 1\non_exit = 5\n",
            "on_exit: value is not callable: 5 (in ",
        ),
        (
            "arity",
            "def pre_fork(server):\n    pass\n",
            "pre_fork: the hook must take 2 argument(s), not 1",
        ),
        (
            "import-string",
            "on_starting = 'no_such_module.setup'\n",
            "on_starting: cannot load 'no_such_module.setup'",
        ),
        (
            "on-starting-raises",
            "def on_starting(server):\n    raise RuntimeError('the database is down')\n",
            "RuntimeError: the database is down",
        ),
        (
            "raises",
            "workers = 1\n\nraise RuntimeError('no database')\n",
            "line 3: RuntimeError: no database",
        ),
        // The setting, the file and the line of the assignment.
        (
            "bad-value",
            "import os\n\nworkers = 'many'\n",
            "gunicorn.conf.py, line 3)",
        ),
        (
            "when-ready-raises",
            "def when_ready(server):\n    raise KeyError('addons_path')\n",
            "KeyError: 'addons_path'",
        ),
    ];
    for (name, conf, line) in cases {
        let mut s = with_conf(&format!("badhook-{name}"), conf).spawn();
        let status = s.wait_exit(20 * SEC);
        assert_eq!(
            exit_code(status),
            Some(78),
            "{name}: exit status\n{}",
            s.log()
        );
        let log = s.log();
        assert!(
            log.lines().any(|l| l.contains(line)),
            "{name}: no line with {line:?}:\n{log}"
        );
        assert!(!s.group_alive(), "{name}: a process outlived the master");
    }
}

#[test]
fn a_hook_that_raises_is_logged_with_its_traceback_and_the_server_serves_on() {
    let s = with_conf(
        "hook-raises",
        "def post_fork(server, worker):\n    raise ValueError('post_fork broke')\n\
         def pre_request(worker, req):\n    raise ValueError('pre_request broke for %s' % req.path)\n\
         def post_request(worker, req, environ, resp):\n    1 / 0\n",
    )
    .start();
    assert_eq!(s.get("/status?code=201").status, 201);
    assert!(
        s.wait_log("pre_request broke for /status", 5 * SEC),
        "{}",
        s.log()
    );
    let log = s.log();
    for want in [
        "Exception in the post_fork hook",
        "ValueError: post_fork broke",
        "Exception in the post_request hook",
        "ZeroDivisionError",
        "Traceback (most recent call last)",
    ] {
        assert!(log.contains(want), "no {want:?} in the log:\n{log}");
    }
}

#[test]
fn a_hook_that_hangs_does_not_hang_the_master() {
    // The second worker's pre_fork never returns: the first serves, and
    // TERM still stops everything, the arbiter killed after its grace.
    let mut s = with_conf(
        "hook-hangs",
        "import time\nworkers = 2\n\
         def pre_fork(server, worker):\n    if worker.age == 2:\n        time.sleep(3600)\n",
    )
    .start();
    for _ in 0..5 {
        assert_eq!(s.get("/").status, 200);
    }
    let term = Instant::now();
    s.signal(libc::SIGTERM);
    assert_eq!(exit_code(s.wait_exit(20 * SEC)), Some(0), "{}", s.log());
    assert!(
        term.elapsed() < 12 * SEC,
        "stopping took {:?}",
        term.elapsed()
    );
    assert!(s.log().contains("a server hook hangs"), "{}", s.log());
    assert!(!s.group_alive(), "a process outlived the master");
}

#[test]
fn worker_int_and_worker_exit_run_in_the_worker_on_int() {
    let b = with_conf(
        "hook-int",
        "import os\nworkers = 1\n\
         def _w(line):\n    open(os.environ['HOOK_LOG'], 'a').write(line + '\\n')\n\
         def worker_int(worker):\n    _w('worker_int %d %s' % (worker.pid, worker.alive))\n\
         def worker_exit(server, worker):\n    _w('worker_exit %d' % worker.pid)\n",
    );
    let log = b.dir().join("hooks.log");
    let s = b.env("HOOK_LOG", log.to_str().unwrap()).start();
    let worker: i32 = s.get("/pid").text().trim().parse().unwrap();
    signal(worker, libc::SIGINT);
    let want = format!("worker_int {worker} False\nworker_exit {worker}\n");
    assert!(
        poll_until(10 * SEC, || std::fs::read_to_string(&log)
            .is_ok_and(|t| t == want)),
        "{:?}\n{}",
        std::fs::read_to_string(&log),
        s.log()
    );
    // The master replaces it.
    assert!(
        poll_until(10 * SEC, || s.get("/pid").text().trim()
            != worker.to_string()),
        "{}",
        s.log()
    );
}

#[test]
fn with_preload_workers_are_forked_with_the_app_and_ages_keep_counting_over_hup() {
    let b = with_conf(
        "hook-preload",
        "import os, sys\nworkers = 2\npreload_app = True\n\
         def _w(line):\n    open(os.environ['HOOK_LOG'], 'a').write(line + '\\n')\n\
         def pre_fork(server, worker):\n    _w('pre_fork %d app=%s' % (worker.age, 'testapp' in sys.modules))\n\
         def post_fork(server, worker):\n    _w('post_fork %d' % worker.age)\n\
         def on_reload(server):\n    _w('on_reload')\n",
    );
    let log = b.dir().join("hooks.log");
    let s = b.env("HOOK_LOG", log.to_str().unwrap()).start();
    let lines = || {
        let mut l: Vec<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        l.sort();
        l
    };
    assert!(poll_until(10 * SEC, || lines().len() == 4), "{:?}", lines());
    assert_eq!(
        lines(),
        [
            "post_fork 1",
            "post_fork 2",
            "pre_fork 1 app=True",
            "pre_fork 2 app=True"
        ]
    );
    s.signal(libc::SIGHUP);
    assert!(poll_until(15 * SEC, || lines().len() == 9), "{:?}", lines());
    let after: Vec<String> = lines();
    for want in [
        "on_reload",
        "pre_fork 3 app=True",
        "pre_fork 4 app=True",
        "post_fork 3",
        "post_fork 4",
    ] {
        assert!(after.iter().any(|l| l == want), "no {want:?} in {after:?}");
    }
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn hup_gives_the_arbiters_next_generation_the_new_settings_and_environment() {
    let conf = |generation: &str, threads: u32| {
        format!(
            "workers = 1\nthreads = {threads}\nraw_env = ['GENERATION={generation}']\n\
             def post_fork(server, worker):\n    pass\n"
        )
    };
    let b = with_conf("hook-hup", &conf("one", 1));
    let path = b.dir().join("gunicorn.conf.py");
    let s = b.start();
    assert_eq!(s.get("/osenv?key=GENERATION").json()["value"], "one");
    assert_eq!(s.get("/environ").json()["wsgi.multithread"], false);
    std::fs::write(&path, conf("two", 2)).unwrap();
    s.signal(libc::SIGHUP);
    assert!(
        poll_until(15 * SEC, || s.get("/osenv?key=GENERATION").json()["value"]
            == "two"),
        "{}",
        s.log()
    );
    assert_eq!(s.get("/environ").json()["wsgi.multithread"], true);
}

#[test]
fn a_python_module_named_by_c_python_runs_its_hooks() {
    // `-c python:MODULE`: the module is found in --chdir, as Gunicorn's
    // master finds it; the app comes from --pythonpath.
    let b = Server::builder("hook-module", "testapp:app");
    let dir = b.dir().to_path_buf();
    std::fs::write(
        dir.join("site_hooks.py"),
        "import os\nworkers = 1\n\
         def post_fork(server, worker):\n    os.environ['FROM_HOOK'] = 'module %d' % worker.age\n",
    )
    .unwrap();
    let s = b
        .chdir(Some(dir))
        .args(["-c", "python:site_hooks", "--pythonpath"])
        .arg(apps_dir())
        .start();
    assert_eq!(s.get("/osenv?key=FROM_HOOK").json()["value"], "module 1");
    assert!(
        s.log().contains("Arbiter running python:site_hooks"),
        "{}",
        s.log()
    );
}
