//! Gunicorn's server hooks (the `on_starting` … `on_exit` settings, "Server
//! Hooks" in Gunicorn's settings reference), run from a `gunicorn.conf.py`.
//!
//! The objects hooks receive and the calls themselves are Python
//! (`hooks.py`); this is the Rust face the arbiter and the workers call.
//! One [`Hooks`] per process, made by the arbiter ([`Hooks::load`]) and
//! inherited by every process it forks ([`Hooks::installed`]). A hook that
//! raises is logged with its traceback and its call returns `false`; no
//! Python exception leaves these methods.

use std::path::PathBuf;
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule, PyTuple};

use crate::http::{Head, Version};

static INSTALLED: OnceLock<Hooks> = OnceLock::new();

/// The hooks of one configuration file and the `server` they receive.
#[derive(Debug)]
pub struct Hooks {
    obj: Py<PyAny>,
}

/// What [`Hooks::load`] needs.
#[derive(Debug, Clone)]
pub struct HooksSpec {
    /// The configuration file: a path, or `python:MODULE`.
    pub location: String,
    /// Every setting by Gunicorn's name, as a JSON object (`server.cfg`).
    pub cfg_json: String,
    /// The master's pid (`server.pid`, `worker.ppid`).
    pub master: i32,
    /// `server.num_workers` at start.
    pub num_workers: usize,
    /// `server.proc_name`.
    pub proc_name: String,
    /// Directories to put first on `sys.path` (`--pythonpath`, then the
    /// working directory), as the app gets them.
    pub pythonpath: Vec<PathBuf>,
    /// `sys.argv`.
    pub argv: Vec<String>,
}

/// The worker's pre_request and post_request hooks, for the request path.
#[derive(Debug)]
pub(crate) struct RequestHooks {
    obj: Py<PyAny>,
    pre: bool,
    post: bool,
}

