//! The WSGI environ (PEP 3333, "environ Variables"), with the keys Gunicorn
//! sets so apps see no difference.
//!
//! A base dict with the per-worker constants is built once and copied per
//! request; keys are interned Python strings. Header fields become `HTTP_*`
//! keys with duplicates joined by `,` (RFC 9110 §5.3); names containing `_`
//! are dropped, as Gunicorn does by default, because `X-Auth_Token` and
//! `X-Auth-Token` would otherwise collide and one could spoof the other.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::input::Input;
use super::response::FileWrapper;
use super::{Forwarding, Request};
use crate::http::forwarded::{Forwarded, Policy, length_mask, path_info};
use crate::http::{ParseError, Version};
use crate::listeners::ListenAddr;
use crate::net::Peer;

/// Why an environ was not built.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// Python failed (out of memory, a broken `sys.stderr`).
    Python(PyErr),
    /// The request's forwarding fields are refused (400), or its path is
    /// outside the mount point (500): answered without calling the app.
    Refused(ParseError),
}

impl From<PyErr> for BuildError {
    fn from(e: PyErr) -> Self {
        BuildError::Python(e)
    }
}

/// Room for the keys of a typical environ: the base's ten, the request's
/// ten and a browser's fifteen or so header fields. The base dict is made
/// this large, and `dict.copy()` keeps the table size, so filling a
/// request's environ never resizes it.
const ENVIRON_CAPACITY: isize = 40;

/// The per-worker part of every environ.
#[derive(Debug)]
pub(crate) struct Base {
    dict: Py<PyDict>,
    /// `SCRIPT_NAME` from the process environment (the mount point), or "".
    script_name: String,
    /// Who may say what in forwarding fields.
    forwarding: Forwarding,
    /// The lengths of `secure_scheme_headers`' names ([`length_mask`]).
    secure_lengths: u64,
    /// `SERVER_NAME` and `SERVER_PORT` of each TCP listener seen so far.
    servers: Mutex<Vec<ServerName>>,
}

/// A TCP listener's `SERVER_NAME` and `SERVER_PORT`.
#[derive(Debug)]
struct ServerName {
    addr: SocketAddr,
    name: Py<PyString>,
    port: Py<PyString>,
}

/// CPython's `_PyDict_NewPresized(minused)`: a `dict` with a hash table
/// sized for `minused` keys; a new reference or NULL.
type NewPresized = unsafe extern "C" fn(pyo3::ffi::Py_ssize_t) -> *mut pyo3::ffi::PyObject;

/// An empty dict with room for [`ENVIRON_CAPACITY`] keys. The presizing
/// function is not in the stable ABI the module is built for, but every
/// CPython from 3.9 to 3.13 exports it (Cython relies on it): it is looked
/// up in the running interpreter, and a plain `dict` (a few resizes per
/// request) is the fallback where it is gone.
fn presized_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    // SAFETY: dlsym with RTLD_DEFAULT only searches the symbols already
    // loaded (the interpreter's); the name is a NUL-terminated literal.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_PyDict_NewPresized".as_ptr()) };
    if symbol.is_null() {
        return Ok(PyDict::new(py));
    }
    // SAFETY: the symbol is CPython's function of this signature (stable
    // since 3.x: `PyObject *_PyDict_NewPresized(Py_ssize_t)`); the doubt is
    // a future CPython that keeps the name with another signature, which
    // no release has done. The GIL is held; the result is a new reference
    // or NULL with an exception set, which from_owned_ptr_or_err turns
    // into Err.
    unsafe {
        let new_presized = std::mem::transmute::<*mut libc::c_void, NewPresized>(symbol);
        Ok(
            Bound::from_owned_ptr_or_err(py, new_presized(ENVIRON_CAPACITY))?
                .cast_into_unchecked::<PyDict>(),
        )
    }
}

