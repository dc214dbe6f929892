//! Start CPython inside a worker, after fork (never in the master).
//!
//! The interpreter is configured through `PyConfig` (PEP 587) so that a
//! virtualenv is honoured exactly as `DIR/bin/python` honours it: CPython's
//! own path calculation finds `DIR/pyvenv.cfg` next to the executable we
//! name, takes the standard library from the venv's base installation and
//! `site` adds the venv's site-packages (and the system's only if the venv
//! says `include-system-site-packages = true`).

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pyo3::ffi;

/// The version of the libpython this binary runs with (`major.minor`).
fn linked_version() -> String {
    // SAFETY: Py_GetVersion returns a static NUL-terminated string and may be
    // called before the interpreter is initialised.
    let full = unsafe { std::ffi::CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    let number = full.split_whitespace().next().unwrap_or_default();
    number.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// Check that `dir` is a virtualenv this binary can run: it has
/// `pyvenv.cfg` and was made by the same Python `major.minor`.
///
/// Returns the interpreter path inside it (`DIR/bin/python`). Errors name
/// the directory and what is wrong with it.
pub fn check_virtualenv(dir: &Path) -> Result<PathBuf, String> {
    let cfg_path = dir.join("pyvenv.cfg");
    let cfg = std::fs::read_to_string(&cfg_path).map_err(|e| {
        format!(
            "{} is not a virtualenv ({}: {e})",
            dir.display(),
            cfg_path.display()
        )
    })?;
    let want = linked_version();
    let version = cfg
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| matches!(k.trim(), "version" | "version_info"))
        .map(|(_, v)| v.trim().to_string());
    if let Some(v) = version {
        if v != want && !v.starts_with(&format!("{want}.")) {
            return Err(format!(
                "{} was made by Python {v}, but ferrocorn runs Python {want}; \
                 recreate it with python{want} -m venv",
                dir.display()
            ));
        }
    }
    let python = dir.join("bin").join("python");
    if !python.exists() {
        return Err(format!("{} has no bin/python", dir.display()));
    }
    Ok(python)
}

/// The virtualenv an app directory lives in or beside (DESIGN §4): the
/// nearest of `dir` and its ancestors that either is a virtualenv (has
/// `pyvenv.cfg`) or holds one at `.venv/`, the layout of venv, uv and
/// poetry projects.
pub fn find_virtualenv(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find_map(|d| {
        [d.to_path_buf(), d.join(".venv")]
            .into_iter()
            .find(|c| c.join("pyvenv.cfg").is_file())
    })
}

/// Initialise the interpreter for this process and release the GIL.
///
/// `venv_python` is `DIR/bin/python` of a checked virtualenv; `argv` becomes
/// `sys.argv`. Python's own signal handlers are not installed: the worker
/// owns SIGINT/SIGTERM.
///
/// Errors: CPython's initialisation status message.
pub fn init(venv_python: Option<&Path>, argv: &[String]) -> Result<(), String> {
    let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: PyConfig_InitPythonConfig fully initialises the struct it is given;
    // every later call gets that initialised config, and PyConfig_Clear frees
    // the strings it owns on every path out. The doubt: Py_InitializeFromConfig
    // must run once per process, which holds because only a freshly forked
    // worker calls init(), once, before any thread is started.
    unsafe {
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.assume_init_mut();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        // Under systemd stdout is the journal's stream socket, where a
        // block-buffered print() would reach the journal late or at exit:
        // write through, as `python -u` does.
        if std::env::var_os("JOURNAL_STREAM").is_some() {
            config.buffered_stdio = 0;
        }
        let result = configure(config, venv_python, argv);
        let status = match result {
            Ok(()) => ffi::Py_InitializeFromConfig(config),
            Err(e) => {
                ffi::PyConfig_Clear(config);
                return Err(e);
            }
        };
        ffi::PyConfig_Clear(config);
        if ffi::PyStatus_Exception(status) != 0 {
            let msg = if status.err_msg.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(status.err_msg)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!("Python initialisation failed: {msg}"));
        }
        // Initialisation leaves this thread holding the GIL; pyo3 attaches per call.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// # Safety
/// `config` must be initialised by `PyConfig_InitPythonConfig`.
unsafe fn configure(
    config: &mut ffi::PyConfig,
    venv_python: Option<&Path>,
    argv: &[String],
) -> Result<(), String> {
    let check = |status: ffi::PyStatus, what: &str| {
        // SAFETY: status is a value returned by a PyConfig_* call just made.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 {
            Err(format!("Python configuration failed: {what}"))
        } else {
            Ok(())
        }
    };
    if let Some(python) = venv_python {
        let exe = CString::new(python.as_os_str().as_bytes())
            .map_err(|_| "virtualenv path contains NUL".to_string())?;
        // SAFETY: config is initialised (caller's contract); the field pointer
        // belongs to it and exe is a valid C string for the call's duration.
        let status = unsafe {
            ffi::PyConfig_SetBytesString(config, &raw mut config.executable, exe.as_ptr())
        };
        check(status, "executable")?;
    }
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: ptrs holds args.len() valid C strings that outlive the call;
    // CPython copies them.
    let status = unsafe {
        ffi::PyConfig_SetBytesArgv(config, ptrs.len() as ffi::Py_ssize_t, ptrs.as_mut_ptr())
    };
    check(status, "argv")
}
