//! Calling the app and sending what it returns (PEP 3333, "The
//! start_response() Callable", "Buffering and Streaming", "Optional
//! Platform-Specific File Handling").
//!
//! Invariants: the iterable's `close()` is called exactly once whenever the
//! app returned one — after success, after an error and after the client
//! went away; socket writes release the GIL; an app error before the head
//! is out becomes a 500, after it a closed connection.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use super::exchange::{Exchange, ResponseWriter, Started};
use super::tail::Tail;

/// Whether `wsgi.file_wrapper` files go out with sendfile(2) (Gunicorn's
/// `sendfile`, on unless `--no-sendfile`); set once when the app loads.
static SENDFILE: AtomicBool = AtomicBool::new(true);

/// Turn sendfile(2) for `wsgi.file_wrapper` on or off for this process.
pub(crate) fn set_sendfile(on: bool) {
    SENDFILE.store(on, Ordering::Relaxed);
}

/// How an exchange ended, as far as the worker needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The response went out in full.
    Complete,
    /// No head went out: the app failed before it (the caller answers 500),
    /// or the request body did (400, see `Exchange::send`).
    FailedBeforeHead,
    /// The app failed mid-body, or the client went away: close the connection.
    Aborted,
}

/// The `start_response` callable handed to the app.
#[pyclass(module = "ferrocorn", name = "StartResponse")]
pub(crate) struct StartResponse {
    pub(crate) ex: Arc<Exchange>,
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None) -> write`.
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        &self,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        let mut w = self.ex.output.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(exc_info) = exc_info {
            if w.head_sent() {
                // PEP 3333: re-raise the original exception once headers are out.
                let exc = exc_info.get_item(1)?;
                return Err(PyErr::from_value(exc));
            }
        } else if w.started.is_some() {
            return Err(PyRuntimeError::new_err(
                "start_response() called a second time without exc_info",
            ));
        }
        let status = status
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("status must be a str, like \"200 OK\""))?;
        // A list of 2-tuples, as PEP 3333 asks; like Gunicorn, any iterable
        // of 2-item sequences is taken.
        let mut started = Started::new(super::str_of(status)?, headers.len().unwrap_or(8))
            .map_err(PyValueError::new_err)?;
        for field in headers.try_iter().map_err(|_| bad_headers())? {
            let field = field?;
            let (name, value) = match field.cast::<PyTuple>() {
                Ok(pair) if pair.len() == 2 => (pair.get_item(0)?, pair.get_item(1)?),
                _ => pair_of(&field).ok_or_else(bad_headers)?,
            };
            let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
                return Err(bad_headers());
            };
            started
                .push_field(super::str_of(name)?, super::str_of(value)?)
                .map_err(PyValueError::new_err)?;
        }
        w.started = Some(started);
        drop(w);
        Ok(Write {
            ex: Arc::clone(&self.ex),
        })
    }
}

/// The two items of a 2-item iterable (a list `[name, value]`), else None.
fn pair_of<'py>(field: &Bound<'py, PyAny>) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let mut items = field.try_iter().ok()?;
    match (items.next(), items.next(), items.next()) {
        (Some(Ok(name)), Some(Ok(value)), None) => Some((name, value)),
        _ => None,
    }
}

fn bad_headers() -> PyErr {
    PyTypeError::new_err("response headers must be a list of (str, str) tuples")
}

/// The `write(data)` callable returned by `start_response` (for legacy apps).
#[pyclass(module = "ferrocorn", name = "Write")]
pub(crate) struct Write {
    ex: Arc<Exchange>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() argument must be bytes"))?;
        send_chunk(py, &self.ex, data.as_bytes(), None)
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("client connection: {e}")))
    }
}

/// `wsgi.file_wrapper(filelike, blksize=8192)`: an iterable over the file's
/// blocks that the server recognises and sends with sendfile(2) when the
/// file has a real descriptor.
#[pyclass(module = "ferrocorn", name = "FileWrapper")]
pub(crate) struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}

/// Send one body block in one writev with the head if due (the GIL is
/// released only if the client makes us wait).
fn send_chunk(
    py: Python<'_>,
    ex: &Exchange,
    data: &[u8],
    total: Option<u64>,
) -> std::io::Result<()> {
    let mut guard = ex.output.lock().unwrap_or_else(|p| p.into_inner());
    if guard.started.is_none() {
        return Err(std::io::Error::other(
            "the app produced body data before calling start_response()",
        ));
    }
    ex.send(py, &mut guard, data, total)
}

/// Call `app(environ, start_response)` and send the result.
///
/// Errors from the app are returned for the caller to log, along with how
/// the exchange ended.
pub(crate) fn run(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    environ: Bound<'_, PyAny>,
    ex: &Arc<Exchange>,
) -> (Ending, Option<PyErr>) {
    let start_response = match Bound::new(py, StartResponse { ex: Arc::clone(ex) }) {
        Ok(s) => s,
        Err(e) => return (Ending::FailedBeforeHead, Some(e)),
    };
    let iterable = match app.call1((environ, start_response)) {
        Ok(it) => it,
        Err(e) => return (failed(ex), Some(e)),
    };
    let result = send_iterable(py, &iterable, ex);
    // A plain list or tuple (the common return) has no close(): skip the
    // lookup, which on Python 3.11 builds and drops an AttributeError.
    let plain =
        iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>();
    // A tail that sends a file wrapper's file calls its close() when done.
    let tail_closes = || {
        let w = ex.output.lock().unwrap_or_else(|p| p.into_inner());
        w.tail.as_ref().is_some_and(Tail::closes_iterable)
    };
    let close_err = match (plain, || iterable.getattr_opt(pyo3::intern!(py, "close"))) {
        (true, _) => None,
        (false, _) if tail_closes() => None,
        (false, lookup) => match lookup() {
            Ok(Some(close)) => close.call0().err(),
            Ok(None) => None,
            Err(e) => Some(e),
        },
    };
    match (result, close_err) {
        (Ok(ending), None) => (ending, None),
        (Ok(_), Some(e)) => (failed(ex), Some(e)),
        (Err(e), _) => (failed(ex), Some(e)),
    }
}

fn failed(ex: &Exchange) -> Ending {
    let w = ex.output.lock().unwrap_or_else(|p| p.into_inner());
    if w.head_sent() {
        Ending::Aborted
    } else {
        Ending::FailedBeforeHead
    }
}

fn send_iterable(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    ex: &Arc<Exchange>,
) -> PyResult<Ending> {
    if let Ok(wrapper) = iterable.cast::<FileWrapper>() {
        if SENDFILE.load(Ordering::Relaxed) {
            if let Some(ending) = try_sendfile(py, wrapper, ex)? {
                return Ok(ending);
            }
        }
    }
    // PEP 3333 lets the server compute Content-Length for a one-item list.
    let single = one_item(iterable);
    let total = single
        .as_ref()
        .and_then(|item| item.cast::<PyBytes>().ok())
        .map(|b| b.as_bytes().len() as u64);
    // The items of a list or tuple exist already: sending them together
    // delays none of them (PEP 3333, "Buffering and Streaming"), and what
    // the client does not take at once is left to the I/O thread.
    if items_exist(py, iterable) {
        // One item (the common `[body]`) needs no vector.
        let one;
        let many;
        let items: &[Bound<'_, PyBytes>] = match single {
            Some(item) => {
                one = bytes_item(&item)?;
                std::slice::from_ref(&one)
            }
            None => {
                let mut all = Vec::with_capacity(iterable.len().unwrap_or(0));
                for item in iterable.try_iter()? {
                    let item = bytes_item(&item?)?;
                    if !item.as_bytes().is_empty() {
                        all.push(item);
                    }
                }
                many = all;
                &many
            }
        };
        let mut guard = ex.output.lock().unwrap_or_else(|p| p.into_inner());
        if guard.started.is_none() {
            return Err(PyRuntimeError::new_err(
                "the app returned without calling start_response()",
            ));
        }
        let sent = ex.send_whole(&mut guard, items, total);
        drop(guard);
        return Ok(match sent {
            Ok(()) => Ending::Complete,
            Err(_) => failed(ex),
        });
    }
    // A generator's item goes out before the next is asked for.
    for item in iterable.try_iter()? {
        let chunk = bytes_item(&item?)?;
        if chunk.as_bytes().is_empty() {
            continue;
        }
        if send_chunk(py, ex, chunk.as_bytes(), total).is_err() {
            return Ok(failed(ex));
        }
    }
    finish(py, ex)
}

/// An item of the response iterable, which must be `bytes` (PEP 3333).
fn bytes_item<'py>(item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "the response iterable must yield bytes, not {}",
            item.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })
}

/// Whether every item of the response iterable already exists: a list or a
/// tuple, or an iterator over one (`iter(chunks)`).
fn items_exist(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> bool {
    static ITERATORS: PyOnceLock<[Py<PyType>; 2]> = PyOnceLock::new();
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return true;
    }
    let iterators = ITERATORS.get_or_init(py, || {
        let type_of = |seq: Bound<'_, PyAny>| {
            seq.try_iter()
                .map(|it| it.get_type().unbind())
                .expect("lists and tuples are iterable")
        };
        [
            type_of(PyList::empty(py).into_any()),
            type_of(PyTuple::empty(py).into_any()),
        ]
    });
    let ty = iterable.get_type();
    iterators.iter().any(|t| ty.is(t))
}

fn finish(py: Python<'_>, ex: &Exchange) -> PyResult<Ending> {
    let mut guard = ex.output.lock().unwrap_or_else(|p| p.into_inner());
    if guard.started.is_none() {
        return Err(PyRuntimeError::new_err(
            "the app returned without calling start_response()",
        ));
    }
    let finished = ex.finish(py, &mut guard);
    drop(guard);
    Ok(match finished {
        Ok(()) => Ending::Complete,
        Err(_) => failed(ex),
    })
}

/// The item of a one-item list or tuple.
fn one_item<'py>(iterable: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    if let Ok(list) = iterable.cast::<PyList>() {
        (list.len() == 1).then(|| list.get_item(0).ok())?
    } else if let Ok(tuple) = iterable.cast::<PyTuple>() {
        (tuple.len() == 1).then(|| tuple.get_item(0).ok())?
    } else {
        None
    }
}

/// Send a `wsgi.file_wrapper` with sendfile(2) when its file has a descriptor
/// of a regular file; `None` means "iterate it instead".
fn try_sendfile(
    py: Python<'_>,
    wrapper: &Bound<'_, FileWrapper>,
    ex: &Arc<Exchange>,
) -> PyResult<Option<Ending>> {
    let filelike = wrapper.borrow().filelike.clone_ref(py);
    let filelike = filelike.bind(py);
    let Ok(fd) = filelike
        .call_method0(pyo3::intern!(py, "fileno"))
        .and_then(|f| f.extract::<i32>())
    else {
        return Ok(None);
    };
    // Python-level buffering may have read ahead: flush our view to the fd's offset.
    let offset: i64 = match filelike.call_method0(pyo3::intern!(py, "tell")) {
        Ok(pos) => pos.extract()?,
        Err(_) => return Ok(None),
    };
    // SAFETY: the fd belongs to `filelike`, which we hold a reference to for
    // the whole call, so it stays open; it is only fstat'ed and read.
    let file = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(stat) = nix::sys::stat::fstat(file) else {
        return Ok(None);
    };
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    let mut guard = ex.output.lock().unwrap_or_else(|p| p.into_inner());
    let Some(started) = &guard.started else {
        return Err(PyRuntimeError::new_err(
            "the app returned a file_wrapper without calling start_response()",
        ));
    };
    let available = (stat.st_size - offset).max(0) as u64;
    let len = started.length.map_or(available, |n| n.min(available));
    let w: &mut ResponseWriter = &mut guard;
    let sent = ex.send(py, w, b"", Some(len)).and_then(|()| {
        if w.body_allowed() {
            let stream = Arc::clone(w.stream().ok_or(std::io::ErrorKind::NotConnected)?);
            let (mut at, mut left) = (offset, len);
            // Whether the socket is full (else the file ended early).
            let full = py.detach(|| {
                while left > 0 {
                    match stream.sendfile_now(file, &mut at, left)? {
                        None => return Ok(true),
                        Some(0) => break,
                        Some(n) => left -= n as u64,
                    }
                }
                Ok::<_, std::io::Error>(false)
            })?;
            w.count_sent(len - left);
            // What the client did not take at once: the I/O thread sends
            // the rest, and closes the file.
            if full {
                w.count_sent(left);
                let wrapper = wrapper.clone().into_any().unbind();
                let min_send_rate = w.min_send_rate();
                w.tail =
                    Some(Tail::new(stream, &[], min_send_rate).then_file(wrapper, fd, at, left));
            }
        }
        ex.finish(py, w)
    });
    drop(guard);
    Ok(Some(match sent {
        Ok(_) => Ending::Complete,
        Err(_) => failed(ex),
    }))
}
