//! Typed decoding: the first byte picks a kind, the rest is its JSON body; whatever
//! decoding accepts must deserialize with the kind's k8s-openapi type.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = data.split_first() else {
        return;
    };
    if let Some(violation) = skiff_apiserver::fuzzing::typed_decode(*sel, body) {
        panic!("{violation}");
    }
});
