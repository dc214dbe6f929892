//! Which Python runs the workers, and checking that it can (DESIGN §1, §4).
//!
//! Workers are the app's own interpreter running ferrocorn's native module,
//! so a virtualenv is honoured exactly: it *is* the venv's `bin/python`.
//! The interpreter is, first match wins:
//!
//! 1. `--python PATH` (a path, or a name looked up on `PATH`);
//! 2. `--virtualenv DIR`: `DIR/bin/python`;
//! 3. the virtualenv the `ferrocorn` executable sits in
//!    (`/opt/app/venv/bin/ferrocorn` → `/opt/app/venv/bin/python`), as with
//!    `pip install ferrocorn` into the app's venv;
//! 4. `VIRTUAL_ENV` (an activated venv);
//! 5. the venv the app lives in or beside (`--chdir`, `--pythonpath` or
//!    the working directory, or an ancestor: a venv itself, or one at `.venv/`);
//! 6. `python3` beside the executable (a wheel installed outside a venv,
//!    e.g. in `/usr/local/bin`);
//! 7. `python3` on `PATH`.
//!
//! Before any worker starts, [`Interpreter::probe`] runs it once: it must
//! start, be CPython 3.9 or later with the GIL, and load the native module
//! of this build; otherwise the start fails with exit status 78 and a
//! message naming the interpreter's path and what failed.

use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{self, Location, PythonConfig, PythonValues, Settings};

/// The Python side of a worker's start and of the probe (see its header).
const PYTHON_SIDE: &str = include_str!("python.py");
/// The oldest CPython supported (the stable ABI the module is built for).
const MIN_VERSION: (u32, u32) = (3, 9);
/// How long the probe may take: an interpreter's start-up plus loading the
/// module is well under a second; a stuck one must not hang the master
/// (which probes again at every reload) past systemd's watchdog.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A checked interpreter for the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// The executable to start (absolute unless found on `PATH` by name).
    pub path: PathBuf,
    /// Why this one (for the log line): `--python`, `the virtualenv ...`.
    pub reason: String,
    /// `major.minor.micro`, from the probe.
    pub version: String,
    /// The native module built with this master that the probe chose for
    /// this interpreter (the one built for its SOABI if there is one, else
    /// the stable-ABI one); `None` means the interpreter imports its own
    /// `ferrocorn._native`.
    pub native: Option<PathBuf>,
}

/// Why no usable interpreter was found; the message names its path.
#[derive(Debug, thiserror::Error)]
#[error("Python interpreter {}: {what}", .path.display())]
pub struct InterpreterError {
    /// The interpreter tried.
    pub path: PathBuf,
    /// What failed, and what to do.
    pub what: String,
}

impl Interpreter {
    /// Choose the interpreter for `settings` (see the module docs) and
    /// probe it. Call after `--chdir`: relative paths are the app's.
    ///
    /// Errors: the chosen interpreter is missing, does not run, is not a
    /// supported CPython, or cannot load the native module.
    pub fn find(settings: &Settings) -> Result<Interpreter, InterpreterError> {
        let (path, reason) = choose(&Choice::of(settings))?;
        let searched = on_path(&path);
        let path = searched.clone().unwrap_or(path);
        let probed = probe(&path, &native_modules())?;
        for skipped in &probed.skipped {
            tracing::warn!("Python interpreter {}: not using {skipped}", path.display());
        }
        // Found on PATH, `python3` may be a launcher (pyenv's shims are
        // shell scripts): start workers as the interpreter it runs.
        let path = match (searched, probed.executable) {
            (Some(_), Some(exe)) if exe.is_absolute() && exe.is_file() => exe,
            _ => path,
        };
        Ok(Interpreter {
            path,
            reason,
            version: probed.version,
            native: probed.native,
        })
    }

    /// The executable, for execve(2).
    pub fn exe(&self) -> CString {
        cstring(self.path.as_os_str())
    }

