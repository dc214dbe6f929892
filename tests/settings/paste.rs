//! PasteDeploy beyond `--paste FILE` (tests/settings/process.rs): a Pyramid
//! app, an unknown `use = egg:` (exit 78, one line), and a .ini whose
//! `[server:main]` says `use = egg:ferrocorn#main`, run by Pyramid's
//! `pserve` from a venv where ferrocorn's wheel is installed.

use std::fs;
use std::process::{Command, Stdio};

use super::app_venv;
use crate::common::*;
use crate::{SEC, exit_code};

#[test]
fn paste_serves_a_pyramid_app_from_its_ini() {
    let Some(venv) = app_venv() else { return };
    let dir = TempDir::new("paste-pyramid");
    let ini = dir.join("development.ini");
    fs::write(
        &ini,
        "[app:main]\npaste.app_factory = pyramid_app:main\ngreeting = hello\n",
    )
    .unwrap();
    let s = Server::builder("paste-pyramid", "")
        .arg("--virtualenv")
        .arg(&venv)
        .args(["--paste", ini.to_str().unwrap()])
        .start();
    let r = s.get("/hello");
    assert_eq!(r.status, 200, "{}", s.log());
    assert!(r.text().starts_with("hello from /hello"), "{}", r.text());
    assert_eq!(s.get("/nowhere").status, 404);
}

#[test]
fn an_unknown_egg_in_the_ini_is_one_line_and_exit_78() {
    let Some(venv) = app_venv() else { return };
    let dir = TempDir::new("paste-egg");
    for (name, ini, line) in [
        (
            "dist",
            "[app:main]\nuse = egg:no_such_distribution#main\n",
            "no installed distribution 'no_such_distribution' (use = egg:no_such_distribution)",
        ),
        (
            "entry",
            "[app:main]\nuse = egg:PasteDeploy#no_such_app\n",
            "Entry point 'no_such_app' not found in egg 'PasteDeploy'",
        ),
    ] {
        let path = dir.join(&format!("{name}.ini"));
        fs::write(&path, ini).unwrap();
        let mut s = Server::builder(&format!("paste-egg-{name}"), "")
            .arg("--virtualenv")
            .arg(&venv)
            .args(["--paste", path.to_str().unwrap()])
            .spawn();
        assert_eq!(exit_code(s.wait_exit(20 * SEC)), Some(78), "{}", s.log());
        let log = s.log();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("[ERROR]") && l.contains(line))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{name}: want one line with {line:?}:\n{log}"
        );
    }
}

/// The venv of `make wheel-test` (ferrocorn's wheel installed, with
/// Pyramid's pserve); `None` outside it, where no ferrocorn package is
/// installed for PasteDeploy to find.
fn wheel_venv() -> Option<std::path::PathBuf> {
    let venv = std::path::PathBuf::from(std::env::var_os("FERROCORN_TEST_VENV")?);
    if venv.join("bin/pserve").exists() && venv.join("bin/ferrocorn").exists() {
        return Some(venv);
    }
    None
}

#[test]
fn pserve_runs_ferrocorn_from_the_ini_server_section() {
    let Some(venv) = wheel_venv() else {
        eprintln!("note: needs the wheel's venv (make wheel-test); skipped");
        return;
    };
    let dir = TempDir::new("pserve");
    let port = free_port();
    let ini = dir.join("production.ini");
    fs::write(
        &ini,
        format!(
            "[app:main]\npaste.app_factory = pyramid_app:main\ngreeting = %(salut)s\n\n\
             [server:main]\nuse = egg:ferrocorn#main\nhost = 127.0.0.1\nport = {port}\n\
             workers = 2\ntimeout = 45\nconfig = %(here)s/hooks.conf.py\n"
        ),
    )
    .unwrap();
    // The section's `config` names a gunicorn.conf.py, whose hooks run.
    fs::write(
        dir.join("hooks.conf.py"),
        "def when_ready(server):\n    server.log.info('when_ready from the ini config')\n",
    )
    .unwrap();
    let log = dir.join("pserve.log");
    let mut cmd = Command::new(venv.join("bin/pserve"));
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .arg(&ini)
        .arg("salut=bonjour")
        .current_dir(dir.path())
        .env("PYTHONPATH", apps_dir())
        .env_remove("GUNICORN_CMD_ARGS")
        .env_remove("WEB_CONCURRENCY")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(dir.join("pserve.err")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Whatever happens below, the master and its workers go with the test.
    let _group = KillGroup(pid);
    let addr = Addr::Tcp(([127, 0, 0, 1], port).into());
    let answered = poll_until(20 * SEC, || {
        addr.connect().is_ok() && Client::connect(&addr).get("/hello").status == 200
    });
    let err = || fs::read_to_string(dir.join("pserve.err")).unwrap_or_default();
    assert!(answered, "pserve did not serve:\n{}", err());
    // pserve's process became the ferrocorn master, with the .ini's
    // [server:main] settings and its global var.
    let body = Client::connect(&addr).get("/hello").text();
    assert!(body.starts_with("bonjour from /hello"), "{body}");
    assert!(err().contains("2 worker(s)"), "{}", err());
    assert!(
        err().contains("when_ready from the ini config"),
        "{}",
        err()
    );
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.starts_with("ferrocorn: master ["), "{cmdline:?}");
    assert!(cmdline.contains("production.ini"), "{cmdline:?}");
    signal(pid, libc::SIGTERM);
    let stopped = poll_until(15 * SEC, || matches!(child.try_wait(), Ok(Some(_))));
    assert!(stopped, "the master did not stop:\n{}", err());
    assert_eq!(child.wait().unwrap().code(), Some(0), "{}", err());
}

/// SIGKILLs a process group when dropped.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        signal(-self.0, libc::SIGKILL);
    }
}
