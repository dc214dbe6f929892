//! The command lines of real Gunicorn deployment guides, with `ferrocorn`
//! for `gunicorn` and nothing else changed, each serving an app named as
//! in its guide (`tests/apps/guides/`).
//!
//! They bind fixed addresses (127.0.0.1:8000, [::1]:8000, :8004, :8080,
//! /run/gunicorn/socket), so each runs in a network namespace and a mount
//! namespace (a fresh /run) of its own, made with unshare(1); the test's
//! requests are made inside it with nsenter(1) and curl. They need root,
//! as CI has; elsewhere they say so and pass.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{app_venv, is_root, which};
use crate::common::*;

/// A ferrocorn started with a guide's arguments, alone in its namespaces.
struct Guide {
    child: Child,
    dir: TempDir,
}

impl Guide {
    /// `ferrocorn ARGS` with `tests/apps/guides` as the working directory,
    /// `dirs` made first; `None` (a note printed) when this machine cannot
    /// make namespaces.
    fn start(name: &str, args: &[&str], dirs: &[&str]) -> Option<Guide> {
        if !is_root() || which(&["unshare"]).is_none() || which(&["curl"]).is_none() {
            eprintln!("note: needs root, unshare and curl; {name} skipped");
            return None;
        }
        let venv = app_venv()?;
        let dir = TempDir::new(name);
        let script = format!(
            "mount -t tmpfs tmpfs /run && ip link set lo up && mkdir -p /run {} && exec \"$@\"",
            dirs.join(" ")
        );
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(bin())
        .args(args)
        .current_dir(repo_root().join("tests/apps/guides"))
        // The apps' interpreter: the test venv (Flask), as an
        // activated virtualenv would give it.
        .env("VIRTUAL_ENV", &venv)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("GUNICORN_CMD_ARGS")
        .env_remove("FERROCORN_CMD_ARGS")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("FORWARDED_ALLOW_IPS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("spawn unshare");
        Some(Guide { child, dir })
    }

    /// The master's pid (unshare and sh exec it, keeping the pid).
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Run `curl ARGS` inside the namespaces; its stdout.
    fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args([
                "--target",
                &self.pid().to_string(),
                "--net",
                "--mount",
                "curl",
                "-sS",
                "--max-time",
                "10",
            ])
            .args(args)
            .output()
            .expect("nsenter curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until `url` answers 200 (curl `extra` args first), or panic with the log.
    fn wait_ready(&mut self, extra: &[&str], url: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ferrocorn exited ({status}):\n{}", self.log());
            }
            let mut args = extra.to_vec();
            args.extend(["-o", "/dev/null", "-w", "%{http_code}", url]);
            if self.curl(&args) == "200" {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{url} did not answer 200:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The master's children (its workers).
    fn workers(&self) -> Vec<u32> {
        let path = format!("/proc/{0}/task/{0}/children", self.pid());
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// TERM, and wait for a clean exit.
    fn stop(mut self) {
        // SAFETY: signals only the master this test started.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + 15 * crate::SEC;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "exit {status}:\n{}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no exit after TERM:\n{}", self.log());
    }
}

impl Drop for Guide {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: the process group this test started.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

fn help_text() -> String {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_lists_every_flag_of_the_guides() {
    let help = help_text();
    for flag in [
        "--forwarded-allow-ips",
        "--workers",
        "--worker-class",
        "--log-file",
        "--bind",
        "--pid",
        "--threads",
        "-w,",
        "-b,",
        "--error-logfile",
        "--name",
        "--daemon",
        "--reload",
        "--statsd-host",
        "--umask",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn proxy_guide_three_workers_and_forwarded_allow_ips() {
    // ferrocorn -w 3 --forwarded-allow-ips="10.170.3.217,10.170.3.220" test:app
    let Some(mut g) = Guide::start(
        "guide-proxy",
        &[
            "-w",
            "3",
            "--forwarded-allow-ips=10.170.3.217,10.170.3.220",
            "test:app",
        ],
        &[],
    ) else {
        return;
    };
    g.wait_ready(&[], "http://127.0.0.1:8000/");
    assert!(
        poll_until(10 * crate::SEC, || g.workers().len() == 3),
        "workers: {:?}\n{}",
        g.workers(),
        g.log()
    );
    // 127.0.0.1 is not among the proxies now: its X-Forwarded-Proto is not believed.
    let body = g.curl(&["-H", "X-Forwarded-Proto: https", "http://127.0.0.1:8000/"]);
    let j: serde_json::Value = serde_json::from_str(&body).expect(&body);
    assert_eq!(j["app"], "test");
    assert_eq!(j["url_scheme"], "http", "{body}");
    g.stop();
}

#[test]
fn flask_guide_binds_8004_with_two_workers_and_a_pid_file() {
    // ferrocorn --bind=127.0.0.1:8004 --workers=2 --pid=/tmp/flasktodo.pid flasktodo:app
    let Some(mut g) = Guide::start(
        "guide-flask",
        &[
            "--bind=127.0.0.1:8004",
            "--workers=2",
            "--pid=/tmp/flasktodo.pid",
            "flasktodo:app",
        ],
        &[],
    ) else {
        return;
    };
    g.wait_ready(&[], "http://127.0.0.1:8004/");
    let pid = std::fs::read_to_string("/tmp/flasktodo.pid").unwrap();
    assert_eq!(pid.trim(), g.pid().to_string());
    assert!(
        poll_until(10 * crate::SEC, || g.workers().len() == 2),
        "{}",
        g.log()
    );
    // Behind a proxy that mounts the app at /flasktodo (nginx's
    // proxy_set_header SCRIPT_NAME /flasktodo), url_for builds /flasktodo links.
    let body = g.curl(&[
        "-H",
        "SCRIPT_NAME: /flasktodo",
        "http://127.0.0.1:8004/flasktodo/",
    ]);
    let j: serde_json::Value = serde_json::from_str(&body).expect(&body);
    assert_eq!(j["links"]["self"], "/flasktodo/", "{body}");
    assert_eq!(j["links"]["item"], "/flasktodo/todo/0", "{body}");
    assert_eq!(
        (j["script_name"].as_str(), j["path_info"].as_str()),
        (Some("/flasktodo"), Some("/"))
    );
    g.stop();
    assert!(
        !std::path::Path::new("/tmp/flasktodo.pid").exists(),
        "pid file left behind"
    );
}

#[test]
fn gevent_guide_runs_on_threads_logs_to_its_file_and_binds_both_families() {
    // ferrocorn --worker-class=gevent --workers=1 --log-file=/tmp/p/gunicorn.log
    //           --bind=127.0.0.1:8000 --bind=[::1]:8000 p.wsgi:application
    let logdir = PathBuf::from("/tmp/p");
    let _ = std::fs::create_dir_all(&logdir);
    let log = logdir.join("gunicorn.log");
    let _ = std::fs::remove_file(&log);
    let Some(mut g) = Guide::start(
        "guide-gevent",
        &[
            "--worker-class=gevent",
            "--workers=1",
            "--log-file=/tmp/p/gunicorn.log",
            "--bind=127.0.0.1:8000",
            "--bind=[::1]:8000",
            "p.wsgi:application",
        ],
        &[],
    ) else {
        return;
    };
    g.wait_ready(&[], "http://127.0.0.1:8000/");
    assert!(g.curl(&["http://[::1]:8000/"]).starts_with("p.wsgi on "));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("[WARNING] worker_class \"gevent\" is run as 64 app threads"),
        "{text}"
    );
    assert!(text.contains("Listening at: http://[::1]:8000"), "{text}");
    // Nothing went to stderr: the error log is the file.
    assert!(!g.log().contains("Listening at"), "{}", g.log());
    g.stop();
    let _ = std::fs::remove_dir_all(&logdir);
}

#[test]
fn threads_guide_binds_localhost_and_runs_four_requests_at_once() {
    // ferrocorn -b localhost:8080 --threads 4 gunicornapp:application
    let Some(mut g) = Guide::start(
        "guide-threads",
        &[
            "-b",
            "localhost:8080",
            "--threads",
            "4",
            "gunicornapp:application",
        ],
        &[],
    ) else {
        return;
    };
    g.wait_ready(&[], "http://localhost:8080/");
    // Four requests of 0.5 s each, at once: well under 4 × 0.5 s.
    let started = Instant::now();
    let out = g.curl(&[
        "--parallel",
        "--parallel-immediate",
        "http://localhost:8080/slow",
        "http://localhost:8080/slow",
        "http://localhost:8080/slow",
        "http://localhost:8080/slow",
    ]);
    assert_eq!(out.matches("gunicornapp on ").count(), 4, "{out}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    g.stop();
}

#[test]
fn systemd_guide_binds_a_unix_socket_under_run_with_a_pid_file() {
    // ferrocorn --pid /run/gunicorn/pid --bind unix:/run/gunicorn/socket applicationname.wsgi
    let Some(mut g) = Guide::start(
        "guide-systemd",
        &[
            "--pid",
            "/run/gunicorn/pid",
            "--bind",
            "unix:/run/gunicorn/socket",
            "applicationname.wsgi",
        ],
        &["/run/gunicorn"],
    ) else {
        return;
    };
    g.wait_ready(
        &["--unix-socket", "/run/gunicorn/socket"],
        "http://localhost/",
    );
    let body = g.curl(&["--unix-socket", "/run/gunicorn/socket", "http://localhost/"]);
    assert_eq!(body, "applicationname.wsgi\n");
    let pid = g.curl(&["file:///run/gunicorn/pid"]);
    assert_eq!(pid.trim(), g.pid().to_string());
    g.stop();
}
