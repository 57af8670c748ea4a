//! The resourceVersion splice of LIST and WATCH and the managedFields cut of Tables:
//! never panic, and keep JSON JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let valid = serde_json_valid(data);
    if let Some(out) = skiff_apiserver::fuzzing::splice_resource_version(data) {
        assert!(
            !valid || serde_json_valid(&out),
            "splicing broke valid JSON"
        );
    }
    if let Some(out) = skiff_apiserver::fuzzing::without_managed_fields(data) {
        assert!(!valid || serde_json_valid(&out), "cutting broke valid JSON");
    }
});

fn serde_json_valid(b: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(b).is_ok()
}
