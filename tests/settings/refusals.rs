//! Every setting ferrocorn refuses is refused the same way: exit status 78
//! (EX_CONFIG, which the shipped unit does not restart) and one line that
//! names the flag and says what to use instead. The list comes from the
//! settings table itself, so a new refusal is tested without a new test.

use std::process::Command;

use ferrocorn::config::table::{Kind, SETTINGS, Support};

use crate::common::*;

/// A value the setting refuses (not one of its allowed ones).
fn refused_value(kind: Kind, allowed: &[&str]) -> Option<&'static str> {
    match kind {
        Kind::Bool | Kind::NegBool => None,
        Kind::Int | Kind::Mode => Some("7"),
        _ => ["h2", "x", "/prefix"]
            .into_iter()
            .find(|v| !allowed.contains(v)),
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("GUNICORN_CMD_ARGS")
        .env_remove("FERROCORN_CMD_ARGS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, _out, err) = run_with_timeout(&mut cmd, 10 * crate::SEC);
    (status.and_then(|s| s.code()), err)
}

#[test]
fn every_refused_setting_exits_78_naming_itself_and_the_alternative() {
    let mut checked = 0;
    for s in SETTINGS {
        let Support::Refused { reason, allowed } = s.support else {
            continue;
        };
        let Some(flag) = s.long() else { continue };
        let mut args = vec![flag];
        if let Some(v) = refused_value(s.kind, allowed) {
            args.push(v);
        }
        args.push("testapp:app");
        let (code, err) = run(&args, &[]);
        assert_eq!(code, Some(78), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} does not name {flag}: {err}");
        // The reason's text, which says what to use instead.
        let advice = &reason[..reason.len().min(40)];
        assert!(
            err.contains(advice),
            "{args:?} does not say {advice:?}: {err}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} refused settings");
}

#[test]
fn values_that_mean_what_ferrocorn_does_are_not_refused() {
    // --http-protocols h1, --protocol http: the defaults, said aloud.
    let (code, err) = run(
        &[
            "--http-protocols",
            "h1",
            "--protocol",
            "http",
            "--dirty-workers",
            "0",
            "--check-config",
            "--chdir",
            apps_dir().to_str().unwrap(),
            "testapp:app",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn refused_worker_classes_name_the_class_and_the_alternative() {
    for (class, advice) in [
        ("tornado", "Tornado"),
        ("uvicorn.workers.UvicornWorker", "uvicorn"),
        ("asgi", "ASGI"),
        ("myproject.workers.Custom", "sync or gthread"),
    ] {
        let (code, err) = run(&["--worker-class", class, "testapp:app"], &[]);
        assert_eq!(code, Some(78), "{class}: {err}");
        assert!(
            err.contains("worker_class") && err.contains(advice),
            "{class}: {err}"
        );
    }
}

#[test]
fn daemon_is_refused_under_systemd() {
    let (code, err) = run(
        &["-D", "testapp:app"],
        &[("NOTIFY_SOCKET", "/run/systemd/notify")],
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("daemon") && err.contains("Type=notify"),
        "{err}"
    );
}

#[test]
fn a_server_hook_in_a_toml_file_is_refused_naming_the_file() {
    let dir = TempDir::new("hooktoml");
    let path = dir.join("app.toml");
    std::fs::write(&path, "post_fork = \"myapp.hooks.post_fork\"\n").unwrap();
    let (code, err) = run(&["-c", path.to_str().unwrap(), "testapp:app"], &[]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("post_fork") && err.contains("gunicorn.conf.py"),
        "{err}"
    );
    assert!(err.contains(path.to_str().unwrap()), "{err}");
}

#[test]
fn every_accepted_setting_warns_what_it_means_here() {
    use ferrocorn::config::table::DefaultValue;
    let apps = apps_dir();
    let mut checked = 0;
    for s in SETTINGS {
        let Support::Accepted(meaning) = s.support else {
            continue;
        };
        let (Some(flag), false) = (s.long(), s.kind == Kind::Hook) else {
            continue;
        };
        let mut args = vec![flag];
        match (s.kind, s.default) {
            (Kind::Bool, _) => {}
            (_, DefaultValue::Str("python")) => args.push("auto"),
            _ => args.push("python"),
        }
        args.extend([
            "--check-config",
            "--chdir",
            apps.to_str().unwrap(),
            "testapp:app",
        ]);
        let (code, err) = run(&args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(
            err.contains("[WARNING]") && err.contains(flag),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&meaning[..meaning.len().min(40)]),
            "{args:?}: {err}"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} accepted settings");
}