impl Hooks {
    /// Run the configuration file in this interpreter (with the app's
    /// `sys.path`) and take its hooks; installs them for this process and
    /// the ones it forks.
    ///
    /// Errors: one line naming the file and what was wrong (a hook that is
    /// not callable or takes the wrong number of arguments, or the file
    /// raised; its traceback is logged first).
    pub fn load(spec: &HooksSpec) -> Result<&'static Hooks, String> {
        let hooks = Python::attach(|py| -> Result<Hooks, String> {
            let fail = |e: PyErr| format!("setting up Python: {e}");
            super::prepare_sys(py, &spec.pythonpath, &spec.argv).map_err(fail)?;
            let module = PyModule::from_code(
                py,
                pyo3::ffi::c_str!(include_str!("hooks.py")),
                c"ferrocorn/hooks.py",
                c"_ferrocorn_hooks",
            )
            .map_err(fail)?;
            let cfg = py
                .import("json")
                .and_then(|json| json.call_method1("loads", (spec.cfg_json.as_str(),)))
                .map_err(fail)?;
            let emit = pyo3::wrap_pyfunction!(super::module::log, py).map_err(fail)?;
            let made = module.getattr("Hooks").and_then(|class| {
                class.call1((
                    spec.location.as_str(),
                    cfg,
                    spec.master,
                    spec.num_workers,
                    spec.proc_name.as_str(),
                    emit,
                ))
            });
            match made {
                Ok(obj) => Ok(Hooks { obj: obj.unbind() }),
                Err(e) => {
                    let config_error = module
                        .getattr("ConfigError")
                        .is_ok_and(|t| e.get_type(py).is(&t));
                    if config_error {
                        Err(e.value(py).to_string())
                    } else {
                        tracing::error!("{}", super::format_exception(py, &e).trim_end());
                        Err(format!(
                            "{}: {}",
                            spec.location,
                            super::exception_line(py, &e)
                        ))
                    }
                }
            }
        })?;
        INSTALLED
            .set(hooks)
            .map_err(|_| "server hooks: loaded twice in one process".to_string())?;
        Ok(INSTALLED.get().expect("set just above"))
    }

    /// This process's hooks: the arbiter's, or in a worker those of the
    /// arbiter it was forked from.
    pub fn installed() -> Option<&'static Hooks> {
        INSTALLED.get()
    }

    /// Call the `Hooks` method `name` with `args`; false if the hook
    /// raised (already logged) or the call failed.
    fn call<'py>(&self, py: Python<'py>, name: &str, args: Bound<'py, PyTuple>) -> bool {
        match self.obj.bind(py).call_method1(name, args) {
            Ok(ok) => ok.is_truthy().unwrap_or(false),
            Err(e) => {
                tracing::error!(
                    "server hook {name}: {}",
                    super::format_exception(py, &e).trim_end()
                );
                false
            }
        }
    }

    /// A hook that takes only the `server` (`on_starting`, `when_ready`,
    /// `pre_exec`, `on_exit`) or only the `worker` (`worker_int`,
    /// `worker_abort`, `worker_exit`); false if it raised.
    pub fn run(&self, name: &str) -> bool {
        Python::attach(|py| self.call(py, name, PyTuple::empty(py)))
    }

    /// HUP: run the file again, then `nworkers_changed(server, new, old)`
    /// and `on_reload(server)`, as Gunicorn's arbiter reloads.
    pub fn on_reload(&self, new: usize, old: usize) -> bool {
        Python::attach(|py| {
            let args = (new, old).into_pyobject(py).expect("a tuple");
            self.call(py, "on_reload", args)
        })
    }

    /// HUP's `raw_env`, set in `os.environ` (and so inherited by the
    /// workers forked from now on), as Gunicorn's arbiter sets it on reload.
    pub fn set_environment(&self, env: &[(String, String)]) {
        Python::attach(|py| {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let args = (env,).into_pyobject(py).expect("a tuple");
            self.call(py, "set_environment", args)
        });
    }

    /// HUP's settings by name (a JSON object), for `server.cfg`.
    pub fn set_cfg(&self, cfg_json: &str) {
        Python::attach(|py| {
            let args = (cfg_json,).into_pyobject(py).expect("a tuple");
            self.call(py, "set_cfg", args)
        });
    }

    /// `nworkers_changed(server, new, old)`; `old` is `None` at start.
    pub fn nworkers_changed(&self, new: usize, old: Option<usize>) -> bool {
        Python::attach(|py| {
            let args = (new, old).into_pyobject(py).expect("a tuple");
            self.call(py, "nworkers_changed", args)
        })
    }

    /// `child_exit(server, worker)` for the worker of `slot`, pid `pid`,
    /// age `age`.
    pub fn child_exit(&self, slot: usize, pid: i32, age: usize) -> bool {
        Python::attach(|py| {
            let args = (slot, pid, age).into_pyobject(py).expect("a tuple");
            self.call(py, "child_exit", args)
        })
    }

    /// The arbiter learnt the pid of the worker it forked for `slot`.
    pub fn forked(&self, slot: usize, pid: i32) {
        Python::attach(|py| {
            let args = (slot, pid).into_pyobject(py).expect("a tuple");
            self.call(py, "forked", args)
        });
    }

    /// Before forking the worker of `slot`: a new `worker` object of age
    /// `age`, after `pre_fork(server, worker)` ran; handed to
    /// [`Hooks::post_fork`].
    pub fn pre_fork(&self, slot: usize, num_workers: usize, age: usize) -> Option<Py<PyAny>> {
        Python::attach(|py| {
            match self
                .obj
                .bind(py)
                .call_method1("pre_fork", (slot, num_workers, age))
            {
                Ok(worker) => Some(worker.unbind()),
                Err(e) => {
                    tracing::error!("server hook pre_fork: {}", super::format_exception(py, &e));
                    None
                }
            }
        })
    }

    /// In the new worker: `post_fork(server, worker)`.
    pub fn post_fork(&self, worker: Option<Py<PyAny>>) -> bool {
        Python::attach(|py| match worker {
            Some(w) => {
                let args = PyTuple::new(py, [w]).expect("a tuple");
                self.call(py, "post_fork", args)
            }
            None => true,
        })
    }

    /// In a worker once the app is loaded: `post_worker_init(worker)`.
    pub(crate) fn post_worker_init(&self, app: &Py<PyAny>) -> bool {
        Python::attach(|py| {
            let args = PyTuple::new(py, [app.clone_ref(py)]).expect("a tuple");
            self.call(py, "post_worker_init", args)
        })
    }

    /// In a worker with a `worker_abort` hook: catch SIGABRT (the master's
    /// request timeout) to run it; true if so, and then
    /// [`Hooks::check_signals`] must be called at least every second.
    pub fn catch_abort(&self) -> bool {
        self.defines("worker_abort")
            && Python::attach(|py| self.call(py, "catch_abort", PyTuple::empty(py)))
    }

    /// Run the Python signal handlers due (the `worker_abort` one), from
    /// the main thread when it is not running the app.
    pub fn check_signals(&self) {
        Python::attach(|py| {
            if let Err(e) = py.check_signals() {
                tracing::error!("signal handler: {e}");
            }
        });
    }

    /// Whether the file defines the hook `name`.
    pub fn defines(&self, name: &str) -> bool {
        Python::attach(|py| {
            self.obj
                .bind(py)
                .call_method1("defines", (name,))
                .and_then(|b| b.is_truthy())
                .unwrap_or(false)
        })
    }

    /// The request hooks, if the file defines either.
    pub(crate) fn for_requests(&self) -> Option<RequestHooks> {
        let (pre, post) = (self.defines("pre_request"), self.defines("post_request"));
        (pre || post).then(|| RequestHooks {
            obj: Python::attach(|py| self.obj.clone_ref(py)),
            pre,
            post,
        })
    }
}

impl RequestHooks {
    /// `pre_request(worker, req)`; returns `req` for [`Self::post`].
    pub(crate) fn pre<'py>(
        &self,
        py: Python<'py>,
        head: &Head,
        scheme: &str,
    ) -> Option<Bound<'py, PyAny>> {
        let version = match head.version {
            Version::Http10 => (1, 0),
            Version::Http11 => (1, 1),
        };
        let headers: Vec<(String, String)> = head
            .fields()
            .map(|f| {
                (
                    f.name.to_ascii_uppercase(),
                    f.value.iter().map(|&b| b as char).collect(),
                )
            })
            .collect();
        let headers = PyList::new(py, headers).ok()?;
        let method = if self.pre {
            "pre_request"
        } else {
            "make_request"
        };
        let args = (head.method(), head.target(), version, headers, scheme);
        match self.obj.bind(py).call_method1(method, args) {
            Ok(req) => Some(req),
            Err(e) => {
                tracing::error!(
                    "server hook pre_request: {}",
                    super::format_exception(py, &e)
                );
                None
            }
        }
    }

    /// `post_request(worker, req, environ, resp)`.
    pub(crate) fn post<'py>(
        &self,
        py: Python<'py>,
        req: &Bound<'py, PyAny>,
        environ: &Bound<'py, PyAny>,
        status: &str,
        headers: Vec<(String, String)>,
        sent: u64,
    ) {
        if !self.post {
            return;
        }
        let args = (req, environ, status, headers, sent);
        if let Err(e) = self.obj.bind(py).call_method1("post_request", args) {
            tracing::error!(
                "server hook post_request: {}",
                super::format_exception(py, &e)
            );
        }
    }
}
