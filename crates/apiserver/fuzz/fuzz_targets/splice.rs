//! The resourceVersion splice of LIST and WATCH: never panics, and keeps JSON JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(out) = skiff_apiserver::fuzzing::splice_resource_version(data) {
        if serde_json_valid(data) {
            assert!(serde_json_valid(&out), "splicing broke valid JSON");
        }
    }
});

fn serde_json_valid(b: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(b).is_ok()
}
