//! Gunicorn 27.0.1's request corpus (`tests/conformance/corpus/gunicorn`),
//! replayed against the parser: every case that needs no non-default
//! setting (`cfg == {}`) must give the expected requests (valid) or be
//! refused (invalid).
//!
//! The corpus is the repository's copy (re-imported from the gunicorn sdist
//! by `tests/conformance/import-gunicorn-corpus.py`). `.http` files are decoded exactly as
//! `decode_treq` in `gunicorn_corpus.py` does.
//!
//! A valid case passes when its bytes parse into exactly the expected
//! requests in order — method, target (RAW_URI), version, field lines
//! (minus names with `_`, which the WSGI layer drops as Gunicorn does),
//! `path_and_query` consistent with `conflib.expected_path_query`, body —
//! with nothing left over on a connection kept alive; every proper prefix of
//! each head must be incomplete, and the body must decode the same fed one
//! byte at a time. When the input ends inside a body, the peer's EOF makes
//! the request incomplete (RFC 9112 §8, `BodyDecoder::finish`): a chunked
//! body is refused, which invalid/rfc9112_chunked_missing_final_crlf_01
//! needs; so is a Content-Length body cut short, where valid/099 wants
//! Gunicorn's rule (the app sees what arrived) and the RFC wins: the case
//! passes when the bytes that arrived are the expected ones. Likewise an
//! HTTP/1.1 request without Host is refused (RFC 9112 §3.2), where 22
//! valid cases send one (see `check_valid`). An invalid case
//! passes when the head or the body is refused; invalid/001 is a truncated
//! head, which the server answers by closing.

use std::fs;

use super::ParseError;
use super::body::BodyDecoder;
use super::head::{Head, Limits, Rules, Version, parse_head};
use serde_json::Value;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance/corpus/gunicorn"
);

/// The first index of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Python's `bytes.replace`: non-overlapping, left to right.
fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Python's `int(two_bytes, 16)` followed by `bytearray.append`, or `None`
/// where either raises ValueError (which `decode_treq` catches).
fn py_hex_byte(s: &[u8]) -> Option<u8> {
    let s = s.trim_ascii();
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let v = u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
    if neg && v != 0 { None } else { Some(v) }
}