    /// `argv` of a worker (or zygote) that reads its boot description from
    /// descriptor `boot_fd`; with `check`, of one that only imports the app
    /// (`--check-config`).
    pub fn worker_argv(&self, boot_fd: i32, check: bool) -> Vec<CString> {
        let mut argv = vec![self.exe()];
        if std::env::var_os("JOURNAL_STREAM").is_some() {
            // Under systemd stdout is the journal's stream socket, where a
            // block-buffered print() would arrive late or at exit.
            argv.push(c"-u".into());
        }
        argv.extend([
            c"-c".into(),
            // Without its comment lines, which `ps` would show.
            cstring(OsStr::new(&script_without_comments())),
            if check {
                c"check".into()
            } else {
                c"worker".into()
            },
            cstring(
                self.native
                    .as_deref()
                    .map_or(OsStr::new(""), Path::as_os_str),
            ),
            cstring(OsStr::new(&boot_fd.to_string())),
        ]);
        argv
    }
}

fn script_without_comments() -> String {
    let code = PYTHON_SIDE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty());
    code.collect::<Vec<_>>().join("\n")
}

fn cstring(s: &OsStr) -> CString {
    // Paths and the script never hold NUL (the script is ours; a path with
    // NUL cannot name a file, and exec then fails with a clear message).
    CString::new(s.as_bytes()).unwrap_or_default()
}

/// What the choice of interpreter depends on.
#[derive(Debug, Default)]
struct Choice<'a> {
    python: Option<&'a Path>,
    virtualenv: Option<&'a Path>,
    pythonpath: &'a [PathBuf],
}

