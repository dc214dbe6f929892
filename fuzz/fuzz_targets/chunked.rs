//! The chunked body decoder (RFC 9112 §7.1) on arbitrary bytes: it must not
//! panic, never consume past the message's end, and decode the same bytes
//! whether the input arrives at once or split at any point and read in
//! small pieces (the socket splits anywhere). The input's first byte
//! picks the split point, its second the most bytes decoded per call; the
//! rest is the body.
#![no_main]

use ferrocorn::http::{ChunkedDecoder, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [split, max, data @ ..] = input else {
        return;
    };
    let limits = Limits::default();

    let mut whole = ChunkedDecoder::with_limits(&limits);
    let mut out = Vec::new();
    let once = whole.decode(data, &mut out, usize::MAX);

    let mut pieces = ChunkedDecoder::with_limits(&limits);
    let mut out2 = Vec::new();
    let split = usize::from(*split) * data.len() / 255;
    let max = usize::from(*max).max(1);
    let mut at = 0;
    let mut failed = None;
    for part in [&data[..split], &data[split..]] {
        let mut i = 0;
        while i < part.len() {
            match pieces.decode(&part[i..], &mut out2, max) {
                Ok(d) => {
                    if d.consumed == 0 {
                        break;
                    }
                    i += d.consumed;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        at += i;
        if failed.is_some() || pieces.is_done() {
            break;
        }
    }
    match once {
        Ok(d) => {
            assert!(failed.is_none(), "split input failed: {failed:?}");
            assert!(d.consumed <= data.len());
            assert_eq!(d.done, pieces.is_done());
            assert_eq!(out, out2);
            if d.done {
                assert_eq!(d.consumed, at, "consumed differently");
                assert!(whole.finish().is_ok());
            }
        }
        Err(e) => assert_eq!(Some(e), failed, "split input agrees on the error"),
    }
});