/// Port of `decode_treq` (gunicorn tests/treq.py) from gunicorn_corpus.py.
fn decode_treq(raw: &[u8]) -> Vec<u8> {
    let data: Vec<u8> = raw.iter().copied().filter(|&b| b != b'\n').collect();
    let data = replace(&data, b"\\r\\n", b"\r\n");
    let data = replace(&data, b"\\0", b"\0");
    let data = replace(&data, b"\\n", b"\n");
    let data = replace(&data, b"\\t", b"\t");
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if i + 3 < data.len() && &data[i..i + 2] == b"\\x" {
            if let Some(v) = py_hex_byte(&data[i + 2..i + 4]) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    assert!(!out.contains(&b'\\'), "unexpected backslash in test data");
    out
}

/// A JSON string of the corpus (latin-1 text) as the bytes it stands for.
fn latin1_bytes(v: &Value) -> Vec<u8> {
    v.as_str()
        .expect("string")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1 character"))
        .collect()
}

fn latin1_string(b: &[u8]) -> String {
    b.iter().map(|&b| char::from(b)).collect()
}

/// `urllib.parse.unquote_to_bytes`.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            let (hi, lo) = (s[i + 1], s[i + 2]);
            if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() {
                let hex = [hi, lo];
                let v = u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap();
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// `urllib.parse.urlsplit(url)` reduced to (path, query).
fn urlsplit_path_query(url: &str) -> (String, String) {
    let mut rest = url;
    if let Some(i) = rest.find(':') {
        let first_alpha = rest.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
        let scheme_ok = rest[..i]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if i > 0 && first_alpha && scheme_ok {
            rest = &rest[i + 1..];
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        rest = &after[end..];
    }
    if let Some(i) = rest.find('#') {
        rest = &rest[..i];
    }
    match rest.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (rest.to_owned(), String::new()),
    }
}

/// Port of `conflib.expected_path_query`: (PATH_INFO, QUERY_STRING), or
/// `None` for the forms without a WSGI convention.
fn expected_path_query(raw: &str, method: &str) -> Option<(String, String)> {
    if raw == "*" {
        return None;
    }
    if method == "CONNECT" || (!raw.starts_with('/') && !raw.contains("://")) {
        return None;
    }
    let (path, query) = if raw.starts_with("//") {
        let (p, q) = urlsplit_path_query(&format!(".{raw}"));
        (p[1..].to_owned(), q)
    } else {
        urlsplit_path_query(raw)
    };
    Some((latin1_string(&percent_decode(path.as_bytes())), query))
}

/// A body as the server reads it: decoded from `input` in one call and
/// again one byte per call (both must agree), then, if the input ran out
/// first, ended by EOF. Returns (body, bytes consumed, the EOF's error:
/// [`ParseError::IncompleteBody`] if the input ended inside the body).
fn decode_body(
    head: &Head,
    input: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, usize, Option<ParseError>), ParseError> {
    let mut d = BodyDecoder::new(head.body, limits);
    let mut out = Vec::new();
    let r = d.decode(input, &mut out, usize::MAX)?;
    let mut d1 = BodyDecoder::new(head.body, limits);
    let mut out1 = Vec::new();
    let mut used1 = 0;
    for b in input {
        if d1.is_done() {
            break;
        }
        used1 += d1
            .decode(std::slice::from_ref(b), &mut out1, usize::MAX)?
            .consumed;
    }
    assert_eq!(
        (out1.as_slice(), used1, d1.is_done()),
        (out.as_slice(), r.consumed, r.done),
        "a body fed byte by byte decodes as when fed whole"
    );
    // The input ended inside the body: the peer's EOF.
    let incomplete = d.finish().err();
    Ok((out, r.consumed, incomplete))
}

/// `Ok(notes)`, or `Err(why the case fails)`.
///
/// Where RFC 9112 is stricter than Gunicorn, the RFC wins: an HTTP/1.1
/// request the corpus sends without Host (§3.2; 22 valid cases) must be
/// refused with [`ParseError::MissingHost`]; the case then goes on with
/// `Host: corpus` spliced in after that request line, and that field
/// expected first, so the rest of it is still checked in full.
fn check_valid(case: &Value, data: &[u8], rules: &Rules) -> Result<String, String> {
    let limits = &rules.limits;
    let mut notes = Vec::new();
    let expected = case["requests"].as_array().expect("requests");
    let mut data = data.to_vec();
    let mut pos = 0;
    for (i, exp) in expected.iter().enumerate() {
        let pre = format!("req{i}: ");
        let mut host_added = false;
        let (head, n) = loop {
            match parse_head(&data[pos..], rules) {
                Ok(Some(hn)) => break hn,
                Ok(None) => return Err(format!("{pre}head incomplete")),
                Err(ParseError::MissingHost) if !host_added => {
                    let line_end = pos + find(&data[pos..], b"\r\n").expect("a request line");
                    data.splice(line_end + 2..line_end + 2, *b"Host: corpus\r\n");
                    host_added = true;
                    notes.push(format!(
                        "{pre}400 without Host (RFC 9112 §3.2), checked with it"
                    ));
                }
                Err(e) => return Err(format!("{pre}refused ({}): {e}", e.status())),
            }
        };
        let data = &data[..];
        // Every prefix of a small head, a sample of a large one (each check
        // rescans the prefix).
        let step = if n <= 2048 { 1 } else { 61 };
        for cut in (0..n).step_by(step).chain(n.saturating_sub(3)..n) {
            if let Ok(Some(_)) | Err(_) = parse_head(&data[pos..pos + cut], rules) {
                return Err(format!("{pre}prefix of {cut} bytes is not incomplete"));
            }
        }
        pos += n;

        let uri = latin1_bytes(&exp["uri"]);
        let method = exp["method"].as_str().expect("method");
        if head.method() != method {
            return Err(format!(
                "{pre}method {:?} expected {method:?}",
                head.method()
            ));
        }
        if head.target().as_bytes() != uri {
            return Err(format!(
                "{pre}target {:?} expected {:?}",
                head.target(),
                latin1_string(&uri)
            ));
        }
        let version = match (exp["version"][0].as_u64(), exp["version"][1].as_u64()) {
            (Some(1), Some(0)) => Version::Http10,
            (Some(1), Some(1)) => Version::Http11,
            other => return Err(format!("{pre}unexpected expected version {other:?}")),
        };
        if head.version != version {
            return Err(format!(
                "{pre}version {:?} expected {version:?}",
                head.version
            ));
        }

        // The WSGI layer drops names with '_' (Gunicorn's header_map=drop).
        let got: Vec<(String, Vec<u8>)> = head
            .fields()
            .filter(|f| !f.name.contains('_'))
            .map(|f| (f.name.to_ascii_uppercase(), f.value.to_vec()))
            .collect();
        let want: Vec<(String, Vec<u8>)> = host_added
            .then(|| ("HOST".to_owned(), b"corpus".to_vec()))
            .into_iter()
            .chain(
                exp["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| (h[0].as_str().expect("name").to_owned(), latin1_bytes(&h[1]))),
            )
            .collect();
        if got != want {
            return Err(format!("{pre}fields {got:?} expected {want:?}"));
        }

        if let Some((pi, qs)) = expected_path_query(&latin1_string(&uri), method) {
            let (path, query) = head.path_and_query();
            let decoded = latin1_string(&percent_decode(path.as_bytes()));
            if (decoded.as_str(), query) != (pi.as_str(), qs.as_str()) {
                return Err(format!(
                    "{pre}path_and_query ({path:?}, {query:?}) expected ({pi:?}, {qs:?})"
                ));
            }
        }

        let (body, used, incomplete) = decode_body(&head, &data[pos..], limits)
            .map_err(|e| format!("{pre}body refused ({}): {e}", e.status()))?;
        if let Some(e) = incomplete {
            // valid/099: the corpus wants the app to see the bytes that
            // arrived; RFC 9112 §8 says the request is incomplete, and
            // `wsgi.input` raises after them.
            notes.push(format!(
                "{pre}body cut short by EOF: refused ({}) after the bytes that arrived (RFC 9112 §8)",
                e.status()
            ));
        }
        if body != latin1_bytes(&exp["body"]) {
            return Err(format!("{pre}body {:?} differs", latin1_string(&body)));
        }
        pos += used;

        let last = i + 1 == expected.len();
        if !last && !head.keep_alive {
            return Err(format!(
                "{pre}connection not kept alive for the next request"
            ));
        }
        if last && head.keep_alive && pos != data.len() {
            return Err(format!("{pre}left over: {:?}", latin1_string(&data[pos..])));
        }
    }
    Ok(if notes.is_empty() {
        "ok".into()
    } else {
        notes.join("; ")
    })
}

/// `Ok(how it was refused)`, or `Err(why that is a failure)`. Any request
/// that parses in full fails the case: the server would run the app for it.
fn check_invalid(name: &str, data: &[u8], rules: &Rules) -> Result<String, String> {
    let limits = &rules.limits;
    let (head, n) = match parse_head(data, rules) {
        Err(e) => return Ok(format!("head refused with {}: {e}", e.status())),
        Ok(None) if name == "invalid/001" => return Ok("head incomplete at EOF".into()),
        Ok(None) => return Err("head incomplete, not refused".into()),
        Ok(Some(hn)) => hn,
    };
    match decode_body(&head, &data[n..], limits) {
        Err(e) | Ok((_, _, Some(e))) => Ok(format!("body refused with {}: {e}", e.status())),
        Ok(_) => Err(format!(
            "request accepted: {} {}",
            head.method(),
            head.target()
        )),
    }
}

/// The parser `Rules` equivalent to a case's settings, if they are all
/// parser settings: Gunicorn's names, with the configuration's clamp of
/// `limit_request_line` to 8190 (as `config` does, and Gunicorn's
/// `MAX_REQUEST_LINE`). Settings about peers and the environ
/// (`forwarded_allow_ips`, `header_map`, `proxy_protocol`) are the live
/// corpus run's (scripts/conformance.sh).
fn rules_for(cfg: &serde_json::Map<String, Value>) -> Option<Rules> {
    let mut rules = Rules::default();
    let limits = &mut rules.limits;
    for (key, value) in cfg {
        if let Some(on) = value.as_bool() {
            match key.as_str() {
                "permit_obsolete_folding" => rules.obsolete_folding = on,
                "permit_unconventional_http_method" => rules.unconventional_method = on,
                "casefold_http_method" => rules.casefold_method = on,
                _ => return None,
            }
            continue;
        }
        let n = usize::try_from(value.as_u64()?).ok()?;
        match key.as_str() {
            "limit_request_line" => limits.request_line = if n == 0 { 8190 } else { n.min(8190) },
            "limit_request_fields" => limits.fields = n,
            "limit_request_field_size" => limits.field_size = n,
            _ => return None,
        }
    }
    Some(rules)
}

/// Runs every case whose settings `select` maps to `Rules`; returns
/// (passed, failed names), printing one line per case.
fn run_cases(
    select: impl Fn(&serde_json::Map<String, Value>) -> Option<Rules>,
) -> (usize, Vec<String>) {
    let meta: Value = serde_json::from_str(
        &fs::read_to_string(format!("{CORPUS}/cases.json")).expect("cases.json"),
    )
    .expect("cases.json is JSON");
    let (mut passed, mut failures) = (0, Vec::new());
    for case in meta["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let Some(rules) = select(case["cfg"].as_object().expect("cfg")) else {
            continue;
        };
        let file = case["http"].as_str().expect("http");
        let data = decode_treq(&fs::read(format!("{CORPUS}/{file}")).expect("case file"));
        let outcome = match case["kind"].as_str() {
            Some("valid") => check_valid(case, &data, &rules),
            Some("invalid") => check_invalid(name, &data, &rules),
            other => Err(format!("unknown kind {other:?}")),
        };
        match outcome {
            Ok(how) => {
                passed += 1;
                println!("PASS {name}  {how}");
            }
            Err(why) => {
                println!("FAIL {name}  {why}");
                failures.push(name.to_owned());
            }
        }
    }
    (passed, failures)
}

#[test]
fn gunicorn_corpus_default_cases() {
    let (passed, failures) = run_cases(|cfg| {
        if cfg.is_empty() {
            Some(Rules::default())
        } else {
            None
        }
    });
    println!("corpus: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "corpus failures: {failures:?}");
    assert_eq!(
        passed, 120,
        "Gunicorn 27.0.1's corpus has 120 default cases"
    );
}

/// The setting-dependent cases that only change the parser's rules (its
/// limits, obs-fold, unconventional methods, casefolding): they check that
/// `Rules` means what Gunicorn's settings mean.
#[test]
fn gunicorn_corpus_parser_setting_cases() {
    let (passed, failures) = run_cases(|cfg| if cfg.is_empty() { None } else { rules_for(cfg) });
    println!(
        "corpus (parser settings): {passed} passed, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "corpus failures: {failures:?}");
    assert_eq!(
        passed, 10,
        "5 limit cases, 3 obs-fold, 2 unconventional methods"
    );
}