impl Base {
    pub(crate) fn new(
        py: Python<'_>,
        multithread: bool,
        multiprocess: bool,
        forwarding: Forwarding,
    ) -> PyResult<Base> {
        // As Gunicorn: the environment's SCRIPT_NAME, as it is.
        let script_name = std::env::var("SCRIPT_NAME").unwrap_or_default();
        let d = presized_dict(py)?;
        d.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        d.set_item("wsgi.url_scheme", intern!(py, "http"))?;
        d.set_item("wsgi.errors", py.import("sys")?.getattr("stderr")?)?;
        d.set_item("wsgi.multithread", multithread)?;
        d.set_item("wsgi.multiprocess", multiprocess)?;
        d.set_item("wsgi.run_once", false)?;
        d.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
        d.set_item("wsgi.input_terminated", true)?;
        d.set_item(
            "SERVER_SOFTWARE",
            concat!("ferrocorn/", env!("CARGO_PKG_VERSION")),
        )?;
        d.set_item("SCRIPT_NAME", &script_name)?;
        Ok(Base {
            dict: d.unbind(),
            script_name,
            secure_lengths: length_mask(
                forwarding
                    .secure_scheme_headers
                    .iter()
                    .map(|(n, _)| n.as_str()),
            ),
            forwarding,
            servers: Mutex::new(Vec::new()),
        })
    }