impl<'a> Choice<'a> {
    fn of(settings: &'a Settings) -> Choice<'a> {
        Choice {
            python: settings.python.as_deref(),
            virtualenv: settings.virtualenv.as_deref(),
            pythonpath: &settings.pythonpath,
        }
    }
}

fn choose(choice: &Choice<'_>) -> Result<(PathBuf, String), InterpreterError> {
    if let Some(python) = choice.python {
        return Ok((python.to_path_buf(), "--python".into()));
    }
    if let Some(venv) = choice.virtualenv {
        let python = venv_python(venv).map_err(|what| InterpreterError {
            path: venv.join("bin/python"),
            what,
        })?;
        return Ok((python, format!("--virtualenv {}", venv.display())));
    }
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    if let Some(venv) = exe_dir.and_then(Path::parent).filter(|d| is_venv(d)) {
        if let Ok(python) = venv_python(venv) {
            return Ok((
                python,
                format!("the virtualenv of ferrocorn, {}", venv.display()),
            ));
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let venv = PathBuf::from(venv);
        let python = venv_python(&venv).map_err(|what| InterpreterError {
            path: venv.join("bin/python"),
            what: format!("{what} (from VIRTUAL_ENV)"),
        })?;
        return Ok((python, format!("VIRTUAL_ENV={}", venv.display())));
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let app_dirs = choice
        .pythonpath
        .iter()
        .map(|p| cwd.join(p))
        .chain([cwd.clone()]);
    for dir in app_dirs {
        if let Some(venv) = find_virtualenv(&dir) {
            if let Ok(python) = venv_python(&venv) {
                return Ok((python, format!("the app's virtualenv, {}", venv.display())));
            }
        }
    }
    if let Some(python) = exe_dir.map(|d| d.join("python3")).filter(|p| p.is_file()) {
        return Ok((python, "beside ferrocorn".into()));
    }
    Ok((PathBuf::from("python3"), "python3 on PATH".into()))
}

fn is_venv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

/// `DIR/bin/python` of a virtualenv.
///
/// Errors: `dir` is not a virtualenv (no `pyvenv.cfg`) or has no `bin/python`.
fn venv_python(dir: &Path) -> Result<PathBuf, String> {
    if !is_venv(dir) {
        return Err(format!(
            "{} is not a virtualenv (it has no pyvenv.cfg)",
            dir.display()
        ));
    }
    let python = dir.join("bin").join("python");
    // A dangling symlink (the venv's base Python was removed) is found by
    // the probe, which says so.
    if std::fs::symlink_metadata(&python).is_err() {
        return Err(format!(
            "the virtualenv {} has no bin/python",
            dir.display()
        ));
    }
    Ok(python)
}

/// The virtualenv an app directory lives in or beside: the nearest of
/// `dir` and its ancestors that either is a virtualenv (has `pyvenv.cfg`)
/// or holds one at `.venv/`, the layout of venv, uv and poetry projects.
pub fn find_virtualenv(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find_map(|d| {
        [d.to_path_buf(), d.join(".venv")]
            .into_iter()
            .find(|c| is_venv(c))
    })
}

/// The native modules of this build, where the build or a package put
/// them beside the master: the stable-ABI one and any built for one
/// interpreter (`_native.SOABI.so`, e.g. `_native.cpython-311-x86_64-linux-gnu.so`),
/// which the probe prefers for the interpreter they were built for. The
/// first of these places that has the stable-ABI module is taken:
///
/// - the cargo build tree: `target/*/libferrocorn.so` next to
///   `target/*/ferrocorn`, with version-specific ones in `target/native/`
///   (`make native-modules`);
/// - the .deb/.rpm layout: `/usr/lib/ferrocorn/` for `/usr/bin/ferrocorn`;
/// - the wheel's: `PREFIX/lib/pythonX.Y/site-packages/ferrocorn/` for
///   `PREFIX/bin/ferrocorn`.
///
/// Empty when there is none: the interpreter then imports its own.
fn native_modules() -> Vec<PathBuf> {
    let Some(exe) = std::env::current_exe().ok() else {
        return Vec::new();
    };
    let Some((dir, prefix)) = exe.parent().and_then(|d| Some((d, d.parent()?))) else {
        return Vec::new();
    };
    let site_packages = std::fs::read_dir(prefix.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().as_bytes().starts_with(b"python3"))
        .map(|e| e.path().join("site-packages/ferrocorn"));
    // (the stable-ABI module, the directory of version-specific ones)
    let places = [
        (dir.join("libferrocorn.so"), prefix.join("native")),
        (
            prefix.join("lib/ferrocorn/_native.abi3.so"),
            prefix.join("lib/ferrocorn"),
        ),
    ]
    .into_iter()
    .chain(site_packages.map(|d| (d.join("_native.abi3.so"), d)));
    for (abi3, specific) in places {
        if !abi3.is_file() {
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(&specific)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().as_bytes();
                name.starts_with(b"_native.cpython-") && name.ends_with(b".so")
            })
            .collect();
        found.sort();
        found.push(abi3);
        return found;
    }
    Vec::new()
}

/// Runs a `gunicorn.conf.py` (`-c`) in the interpreter the workers would
/// get from the command line's `--python`/`--virtualenv` (or the usual
/// search): the master has no Python of its own.
#[derive(Debug, Default)]
pub struct ConfigRunner;

impl PythonConfig for ConfigRunner {
    fn evaluate(
        &self,
        location: &Location,
        names: &[&str],
        interpreter: &config::Interpreter,
    ) -> Result<PythonValues, String> {
        let choice = Choice {
            python: interpreter.python.as_deref(),
            virtualenv: interpreter.virtualenv.as_deref(),
            pythonpath: &[],
        };
        let (python, _) = choose(&choice).map_err(|e| e.to_string())?;
        let spec = match location {
            Location::PythonFile(p) => p.as_os_str().to_owned(),
            Location::PythonModule(m) => OsString::from(format!("python:{m}")),
            Location::Toml(p) => return Err(format!("{} is not Python", p.display())),
        };
        let mut command = Command::new(&python);
        // After a reload the master is in that directory already (and a
        // relative --chdir no longer names it).
        if let Some(dir) = interpreter.chdir.as_deref().filter(|d| d.is_dir()) {
            command.current_dir(dir);
        }
        let out = command
            .args([
                OsStr::new("-c"),
                OsStr::new(PYTHON_SIDE),
                OsStr::new("config"),
            ])
            .arg(spec)
            .arg(names.join(","))
            // The configuration's code cannot speak for the service.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run Python ({}): {e}", python.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.trim().lines().last().unwrap_or("no output");
            return Err(format!("{last} (run by {})", python.display()));
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{} gave no settings: {e}", python.display()))?;
        Ok(PythonValues {
            values: json
                .get("values")
                .and_then(|v| v.as_object())
                .cloned()
                .unwrap_or_default(),
            hooks: json
                .get("hooks")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect(),
            lines: json
                .get("lines")
                .and_then(|v| v.as_object())
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect(),
        })
    }
}

/// What the probe found out about a usable interpreter.
#[derive(Debug, PartialEq, Eq)]
struct Probed {
    /// `major.minor.micro`.
    version: String,
    /// `sys.executable`.
    executable: Option<PathBuf>,
    /// The module it chose and loaded; `None`: its own `ferrocorn._native`.
    native: Option<PathBuf>,
    /// Modules it tried first and put aside (`path: why`), to be logged.
    skipped: Vec<String>,
}

/// Run `python` once with the probe, offering it the `candidates` modules.
fn probe(python: &Path, candidates: &[PathBuf]) -> Result<Probed, InterpreterError> {
    let fail = |what: String| InterpreterError {
        path: python.to_path_buf(),
        what,
    };
    let mut native_arg = OsString::new();
    for (i, c) in candidates.iter().enumerate() {
        if i > 0 {
            native_arg.push("\n");
        }
        native_arg.push(c);
    }
    let mut child = Command::new(python)
        .args([
            OsStr::new("-c"),
            OsStr::new(PYTHON_SIDE),
            OsStr::new("probe"),
        ])
        .arg(&native_arg)
        .arg(crate::boot::BUILD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound if is_dangling(python) => {
                    " (a broken virtualenv: the Python it was made from is gone; recreate it)"
                }
                std::io::ErrorKind::NotFound => " (give --python PATH or --virtualenv DIR)",
                std::io::ErrorKind::PermissionDenied => {
                    " (the workers run as --user: it must be able to execute the interpreter \
                     and read the virtualenv and the app)"
                }
                _ => "",
            };
            fail(format!("cannot run it: {e}{hint}"))
        })?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "it did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    verdict(&out, &err, &status.to_string()).map_err(fail)
}

