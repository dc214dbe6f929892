//! Process settings: `-n/--name` (process titles), `-D/--daemon`,
//! `-m/--umask` on UNIX sockets, `--reuse-port`, `--initgroups`,
//! `--reload` (and `--reload-extra-file`), the gevent worker class mapped
//! to threads, `--no-sendfile`, `--worker-tmp-dir`, `--paste`.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{app_venv, is_root, mode_of, which};
use crate::common::*;

fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn name_sets_the_master_and_worker_process_titles() {
    let s = Server::builder("proctitle", "testapp:app")
        .args(["-n", "shop"])
        .start();
    let worker: i32 = s.get("/pid").text().trim().parse().unwrap();
    assert_eq!(cmdline(s.pid()), "ferrocorn: master [shop]");
    assert_eq!(cmdline(worker), "ferrocorn: worker [shop]");
    assert_eq!(comm(s.pid()), "ferrocorn: mast");
    // The app's sys.argv is still the master's command line, as Gunicorn's.
    let argv = s.get("/argv").json();
    let argv: Vec<&str> = argv
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(argv[0].ends_with("ferrocorn"), "{argv:?}");
    assert!(
        argv.contains(&"shop") && argv.last() == Some(&"testapp:app"),
        "{argv:?}"
    );
    // Without -n the app names them, as Gunicorn's default_proc_name.
    let s = Server::builder("proctitle-default", "testapp:app").start();
    assert_eq!(cmdline(s.pid()), "ferrocorn: master [testapp:app]");
}

#[test]
fn a_title_longer_than_the_command_line_still_shows_whole() {
    // The name comes from a file, so the command line is shorter than the
    // title: it takes the environment strings' room too, and the app still
    // sees its environment.
    let b = Server::builder("proctitle-env", "testapp:app").args(["-e", "FOO=bar"]);
    let conf = b.dir().join("name.toml");
    fs::write(&conf, format!("proc_name = \"{}\"\n", "n".repeat(300))).unwrap();
    let s = b.arg("-c").arg(&conf).start();
    assert_eq!(
        cmdline(s.pid()),
        format!("ferrocorn: master [{}]", "n".repeat(300))
    );
    assert_eq!(s.get("/osenv?key=FOO").json()["value"], "bar");
}

#[test]
fn daemon_detaches_writes_its_pid_and_serves() {
    let dir = TempDir::new("daemon");
    let pidfile = dir.join("app.pid");
    let sock = dir.join("d.sock");
    let errlog = dir.join("error.log");
    let started = Instant::now();
    let status = Command::new(bin())
        .args(["-D", "--pid"])
        .arg(&pidfile)
        .arg("--bind")
        .arg(format!("unix:{}", sock.display()))
        .arg("--error-logfile")
        .arg(&errlog)
        .arg("--chdir")
        .arg(apps_dir())
        .arg("testapp:app")
        .env_remove("NOTIFY_SOCKET")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        started.elapsed() < 5 * crate::SEC,
        "the launcher returned at once"
    );
    assert!(poll_until(READY_TIMEOUT, || {
        pidfile.exists() && Addr::Unix(sock.clone()).connect().is_ok()
    }));
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(pid));
    // A new session, no controlling terminal, not our child.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // SAFETY: getsid(0) only reads this process's session id.
    let ours = unsafe { libc::getsid(0) };
    assert_ne!(fields[3], ours.to_string(), "a session of its own: {stat}");
    assert_eq!(fields[4], "0", "no controlling terminal: {stat}");
    let mut c = Client::connect(&Addr::Unix(sock.clone()));
    assert_eq!(c.get("/").status, 200);
    signal(pid, libc::SIGTERM);
    assert!(
        poll_until(15 * crate::SEC, || !pid_alive(pid)),
        "{}",
        fs::read_to_string(&errlog).unwrap_or_default()
    );
    assert!(
        fs::read_to_string(&errlog)
            .unwrap()
            .contains("Shutting down: Master")
    );
}

#[test]
fn umask_sets_the_unix_sockets_mode_as_gunicorn() {
    for (name, args, mode) in [
        ("umask0", vec![], 0o777),
        ("umask7", vec!["-m", "007"], 0o770),
        ("umask22", vec!["--umask", "0o22"], 0o755),
    ] {
        let s = Server::builder(name, "testapp:app").args(&args).start();
        let path = s.addr.unix_path();
        assert_eq!(mode_of(path), mode, "{args:?}");
    }
}

