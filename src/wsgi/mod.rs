//! The WSGI bridge (PEP 3333): the only module that touches Python.
//!
//! The worker hands it Rust values — a parsed head, the connection, the
//! peer — and gets Rust values back: whether the connection may carry
//! another request and the bytes already read past this one. Inside, the GIL
//! is held only while Python runs; socket I/O releases it.

mod environ;
mod exchange;
pub mod hooks;
mod input;
pub mod module;
mod response;
mod tail;

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule, PyString};

use crate::http::proxy::ProxyHeader;
use crate::http::response::internal_error_response;
use crate::http::{Head, HeaderMap, Limits};
use crate::listeners::ListenAddr;
use crate::net::Peer;
use crate::net::Stream;
use environ::BuildError;
use exchange::Exchange;
pub use hooks::{Hooks, HooksSpec};
use input::{BodyFailure, Input};
use response::Ending;
pub use tail::Tail;

/// Bytes of unread request body the worker reads and discards to keep a
/// connection alive; a larger remainder closes the connection instead.
const DRAIN_LIMIT: usize = 1 << 20;
/// How long the app thread waits for the rest of a body the app did not
/// read; past it the connection closes instead, after a lingering close
/// on the I/O thread ([`Outcome::linger`]).
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_millis(100);

/// Why the app could not be made ready; the worker maps these to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The interpreter could not be set up for the app (worker boot
    /// failure, exit 3).
    #[error("{0}")]
    Interpreter(String),
    /// The app module or callable could not be loaded (exit 4).
    #[error("{0}")]
    Import(String),
    /// The app's configuration names what is not there: a PasteDeploy
    /// `use = egg:X` of no installed distribution (exit 78).
    #[error("{0}")]
    Config(String),
}

/// Where the app comes from.
#[derive(Debug, Clone)]
pub enum AppSource {
    /// `MODULE[:CALLABLE]`, Gunicorn's syntax incl. factory calls.
    Uri(String),
    /// A PasteDeploy .ini file (Gunicorn's `--paste FILE#NAME`), loaded with
    /// `paste.deploy.loadapp`.
    Paste {
        /// The .ini file, absolute.
        path: PathBuf,
        /// The app section's name.
        name: String,
        /// Global configuration variables.
        global: Vec<(String, String)>,
    },
}

/// How the app's Python logging is configured before it is imported
/// (Gunicorn's `logconfig`, `logconfig_json`, `logconfig_dict`).
#[derive(Debug, Clone)]
pub enum PythonLogging {
    /// `logging.config.fileConfig(PATH)`.
    File(PathBuf),
    /// `logging.config.dictConfig(json.load(PATH))`.
    Json(PathBuf),
    /// `logging.config.dictConfig(json.loads(TEXT))`.
    Dict(String),
}

/// The forwarding settings the environ applies (Gunicorn's proxy settings).
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    /// `secure_scheme_headers`: upper-case name and exact value.
    pub secure_scheme_headers: Vec<(String, String)>,
    /// `forwarder_headers`: upper-case names.
    pub forwarder_headers: Vec<String>,
    /// `header_map`.
    pub header_map: HeaderMap,
}

/// What the access log needs from a request beyond its head, so that it
/// is only collected when the format asks for it.
#[derive(Debug, Clone, Default)]
pub struct CaptureSpec {
    /// The environ's `PATH_INFO` (`%(U)s`).
    pub path_info: bool,
    /// Environ keys (`%({key}e)s`), as written in the format.
    pub environ: Vec<String>,
    /// Response header names (`%({name}o)s`), lower-case.
    pub response_headers: Vec<String>,
}

/// What [`CaptureSpec`] asked for, in its order; `None` where absent.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The environ's `PATH_INFO`.
    pub path_info: Option<String>,
    /// The environ's values (`str()` of each).
    pub environ: Vec<Option<String>>,
    /// The response's header values (the last of repeated ones, as Gunicorn's atoms take them).
    pub response_headers: Vec<Option<String>>,
}

/// What the worker needs to load an app.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The app.
    pub source: AppSource,
    /// Directories to put first on `sys.path`, in order.
    pub pythonpath: Vec<PathBuf>,
    /// `sys.argv`.
    pub argv: Vec<String>,
    /// `wsgi.multithread`: more than one app thread.
    pub multithread: bool,
    /// `wsgi.multiprocess`: more than one worker.
    pub multiprocess: bool,
    /// The app's logging configuration, applied before the import.
    pub logging: Option<PythonLogging>,
    /// Gunicorn's proxy settings.
    pub forwarding: Forwarding,
    /// `sendfile`: `wsgi.file_wrapper` files go out with sendfile(2).
    pub sendfile: bool,
    /// What the access log needs.
    pub capture: CaptureSpec,
}

