//! Keeps the production docs true to the code:
//!
//! - `docs/iam-policy.json` grants exactly the Route53 actions the bot calls
//!   (read from `src/backend/route53/`), on one hosted zone;
//! - `docs/troubleshooting.md` has an entry, quoting the real text, for every
//!   `UserError` the bot can answer with (variants read from
//!   `src/messages.rs`) and for the other errors it reports;
//! - the channel transcript in `docs/drill.md` is what the sandbox prints for
//!   the script shown there. `UPDATE_DOCS=1 cargo test --test docs` rewrites
//!   the transcript after a deliberate change to the bot's texts;
//! - relative links in README.md and docs/ lead to files that exist
//!   (manifests move; docs must follow).

#[path = "support/sandbox_proc.rs"]
mod sandbox_proc;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "support/samples.rs"]
mod samples;

use failover_bot::backend::kube::tls::TlsError;
use failover_bot::backend::GateFailure;
use failover_bot::config::Config;
use failover_bot::messages::render;
use failover_bot::notice::Notice;
use sandbox_proc::run_sandbox;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

// ---------------------------------------------------------------- IAM policy

/// Every file of the Route53 backend (`src/backend/route53/`), in one text.
fn route53_source() -> String {
    let dir = repo_file("src/backend/route53");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no Rust file in {}", dir.display());
    files
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `list_resource_record_sets` → `route53:ListResourceRecordSets`.
fn iam_action(sdk_method: &str) -> String {
    let pascal: String = sdk_method
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect();
    format!("route53:{pascal}")
}

/// The SDK operations the bot sends: every `.client` followed by `.method()`
/// in the Route53 backend (builders like `.change_info()` on answers are not
/// preceded by `.client`).
fn route53_calls_in_source() -> BTreeSet<String> {
    let source = route53_source();
    let mut calls = BTreeSet::new();
    for (at, _) in source.match_indices(".client") {
        let rest = source[at + ".client".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let method: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !method.is_empty() && rest[method.len()..].starts_with("()") {
            calls.insert(iam_action(&method));
        }
    }
    calls
}

/// The `ChangeAction`s the bot builds (`ChangeAction::Upsert` → `UPSERT`).
fn change_actions_in_source() -> BTreeSet<String> {
    let source = route53_source();
    source
        .match_indices("ChangeAction::")
        .map(|(at, _)| {
            source[at + "ChangeAction::".len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_uppercase()
        })
        .filter(|action| !action.is_empty())
        .collect()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a list of strings").to_owned())
            .collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

fn policy_statements() -> Vec<serde_json::Value> {
    let policy: serde_json::Value =
        serde_json::from_str(&read("docs/iam-policy.json")).expect("docs/iam-policy.json is JSON");
    assert_eq!(
        policy["Version"], "2012-10-17",
        "IAM policy language version"
    );
    let statements = policy["Statement"]
        .as_array()
        .expect("Statement is a list")
        .clone();
    for s in &statements {
        assert_eq!(s["Effect"], "Allow", "{s}");
        assert!(
            s.get("NotAction").is_none() && s.get("NotResource").is_none(),
            "{s}"
        );
    }
    statements
}

#[test]
fn iam_policy_grants_exactly_the_route53_calls_the_code_makes() {
    let called = route53_calls_in_source();
    assert!(
        called.contains("route53:ChangeResourceRecordSets") && called.len() >= 3,
        "the source scan found too little: {called:?}"
    );
    let granted: BTreeSet<String> = policy_statements()
        .iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    assert_eq!(
        granted, called,
        "docs/iam-policy.json vs src/backend/route53/"
    );
}

#[test]
fn iam_policy_is_scoped_to_one_hosted_zone() {
    let mut zones = BTreeSet::new();
    for statement in policy_statements() {
        let actions = strings(&statement["Action"]);
        for resource in strings(&statement["Resource"]) {
            let kind = resource
                .strip_prefix("arn:aws:route53:::")
                .unwrap_or_else(|| panic!("not a Route53 ARN: {resource}"));
            for action in &actions {
                let expected = match action.as_str() {
                    "route53:ListResourceRecordSets" | "route53:ChangeResourceRecordSets" => {
                        "hostedzone/"
                    }
                    "route53:GetChange" => "change/",
                    "route53:GetHealthCheckStatus" => "healthcheck/",
                    other => panic!("unexpected action {other}"),
                };
                assert!(kind.starts_with(expected), "{action} on {resource}");
            }
            if let Some(zone) = kind.strip_prefix("hostedzone/") {
                assert!(!zone.contains('*') && !zone.is_empty(), "{resource}");
                zones.insert(zone.to_owned());
            } else {
                assert!(kind.ends_with("/*"), "{resource}");
            }
        }
    }
    assert_eq!(zones.len(), 1, "exactly one hosted zone: {zones:?}");
}

#[test]
fn iam_policy_lets_the_bot_change_records_only_the_way_it_does() {
    let statements = policy_statements();
    let change = statements
        .iter()
        .find(|s| strings(&s["Action"]).contains(&"route53:ChangeResourceRecordSets".to_owned()))
        .expect("a statement for ChangeResourceRecordSets");
    assert_eq!(
        strings(&change["Action"]),
        ["route53:ChangeResourceRecordSets"],
        "the conditions below must not narrow other actions"
    );
    let conditions = &change["Condition"]["ForAllValues:StringEquals"];
    let actions: BTreeSet<String> = strings(&conditions["route53:ChangeResourceRecordSetsActions"])
        .into_iter()
        .collect();
    assert_eq!(actions, change_actions_in_source(), "change actions");
    let types: BTreeSet<String> =
        strings(&conditions["route53:ChangeResourceRecordSetsRecordTypes"])
            .into_iter()
            .collect();
    // The routed types the bot re-weights, and the external-dns TXT twins.
    let expected: BTreeSet<String> = ["A", "AAAA", "CNAME", "TXT"].map(String::from).into();
    assert_eq!(types, expected, "record types");
    for name in strings(&conditions["route53:ChangeResourceRecordSetsNormalizedRecordNames"]) {
        // AWS compares normalised names: lower case, no trailing dot.
        assert!(
            !name.is_empty() && !name.ends_with('.') && name == name.to_lowercase(),
            "not a normalised record name: {name}"
        );
    }
}

// ----------------------------------------------------------- troubleshooting

/// Variant names of the refusal enums, read from their source: each
/// module's own (command, plan, approval) and the engine's. The variants
/// that wrap another module's, and the text of old journals, are not
/// refusals of their own.
fn refusal_variants_in_source() -> BTreeSet<String> {
    let enums = [
        ("src/command/error.rs", "pub enum CommandError {"),
        ("src/plan.rs", "pub enum PlanError {"),
        ("src/approval.rs", "pub enum ApprovalError {"),
        ("src/operation/refusal.rs", "pub enum Refusal {"),
    ];
    let wrappers = ["Command", "Plan", "Approval", "Legacy"];
    let mut names = BTreeSet::new();
    for (path, start) in enums {
        let source = read(path);
        let body = source
            .split_once(start)
            .unwrap_or_else(|| panic!("{start} in {path}"))
            .1;
        let body = body.split("\n}").next().unwrap_or_default();
        names.extend(
            body.lines()
                .filter(|line| line.starts_with("    ") && !line.starts_with("     "))
                .map(str::trim)
                .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
                .map(|line| {
                    line.chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect::<String>()
                })
                .filter(|name| !wrappers.contains(&name.as_str())),
        );
    }
    names
}

/// `UnknownCommand` → `unknown-command`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// Slack shows `<@alice>` as @alice and `<#C0FAILOVER>` as #C0FAILOVER; the
/// docs quote what people see.
fn as_seen(text: &str) -> String {
    text.replace("<@", "@")
        .replace("<#", "#")
        .replace("<!subteam^", "@")
        .replace('>', "")
}

/// The part of the troubleshooting doc from `<a id="ID"></a>` to the next
/// anchor.
fn entry<'a>(doc: &'a str, id: &str) -> Option<&'a str> {
    let anchor = format!("<a id=\"{id}\"></a>");
    let start = doc.find(&anchor)? + anchor.len();
    let rest = &doc[start..];
    Some(&rest[..rest.find("<a id=\"").unwrap_or(rest.len())])
}

#[test]
fn every_refusal_has_a_troubleshooting_entry_quoting_it() {
    let doc = read("docs/troubleshooting.md");
    let in_source = refusal_variants_in_source();
    let sampled: BTreeSet<String> = samples::refusals()
        .iter()
        .map(samples::variant_name)
        .collect();
    assert_eq!(
        sampled, in_source,
        "tests/support/samples.rs vs the refusal enums: add a sample and a docs/troubleshooting.md entry for each new variant"
    );
    let mut problems = Vec::new();
    for refusal in samples::refusals() {
        let id = kebab(&samples::variant_name(&refusal));
        let quoted = as_seen(&refusal.to_string());
        match entry(&doc, &id) {
            None => problems.push(format!("no <a id=\"{id}\"></a> entry")),
            Some(text) if !text.contains(&quoted) => {
                problems.push(format!("entry {id} does not quote: {quoted}"))
            }
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "docs/troubleshooting.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn troubleshooting_covers_the_errors_outside_the_channel_answers() {
    let doc = read("docs/troubleshooting.md");
    let config = Config::from_yaml(include_str!("../examples/sandbox.yaml")).unwrap();
    let said = |notice: Notice| render(&notice, &config).text;
    let apology = said(Notice::InternalError { op: Some(7) });
    let mismatch = GateFailure::IdentityMismatch {
        context: s("prod-green"),
        expected: s("k8s-green.prod.example.com"),
        found: s("k8s-green.dev.example.com"),
    }
    .to_string();
    let unknown = GateFailure::IdentityUnknown {
        context: s("prod-green"),
        reason: s("no ConfigMap cluster-identity in namespace operators"),
    }
    .to_string();
    let quotes = [
        ("internal-error", as_seen(&apology)),
        ("identity-mismatch", mismatch),
        ("identity-unknown", unknown),
        ("missing-permissions", s("missing permissions")),
        ("route53-not-carried", s("but not yet carried by")),
        ("slack-not-in-channel", s("not_in_channel")),
        ("slack-invalid-auth", s("invalid_auth")),
        ("signature-401", s("bad Slack signature")),
        ("config-invalid", s("config is invalid:")),
        (
            "insecure-skip-tls-verify",
            TlsError::InsecureSkipTlsVerify {
                context: s("dev-xx"),
            }
            .to_string(),
        ),
        (
            "command-cut-short",
            as_seen(&said(Notice::CommandCutShort {
                text: s("shift 50"),
            })),
        ),
        ("resuming", s("failover-bot restarted; resuming operation")),
        (
            "journal-superseded",
            s("the journal stopped taking records"),
        ),
        ("unexpected-weight", s("Every cluster's weight now")),
    ];
    let mut problems = Vec::new();
    for (id, quote) in quotes {
        match entry(&doc, id) {
            None => problems.push(format!("no <a id=\"{id}\"></a> entry")),
            Some(text) if !text.contains(&quote) => {
                problems.push(format!("entry {id} does not quote: {quote}"))
            }
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "docs/troubleshooting.md:\n{}",
        problems.join("\n")
    );
}

// --------------------------------------------------------------------- links

/// Relative link targets (`](path)`, anchors dropped) in a Markdown text.
fn local_links(markdown: &str) -> Vec<String> {
    markdown
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &markdown[at + 2..];
            let target = &rest[..rest.find(')')?];
            let path = target.split('#').next().unwrap_or_default();
            let external = target.contains("://") || target.starts_with("mailto:");
            (!external && !path.is_empty()).then(|| path.to_owned())
        })
        .collect()
}

#[test]
fn links_in_the_readme_and_docs_point_at_files_that_exist() {
    let mut pages = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(repo_file("docs")).expect("docs/ exists") {
        let name = entry.expect("a docs/ entry").file_name();
        if name.to_string_lossy().ends_with(".md") {
            pages.push(Path::new("docs").join(name));
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(&page.to_string_lossy());
        let dir = repo_file(&page.to_string_lossy())
            .parent()
            .expect("a page has a folder")
            .to_owned();
        for link in local_links(&text) {
            if !dir.join(&link).exists() {
                broken.push(format!("{}: {link}", page.display()));
            }
        }
    }
    assert!(pages.len() >= 4, "README and the docs pages: {pages:?}");
    assert!(
        broken.is_empty(),
        "links to missing files:\n{}",
        broken.join("\n")
    );
}

// --------------------------------------------------------------------- drill

/// The fenced block that follows the line `marker` in `doc`, and its byte
/// range (for rewriting it).
fn fenced_after(doc: &str, marker: &str) -> (String, std::ops::Range<usize>) {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/drill.md"));
    let open = at
        + doc[at..]
            .find("```")
            .expect("a fenced block after the marker");
    let start = open + doc[open..].find('\n').expect("a line after the fence") + 1;
    let end = start + doc[start..].find("\n```").expect("the block is closed") + 1;
    (doc[start..end].to_owned(), start..end)
}

/// Wall-clock times (`06:09 UTC`) and measured durations (`in 0.12 ms`)
/// differ from run to run; nothing else may.
fn normalise(transcript: &str) -> String {
    let is_number = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    let is_clock = |t: &str| {
        t.len() == 5
            && t.as_bytes()[2] == b':'
            && t.chars().filter(char::is_ascii_digit).count() == 4
    };
    transcript
        .trim()
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.trim_end().split(' ').collect();
            let out: Vec<&str> = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let next = words.get(i + 1).copied().unwrap_or("");
                    let prev = if i > 0 { words[i - 1] } else { "" };
                    if is_clock(w) && next.starts_with("UTC") {
                        "HH:MM"
                    } else if prev == "anchor:" && w.starts_with('`') {
                        // The hash of a record, which holds its time.
                        "`HASH`"
                    } else if is_number(w)
                        && prev == "in"
                        && (next.starts_with("ms") || next.starts_with("s.") || next == "s")
                    {
                        "N"
                    } else {
                        w
                    }
                })
                .collect();
            out.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_drill_transcript_is_what_the_sandbox_prints_for_its_script() {
    let path = repo_file("docs/drill.md");
    let doc = read("docs/drill.md");
    let (script, _) = fenced_after(&doc, "<!-- drill-script");
    let (shown, range) = fenced_after(&doc, "<!-- drill-transcript");
    let actual = run_sandbox(&script);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let mut updated = doc.clone();
        updated.replace_range(range, &format!("{}\n", actual.trim()));
        std::fs::write(&path, updated).expect("docs/drill.md is writable");
        return;
    }
    let (shown, actual_normalised) = (normalise(&shown), normalise(&actual));
    if let Some(problem) = first_difference(&shown, &actual_normalised) {
        panic!(
            "docs/drill.md's transcript differs from the sandbox's output: {problem}\n\
             After a deliberate change to the bot's texts run `UPDATE_DOCS=1 cargo test --test docs` \
             and read the diff. The sandbox printed:\n{actual}"
        );
    }
}

/// The first line where two transcripts differ, said readably.
fn first_difference(shown: &str, actual: &str) -> Option<String> {
    let (mut a, mut b) = (shown.lines(), actual.lines());
    for number in 1.. {
        match (a.next(), b.next()) {
            (None, None) => return None,
            (x, y) if x == y => {}
            (x, y) => {
                return Some(format!(
                    "line {number}: the doc has {x:?}, the sandbox printed {y:?}"
                ))
            }
        }
    }
    None
}

#[test]
fn normalising_keeps_everything_but_clock_times_durations_and_anchors() {
    assert_eq!(
        normalise("\n» x\n  expires 06:09 UTC.\n  verified in 0.12 ms. The next\n  took in 3 s.\n"),
        "» x\n  expires HH:MM UTC.\n  verified in N ms. The next\n  took in N s."
    );
    assert_eq!(
        normalise("Journal anchor: `54ea7c45f39e5a85`"),
        "Journal anchor: `HASH`"
    );
    assert_ne!(normalise("weight 10"), normalise("weight 50"));
    assert_ne!(normalise("#1 completed"), normalise("#2 completed"));
}

// ------------------------------------------------------- paths in comments

/// Repository paths a comment names (`src/engine/step.rs`, `docs/drill.md`);
/// a segment in capitals (`manifests/target/MODE/rbac.yaml`) is a
/// placeholder, not a file.
fn paths_in_comments(source: &str) -> Vec<String> {
    const ROOTS: [&str; 8] = [
        "src/",
        "docs/",
        "manifests/",
        "tests/",
        "scripts/",
        "examples/",
        "benches/",
        "fuzz/",
    ];
    let mut found = Vec::new();
    for line in source.lines() {
        let Some(at) = line.find("//") else {
            continue;
        };
        let comment = &line[at..];
        for root in ROOTS {
            for (start, _) in comment.match_indices(root) {
                let preceded_by_word = comment[..start]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '.');
                if preceded_by_word {
                    continue;
                }
                let path: String = comment[start..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || "_-./".contains(*c))
                    .collect();
                let path = path.trim_end_matches(['.', '/']).to_owned();
                let placeholder = path.split('/').any(|segment| {
                    let stem = segment.split('.').next().unwrap_or_default();
                    stem.len() > 1 && stem.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                });
                let names_a_file = path.rsplit('/').next().is_some_and(|n| n.contains('.'));
                if names_a_file && !placeholder {
                    found.push(path);
                }
            }
        }
    }
    found
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn comments_name_only_files_that_exist() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        source_files(&repo_file(dir), &mut files);
    }
    let mut missing = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for path in paths_in_comments(&source) {
            if !repo_file(&path).exists() {
                missing.push(format!("{}: {path}", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "comments name files that are not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_comment_reader_finds_paths_and_skips_placeholders() {
    // Built so that this file's own lines hold no such comment.
    let slashes = "/".repeat(2);
    let source = format!(
        "{slashes} see src/engine/step.rs and docs/missing.md.\n{slashes} manifests/target/MODE/rbac.yaml\nlet x = 1; {slashes} tests/fixtures/journal-v1.jsonl"
    );
    let source = source.as_str();
    assert_eq!(
        paths_in_comments(source),
        [
            "src/engine/step.rs",
            "docs/missing.md",
            "tests/fixtures/journal-v1.jsonl"
        ]
    );
}