    /// The environ for one request.
    ///
    /// Errors: see [`BuildError`].
    pub(crate) fn build<'py>(
        &self,
        py: Python<'py>,
        req: &Request<'_>,
        input: Bound<'py, Input>,
    ) -> Result<Bound<'py, PyDict>, BuildError> {
        let env = self.dict.bind(py).copy()?;
        let head = &req.head;
        env.set_item(intern!(py, "wsgi.input"), input)?;
        env.set_item(intern!(py, "REQUEST_METHOD"), method(py, head.method()))?;
        let protocol = match head.version {
            Version::Http11 => intern!(py, "HTTP/1.1"),
            Version::Http10 => intern!(py, "HTTP/1.0"),
        };
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
        env.set_item(intern!(py, "RAW_URI"), latin1(py, head.target().as_bytes()))?;
        let (path, query) = head.path_and_query();
        if query.is_empty() {
            env.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?;
        } else {
            env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query.as_bytes()))?;
        }
        let policy = Policy {
            trusted: req.trusted,
            secure_lengths: self.secure_lengths,
            secure_scheme_headers: &self.forwarding.secure_scheme_headers,
            forwarder_headers: &self.forwarding.forwarder_headers,
            header_map: self.forwarding.header_map,
        };
        let mut forwarded = Forwarded::default();
        let mut host = None;
        // Allocated only for a field without a common key.
        let mut key = String::new();
        for field in head.fields() {
            let name = field.name;
            if !policy
                .observe(name, field.value, &mut forwarded)
                .map_err(BuildError::Refused)?
            {
                continue;
            }
            if name.eq_ignore_ascii_case("host") {
                host = Some(field.value);
            }
            let key = if let Some(k) = common_key(py, name) {
                k.clone()
            } else {
                key.clear();
                key.push_str("HTTP_");
                key.extend(name.chars().map(|c| match c {
                    '-' => '_',
                    c => c.to_ascii_uppercase(),
                }));
                PyString::new(py, &key)
            };
            let value = latin1(py, field.value);
            match env.get_item(&key)? {
                Some(prev) => {
                    let prev = prev.cast_into::<PyString>().map_err(PyErr::from)?;
                    let joined = format!("{},{}", super::str_of(&prev)?, super::str_of(&value)?);
                    env.set_item(key, joined)?;
                }
                None => env.set_item(key, value)?,
            }
        }
        let https = forwarded.https == Some(true);
        if https {
            env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
        }
        // As Gunicorn 27: a trusted proxy's SCRIPT_NAME field, else the
        // environment's, is the mount point, cut from the raw path before
        // it is percent-decoded.
        let script_name = forwarded.script_name.unwrap_or(self.script_name.as_bytes());
        let path = path_info(path.as_bytes(), script_name).map_err(BuildError::Refused)?;
        if !script_name.is_empty() {
            env.set_item(intern!(py, "SCRIPT_NAME"), latin1(py, script_name))?;
        }
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, &path))?;

        // As Gunicorn: a TCP listener names itself; behind a UNIX socket the
        // Host field is the only name there is.
        let (name, port) = match req.server {
            ListenAddr::Tcp(a) => self.server(py, *a),
            ListenAddr::Unix(_) => {
                let default_port = match https {
                    true => intern!(py, "443"),
                    false => intern!(py, "80"),
                };
                match host.map(split_host) {
                    Some((name, port)) => (
                        latin1(py, name),
                        port.map_or_else(|| default_port.clone(), |p| latin1(py, p)),
                    ),
                    None => (intern!(py, "localhost").clone(), default_port.clone()),
                }
            }
        };
        env.set_item(intern!(py, "SERVER_NAME"), name)?;
        env.set_item(intern!(py, "SERVER_PORT"), port)?;
        match req.peer {
            Peer::Tcp(addr) => {
                let mut text = [0u8; 64];
                let ip = match addr.ip() {
                    IpAddr::V4(v4) => {
                        let mut n = 0;
                        for (i, octet) in v4.octets().into_iter().enumerate() {
                            if i > 0 {
                                text[n] = b'.';
                                n += 1;
                            }
                            n += push_decimal(&mut text[n..], octet.into());
                        }
                        latin1(py, &text[..n])
                    }
                    IpAddr::V6(v6) => format_in(py, &mut text, v6),
                };
                env.set_item(intern!(py, "REMOTE_ADDR"), ip)?;
                let n = push_decimal(&mut text, addr.port().into());
                env.set_item(intern!(py, "REMOTE_PORT"), latin1(py, &text[..n]))?;
            }
            // A UNIX peer has no address; Gunicorn leaves it empty too.
            Peer::Unix => env.set_item(intern!(py, "REMOTE_ADDR"), intern!(py, ""))?,
        }
        // Gunicorn's keys for a connection that began with a PROXY header.
        if let Some(proxy) = req.proxy {
            env.set_item(intern!(py, "PROXY_PROTOCOL"), proxy.protocol)?;
            if let Some(addr) = proxy.proxy {
                env.set_item(intern!(py, "PROXY_ADDR"), addr.ip().to_string())?;
                env.set_item(intern!(py, "PROXY_PORT"), addr.port().to_string())?;
            }
        }
        Ok(env)
    }

    /// `SERVER_NAME` and `SERVER_PORT` of a TCP listener, made once.
    fn server<'py>(
        &self,
        py: Python<'py>,
        addr: SocketAddr,
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = servers.iter().find(|s| s.addr == addr) {
            return (s.name.bind(py).clone(), s.port.bind(py).clone());
        }
        let name = PyString::new(py, &addr.ip().to_string());
        let port = PyString::new(py, &addr.port().to_string());
        servers.push(ServerName {
            addr,
            name: name.clone().unbind(),
            port: port.clone().unbind(),
        });
        (name, port)
    }
}

/// Write `n` in decimal at the start of `out` (room for 20 digits needed);
/// returns the digits written. Faster than `Display`, which the peer address
/// of every request would go through.
fn push_decimal(out: &mut [u8], mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    len
}

/// `value` formatted into `buf` (no heap allocation) as a Python `str`.
fn format_in<'py>(
    py: Python<'py>,
    buf: &mut [u8; 64],
    value: impl std::fmt::Display,
) -> Bound<'py, PyString> {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IP address or a port always fits in 64 bytes.
    let _ = write!(cursor, "{value}");
    let len = cursor.position() as usize;
    latin1(py, &buf[..len])
}