/// One request for the app: the parsed head and its connection.
#[derive(Debug)]
pub struct Request<'a> {
    /// The parsed request head.
    pub head: &'a Head,
    /// The connection, non-blocking.
    pub stream: &'a Arc<Stream>,
    /// Bytes already read after the head (start of the body, maybe more).
    pub buf: Vec<u8>,
    /// The client: the socket's peer, or the client a PROXY header named.
    pub peer: &'a Peer,
    /// The PROXY header the connection began with, if any.
    pub proxy: Option<&'a ProxyHeader>,
    /// The socket's peer is trusted to set forwarding fields
    /// (`forwarded_allow_ips`).
    pub trusted: bool,
    /// The listener it arrived on.
    pub server: &'a ListenAddr,
    /// Limits for the body's chunk lines and trailers.
    pub limits: &'a Limits,
    /// False while the worker is stopping: answer with `Connection: close`.
    pub may_keep_alive: bool,
    /// `min_send_rate`: slowest a client may read the response, bytes per
    /// second (0 = no limit).
    pub min_send_rate: u64,
}

/// How a request ended, for the connection and the access log.
#[derive(Debug)]
pub struct Outcome {
    /// The connection may carry another request.
    pub keep_alive: bool,
    /// Not `keep_alive`, and the client may still be sending the request's
    /// body (the app did not read it all, nor did the drain): close only
    /// after the client has stopped, else the kernel answers its bytes with
    /// a RST that can destroy the response before the client reads it
    /// (RFC 9112 §9.6).
    pub linger: bool,
    /// Bytes read past this request: the start of the next one.
    pub buf: Vec<u8>,
    /// The status code sent, if a response head went out.
    pub status: Option<u16>,
    /// Body bytes sent.
    pub sent: u64,
    /// What the access log asked for.
    pub captured: Captured,
    /// The rest of the response, when the client did not take it at once:
    /// the I/O thread writes it (then the connection carries on as
    /// `keep_alive` says). `sent` counts its body bytes already.
    pub tail: Option<Tail>,
}

/// Fork the process with `os.fork()`, which runs CPython's before- and
/// after-fork hooks (the GIL, the import lock and thread states are made
/// valid in the child). Only a single-threaded process may call it.
///
/// Errors: the OSError message.
pub fn fork() -> Result<Forked, String> {
    Python::attach(|py| {
        let pid: i32 = py
            .import("os")
            .and_then(|os| os.call_method0("fork"))
            .and_then(|p| p.extract())
            .map_err(|e| e.to_string())?;
        Ok(if pid == 0 {
            Forked::Child
        } else {
            Forked::Parent(pid)
        })
    })
}

/// Set `sys.argv`, and put `pythonpath` (relative to the working
/// directory) and then the working directory first on `sys.path`, as
/// Gunicorn does for the app and its configuration file; entries already
/// there move to the front rather than appear twice.
fn prepare_sys(py: Python<'_>, pythonpath: &[PathBuf], argv: &[String]) -> PyResult<()> {
    let sys = py.import("sys")?;
    sys.setattr("argv", argv)?;
    let sys_path = sys.getattr("path")?;
    let sys_path = sys_path.cast::<PyList>()?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let front: Vec<String> = pythonpath
        .iter()
        .map(|p| cwd.join(p))
        .chain([cwd.clone()])
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for dir in &front {
        while sys_path.contains(dir)? {
            sys_path.call_method1("remove", (dir,))?;
        }
    }
    for (i, dir) in front.iter().enumerate() {
        sys_path.insert(i, dir)?;
    }
    Ok(())
}

/// Which side of [`fork`] this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The forking process; the child's pid.
    Parent(i32),
}

/// A loaded WSGI application and the per-worker environ base.
#[derive(Debug)]
pub struct App {
    app: Py<PyAny>,
    environ: environ::Base,
    capture: CaptureSpec,
    /// pre_request and post_request, when a gunicorn.conf.py defines them.
    hooks: Option<hooks::RequestHooks>,
}

