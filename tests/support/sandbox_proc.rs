//! The built binary's sandbox with a script piped in, as a person runs it
//! (`failover-bot sandbox < drill.txt`).

use std::io::Write;
use std::process::{Command, Stdio};

/// The transcript the sandbox prints for `script`; panics if it fails.
pub fn run_sandbox(script: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .arg("sandbox")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the failover-bot binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .expect("the sandbox reads the script");
    let output = child.wait_with_output().expect("the sandbox exits");
    assert!(
        output.status.success(),
        "sandbox failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 transcript")
}
