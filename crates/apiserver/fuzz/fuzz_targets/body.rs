//! Request bodies: the first byte picks JSON (with the YAML fallback) or protobuf.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = data.split_first() else {
        return;
    };
    let ct = if sel % 2 == 0 {
        "application/json"
    } else {
        "application/vnd.kubernetes.protobuf"
    };
    let _ = skiff_apiserver::fuzzing::decode_body(ct, body);
});
