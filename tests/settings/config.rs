//! The configuration's sources and tools: `--print-config` round trips
//! through `-c`, `--check-config` imports the app, a `gunicorn.conf.py` is
//! read (the default `./gunicorn.conf.py` too) with its hooks named,
//! `GUNICORN_CMD_ARGS` sits between the file and the command line.

use std::fs;
use std::process::Command;

use crate::common::*;

fn ferrocorn(args: &[&str], cwd: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("GUNICORN_CMD_ARGS")
        .env_remove("FERROCORN_CMD_ARGS")
        .env_remove("WEB_CONCURRENCY")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, out, err) = run_with_timeout(&mut cmd, 20 * crate::SEC);
    (status.and_then(|s| s.code()).unwrap_or(-1), out, err)
}

/// The settings of a `--print-config` output, without the source comments.
fn values(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split("  # from").next().unwrap_or(l).to_string())
        .collect()
}

#[test]
fn print_config_round_trips_through_a_config_file() {
    let dir = TempDir::new("printcfg");
    let apps = apps_dir();
    let args = [
        "-w",
        "3",
        "--threads",
        "4",
        "-b",
        "unix:/tmp/x.sock",
        "-b",
        "127.0.0.1:9",
        "--forwarded-allow-ips",
        "10.0.0.0/8,::1",
        "-e",
        "A=1",
        "-m",
        "027",
        "--name",
        "shop",
        "--access-logformat",
        "%(h)s \"%(r)s\"",
        "--chdir",
        apps.to_str().unwrap(),
        "--print-config",
        "testapp:app",
    ];
    let (code, printed, err) = ferrocorn(&args, dir.path(), &[("WEB_CONCURRENCY", "5")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        printed.contains("workers = 3  # from the command line"),
        "{printed}"
    );
    assert!(
        printed.contains("umask = 0o27  # from the command line"),
        "{printed}"
    );
    assert!(printed.contains("# pidfile is not set"), "{printed}");
    let file = dir.join("printed.toml");
    fs::write(&file, &printed).unwrap();
    let (code, again, err) = ferrocorn(
        &["-c", file.to_str().unwrap(), "--print-config"],
        dir.path(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(values(&again), values(&printed));
    assert!(
        again.contains(&format!("workers = 3  # from {}", file.display())),
        "{again}"
    );
}

#[test]
fn check_config_imports_the_app_and_says_why_it_fails() {
    let apps = apps_dir();
    let chdir = apps.to_str().unwrap();
    let (code, _, err) = ferrocorn(
        &["--check-config", "--chdir", chdir, "testapp:app"],
        &apps,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("loads"), "{err}");
    let (code, _, err) = ferrocorn(
        &["--check-config", "--chdir", chdir, "import_error:app"],
        &apps,
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("import_error"), "{err}");
    let (code, _, err) = ferrocorn(
        &["--check-config", "--chdir", chdir, "testapp:nothing"],
        &apps,
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing"), "{err}");
    // A bad setting is exit 78 before any import.
    let (code, _, err) = ferrocorn(
        &["--check-config", "--timeout", "soon", "testapp:app"],
        &apps,
        &[],
    );
    assert_eq!(code, 78, "{err}");
}

#[test]
fn a_gunicorn_conf_py_is_read_and_its_hooks_run() {
    let b = Server::builder("confpy", "testapp:app");
    fs::write(
        b.dir().join("gunicorn.conf.py"),
        "import os\nworkers = 2\nraw_env = ['FROM_CONF=yes']\ntimeout = 60.0\n\
         def post_fork(server, worker):\n    os.environ['FROM_HOOK'] = 'age %d' % worker.age\n\
         def when_ready(server):\n    server.log.info('when_ready: %d workers' % server.num_workers)\n\
         unrelated_variable = object()\n",
    )
    .unwrap();
    // Gunicorn reads ./gunicorn.conf.py when -c is not given; so do we.
    let s = b.start();
    assert_eq!(s.get("/osenv?key=FROM_CONF").json()["value"], "yes");
    // post_fork ran in the worker, before the app was imported.
    let age = s.get("/osenv?key=FROM_HOOK").json()["value"].clone();
    assert!(age == "age 1" || age == "age 2", "{age}");
    assert!(
        s.wait_log("when_ready: 2 workers", 5 * crate::SEC),
        "{}",
        s.log()
    );
    assert!(
        s.wait_log("Ready: generation 0, 2 worker(s)", 10 * crate::SEC),
        "{}",
        s.log()
    );
}

#[test]
fn a_gunicorn_conf_py_that_raises_names_the_file_and_the_error() {
    let mut s = {
        let b = Server::builder("confpy-raises", "testapp:app");
        let conf = b.dir().join("broken.conf.py");
        fs::write(&conf, "workers = int('many')\n").unwrap();
        b.arg("-c").arg(&conf).spawn()
    };
    let status = s.wait_exit(20 * crate::SEC).expect("exits");
    assert_eq!(status.code(), Some(78), "{}", s.log());
    assert!(
        s.log().contains("broken.conf.py") && s.log().contains("ValueError"),
        "{}",
        s.log()
    );
}

#[test]
fn gunicorn_cmd_args_sits_between_the_file_and_the_command_line() {
    let dir = TempDir::new("cmdargs");
    let conf = dir.join("app.toml");
    fs::write(&conf, "workers = 2\ntimeout = 5\nkeepalive = 7\n").unwrap();
    let (code, printed, err) = ferrocorn(
        &[
            "-c",
            conf.to_str().unwrap(),
            "--timeout",
            "9",
            "--print-config",
            "--chdir",
            apps_dir().to_str().unwrap(),
            "testapp:app",
        ],
        dir.path(),
        &[("GUNICORN_CMD_ARGS", "--workers 4 --timeout 8")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        printed.contains("workers = 4  # from GUNICORN_CMD_ARGS"),
        "{printed}"
    );
    assert!(
        printed.contains("timeout = 9  # from the command line"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("keepalive = 7  # from {}", conf.display())),
        "{printed}"
    );
}

#[test]
fn hup_applies_a_new_timeout_but_keeps_restart_only_settings() {
    let b = Server::builder("hup-restart-only", "testapp:app");
    let conf = b.dir().join("app.toml");
    fs::write(&conf, "workers = 1\nbacklog = 64\n").unwrap();
    let s = b.arg("-c").arg(&conf).start();
    fs::write(&conf, "workers = 2\nbacklog = 128\n").unwrap();
    s.signal(libc::SIGHUP);
    assert!(
        s.wait_log(
            "Reload: backlog changed; it takes effect at the next restart",
            10 * crate::SEC
        ),
        "{}",
        s.log()
    );
    assert!(
        s.wait_log(
            "Reload complete: generation 1, 2 worker(s)",
            15 * crate::SEC
        ),
        "{}",
        s.log()
    );
}
