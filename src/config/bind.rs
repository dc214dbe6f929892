//! `-b/--bind` values (Gunicorn's `bind` setting): what to listen on, as
//! the configuration spells it. Opening them is [`crate::listeners`]' job.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One `-b/--bind` value, as Gunicorn spells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bind {
    /// `HOST:PORT`, `HOST` (port 8000) or `[V6]:PORT`; resolved at bind time.
    Tcp {
        /// Host name or address literal (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `unix:PATH` or `unix://PATH`.
    Unix(PathBuf),
    /// `fd://N`: an already-listening socket inherited from the parent.
    Fd(RawFd),
}

impl FromStr for Bind {
    type Err = String;

    fn from_str(s: &str) -> Result<Bind, String> {
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Bind::Unix(PathBuf::from(path)));
        }
        if let Some(fd) = s.strip_prefix("fd://") {
            return fd
                .parse::<RawFd>()
                .ok()
                .filter(|&fd| fd >= 0)
                .map(Bind::Fd)
                .ok_or_else(|| format!("fd://{fd}: not a file descriptor number"));
        }
        let s = s.strip_prefix("tcp://").unwrap_or(s);
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err("expected :PORT after the IPv6 address".into()),
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        let port = match port {
            None => 8000,
            Some(p) => p
                .parse()
                .map_err(|_| format!("{p:?} is not a port number"))?,
        };
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(Bind::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Bind {
        Bind::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn bind_forms_parse_as_gunicorn() {
        assert_eq!("127.0.0.1:9000".parse(), Ok(tcp("127.0.0.1", 9000)));
        assert_eq!("localhost".parse(), Ok(tcp("localhost", 8000)));
        assert_eq!("[::1]:8001".parse(), Ok(tcp("::1", 8001)));
        assert_eq!("[::1]".parse(), Ok(tcp("::1", 8000)));
        assert_eq!(":8002".parse(), Ok(tcp("0.0.0.0", 8002)));
        assert_eq!(
            "unix:/run/a.sock".parse(),
            Ok(Bind::Unix("/run/a.sock".into()))
        );
        assert_eq!(
            "unix:///run/a.sock".parse(),
            Ok(Bind::Unix("/run/a.sock".into()))
        );
        assert_eq!("fd://3".parse(), Ok(Bind::Fd(3)));
    }

    #[test]
    fn bad_bind_forms_are_refused() {
        assert!("127.0.0.1:http".parse::<Bind>().is_err());
        assert!("[::1:80".parse::<Bind>().is_err());
        assert!("fd://x".parse::<Bind>().is_err());
        assert!("unix:".parse::<Bind>().is_err());
    }
}