/// Judge the probe's output (`out`, `err`, the exit `status` as text):
/// what the probe found out about a usable interpreter, or what is wrong
/// with it.
fn verdict(out: &str, err: &str, status: &str) -> Result<Probed, String> {
    let last_error = || err.trim().lines().last().unwrap_or("no output").to_string();
    let mut lines = out.lines();
    let version = lines.next().unwrap_or_default().trim().to_string();
    let numbers: Vec<u32> = version.split('.').filter_map(|n| n.parse().ok()).collect();
    let [major, minor, ..] = numbers[..] else {
        return Err(format!("it does not run ({status}): {}", last_error()));
    };
    if (major, minor) < MIN_VERSION {
        return Err(format!(
            "Python {version} is not supported: ferrocorn needs CPython {}.{} or later",
            MIN_VERSION.0, MIN_VERSION.1
        ));
    }
    let info: serde_json::Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("the probe failed ({status}): {}", last_error()))?;
    let field = |k: &str| info.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if field("implementation").as_deref() != Some("cpython") {
        let name = field("implementation").unwrap_or_else(|| "unknown".into());
        return Err(format!(
            "it is {name} {version}, not CPython: ferrocorn's native module is built for CPython"
        ));
    }
    if info.get("free_threaded").and_then(|v| v.as_bool()) == Some(true) {
        return Err(format!(
            "it is a free-threaded CPython ({version}t), which cannot load ferrocorn's \
             stable-ABI module; use the default (GIL) build of CPython {version}"
        ));
    }
    // Each module the probe tried and put aside: [path, why].
    let tried: Vec<(String, String)> = info
        .get("tried")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            let path = pair.get(0)?.as_str()?;
            let why = pair.get(1)?.as_str()?;
            let path = if path.is_empty() {
                "ferrocorn._native (none beside the master: the interpreter's own)"
            } else {
                path
            };
            Some((path.to_string(), why.to_string()))
        })
        .collect();
    let Some(native) = field("native") else {
        let why: Vec<String> = tried.iter().map(|(p, w)| format!("{p}: {w}")).collect();
        return Err(format!(
            "no native module of this build (ferrocorn {}, build {}) loads in it: {}",
            crate::boot::VERSION,
            crate::boot::BUILD,
            if why.is_empty() {
                "none found".to_string()
            } else {
                why.join("; ")
            }
        ));
    };
    Ok(Probed {
        version,
        executable: field("executable").map(PathBuf::from),
        native: (!native.is_empty()).then(|| PathBuf::from(native)),
        skipped: tried
            .into_iter()
            .map(|(p, w)| format!("{p}: {w}"))
            .collect(),
    })
}

