//! The WSGI environ (PEP 3333, "environ Variables"), with the keys Gunicorn
//! sets so apps see no difference.
//!
//! A base dict with the per-worker constants is built once and copied per
//! request; keys are interned Python strings. Header fields become `HTTP_*`
//! keys with duplicates joined by `,` (RFC 9110 §5.3); names containing `_`
//! are dropped, as Gunicorn does by default, because `X-Auth_Token` and
//! `X-Auth-Token` would otherwise collide and one could spoof the other.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::Request;
use super::input::Input;
use super::response::FileWrapper;
use crate::http::Version;
use crate::listeners::ListenAddr;
use crate::worker::Peer;

/// The per-worker part of every environ.
#[derive(Debug)]
pub(crate) struct Base {
    dict: Py<PyDict>,
    /// `SCRIPT_NAME` from the process environment (the mount point), or "".
    script_name: String,
}

impl Base {
    pub(crate) fn new(py: Python<'_>, multithread: bool, multiprocess: bool) -> PyResult<Base> {
        let script_name = std::env::var("SCRIPT_NAME")
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let d = PyDict::new(py);
        d.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        d.set_item("wsgi.url_scheme", "http")?;
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
        })
    }

    /// The environ for one request.
    pub(crate) fn build<'py>(
        &self,
        py: Python<'py>,
        req: &Request<'_>,
        input: Bound<'py, Input>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.dict.bind(py).copy()?;
        let head = &req.head;
        env.set_item(intern!(py, "wsgi.input"), input)?;
        env.set_item(intern!(py, "REQUEST_METHOD"), method(py, &head.method))?;
        let protocol = match head.version {
            Version::Http11 => intern!(py, "HTTP/1.1"),
            Version::Http10 => intern!(py, "HTTP/1.0"),
        };
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
        env.set_item(intern!(py, "RAW_URI"), head.target.as_str())?;
        let (path, query) = head.path_and_query();
        if query.is_empty() {
            env.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?;
        } else {
            env.set_item(intern!(py, "QUERY_STRING"), query)?;
        }
        let path = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
        let path = match path.strip_prefix(self.script_name.as_bytes()) {
            Some(rest) if !self.script_name.is_empty() && (rest.is_empty() || rest[0] == b'/') => {
                rest
            }
            _ => &path[..],
        };
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, path))?;

        let mut host = None;
        let mut https = false;
        let mut key = String::with_capacity(64);
        for field in &head.fields {
            let name = field.name.as_str();
            if name.contains('_') {
                continue;
            }
            if name.eq_ignore_ascii_case("host") {
                host = Some(&field.value[..]);
            }
            if req.peer.is_trusted_proxy() && is_secure_scheme(name, &field.value) {
                https = true;
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
            let value = latin1(py, &field.value);
            match env.get_item(&key)? {
                Some(prev) => {
                    let joined = format!("{},{}", prev.extract::<&str>()?, value.to_str()?);
                    env.set_item(key, joined)?;
                }
                None => env.set_item(key, value)?,
            }
        }
        if https {
            env.set_item(intern!(py, "wsgi.url_scheme"), "https")?;
        }
        // As Gunicorn: a TCP listener names itself; behind a UNIX socket the
        // Host field is the only name there is.
        let default_port = if https { "443" } else { "80" };
        let (name, port) = match (req.server, host.and_then(|h| std::str::from_utf8(h).ok())) {
            (ListenAddr::Tcp(a), _) => (a.ip().to_string(), a.port().to_string()),
            (ListenAddr::Unix(_), Some(h)) => split_host(h, default_port),
            (ListenAddr::Unix(_), None) => ("localhost".to_string(), default_port.to_string()),
        };
        env.set_item(intern!(py, "SERVER_NAME"), name)?;
        env.set_item(intern!(py, "SERVER_PORT"), port)?;
        match req.peer {
            Peer::Tcp(addr) => {
                env.set_item(intern!(py, "REMOTE_ADDR"), addr.ip().to_string())?;
                env.set_item(intern!(py, "REMOTE_PORT"), addr.port().to_string())?;
            }
            // A UNIX peer has no address; Gunicorn leaves it empty too.
            Peer::Unix => env.set_item(intern!(py, "REMOTE_ADDR"), "")?,
        }
        Ok(env)
    }
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

/// Gunicorn's default `secure_scheme_headers`, honoured from trusted peers only.
fn is_secure_scheme(name: &str, value: &[u8]) -> bool {
    const SECURE: [(&str, &str); 3] = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-protocol", "ssl"),
        ("x-forwarded-ssl", "on"),
    ];
    SECURE
        .iter()
        .any(|(n, v)| name.eq_ignore_ascii_case(n) && value.eq_ignore_ascii_case(v.as_bytes()))
}

/// Split a Host value into name and port: `h`, `h:p`, `[v6]`, `[v6]:p`.
fn split_host(host: &str, default_port: &str) -> (String, String) {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => (format!("[{v6}]"), tail.strip_prefix(':')),
            None => (host.to_string(), None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n.to_string(), Some(p)),
            None => (host.to_string(), None),
        }
    };
    let port = port.filter(|p| !p.is_empty()).unwrap_or(default_port);
    (name, port.to_string())
}

/// Bytes as a `str` by ISO-8859-1, as PEP 3333 requires for native strings.
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => PyString::new(py, s),
        _ => PyString::new(
            py,
            &bytes.iter().map(|&b| char::from(b)).collect::<String>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn host_values_split_into_name_and_port() {
        let s = |h| split_host(h, "80");
        assert_eq!(s("example.com"), ("example.com".into(), "80".into()));
        assert_eq!(s("example.com:8080"), ("example.com".into(), "8080".into()));
        assert_eq!(s("[::1]:8000"), ("[::1]".into(), "8000".into()));
        assert_eq!(s("[::1]"), ("[::1]".into(), "80".into()));
    }
}
