//! Gunicorn's settings, each tested by its effect, and compared with
//! Gunicorn 27 itself where ferrocorn must behave the same.
//!
//! - `guides`: the command lines of Gunicorn deployment guides, run
//!   unchanged (in network namespaces, so their fixed ports are theirs);
//! - `compare`: SCRIPT_NAME mounts, `wsgi.url_scheme`, the access log's
//!   atoms and the error log's line shape, against `gunicorn` from `.venv`;
//! - `proxies`: real nginx (as www-data, over a UNIX socket) and HAProxy
//!   (the PROXY protocol) in front of ferrocorn;
//! - `hooks`: every server hook of a gunicorn.conf.py, at the moment and
//!   in the process Gunicorn 27 runs it, with the same arguments;
//! - `paste`: PasteDeploy with Pyramid, and `egg:ferrocorn#main` under pserve;
//! - `logs`, `metrics`, `process`, `config`: the other settings;
//! - `refusals`: every refused setting exits 78 naming itself and what to
//!   use instead;
//! - `scale_out`: two hosts in network namespaces behind HAProxy (PROXY
//!   v2, `health_check_path`), a rolling HUP and restart under load;
//! - `slow_clients`: clients that never read, slowloris connections and
//!   readers below `min_send_rate` against one worker.

mod compare;
mod config;
mod guides;
mod hooks;
mod logs;
mod metrics;
mod paste;
mod process;
mod proxies;
mod refusals;
mod scale_out;
mod slow_clients;

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's test venv (`make venv`): Gunicorn, prometheus_client.
/// Panics with what to run when it is missing, unless
/// `FERROCORN_SKIP_VENV_TESTS=1` (then `None`: skip).
pub fn tools_venv() -> Option<PathBuf> {
    let venv = repo_root().join(".venv");
    if venv.join("bin/gunicorn").exists() && venv.join("bin/python").exists() {
        return Some(venv);
    }
    if std::env::var("FERROCORN_SKIP_VENV_TESTS").as_deref() == Ok("1") {
        eprintln!("note: FERROCORN_SKIP_VENV_TESTS=1; test skipped");
        return None;
    }
    panic!("{} lacks gunicorn: run `make venv`", venv.display());
}

/// The venv the apps run in: a wheel's (`FERROCORN_TEST_VENV`, by
/// `make wheel-test`) or the repository's, with Flask and PasteDeploy.
pub fn app_venv() -> Option<PathBuf> {
    let venv = std::env::var_os("FERROCORN_TEST_VENV")
        .map_or_else(|| repo_root().join(".venv"), PathBuf::from);
    if venv.join("bin/python").exists() {
        return Some(venv);
    }
    if std::env::var("FERROCORN_SKIP_VENV_TESTS").as_deref() == Ok("1") {
        eprintln!("note: FERROCORN_SKIP_VENV_TESTS=1; test skipped");
        return None;
    }
    panic!("{} is missing: run `make venv`", venv.display());
}

/// Whether this process may create namespaces, bind as another user and
/// run nginx's master (the tests that need root say so and skip).
pub fn is_root() -> bool {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() == 0 }
}

/// The first program of `names` on this machine, if any.
pub fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Gunicorn 27 from the test venv, serving an app of `tests/apps` on a
/// loopback port; killed (with its workers) when dropped.
#[derive(Debug)]
pub struct Gunicorn {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its temp dir (its log is `stderr.log` there).
    pub dir: TempDir,
}

impl Gunicorn {
    /// Start `gunicorn ARGS... APP` with `--chdir tests/apps`; waits until
    /// it answers `/`.
    pub fn start(name: &str, app: &str, args: &[&str]) -> Gunicorn {
        Gunicorn::start_with(name, app, args, &[])
    }

    /// As [`Gunicorn::start`], with extra environment variables.
    pub fn start_with(name: &str, app: &str, args: &[&str], env: &[(&str, &str)]) -> Gunicorn {
        let venv = repo_root().join(".venv");
        let dir = TempDir::new(name);
        for attempt in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(venv.join("bin/gunicorn"));
            cmd.arg("--chdir")
                .arg(apps_dir())
                .arg("-b")
                .arg(format!("127.0.0.1:{port}"))
                .args(args)
                .arg(app)
                .current_dir(dir.path())
                .env_remove("GUNICORN_CMD_ARGS")
                .env_remove("FORWARDED_ALLOW_IPS")
                .env_remove("WEB_CONCURRENCY")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
                .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
            for (k, v) in env {
                cmd.env(k, v);
            }
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut child = cmd.spawn().expect("spawn gunicorn");
            let ready = poll_until(READY_TIMEOUT, || {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return true;
                }
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if ready && matches!(child.try_wait(), Ok(None)) {
                return Gunicorn { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "gunicorn did not start (attempt {attempt}):\n{}",
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            );
        }
        panic!("gunicorn {args:?} {app} did not start");
    }

    /// Its master's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its address.
    pub fn addr(&self) -> Addr {
        Addr::Tcp(([127, 0, 0, 1], self.port).into())
    }

    /// Its error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: signals only this test's own process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Send `raw` on a new connection to `addr` and read one response.
pub fn exchange(addr: &Addr, raw: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send(raw);
    c.read_response()
}

/// The permission bits of a file (a UNIX socket, say).
pub fn mode_of(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

/// Run Python code with the test venv's interpreter; its stdout.
pub fn venv_python(venv: &Path, code: &str, stdin: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the venv's python");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed: {code}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
