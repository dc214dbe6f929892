//! From request-target to `PATH_INFO`: the head's path split off the query,
//! the mount point stripped and the rest percent-decoded (RFC 3986 §2.1),
//! checked against a decoder written from the RFC's words. The input is
//! the mount point (`SCRIPT_NAME`), a newline, then the request-target.
#![no_main]

use ferrocorn::http::forwarded::path_info;
use ferrocorn::http::{Rules, parse_head};
use libfuzzer_sys::fuzz_target;

/// `%HH` is the byte 0xHH; anything else is itself.
fn reference(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (script_name, target) = (&input[..newline], &input[newline + 1..]);
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
    let Ok(Some((head, _))) = parse_head(&request, &Rules::default()) else {
        return;
    };
    let (path, query) = head.path_and_query();
    assert!(!path.contains('?') && !query.contains('#'));
    match path_info(path.as_bytes(), script_name) {
        Ok(decoded) => {
            let rest = &path.as_bytes()[script_name.len()..];
            assert!(path.as_bytes().starts_with(script_name));
            assert_eq!(decoded.as_ref(), reference(rest).as_slice());
        }
        Err(_) => assert!(!path.as_bytes().starts_with(script_name)),
    }
});
