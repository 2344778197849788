//! Fuzz target `command_parser`: see `command_parser` in `fuzz/harness.rs`.

#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)] // Each target uses one of the harness's functions.
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::command_parser(data);
});
