//! Fuzz target `config_loader`: see `config_loader` in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)] // Each target uses one of the harness's functions.
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::config_loader(data);
});