#[test]
fn a_unix_socket_belongs_to_the_user_the_server_runs_as() {
    if !is_root() {
        eprintln!("note: needs root; test skipped");
        return;
    }
    // Debian's python3, which nobody may run (pyenv's, under /root, not).
    let b =
        Server::builder("sockowner", "testapp:app").args(["-u", "nobody", "--python", python()]);
    std::fs::set_permissions(b.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let s = b.start();
    let path = s.addr.unix_path();
    let uid = std::os::unix::fs::MetadataExt::uid(&fs::metadata(path).unwrap());
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(uid, nobody);
}

#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let port = free_port();
    let addr = Addr::Tcp(([127, 0, 0, 1], port).into());
    let a = Server::builder("reuse-a", "testapp:app")
        .binds(vec![addr.clone()])
        .arg("--reuse-port")
        .start();
    let b = Server::builder("reuse-b", "testapp:app")
        .binds(vec![addr.clone()])
        .arg("--reuse-port")
        .start();
    assert_eq!(a.get("/").status, 200);
    assert_eq!(b.get("/").status, 200);
    // Without it the second one cannot bind.
    let mut c = Server::builder("reuse-c", "testapp:app")
        .binds(vec![addr])
        .spawn();
    assert_eq!(
        c.wait_exit(10 * crate::SEC).and_then(|s| s.code()),
        Some(1),
        "{}",
        c.log()
    );
}

