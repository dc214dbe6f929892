//! What a request's header fields may say about the request beyond
//! themselves, and from whom (Gunicorn 27's `HeaderPolicy`): the scheme
//! (`secure_scheme_headers`), the mount point (a `SCRIPT_NAME` field among
//! `forwarder_headers`), and which field names with `_` reach the environ
//! (`header_map`). Sans I/O: the caller says whether the peer is trusted
//! (in `forwarded_allow_ips`).
//!
//! Why `_` matters: the environ key of `X-Auth_Token` and of `X-Auth-Token`
//! is the same `HTTP_X_AUTH_TOKEN`, so a client could spoof a field a proxy
//! set. Such names are dropped (or refused) unless a trusted proxy sends
//! one it is declared to send.

use std::borrow::Cow;

use super::error::{ParseError, snippet};

/// `header_map`: what becomes of a field name with `_`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HeaderMap {
    /// Dropped from the environ (Gunicorn's default), still counted by the limits.
    #[default]
    Drop,
    /// The request is refused with 400.
    Refuse,
    /// Mapped like any other (Gunicorn's old, ambiguous behaviour).
    Dangerous,
}

/// The policy, for one request: the settings and the peer's trust.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The peer is in `forwarded_allow_ips` (or on a UNIX socket).
    pub trusted: bool,
    /// `secure_scheme_headers`: upper-case name and exact value.
    pub secure_scheme_headers: &'a [(String, String)],
    /// [`length_mask`] of their names.
    pub secure_lengths: u64,
    /// `forwarder_headers`: upper-case names, `*` for any.
    pub forwarder_headers: &'a [String],
    /// `header_map`.
    pub header_map: HeaderMap,
}

/// What the fields said, filled in field by field by [`Policy::observe`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded<'h> {
    /// The scheme a secure-scheme field set: `Some(true)` for https.
    pub https: Option<bool>,
    /// The value of a `SCRIPT_NAME` field that reaches the environ.
    pub script_name: Option<&'h [u8]>,
}

/// A bit per name length (up to 63) that one of `names` has: a field
/// whose length has no bit cannot be one of them, which most fields of a
/// request show without comparing a byte.
pub fn length_mask<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names.into_iter().fold(0, |mask, n| {
        mask | 1u64.checked_shl(n.len() as u32).unwrap_or(0)
    })
}

impl Policy<'_> {
    fn may_be_secure_scheme(&self, name: &str) -> bool {
        match 1u64.checked_shl(name.len() as u32) {
            Some(bit) => self.secure_lengths & bit != 0,
            None => true,
        }
    }

    /// Look at one field: whether it goes into the environ (`Ok(false)`:
    /// dropped), after noting in `seen` what it says.
    ///
    /// Errors: two secure-scheme fields that disagree (Gunicorn's
    /// `InvalidSchemeHeaders`), or a name with `_` under `header_map = refuse`;
    /// both are answered 400.
    #[inline]
    pub fn observe<'h>(
        &self,
        name: &str,
        value: &'h [u8],
        seen: &mut Forwarded<'h>,
    ) -> Result<bool, ParseError> {
        if self.trusted && self.may_be_secure_scheme(name) {
            if let Some((_, secure)) = self
                .secure_scheme_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                // Values are compared exactly (case-sensitive), as Gunicorn.
                let https = value == secure.as_bytes();
                if seen.https.is_some_and(|h| h != https) {
                    return Err(ParseError::ContradictingSchemeFields(snippet(
                        name.as_bytes(),
                    )));
                }
                seen.https = Some(https);
            }
        }
        // A byte loop: names are short, and str::contains(char) is not.
        if !name.bytes().any(|b| b == b'_') {
            return Ok(true);
        }
        let forwarder = self.trusted
            && self
                .forwarder_headers
                .iter()
                .any(|f| f == "*" || f.eq_ignore_ascii_case(name));
        let kept = match (forwarder, self.header_map) {
            (true, _) | (false, HeaderMap::Dangerous) => true,
            (false, HeaderMap::Drop) => false,
            (false, HeaderMap::Refuse) => {
                return Err(ParseError::UnderscoreInFieldName(snippet(name.as_bytes())));
            }
        };
        if kept && name.eq_ignore_ascii_case("script_name") {
            seen.script_name = Some(value);
        }
        Ok(kept)
    }
}

/// `PATH_INFO` before percent-decoding: the request path without the
/// mount point `script_name`, as Gunicorn 27 computes it (a plain string
/// prefix of the raw path).
///
/// Errors: the path does not start with `script_name` (Gunicorn's
/// `ConfigurationProblem`, answered 500: the proxy and the app disagree on
/// where the app is mounted).
pub fn strip_script_name<'p>(path: &'p [u8], script_name: &[u8]) -> Result<&'p [u8], ParseError> {
    path.strip_prefix(script_name)
        .ok_or_else(|| ParseError::PathOutsideScriptName {
            path: snippet(path),
            script_name: snippet(script_name),
        })
}

