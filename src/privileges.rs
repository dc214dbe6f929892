//! Dropping privileges once the listeners are bound (DESIGN §5): switch to
//! `--group`/`--user`, then give up every capability — bounding set first
//! (it needs CAP_SETPCAP, which goes last), then ambient, inheritable,
//! effective and permitted — so neither the master nor the workers it forks
//! nor anything the app executes can regain them.

use caps::CapSet;
use nix::unistd::{Gid, Uid};

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// setgroups/setgid/setuid failed (e.g. not root and asked for another user).
    #[error("cannot switch to {what}: {source}")]
    Switch {
        /// `user N` or `group N`.
        what: String,
        /// The system call's error.
        source: nix::Error,
    },
}

/// Switch to `group` and `user` (when given) and drop all capabilities.
/// With `initgroups` (Gunicorn's `--initgroups`) the supplementary groups
/// are the user's (initgroups(3)) plus `group`; otherwise `group` alone.
///
/// Errors: the switch failed. Capability calls that fail because the
/// process never had the capability are not errors: there is nothing to drop.
pub fn drop_privileges(
    user: Option<Uid>,
    group: Option<Gid>,
    initgroups: bool,
) -> Result<(), PrivilegeError> {
    // The bounding set can only be shrunk while CAP_SETPCAP is effective,
    // i.e. before setuid() clears the effective set.
    if caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false) {
        let _ = caps::clear(None, CapSet::Bounding);
    }
    if let Some(gid) = group {
        let name = user
            .filter(|_| initgroups)
            .and_then(|uid| nix::unistd::User::from_uid(uid).ok().flatten())
            .and_then(|u| std::ffi::CString::new(u.name).ok());
        let groups = match name {
            Some(name) => nix::unistd::initgroups(&name, gid),
            None => nix::unistd::setgroups(&[gid]),
        };
        groups.map_err(|source| PrivilegeError::Switch {
            what: format!("group {gid}"),
            source,
        })?;
        nix::unistd::setgid(gid).map_err(|source| PrivilegeError::Switch {
            what: format!("group {gid}"),
            source,
        })?;
    }
    if let Some(uid) = user {
        nix::unistd::setuid(uid).map_err(|source| PrivilegeError::Switch {
            what: format!("user {uid}"),
            source,
        })?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        let _ = caps::clear(None, set);
    }
    Ok(())
}