fn groups_of(pid: i32) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn initgroups_gives_the_worker_the_users_supplementary_groups() {
    if !is_root() || which(&["unshare"]).is_none() {
        eprintln!("note: needs root and unshare; test skipped");
        return;
    }
    // root made a member of `sys` in a private /etc/group (a mount
    // namespace of the server's own), so that it has a supplementary group.
    let dir = TempDir::new("initgroups-etc");
    let group: String = fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("sys:") && l.ends_with(':') {
                format!("{l}root")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(dir.join("group"), group + "\n").unwrap();
    let wrapper = |b: ServerBuilder| {
        let script = format!(
            "mount --bind {} /etc/group && exec \"$@\"",
            dir.join("group").display()
        );
        b.wrapper([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script.as_str(),
            "sh",
        ])
    };
    let gid = |name: &str| {
        nix::unistd::Group::from_name(name)
            .unwrap()
            .unwrap()
            .gid
            .as_raw()
            .to_string()
    };
    let pid = |s: &Server| s.get("/pid").text().trim().parse::<i32>().unwrap();
    let with = wrapper(Server::builder("initgroups", "testapp:app").args([
        "-u",
        "root",
        "-g",
        "daemon",
        "--initgroups",
    ]))
    .start();
    let without = wrapper(
        Server::builder("noinitgroups", "testapp:app").args(["-u", "root", "-g", "daemon"]),
    )
    .start();
    let groups = |s: &Server| -> Vec<String> {
        let mut g: Vec<String> = groups_of(pid(s))
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect();
        g.sort();
        g
    };
    assert_eq!(groups(&without), vec![gid("daemon")]);
    let mut want = vec![gid("daemon"), gid("sys")];
    want.sort();
    assert_eq!(groups(&with), want);
}

#[test]
fn reload_serves_edited_code_and_watches_extra_files() {
    let dir = TempDir::new("reload");
    let app = dir.join("reloadme.py");
    let template = dir.join("page.html");
    fs::write(&template, "v1").unwrap();
    fs::write(
        &app,
        "import os\nHERE = os.path.dirname(__file__)\nVERSION = 'code-1'\n\
         def app(environ, start_response):\n\
         \x20   page = open(os.path.join(HERE, 'page.html')).read()\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [('%s %s %d' % (VERSION, page, os.getpid())).encode()]\n",
    )
    .unwrap();
    let s = Server::builder("reload", "reloadme:app")
        .chdir(Some(dir.path().to_path_buf()))
        .args(["--reload", "--reload-extra-file"])
        .arg(dir.join("*.html"))
        .start();
    let first = s.get("/").text();
    assert!(first.starts_with("code-1 v1"), "{first}");
    let text = fs::read_to_string(&app)
        .unwrap()
        .replace("code-1", "code-2");
    fs::write(&app, text).unwrap();
    assert!(
        poll_until(10 * crate::SEC, || s.get("/").text().starts_with("code-2")),
        "{}",
        s.log()
    );
    let pid_before = s.get("/").text();
    // A template the app reads on each request: --reload-extra-file starts a
    // new generation too (a new worker pid).
    fs::write(&template, "v2").unwrap();
    assert!(
        poll_until(10 * crate::SEC, || {
            let t = s.get("/").text();
            t.starts_with("code-2 v2") && t != pid_before.replace("v1", "v2")
        }),
        "{}",
        s.log()
    );
    assert!(s.log().contains("Worker reloading: "), "{}", s.log());
    // A syntax error: the old code keeps serving, the log says why.
    fs::write(&app, "def app(:\n").unwrap();
    assert!(s.wait_log("SyntaxError", 10 * crate::SEC), "{}", s.log());
    assert!(s.get("/").text().starts_with("code-2"));
}

#[test]
fn gevent_runs_on_as_many_threads_as_worker_connections_allow() {
    let s = Server::builder("gevent-threads", "testapp:app")
        .args(["-k", "gevent", "--worker-connections", "6"])
        .start();
    assert!(
        s.log()
            .contains("worker_class \"gevent\" is run as 6 app threads"),
        "{}",
        s.log()
    );
    // Six requests of 1 s at once take about 1 s.
    let started = Instant::now();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let addr = s.addr.clone();
            std::thread::spawn(move || Client::connect(&addr).get("/sleep?s=1").status)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn no_sendfile_serves_file_wrappers_without_sendfile() {
    let Some(strace) = which(&["strace"]) else {
        eprintln!("note: needs strace; test skipped");
        return;
    };
    let data = TempDir::new("nosendfile-data");
    let file = data.join("blob.bin");
    fs::write(&file, pattern(200_000)).unwrap();
    let target = format!("/file?path={}", file.display());
    for (name, args, expect_sendfile) in [
        ("sendfile-on", vec![], true),
        ("sendfile-off", vec!["--no-sendfile"], false),
    ] {
        let s = Server::builder(name, "testapp:app").args(&args).start();
        let worker: i32 = s.get("/pid").text().trim().parse().unwrap();
        let trace = s.dir.join("strace.out");
        let mut tracer = Command::new(&strace)
            .args(["-f", "-e", "trace=sendfile", "-o"])
            .arg(&trace)
            .args(["-p", &worker.to_string()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let r = s.get(&target);
        assert_eq!(r.body, pattern(200_000), "{name}");
        std::thread::sleep(Duration::from_millis(200));
        let _ = tracer.kill();
        let _ = tracer.wait();
        let calls = fs::read_to_string(&trace).unwrap_or_default();
        assert_eq!(
            calls.contains("sendfile("),
            expect_sendfile,
            "{name}: {calls}"
        );
    }
}

#[test]
fn paste_serves_a_pastedeploy_app_with_its_global_conf() {
    let Some(venv) = app_venv() else { return };
    let dir = TempDir::new("paste");
    fs::write(
        dir.join("pasteapp.py"),
        "def make_app(global_conf, **local):\n\
         \x20   def app(environ, start_response):\n\
         \x20       start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20       return [('%s %s' % (local.get('greeting'), global_conf.get('who'))).encode()]\n\
         \x20   return app\n",
    )
    .unwrap();
    fs::write(
        dir.join("site.ini"),
        "[app:main]\npaste.app_factory = pasteapp:make_app\ngreeting = hello\n\n\
         [app:admin]\npaste.app_factory = pasteapp:make_app\ngreeting = admin\n",
    )
    .unwrap();
    let ini = dir.join("site.ini");
    let admin = format!("{}#admin", ini.display());
    for (spec, want) in [
        (ini.to_str().unwrap(), "hello world"),
        (admin.as_str(), "admin world"),
    ] {
        let s = Server::builder(&format!("paste-{}", want.len()), "")
            .chdir(Some(dir.path().to_path_buf()))
            .arg("--virtualenv")
            .arg(&venv)
            .args(["--paste", spec, "--paste-global", "who=world"])
            .start();
        assert_eq!(s.get("/").text(), want);
    }
}
