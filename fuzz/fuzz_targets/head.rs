//! The request-head parser (RFC 9112 §2–§6) on arbitrary bytes, under the
//! default rules and under every permissive switch: it must not panic, a
//! complete head must say how many bytes it used, parse the same from
//! exactly those bytes, and be incomplete (not an error) when cut short.
#![no_main]

use ferrocorn::http::{Rules, parse_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let permissive = Rules {
        obsolete_folding: true,
        unconventional_method: true,
        unconventional_version: true,
        casefold_method: true,
        ..Rules::default()
    };
    for rules in [Rules::default(), permissive] {
        let Ok(Some((head, used))) = parse_head(data, &rules) else {
            continue;
        };
        assert!(used <= data.len());
        let (again, used_again) = parse_head(&data[..used], &rules)
            .expect("the bytes of a parsed head parse again")
            .expect("and are complete");
        assert_eq!(used, used_again);
        assert_eq!(head.method(), again.method());
        assert_eq!(head.target(), again.target());
        assert_eq!(head.body, again.body);
        assert!(head.fields().eq(again.fields()));
        // A head cut before its final CRLF is not yet complete.
        for cut in [used - 1, used / 2] {
            match parse_head(&data[..cut], &rules) {
                Ok(None) => {}
                other => panic!("a head cut at {cut} of {used} bytes gave {other:?}"),
            }
        }
        let _ = head.path_and_query();
    }
});
