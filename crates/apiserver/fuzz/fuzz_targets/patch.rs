//! PATCH bodies applied to a Deployment: the first byte picks JSON patch, merge patch,
//! strategic merge patch or server-side apply.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_apiserver::fuzzing::{patch, PatchType};

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = data.split_first() else {
        return;
    };
    let _ = patch(PatchType::from_byte(*sel), body);
});