impl App {
    /// Import the app into this interpreter (once per worker, or once in
    /// a zygote), with `sys.argv` and the front of `sys.path` set first.
    ///
    /// Errors: [`AppError::Interpreter`] when `sys` cannot be set up,
    /// [`AppError::Import`] with a one-line message naming the app and the
    /// Python exception; the import's traceback is logged first when it
    /// points into the app's own code.
    pub fn load(spec: &AppSpec) -> Result<App, AppError> {
        Python::attach(|py| {
            let boot = |e: PyErr| AppError::Interpreter(format!("setting up Python: {e}"));
            prepare_sys(py, &spec.pythonpath, &spec.argv).map_err(boot)?;
            let loader = PyModule::from_code(
                py,
                pyo3::ffi::c_str!(include_str!("loader.py")),
                c"ferrocorn/loader.py",
                c"_ferrocorn_loader",
            )
            .map_err(boot)?;
            let describe = match &spec.source {
                AppSource::Uri(uri) => uri.clone(),
                AppSource::Paste { path, name, .. } => format!("{}#{name}", path.display()),
            };
            if let Some(logging) = &spec.logging {
                let (how, arg) = match logging {
                    PythonLogging::File(p) => ("file", p.to_string_lossy().into_owned()),
                    PythonLogging::Json(p) => ("json", p.to_string_lossy().into_owned()),
                    PythonLogging::Dict(text) => ("dict", text.clone()),
                };
                loader
                    .call_method1("configure_logging", (how, arg))
                    .map_err(|e| {
                        AppError::Import(format!(
                            "cannot configure the app's logging: {}",
                            exception_line(py, &e)
                        ))
                    })?;
            }
            let loaded = match &spec.source {
                AppSource::Uri(uri) => loader.call_method1("load", (uri.as_str(),)),
                AppSource::Paste { path, name, global } => loader.call_method1(
                    "load_paste",
                    (path.to_string_lossy(), name.as_str(), global.clone()),
                ),
            };
            let app = loaded.map_err(|e| {
                let is = |name: &str| loader.getattr(name).is_ok_and(|t| e.get_type(py).is(&t));
                if is("PasteConfigError") {
                    return AppError::Config(format!("paste: {}", e.value(py)));
                }
                let not_found = is("AppImportError");
                let reason = if not_found {
                    e.value(py).to_string()
                } else {
                    // The app's own import raised: its traceback says where.
                    tracing::error!("{}", format_exception(py, &e).trim_end());
                    exception_line(py, &e)
                };
                AppError::Import(format!("failed to load the app {describe:?}: {reason}"))
            })?;
            // A request past --timeout gets SIGABRT from the master, and a
            // crashing C extension SIGSEGV: either way dump every thread's
            // Python traceback to the log before dying.
            py.run(
                c"import faulthandler, sys; faulthandler.enable(file=sys.stderr, all_threads=True)",
                None,
                None,
            )
            .map_err(boot)?;
            let environ = environ::Base::new(
                py,
                spec.multithread,
                spec.multiprocess,
                spec.forwarding.clone(),
            )
            .map_err(boot)?;
            response::set_sendfile(spec.sendfile);
            Ok(App {
                app: app.unbind(),
                environ,
                capture: spec.capture.clone(),
                hooks: Hooks::installed().and_then(Hooks::for_requests),
            })
        })
    }

    /// `post_worker_init(worker)`, when this process runs server hooks.
    pub fn post_worker_init(&self) {
        if let Some(hooks) = Hooks::installed() {
            hooks.post_worker_init(&self.app);
        }
    }

    /// The source files of every module imported so far (`__file__` of
    /// each in `sys.modules`), for `--reload`.
    pub fn source_files(&self) -> Vec<PathBuf> {
        Python::attach(|py| {
            let files = py.eval(
                c"[getattr(m, '__file__', None) for m in list(__import__('sys').modules.values())]",
                None,
                None,
            );
            files
                .and_then(|f| f.extract::<Vec<Option<String>>>())
                .map(|f| f.into_iter().flatten().map(PathBuf::from).collect())
                .unwrap_or_default()
        })
    }

    /// Move everything allocated so far (the imported app) to the permanent
    /// generation (`gc.freeze()`), so the collector of a forked worker does
    /// not touch — and copy — the pages it shares with its siblings.
    pub fn freeze(&self) {
        Python::attach(|py| {
            if let Err(e) = py.import("gc").and_then(|gc| gc.call_method0("freeze")) {
                tracing::warn!("gc.freeze() failed: {e}");
            }
        });
    }

