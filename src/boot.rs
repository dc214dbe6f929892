//! The boot description: what the master hands a worker (or a `--preload`
//! zygote) it starts as the app's interpreter (DESIGN §1).
//!
//! A worker is not a fork of the master but a fresh `python` process, so
//! nothing is inherited by memory: the master writes one [`Boot`] as JSON
//! into a memfd, places it and every descriptor the worker needs at fixed
//! numbers from 3 up, and execs the interpreter with the memfd's number on
//! its command line; the native module reads it back ([`Boot::read`]).
//!
//! Invariants: the descriptors named here are open in the worker when it
//! reads this (the master placed them without close-on-exec); `build` is
//! the master's build ([`BUILD`]), and a worker of another build refuses to
//! run, because the scoreboard's layout and this format are one build's.

use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// The master's command line, captured before the process title takes its
/// memory (`proctitle`), for the workers' `sys.argv`.
static MASTER_ARGV: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Remember the master's command line (first thing in `main`).
pub fn capture_argv() {
    let _ = MASTER_ARGV.set(std::env::args().collect());
}

/// The master's command line as [`capture_argv`] saw it.
pub fn master_argv() -> Vec<String> {
    MASTER_ARGV.get().cloned().unwrap_or_default()
}

/// This build's version (for messages).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// This build's identity, a hash of its sources (build.rs): master and
/// native module must agree on it.
pub const BUILD: &str = env!("FERROCORN_BUILD_ID");

/// What a worker or zygote needs from the master.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Boot {
    /// The master's version ([`VERSION`]), for messages.
    pub version: String,
    /// The master's build ([`BUILD`]).
    pub build: String,
    /// The settings of the worker's generation.
    pub settings: Settings,
    /// The HTTP listeners' descriptors, in the master's order.
    pub listeners: Vec<RawFd>,
    /// The scoreboard memfd ([`crate::scoreboard::attach`]); -1 for a
    /// `--check-config` child, which serves nothing.
    pub scoreboard: RawFd,
    /// Write end of the master's report pipe: a byte wakes the master
    /// (-1 for a `--check-config` child).
    pub report: RawFd,
    /// The access log file, opened by the master before it dropped
    /// privileges; `None` when it logs to stdout or not at all.
    pub access_log: Option<RawFd>,
    /// The error log file, likewise; `None` for stderr or the journal.
    pub error_log: Option<RawFd>,
    /// The scoreboard slots to run: one for a worker, the batch for a
    /// zygote, which forks a worker into each.
    pub slots: Vec<usize>,
    /// The master's pid, to notice being orphaned.
    pub master: i32,
    /// `sys.argv` for the app: the master's command line.
    pub argv: Vec<String>,
    /// For the arbiter only (a `gunicorn.conf.py` is in use): its end of
    /// the master's command socket.
    #[serde(default)]
    pub control: Option<RawFd>,
}

/// Why a boot description could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The descriptor could not be read.
    #[error("cannot read the boot description from fd {fd}: {source}")]
    Read {
        /// The descriptor number given on the command line.
        fd: RawFd,
        /// The read error.
        source: std::io::Error,
    },
    /// The bytes are not a boot description of this build's format.
    #[error("the boot description is not valid: {0}")]
    Format(#[from] serde_json::Error),
    /// The master is another build than this native module.
    #[error(
        "the master is ferrocorn {master} (build {build}) but this native module is \
         {VERSION} (build {BUILD}): install one build of both (the same wheel or package)"
    )]
    Build {
        /// The master's version.
        master: String,
        /// The master's build.
        build: String,
    },
}

impl Boot {
    /// Write `self` to a new memfd (close-on-exec, offset 0) for the master
    /// to place in the worker it starts.
    ///
    /// Errors: memfd_create(2) or write(2) failed.
    pub fn to_memfd(&self) -> std::io::Result<OwnedFd> {
        let fd = nix::sys::memfd::memfd_create(
            "ferrocorn-boot",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )?;
        let mut file = std::fs::File::from(fd);
        serde_json::to_writer(&mut file, self)?;
        file.flush()?;
        file.rewind()?;
        Ok(file.into())
    }

    /// Read and close the boot description at `fd` (in a worker, first
    /// thing), checking that it comes from a master of this build.
    ///
    /// # Safety
    /// `fd` must be an open descriptor this process owns and uses for
    /// nothing else (the one the master placed for it).
    ///
    /// Errors: see [`BootError`].
    pub unsafe fn read(fd: RawFd) -> Result<Boot, BootError> {
        // SAFETY: the caller's contract: we own `fd`; dropping the file closes it.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|source| BootError::Read { fd, source })?;
        // The build first, so that another build's format is named as
        // such rather than as a parse error.
        #[derive(Deserialize)]
        struct Identity {
            version: String,
            #[serde(default)]
            build: String,
        }
        let Identity { version, build } = serde_json::from_str(&text)?;
        if build != BUILD {
            return Err(BootError::Build {
                master: version,
                build,
            });
        }
        Ok(serde_json::from_str(&text)?)
    }
}
