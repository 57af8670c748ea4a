//! Request bodies: the first byte picks JSON, YAML or protobuf.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = data.split_first() else {
        return;
    };
    let ct = match sel % 3 {
        0 => "application/json",
        1 => "application/yaml",
        _ => "application/vnd.kubernetes.protobuf",
    };
    let _ = skiff_apiserver::fuzzing::decode_body(ct, body);
});