    /// A graceful worker exit: run the app's `atexit` handlers (logging's
    /// flush, error reporters' queues) and flush `sys.stdout`/`stderr`, as
    /// a Python process ending with `sys.exit()` would. The interpreter is
    /// not finalized: the process exits right after.
    pub fn shutdown(&self) {
        Python::attach(|py| {
            let run = py
                .import("atexit")
                .and_then(|atexit| atexit.call_method0("_run_exitfuncs"));
            if let Err(e) = run {
                tracing::warn!("atexit handlers: {}", exception_line(py, &e));
            }
            for stream in ["stdout", "stderr"] {
                let _ = py
                    .import("sys")
                    .and_then(|sys| sys.getattr(stream))
                    .and_then(|s| s.call_method0("flush"));
            }
        });
    }

    /// Run `f` (an app thread's whole life) with a Python thread state kept
    /// for this thread, GIL released. Without it every request on a thread
    /// that Python did not start creates and destroys a thread state
    /// (PyGILState_Ensure/Release: a gettid, and an mmap and munmap of the
    /// frame stack); with it, a request only takes and drops the GIL.
    pub fn with_thread_state<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        Python::attach(|py| py.detach(f))
    }

    /// Run one request through the app and send its response.
    pub fn handle(&self, mut req: Request<'_>) -> Outcome {
        // The body reader owns the bytes read past the head.
        let raw = std::mem::take(&mut req.buf);
        let (head, stream) = (req.head, req.stream);
        let ex = Arc::new(Exchange::new(
            head,
            req.limits,
            Arc::clone(stream),
            raw,
            req.may_keep_alive,
            req.min_send_rate,
        ));
        let mut captured = Captured::default();
        let mut refused = None;
        let ending = Python::attach(|py| {
            let built = Bound::new(
                py,
                Input {
                    ex: Arc::clone(&ex),
                },
            )
            .map_err(BuildError::from)
            .and_then(|input| self.environ.build(py, &req, input));
            let (ending, err) = match built {
                Ok(environ) => {
                    let kept = self.wants_environ().then(|| environ.clone());
                    let hooked = self.hooks.as_ref().and_then(|h| {
                        let scheme = environ
                            .get_item(pyo3::intern!(py, "wsgi.url_scheme"))
                            .ok()
                            .flatten()
                            .map_or_else(|| "http".to_string(), |s| s.to_string());
                        Some((h, h.pre(py, head, &scheme)?, environ.clone()))
                    });
                    let outcome = response::run(py, self.app.bind(py), environ.into_any(), &ex);
                    if let Some(environ) = kept {
                        self.capture_environ(&environ, &mut captured);
                    }
                    if let Some((hooks, req, environ)) = hooked {
                        let w = ex.output.lock().unwrap_or_else(|p| p.into_inner());
                        let (status, fields) = match (&w.started, w.head_sent()) {
                            (Some(started), true) => (started.status.clone(), w.response_fields()),
                            _ => ("500 Internal Server Error".to_string(), Vec::new()),
                        };
                        let sent = w.sent();
                        drop(w);
                        hooks.post(py, &req, environ.as_any(), &status, fields, sent);
                    }
                    outcome
                }
                Err(BuildError::Python(e)) => (Ending::FailedBeforeHead, Some(e)),
                Err(BuildError::Refused(e)) => {
                    refused = Some(e);
                    (Ending::FailedBeforeHead, None)
                }
            };
            if let Some(err) = err {
                self.log_app_error(py, head, &ex, &err);
            }
            ending
        });
        if let Some(e) = &refused {
            if e.status() >= 500 {
                tracing::error!(
                    "Error handling request {} {}: {e}",
                    head.method(),
                    head.target()
                );
            } else {
                tracing::debug!("invalid request from {}: {e}", req.peer);
            }
        }

        let mut body = ex.input.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut w = ex.output.lock().unwrap_or_else(|p| p.into_inner());
        let mut status = w.status_code();
        let mut keep_alive = match ending {
            Ending::Complete => w.reusable(),
            Ending::Aborted => false,
            Ending::FailedBeforeHead => {
                let malformed = refused.or_else(|| {
                    body.as_ref().and_then(|b| match &b.failure {
                        Some(BodyFailure::Malformed(e)) => Some(e.clone()),
                        _ => None,
                    })
                });
                let bytes = match &malformed {
                    Some(e) => crate::http::error_response(e),
                    None => internal_error_response(),
                };
                status = Some(malformed.map_or(500, |e| e.status()));
                let _ = stream.write_all(&bytes);
                false
            }
        };
        let sent = w.sent();
        if !self.capture.response_headers.is_empty() {
            captured.response_headers = self
                .capture
                .response_headers
                .iter()
                .map(|name| w.response_field(name))
                .collect();
        }
        let tail = w.tail.take();
        if let Some(why) = w.cut.take() {
            tracing::info!("Cut the response to {}: {why}", req.peer);
        }
        w.detach();
        let mut buf = Vec::new();
        if let (true, Some(b)) = (keep_alive, body.as_mut()) {
            if b.drain(DRAIN_LIMIT, DRAIN_TIME) {
                buf = b.take_leftover();
            } else {
                keep_alive = false;
            }
        }
        // A cut response has nothing left for the client to read.
        let linger =
            !matches!(ending, Ending::Aborted) && body.as_ref().is_some_and(|b| !b.is_done());
        Outcome {
            keep_alive,
            linger,
            buf,
            status,
            sent,
            captured,
            tail,
        }
    }

    fn wants_environ(&self) -> bool {
        self.capture.path_info || !self.capture.environ.is_empty()
    }

    /// Read what the access log asked for out of the request's environ
    /// (after the app ran: as Gunicorn, it sees what the app set there;
    /// keys match whatever their case, as Gunicorn's atoms do).
    fn capture_environ(&self, environ: &Bound<'_, pyo3::types::PyDict>, out: &mut Captured) {
        let text = |value: Bound<'_, PyAny>| value.str().ok().map(|s| s.to_string());
        if self.capture.path_info {
            out.path_info = environ.get_item("PATH_INFO").ok().flatten().and_then(text);
        }
        if self.capture.environ.is_empty() {
            return;
        }
        out.environ = vec![None; self.capture.environ.len()];
        for (key, value) in environ.iter() {
            let Ok(key) = key.str() else { continue };
            let key = key.to_string();
            for (i, wanted) in self.capture.environ.iter().enumerate() {
                if key.eq_ignore_ascii_case(wanted) {
                    out.environ[i] = text(value.clone());
                }
            }
        }
    }

    fn log_app_error(&self, py: Python<'_>, head: &Head, ex: &Exchange, err: &PyErr) {
        let client_fault = ex
            .input
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|b| b.failure.is_some());
        match client_fault {
            // A malformed body or a vanished client, not an app bug: no traceback.
            true => tracing::debug!(
                "request {} {} ended early: {}",
                head.method(),
                head.target(),
                exception_line(py, err)
            ),
            false => tracing::error!(
                "Error handling request {} {}\n{}",
                head.method(),
                head.target(),
                format_exception(py, err).trim_end()
            ),
        }
    }
}

