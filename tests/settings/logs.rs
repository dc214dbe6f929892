//! The logging settings: `--error-logfile`/`--log-file`, `--access-logfile`
//! (a file, or `-` for stdout), USR1 reopening both after logrotate moved
//! them, `--capture-output`, and `--log-config`, `--log-config-json` and
//! `logconfig_dict` configuring the app's own Python logging.

use std::fs;

use crate::common::*;

fn read(path: &std::path::Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn usr1_reopens_the_error_log_and_the_access_log_after_they_moved() {
    let b = Server::builder("usr1-both", "testapp:app");
    let (errors, access) = (b.dir().join("error.log"), b.dir().join("access.log"));
    let s = b
        .arg("--log-file")
        .arg(&errors)
        .arg("--access-logfile")
        .arg(&access)
        .start();
    assert_eq!(s.get("/?before").status, 200);
    assert!(poll_until(5 * crate::SEC, || read(&access).contains("/?before")));
    assert!(
        read(&errors).contains("Booting worker with pid"),
        "{}",
        read(&errors)
    );
    // logrotate: move both, then `kill -USR1 $(cat pidfile)`.
    fs::rename(&errors, s.dir.join("error.log.1")).unwrap();
    fs::rename(&access, s.dir.join("access.log.1")).unwrap();
    s.signal(libc::SIGUSR1);
    assert!(
        poll_until(5 * crate::SEC, || errors.exists()),
        "no new error log"
    );
    // The workers reopened theirs too (the master created the files).
    assert!(poll_until(5 * crate::SEC, || {
        let _ = s.get("/?after");
        read(&access).contains("/?after")
    }));
    assert!(!read(&access).contains("/?before"));
    assert!(!read(&s.dir.join("access.log.1")).contains("/?after"));
    // A reload: the master's lines and the old worker's go to the new file.
    s.signal(libc::SIGHUP);
    assert!(
        poll_until(10 * crate::SEC, || read(&errors).contains("Worker exiting")),
        "{}",
        read(&errors)
    );
    let new = read(&errors);
    assert!(
        new.contains("Handling signal: hup") && new.contains("Booting worker"),
        "{new}"
    );
    assert!(!read(&s.dir.join("error.log.1")).contains("Handling signal: hup"));
    // The error log went to the file, not to stderr.
    assert!(!s.log().contains("Booting worker"), "{}", s.log());
}

#[test]
fn an_access_log_to_dash_goes_to_stdout() {
    let s = testapp_with("access-stdout", &["--access-logfile", "-"]);
    assert_eq!(s.get("/?to-stdout").status, 200);
    let stdout = s.dir.join("stdout.log");
    assert!(
        poll_until(5 * crate::SEC, || read(&stdout)
            .contains("\"GET /?to-stdout HTTP/1.1\" 200")),
        "{}",
        read(&stdout)
    );
    assert!(
        !s.log().contains("/?to-stdout"),
        "the access line went to stderr"
    );
}

fn testapp_with(name: &str, args: &[&str]) -> Server {
    Server::builder(name, "testapp:app").args(args).start()
}

#[test]
fn capture_output_sends_the_apps_prints_to_the_error_log() {
    let b = Server::builder("capture", "testapp:app");
    let errors = b.dir().join("error.log");
    let s = b
        .arg("--capture-output")
        .arg("--error-logfile")
        .arg(&errors)
        .start();
    assert_eq!(s.get("/print?msg=printed-by-the-app").status, 200);
    assert!(
        poll_until(5 * crate::SEC, || read(&errors)
            .contains("printed-by-the-app")),
        "{}",
        read(&errors)
    );
    assert!(!read(&s.dir.join("stdout.log")).contains("printed-by-the-app"));
    // Without it the print stays on stdout.
    let s = testapp_with("no-capture", &["--error-logfile", "/dev/null"]);
    assert_eq!(s.get("/print?msg=stays-on-stdout").status, 200);
    assert!(poll_until(5 * crate::SEC, || read(
        &s.dir.join("stdout.log")
    )
    .contains("stays-on-stdout")));
}

#[test]
fn log_config_files_configure_the_apps_python_logging() {
    let dir = TempDir::new("logconfig");
    let ini_out = dir.join("from-ini.log");
    let ini = dir.join("logging.ini");
    fs::write(
        &ini,
        format!(
            "[loggers]\nkeys=root,testapp\n[handlers]\nkeys=file\n[formatters]\nkeys=plain\n\
             [logger_root]\nlevel=WARNING\nhandlers=\n[logger_testapp]\nlevel=INFO\nhandlers=file\nqualname=testapp\n\
             [handler_file]\nclass=FileHandler\nformatter=plain\nargs=('{}',)\n\
             [formatter_plain]\nformat=INI %(levelname)s %(message)s\n",
            ini_out.display()
        ),
    )
    .unwrap();
    let json_out = dir.join("from-json.log");
    let json = dir.join("logging.json");
    let dict = |out: &std::path::Path, tag: &str| {
        serde_json::json!({
            "version": 1,
            "formatters": {"plain": {"format": format!("{tag} %(levelname)s %(message)s")}},
            "handlers": {"file": {"class": "logging.FileHandler", "filename": out, "formatter": "plain"}},
            "loggers": {"testapp": {"level": "INFO", "handlers": ["file"]}},
        })
    };
    fs::write(&json, dict(&json_out, "JSON").to_string()).unwrap();
    let toml_out = dir.join("from-toml.log");
    let toml = dir.join("app.toml");
    fs::write(
        &toml,
        format!(
            "[logconfig_dict]\nversion = 1\n[logconfig_dict.formatters.plain]\nformat = \"TOML %(levelname)s %(message)s\"\n\
             [logconfig_dict.handlers.file]\nclass = \"logging.FileHandler\"\nfilename = \"{}\"\nformatter = \"plain\"\n\
             [logconfig_dict.loggers.testapp]\nlevel = \"INFO\"\nhandlers = [\"file\"]\n",
            toml_out.display()
        ),
    )
    .unwrap();
    for (name, args, out, tag) in [
        (
            "logconfig-ini",
            vec!["--log-config", ini.to_str().unwrap()],
            &ini_out,
            "INI",
        ),
        (
            "logconfig-json",
            vec!["--log-config-json", json.to_str().unwrap()],
            &json_out,
            "JSON",
        ),
        (
            "logconfig-dict",
            vec!["-c", toml.to_str().unwrap()],
            &toml_out,
            "TOML",
        ),
    ] {
        let s = testapp_with(name, &args);
        assert_eq!(s.get("/pylog?msg=configured-logging").status, 200);
        assert!(
            poll_until(5 * crate::SEC, || read(out)
                .contains(&format!("{tag} WARNING configured-logging"))),
            "{name}: {}\n{}",
            read(out),
            s.log()
        );
    }
}

#[test]
fn a_missing_log_config_file_is_a_configuration_error() {
    let mut s = Server::builder("logconfig-missing", "testapp:app")
        .args(["--log-config", "/nonexistent/logging.ini"])
        .spawn();
    let status = s.wait_exit(10 * crate::SEC).expect("exits");
    assert_eq!(status.code(), Some(78), "{}", s.log());
    assert!(
        s.log().contains("logconfig") && s.log().contains("/nonexistent/logging.ini"),
        "{}",
        s.log()
    );
}
