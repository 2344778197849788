//! The built binary's sandbox, run the way the README says, with the script
//! from design.md piped in: the transcript is what a person would see.

#[path = "support/sandbox_proc.rs"]
mod sandbox_proc;

use std::process::Command;

use sandbox_proc::run_sandbox;

/// The lines printed in answer to the input line `input`.
fn answers<'a>(transcript: &'a str, input: &str) -> Vec<&'a str> {
    transcript
        .split("\n» ")
        .find(|block| block.starts_with(input))
        .unwrap_or_else(|| panic!("no answer block for {input}:\n{transcript}"))
        .lines()
        .skip(1)
        .collect()
}

#[test]
fn design_script_transcript() {
    let transcript = run_sandbox(
        "@alice /failover shift 50\n\
         @alice :white_check_mark:\n\
         @carol :white_check_mark:\n\
         @bob :white_check_mark:\n\
         @alice /failover status\n",
    );
    for line in transcript.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("[failover-bot] ") || line.starts_with("» ") || line.starts_with("  "),
            "unexpected line {line:?}"
        );
    }

    let plan = answers(&transcript, "@alice /failover shift 50").join("\n");
    assert!(plan.starts_with("[failover-bot] ⏳ Operation #1 · step 1/1 · dev · shift 50% to green — awaiting approval"), "{plan}");
    assert!(
        plan.contains("k8s-blue.dev.example.com      100   → 50    50%"),
        "{plan}"
    );
    assert!(
        plan.contains("k8s-green.dev.example.com       0   → 50    50%"),
        "{plan}"
    );
    assert!(
        plan.contains("Approve with :white_check_mark: (@bob — not the requester)"),
        "{plan}"
    );

    assert_eq!(
        answers(&transcript, "@alice :white_check_mark:"),
        ["[failover-bot] ↳ ⚠️  @alice cannot approve their own request: a second person must approve."]
    );
    assert_eq!(
        answers(&transcript, "@carol :white_check_mark:"),
        ["[failover-bot] ↳ ⚠️  @carol is not an approver for failovers."]
    );
    let applied = answers(&transcript, "@bob :white_check_mark:").join("\n");
    assert!(
        applied.contains("✅ Step 1/1 applied and verified in"),
        "{applied}"
    );
    assert!(applied.contains("Operation #1 complete."), "{applied}");
    assert!(
        applied.contains("— applied (approved by @bob)"),
        "{applied}"
    );

    let status = answers(&transcript, "@alice /failover status").join("\n");
    assert!(
        status.contains("k8s-blue.dev.example.com       50    50%"),
        "{status}"
    );
    assert!(
        status.contains("k8s-green.dev.example.com      50    50%"),
        "{status}"
    );
}

#[test]
fn plans_show_buttons_and_a_script_can_click_them() {
    let transcript = run_sandbox(
        "@alice /failover shift 50\n\
         @alice [Approve]\n\
         @carol [Approve]\n\
         @bob [Maybe]\n\
         @bob [Approve]\n\
         @alice /failover rollback\n\
         @bob [Reject]\n\
         @bob [Approve]\n",
    );
    let plan = answers(&transcript, "@alice /failover shift 50");
    assert_eq!(
        plan.last(),
        Some(&"               [Approve] [Reject]"),
        "{plan:?}"
    );
    // A refused click is answered only to the clicker, as Slack's ephemeral.
    assert_eq!(
        answers(&transcript, "@alice [Approve]"),
        ["[failover-bot] (only @alice sees this) ⚠️  @alice cannot approve their own request: a second person must approve."]
    );
    assert_eq!(
        answers(&transcript, "@carol [Approve]"),
        ["[failover-bot] (only @carol sees this) ⚠️  @carol is not an approver for failovers."]
    );
    assert_eq!(
        answers(&transcript, "@bob [Maybe]"),
        ["(sandbox) `[Maybe]` is not a button; plans have [Approve] and [Reject]"]
    );
    let applied = answers(&transcript, "@bob [Approve]").join("\n");
    assert!(
        applied.contains("— approved by @bob, applying\n               Approved by @bob at "),
        "the buttons give way to who and when:\n{applied}"
    );
    assert!(
        applied.contains("✅ Step 1/1 applied and verified in"),
        "{applied}"
    );
    let rejected = answers(&transcript, "@bob [Reject]").join("\n");
    assert!(rejected.contains("— rejected by @bob"), "{rejected}");
    assert!(rejected.contains("Rejected by @bob at "), "{rejected}");
    let last = transcript.rsplit("\n» ").next().unwrap();
    assert_eq!(
        last.lines().collect::<Vec<_>>(),
        [
            "@bob [Approve]",
            "(sandbox) no message awaits approval; that click goes nowhere"
        ]
    );
}

#[test]
fn expiry_and_bad_lines_in_a_script() {
    let transcript = run_sandbox(
        "# comments and blank lines are skipped\n\n\
         @alice /failover to green\n\
         wait 16m\n\
         @bob :white_check_mark:\n\
         hello\n\
         @alice /failover shfit 10\n",
    );
    let expired = answers(&transcript, "wait 16m").join("\n");
    assert!(expired.contains("expired without approval"), "{expired}");
    assert_eq!(
        answers(&transcript, "@bob :white_check_mark:"),
        ["(sandbox) no message awaits approval; that reaction goes nowhere"]
    );
    assert!(answers(&transcript, "hello")[0].starts_with("(sandbox) lines look like"));
    assert_eq!(
        answers(&transcript, "@alice /failover shfit 10"),
        ["[failover-bot] (only @alice sees this) ⚠️  unknown command `shfit` — did you mean `shift`? Try `/failover help`."]
    );
}

#[test]
fn a_broken_config_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "approval:\n  approvers: []\nenvironments:\n  dev:\n    clusters: []\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("approval.approvers: no approvers"),
        "{stderr}"
    );
    assert!(
        stderr.contains("environments.dev.clusters: no clusters"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_example_configs_are_valid() {
    for example in ["examples/config.yaml", "examples/sandbox.yaml"] {
        let output = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
            .args(["check", "--offline", "--config", example])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn crd_manifest_is_what_the_binary_prints() {
    let output = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/target/crd/crd-routingweight.yaml"
    ))
    .unwrap();
    assert_eq!(
        printed, shipped,
        "manifests/target/crd/crd-routingweight.yaml is stale: run `failover-bot crd > manifests/target/crd/crd-routingweight.yaml`"
    );
    assert!(printed.contains("name: routingweights.routing.lunar.tech"));
    assert!(printed.contains("- clusterName"));
}

#[test]
fn journal_crd_manifest_is_what_the_binary_prints() {
    let output = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["journal", "crd"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/home/crd-journalsegment.yaml"
    ))
    .unwrap();
    assert_eq!(
        printed, shipped,
        "manifests/home/crd-journalsegment.yaml is stale: run `failover-bot journal crd > manifests/home/crd-journalsegment.yaml`"
    );
    assert!(printed.contains("name: journalsegments.failover-bot.github.io"));
}
