//! The PROXY protocol header parser (v1 and v2) on arbitrary bytes: it must
//! not panic, a header must say how many bytes it used (no more than there
//! are), parse the same from exactly those bytes, and a prefix of it must
//! ask for more bytes rather than fail.
#![no_main]

use ferrocorn::http::proxy::{Accept, parse_proxy_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for accept in [Accept::V1, Accept::V2, Accept::Both] {
        let Ok(Some((Some(header), used))) = parse_proxy_header(data, accept) else {
            continue;
        };
        assert!(used > 0 && used <= data.len());
        match parse_proxy_header(&data[..used], accept) {
            Ok(Some((Some(again), n))) => {
                assert_eq!(n, used);
                assert_eq!(header, again);
            }
            other => panic!("the header's own bytes gave {other:?}"),
        }
        match parse_proxy_header(&data[..used - 1], accept) {
            Ok(None) => {}
            other => panic!("a header cut short gave {other:?}"),
        }
    }
});
