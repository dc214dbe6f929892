//! `--reload` (Gunicorn's development reloader): a worker watches the files
//! of every module its app imported, and the `--reload-extra-file` files,
//! with inotify; on the first change it tells the master (a `R` on the
//! report pipe), which starts a new generation — new workers import the
//! new code, and the old ones are drained only once they serve, so a
//! syntax error leaves the old code serving and says why in the log.
//!
//! Directories are watched rather than files: editors save by writing a
//! new file and renaming it over the old one, which a watch on the old
//! file would miss. An extra file's name may be a pattern (`*`, `?`,
//! `[...]`) in its last component (`templates/*.html`), matched against
//! the names events carry, so a file created after the start is seen too.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// How long further events are collected after the first, so that one
/// save (several events) is one reload.
const SETTLE: Duration = Duration::from_millis(100);

/// What a directory's events are matched against: file names, or patterns.
#[derive(Debug, Default)]
struct Watched {
    dir: PathBuf,
    names: Vec<Vec<u8>>,
    patterns: Vec<Vec<u8>>,
}

/// Start watching `files` (module sources) and `extra` (files or patterns)
/// in a thread of its own, which writes `R` to `report` after the first
/// change and ends.
///
/// Errors: inotify could not be set up (too many instances or watches);
/// the message says so and the worker serves on without the reloader.
pub fn watch(files: Vec<PathBuf>, extra: &[PathBuf], report: OwnedFd) -> Result<(), String> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| format!("inotify: {e}"))?;
    let mut dirs: HashMap<PathBuf, Watched> = HashMap::new();
    let mut add = |path: &Path, pattern: bool| {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let w = dirs.entry(dir.to_path_buf()).or_insert_with(|| Watched {
            dir: dir.to_path_buf(),
            ..Watched::default()
        });
        let list = if pattern {
            &mut w.patterns
        } else {
            &mut w.names
        };
        list.push(name.as_bytes().to_vec());
    };
    for f in &files {
        add(f, false);
    }
    for f in extra {
        let is_pattern = f
            .file_name()
            .is_some_and(|n| n.as_bytes().iter().any(|b| matches!(b, b'*' | b'?' | b'[')));
        add(f, is_pattern);
    }
    let flags = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_MODIFY;
    let mut by_wd: HashMap<WatchDescriptor, Watched> = HashMap::new();
    for (dir, watched) in dirs {
        match inotify.add_watch(&dir, flags) {
            Ok(wd) => {
                by_wd.insert(wd, watched);
            }
            Err(e) => tracing::debug!("reloader: cannot watch {}: {e}", dir.display()),
        }
    }
    let count: usize = by_wd
        .values()
        .map(|w| w.names.len() + w.patterns.len())
        .sum();
    tracing::info!(
        "Reloader: watching {count} file(s) in {} directories",
        by_wd.len()
    );
    std::thread::Builder::new()
        .name("reloader".into())
        .spawn(move || run(inotify, by_wd, report))
        .map(|_| ())
        .map_err(|e| format!("reloader thread: {e}"))
}

fn run(inotify: Inotify, watched: HashMap<WatchDescriptor, Watched>, report: OwnedFd) {
    loop {
        let Ok(events) = inotify.read_events() else {
            return;
        };
        let changed = events.iter().find_map(|ev| {
            let w = watched.get(&ev.wd)?;
            let name = ev.name.as_deref()?.as_bytes();
            let hit =
                w.names.iter().any(|n| n == name) || w.patterns.iter().any(|p| fnmatch(p, name));
            hit.then(|| w.dir.join(OsStr::from_bytes(name)))
        });
        if let Some(path) = changed {
            tracing::info!("Worker reloading: {} modified", path.display());
            std::thread::sleep(SETTLE);
            let _ = nix::unistd::write(&report, b"R");
            return;
        }
    }
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` (`[!...]` negates);
/// a leading `.` is matched only literally, as glob's `*` skips dotfiles.
fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    matches(pattern, name)
}

fn matches(p: &[u8], n: &[u8]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some(b'*') => (0..=n.len()).any(|i| matches(&p[1..], &n[i..])),
        Some(b'?') => !n.is_empty() && matches(&p[1..], &n[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().skip(2).position(|&b| b == b']').map(|i| i + 2) else {
                return n.first() == Some(&b'[') && matches(&p[1..], &n[1..]);
            };
            let Some(&c) = n.first() else { return false };
            let (negate, set) = match p[1] {
                b'!' => (true, &p[2..end]),
                _ => (false, &p[1..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= (set[i]..=set[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && matches(&p[end + 1..], &n[1..])
        }
        Some(&c) => n.first() == Some(&c) && matches(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn patterns_match_as_glob_does() {
        assert!(fnmatch(b"*.html", b"index.html"));
        assert!(!fnmatch(b"*.html", b"index.htm"));
        assert!(!fnmatch(b"*", b".env"));
        assert!(fnmatch(b".env", b".env"));
        assert!(fnmatch(b"a?c", b"abc"));
        assert!(fnmatch(b"[a-c]x", b"bx"));
        assert!(!fnmatch(b"[!a-c]x", b"bx"));
        assert!(fnmatch(b"v[0-9].*", b"v2.txt"));
    }
}
