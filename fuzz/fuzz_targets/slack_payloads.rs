//! Fuzz target `slack_payloads`: see `slack_payloads` in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)] // Each target uses one of the harness's functions.
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::slack_payloads(data);
});