/// `PATH_INFO` as PEP 3333 gives it, as bytes: the request path without
/// the mount point `script_name` (empty for none), then percent-decoded
/// (RFC 3986 §2.1: each `%HH` is the byte 0xHH; a `%` not followed by two
/// hex digits stays as it is, as Gunicorn's `unquote_to_wsgi_str` leaves
/// it). Borrowed when there is nothing to decode.
///
/// Errors: as [`strip_script_name`].
pub fn path_info<'p>(path: &'p [u8], script_name: &[u8]) -> Result<Cow<'p, [u8]>, ParseError> {
    let path = strip_script_name(path, script_name)?;
    Ok(percent_encoding::percent_decode(path).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy<'a>(
        trusted: bool,
        map: HeaderMap,
        secure: &'a [(String, String)],
        fwd: &'a [String],
    ) -> Policy<'a> {
        Policy {
            trusted,
            secure_scheme_headers: secure,
            secure_lengths: length_mask(secure.iter().map(|(n, _)| n.as_str())),
            forwarder_headers: fwd,
            header_map: map,
        }
    }

    fn defaults() -> (Vec<(String, String)>, Vec<String>) {
        (
            vec![
                ("X-FORWARDED-PROTOCOL".into(), "ssl".into()),
                ("X-FORWARDED-PROTO".into(), "https".into()),
                ("X-FORWARDED-SSL".into(), "on".into()),
            ],
            vec!["SCRIPT_NAME".into(), "PATH_INFO".into()],
        )
    }

    #[test]
    fn a_trusted_proxy_sets_the_scheme_and_the_mount_point() {
        let (secure, fwd) = defaults();
        let p = policy(true, HeaderMap::Drop, &secure, &fwd);
        let mut seen = Forwarded::default();
        assert_eq!(
            p.observe("X-Forwarded-Proto", b"https", &mut seen),
            Ok(true)
        );
        assert_eq!(p.observe("SCRIPT_NAME", b"/app", &mut seen), Ok(true));
        assert_eq!(p.observe("X_Other", b"x", &mut seen), Ok(false));
        assert_eq!(
            seen,
            Forwarded {
                https: Some(true),
                script_name: Some(b"/app")
            }
        );
    }

    #[test]
    fn an_untrusted_peer_sets_nothing() {
        let (secure, fwd) = defaults();
        let p = policy(false, HeaderMap::Drop, &secure, &fwd);
        let mut seen = Forwarded::default();
        assert_eq!(
            p.observe("X-Forwarded-Proto", b"https", &mut seen),
            Ok(true)
        );
        assert_eq!(p.observe("SCRIPT_NAME", b"/app", &mut seen), Ok(false));
        assert_eq!(seen, Forwarded::default());
    }

    #[test]
    fn contradicting_scheme_fields_and_refused_names_are_400() {
        let (secure, fwd) = defaults();
        let p = policy(true, HeaderMap::Refuse, &secure, &fwd);
        let mut seen = Forwarded::default();
        p.observe("X-Forwarded-Proto", b"https", &mut seen).unwrap();
        let e = p.observe("X-Forwarded-Ssl", b"off", &mut seen).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = p
            .observe("Transfer_Encoding", b"x", &mut Forwarded::default())
            .unwrap_err();
        assert_eq!(e.status(), 400);
        let dangerous = policy(false, HeaderMap::Dangerous, &secure, &fwd);
        assert_eq!(
            dangerous.observe("A_B", b"x", &mut Forwarded::default()),
            Ok(true)
        );
    }

    #[test]
    fn length_masks_rule_out_fields_by_length() {
        let mask = length_mask(["X-FORWARDED-PROTO", "X-SSL"]);
        assert_eq!(mask, (1 << 17) | (1 << 5));
        assert_eq!(length_mask([&*"x".repeat(70)]), 0);
    }

    #[test]
    fn the_mount_point_is_a_plain_prefix_as_in_gunicorn() {
        assert_eq!(
            strip_script_name(b"/flasktodo/foobar", b"/flasktodo"),
            Ok(&b"/foobar"[..])
        );
        assert_eq!(
            strip_script_name(b"/flasktodo", b"/flasktodo"),
            Ok(&b""[..])
        );
        assert_eq!(strip_script_name(b"/a", b"").unwrap(), b"/a");
        assert_eq!(
            strip_script_name(b"/other", b"/app").unwrap_err().status(),
            500
        );
    }
}
