//! Process titles (Gunicorn's `proc_name`, which it sets with the
//! setproctitle module): `ferrocorn: master [NAME]` and `ferrocorn: worker
//! [NAME]`, as `ps`, `top` and `pgrep -f` show them.
//!
//! Linux shows a process's command line from the memory that held its
//! argv (and, when the title outgrows it, the environment strings after
//! it: /proc/PID/cmdline reads on past the arguments when their last byte is
//! not NUL). So the title is written over that memory, after the
//! environment has been copied elsewhere; the short name (`comm`, 15 bytes,
//! what `ps -e` and `top` show) is set with prctl(PR_SET_NAME).
//!
//! Invariant: call only while the process is single-threaded (the master
//! at start-up, a worker before its threads start), since the environment
//! is moved; and after the last read of `std::env::args()`, whose strings
//! are the ones overwritten.

use std::ffi::{CString, c_char};

unsafe extern "C" {
    /// The C library's environment array (environ(7)).
    static mut environ: *mut *mut c_char;
}

/// `[start, end)` of the argv strings and of the environment strings that
/// follow them, from /proc/self/stat (fields 48 to 51, proc(5)).
fn areas() -> Option<(usize, usize, usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2 is `(comm)`, which may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<usize> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `rest` starts at field 3.
    let field = |n: usize| fields.get(n - 3).copied();
    Some((field(48)?, field(49)?, field(50)?, field(51)?))
}

/// Set this process's title to `title`.
pub fn set(title: &str) {
    let short: Vec<u8> = title.bytes().filter(|&b| b != 0).take(15).collect();
    if let Ok(name) = CString::new(short) {
        let _ = nix::sys::prctl::set_name(&name);
    }
    // Under valgrind /proc's argument area is valgrind's own command line,
    // which it reads again to trace our children: leave it alone.
    let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
    if preload.contains("/vgpreload") {
        return;
    }
    let Some((arg_start, arg_end, env_start, env_end)) = areas() else {
        return;
    };
    if arg_end <= arg_start {
        return;
    }
    // A title longer than the arguments also takes the environment
    // strings' place, when they follow directly; they are copied away first.
    let fits = title.len() < arg_end - arg_start;
    let end = if !fits && env_start == arg_end && env_end > env_start && move_environment() {
        env_end
    } else {
        arg_end
    };
    let room = end - arg_start - 1;
    let bytes: Vec<u8> = title.bytes().filter(|&b| b != 0).take(room).collect();
    // SAFETY: [arg_start, end) is this process's own argv (and, once moved
    // away, environment) string memory, on the initial stack, mapped and
    // writable for the process's life; nothing reads it any more: the
    // environment now lives in the copies move_environment() made, and
    // the callers have read their arguments (module invariant). The
    // process is single-threaded, so no one reads it concurrently. The
    // doubt: a library keeping pointers into argv (glibc's
    // program_invocation_name does), whose text then shows the title.
    unsafe {
        let base = arg_start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len());
        std::ptr::write_bytes(base.add(bytes.len()), 0, end - arg_start - bytes.len());
    }
}

/// Give the process a copy of its environment (new strings, new array,
/// leaked: they live as long as the process), so that the original
/// strings' memory can hold the title. Returns whether it did.
fn move_environment() -> bool {
    let copies: Vec<*mut c_char> = std::env::vars_os()
        .filter_map(|(k, v)| {
            use std::os::unix::ffi::OsStrExt;
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok().map(CString::into_raw)
        })
        .chain([std::ptr::null_mut()])
        .collect();
    let array = Box::leak(copies.into_boxed_slice());
    // SAFETY: `environ` is the C library's environment pointer; the
    // process is single-threaded (module invariant), so no getenv or
    // setenv runs concurrently. The new array is NULL-terminated and,
    // like its strings, never freed. setenv(3) later may realloc the array
    // it finds: glibc only reallocates arrays it allocated itself and
    // otherwise copies, so a leaked Box is as good as the original.
    unsafe {
        environ = array.as_mut_ptr();
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_areas_of_this_process_are_found() {
        let (a, b, c, d) = super::areas().expect("/proc/self/stat");
        assert!(a < b && b <= c && c < d, "{a} {b} {c} {d}");
    }
}
