//! Label and field selectors (the first byte picks which), parsed and matched.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    if sel % 2 == 0 {
        let _ = skiff_apiserver::fuzzing::label_selector(s);
    } else {
        let _ = skiff_apiserver::fuzzing::field_selector(s);
    }
});
