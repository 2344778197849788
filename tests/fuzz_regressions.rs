//! Replays the kept fuzz inputs (`tests/fuzz-regressions/TARGET/`) through
//! the same harness the fuzz targets run (`fuzz/harness.rs`), without
//! libFuzzer, so inputs that once crashed or hung stay fixed on stable Rust
//! in CI.
//!
//! A kept input's file name says how it must be handled: `OUTCOME--what`,
//! where OUTCOME is the harness's name for the result (e.g. `syntax` for a
//! config refused as bad YAML, `form-err` for a refused slash-command
//! form). Returning at all is the first assertion: a panic fails the test.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no kept inputs in {}", dir.display());
    files
}

/// Runs every kept input of `target` through `run` and checks each outcome
/// against the one its file name expects; reports every mismatch at once.
fn replay(target: &str, run: fn(&[u8]) -> &'static str) {
    let mut wrong = Vec::new();
    for path in inputs(target) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (expected, _) = name
            .split_once("--")
            .unwrap_or_else(|| panic!("{name}: name it OUTCOME--what"));
        let data = std::fs::read(&path).expect("kept input is readable");
        let outcome = run(&data);
        if outcome != expected {
            wrong.push(format!("{name}: got {outcome}"));
        }
    }
    assert!(wrong.is_empty(), "{target}:\n{}", wrong.join("\n"));
}

#[test]
fn command_parser_inputs_are_answered() {
    replay("command_parser", harness::command_parser);
}

#[test]
fn slack_payload_inputs_are_decoded_or_refused() {
    replay("slack_payloads", harness::slack_payloads);
}

#[test]
fn config_loader_inputs_are_loaded_or_refused() {
    replay("config_loader", harness::config_loader);
}
