//! A log file (the error log or the access log): opened by the master
//! before it drops privileges, handed to the workers it starts as an open
//! descriptor, and reopened by path on `USR1` — by the master first, which
//! creates the new file and gives it to the workers' user, then by each
//! worker — so that logrotate's `postrotate kill -USR1` works as with
//! Gunicorn.
//!
//! Invariant: every line is one write(2) to a file opened with `O_APPEND`,
//! so lines from the master and all workers never overwrite each other.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::unistd::{Gid, Uid};

/// An open log file and where it lives.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

/// Who should own a log file we create (the workers' user), if anyone else.
pub type Owner = Option<(Option<Uid>, Option<Gid>)>;

fn open_append(path: &Path, owner: Owner) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if let Some((uid, gid)) = owner {
        if uid.is_some() || gid.is_some() {
            // As Gunicorn chowns its log files to the worker user: the
            // workers (and the master, once it dropped privileges) must be
            // able to reopen it.
            let _ = nix::unistd::fchown(&file, uid, gid);
        }
    }
    Ok(file)
}

impl LogFile {
    /// Open `path` for appending (creating it), owned by `owner` if given.
    ///
    /// Errors: open(2) failed (a missing directory, no permission); the
    /// message names the path.
    pub fn open(path: &Path, owner: Owner) -> io::Result<LogFile> {
        let file = open_append(path, owner)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// A file the master opened for this worker, at `path`.
    pub fn adopt(path: &Path, file: File) -> LogFile {
        LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        }
    }

    /// Open the path again (after logrotate moved the file away) and
    /// write to the new file from now on; the old one is closed.
    ///
    /// Errors: open(2) failed; the old file stays in use.
    pub fn reopen(&self, owner: Owner) -> io::Result<()> {
        let new = open_append(&self.path, owner)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The current descriptor (to hand to a worker, or to dup onto stdout).
    pub fn raw_fd(&self) -> RawFd {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_raw_fd()
    }

    /// Append `line` (which ends with a newline) in one write.
    pub fn write_line(&self, line: &[u8]) {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(line);
    }

    /// Run `f` with the current file (to dup it onto stdout and stderr).
    pub fn with_file<R>(&self, f: impl FnOnce(&File) -> R) -> R {
        f(&self.file.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