/// The request method as an interned string when it is a common one.
fn method<'py>(py: Python<'py>, method: &str) -> Bound<'py, PyString> {
    match method {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        "PUT" => intern!(py, "PUT").clone(),
        "DELETE" => intern!(py, "DELETE").clone(),
        "PATCH" => intern!(py, "PATCH").clone(),
        "OPTIONS" => intern!(py, "OPTIONS").clone(),
        other => PyString::new(py, other),
    }
}

/// The environ key of a common field, interned once per process, so the
/// usual request costs no key allocation (and dict lookups hit cached hashes).
fn common_key<'py>(py: Python<'py>, name: &str) -> Option<&'py Bound<'py, PyString>> {
    macro_rules! keys {
        ($($field:literal => $key:literal),* $(,)?) => {
            $(if name.eq_ignore_ascii_case($field) {
                return Some(intern!(py, $key));
            })*
        };
    }
    keys! {
        "host" => "HTTP_HOST",
        "user-agent" => "HTTP_USER_AGENT",
        "accept" => "HTTP_ACCEPT",
        "accept-encoding" => "HTTP_ACCEPT_ENCODING",
        "accept-language" => "HTTP_ACCEPT_LANGUAGE",
        "connection" => "HTTP_CONNECTION",
        "cookie" => "HTTP_COOKIE",
        "referer" => "HTTP_REFERER",
        "content-type" => "CONTENT_TYPE",
        "content-length" => "CONTENT_LENGTH",
        "cache-control" => "HTTP_CACHE_CONTROL",
        "origin" => "HTTP_ORIGIN",
        "x-forwarded-for" => "HTTP_X_FORWARDED_FOR",
        "x-forwarded-proto" => "HTTP_X_FORWARDED_PROTO",
        "x-real-ip" => "HTTP_X_REAL_IP",
        "x-request-id" => "HTTP_X_REQUEST_ID",
        "authorization" => "HTTP_AUTHORIZATION",
    }
    None
}

/// Split a Host value into name and port: `h`, `h:p`, `[v6]`, `[v6]:p`; an
/// empty port counts as none.
fn split_host(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (name, port) = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end) => (&host[..=end], host[end + 1..].strip_prefix(b":")),
            None => (host, None),
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], Some(&host[colon + 1..])),
            None => (host, None),
        }
    };
    (name, port.filter(|p| !p.is_empty()))
}

/// Bytes as a `str` by ISO-8859-1, as PEP 3333 requires for native strings
/// (CPython copies ASCII straight in).
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: the GIL is held and the pointer and length describe `bytes`;
    // decoding Latin-1 cannot fail, so NULL only means out of memory, which
    // CPython reports by raising — and pyo3 panics on, as for any allocation.
    unsafe {
        Bound::from_owned_ptr(
            py,
            pyo3::ffi::PyUnicode_DecodeLatin1(
                bytes.as_ptr().cast(),
                bytes.len() as pyo3::ffi::Py_ssize_t,
                std::ptr::null(),
            ),
        )
        .cast_into_unchecked::<PyString>()
    }
}

#[cfg(test)]
mod tests {
    use super::{push_decimal, split_host};

    #[test]
    fn decimals() {
        let mut out = [0u8; 20];
        for n in [0, 7, 10, 255, 65535, u64::MAX] {
            let len = push_decimal(&mut out, n);
            assert_eq!(&out[..len], n.to_string().as_bytes());
        }
    }

    #[test]
    fn host_values_split_into_name_and_port() {
        let s = |h: &'static str| split_host(h.as_bytes());
        assert_eq!(s("example.com"), (&b"example.com"[..], None));
        assert_eq!(
            s("example.com:8080"),
            (&b"example.com"[..], Some(&b"8080"[..]))
        );
        assert_eq!(s("example.com:"), (&b"example.com"[..], None));
        assert_eq!(s("[::1]:8000"), (&b"[::1]"[..], Some(&b"8000"[..])));
        assert_eq!(s("[::1]"), (&b"[::1]"[..], None));
    }
}