/// A bare name (`python3.12`) looked up on `PATH`, as a shell would: the
/// workers are exec'd by path.
fn on_path(name: &Path) -> Option<PathBuf> {
    if name.as_os_str().as_bytes().contains(&b'/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

fn is_dangling(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok() && !path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(out: &str) -> Result<Probed, String> {
        verdict(out, "", "exit status: 0")
    }

    #[test]
    fn a_supported_cpython_with_this_builds_module_passes() {
        let out = "3.13.0\n{\"executable\": \"/v/bin/python\", \"implementation\": \"cpython\", \
                   \"free_threaded\": false, \"native\": \"/x/_native.abi3.so\", \"tried\": \
                   [[\"/x/_native.cpython-313-x86_64-linux-gnu.so\", \"another build: ferrocorn \
                   0.1.0 (build 1234)\"]]}\n";
        assert_eq!(
            judge(out),
            Ok(Probed {
                version: "3.13.0".into(),
                executable: Some(PathBuf::from("/v/bin/python")),
                native: Some(PathBuf::from("/x/_native.abi3.so")),
                skipped: vec![
                    "/x/_native.cpython-313-x86_64-linux-gnu.so: another build: ferrocorn 0.1.0 \
                     (build 1234)"
                        .into()
                ],
            })
        );
    }

    #[test]
    fn free_threaded_old_and_foreign_interpreters_are_refused_by_name() {
        let free = "3.13.1\n{\"implementation\": \"cpython\", \"free_threaded\": true}\n";
        assert!(
            judge(free)
                .unwrap_err()
                .contains("free-threaded CPython (3.13.1t)")
        );
        let old = judge("2.7.18\n").unwrap_err();
        assert!(old.contains("Python 2.7.18 is not supported"), "{old}");
        assert!(old.contains("3.9 or later"), "{old}");
        let pypy = judge("3.10.14\n{\"implementation\": \"pypy\", \"free_threaded\": false}\n");
        assert!(pypy.unwrap_err().contains("pypy 3.10.14, not CPython"));
    }

    #[test]
    fn no_module_of_this_build_names_each_one_tried() {
        let out = "3.11.2\n{\"implementation\": \"cpython\", \"free_threaded\": false, \
                   \"tried\": [[\"/x/libferrocorn.so\", \"another build: ferrocorn 0.0.1 \
                   (build 99)\"], [\"\", \"ModuleNotFoundError: No module named 'ferrocorn'\"]]}\n";
        let e = judge(out).unwrap_err();
        assert!(e.starts_with("no native module of this build"), "{e}");
        assert!(
            e.contains("/x/libferrocorn.so: another build: ferrocorn 0.0.1"),
            "{e}"
        );
        assert!(
            e.contains("the interpreter's own): ModuleNotFoundError"),
            "{e}"
        );
    }

    #[test]
    fn an_interpreter_that_does_not_run_shows_its_last_error_line() {
        let e = verdict("", "Traceback\nSyntaxError: bad\n", "exit status: 1").unwrap_err();
        assert_eq!(e, "it does not run (exit status: 1): SyntaxError: bad");
    }

    #[test]
    fn a_venv_is_found_in_or_beside_the_app_directory() {
        let root = std::env::temp_dir().join(format!("ferrocorn-venv-{}", std::process::id()));
        let app = root.join("project/app");
        std::fs::create_dir_all(&app).unwrap();
        assert_eq!(find_virtualenv(&app), None);
        std::fs::create_dir_all(root.join("project/.venv")).unwrap();
        std::fs::write(root.join("project/.venv/pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(find_virtualenv(&app), Some(root.join("project/.venv")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