unsafe extern "C" {
    /// `const char *PyUnicode_AsUTF8AndSize(PyObject *, Py_ssize_t *)`: in
    /// the stable ABI from 3.10 and a public function of 3.9 too, so the
    /// stable-ABI (3.9) build may call it; pyo3 only declares it for 3.10+.
    fn PyUnicode_AsUTF8AndSize(
        s: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::ffi::c_char;
}

/// The UTF-8 of a `str`, borrowed from the string object (CPython caches
/// it there), without the copy that `to_cow` makes under the stable ABI.
///
/// Errors: the string holds lone surrogates (`UnicodeEncodeError`).
pub(crate) fn str_of<'a>(s: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    let mut size: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: the GIL is held (we have a Bound) and `s` is a str. On
    // success CPython returns a pointer to `size` bytes of valid UTF-8 that
    // the string object owns and keeps until it dies, which outlives 'a
    // because `s` borrows the object for 'a; on failure NULL with an
    // exception set.
    unsafe {
        let data = PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size);
        if data.is_null() {
            return Err(PyErr::fetch(s.py()));
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), size as usize);
        Ok(std::str::from_utf8_unchecked(bytes))
    }
}

/// `Type: message` of a Python exception, on one line.
fn exception_line(py: Python<'_>, err: &PyErr) -> String {
    let ty = err
        .get_type(py)
        .name()
        .map_or_else(|_| "Exception".to_string(), |n| n.to_string());
    let msg = err
        .value(py)
        .str()
        .map_or_else(|_| String::new(), |s| s.to_string());
    if msg.is_empty() {
        ty
    } else {
        format!("{ty}: {}", msg.replace('\n', " "))
    }
}

/// The full traceback of a Python exception, as `traceback.format_exception`.
fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    // pyo3 keeps the traceback beside the value: pass all three.
    let args = (err.get_type(py), err.value(py), err.traceback(py));
    py.import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", args))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map_or_else(|_| exception_line(py, err), |lines| lines.concat())
}
