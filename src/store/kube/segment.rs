//! The `JournalSegment` custom resource: one run of consecutive journal
//! lines in the bot's home cluster.
//!
//! Group `failover-bot.github.io`: a CRD group should be a DNS name its
//! owner controls, so no one else's CRD can ever take the same name. The
//! project's one name on the Internet is its GitHub organisation (the image
//! is `ghcr.io/failover-bot/…`), whose Pages domain is
//! `failover-bot.github.io`; `failover.bot` would be a domain it does not
//! hold. The kind is the bot's own, not a ConfigMap, so RBAC can grant the
//! journal's verbs on it and nothing on the ConfigMap holding the config.
//!
//! A segment is created by name (`segment-000042`, the next number after
//! the last one): a create either makes the name or fails, which makes the
//! start of a segment a compare-and-swap. Lines are appended with
//! resourceVersion preconditions. A full segment is sealed (`sealedAt`)
//! before the next is created, also under a precondition, so a writer that
//! lost the head cannot start a new segment behind the new writer's back.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::store::{last_hash_of, line_hash};

pub const GROUP: &str = "failover-bot.github.io";
/// `metadata.name` prefix; the number follows, zero-padded to six digits.
pub const NAME_PREFIX: &str = "segment-";
/// Label holding the position of a segment's first line, so a metadata
/// list finds the segment holding any position without reading lines.
pub const FIRST_LINE_LABEL: &str = "failover-bot.github.io/first-line";

#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "failover-bot.github.io",
    version = "v1alpha1",
    kind = "JournalSegment",
    plural = "journalsegments",
    singular = "journalsegment",
    namespaced,
    doc = "Consecutive lines of failover-bot's journal, hash-chained to the segment before.",
    printcolumn = r#"{"name":"First","type":"integer","jsonPath":".spec.first"}"#,
    printcolumn = r#"{"name":"Epoch","type":"integer","jsonPath":".spec.epoch"}"#,
    printcolumn = r#"{"name":"Writer","type":"string","jsonPath":".spec.writer"}"#,
    printcolumn = r#"{"name":"Sealed","type":"string","jsonPath":".spec.sealedAt"}"#,
    printcolumn = r#"{"name":"Exported","type":"string","jsonPath":".spec.exportedAt"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct JournalSegmentSpec {
    /// Position of the first line in the whole journal (counted from 0).
    pub first: i64,
    /// SHA-256 (hex) of the line before the first one; absent for the
    /// journal's first segment. Ties the segment to the one before it, also
    /// after that one was archived and deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    /// The writer epoch: every takeover starts a new one. An append's
    /// resourceVersion precondition fails after a takeover.
    pub epoch: i64,
    /// Who took over last (absent until someone takes over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// The journal's lines, in order, each one JSON record.
    #[serde(default)]
    pub lines: Vec<String>,
    /// The latest checkpoint line as of this segment; start-up reads from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointRef>,
    /// When the writer closed the segment (RFC 3339); none are appended after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_at: Option<String>,
    /// When `failover-bot journal export` last wrote the sealed segment out
    /// (RFC 3339); only exported segments are ever deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
}

/// Where the latest checkpoint line is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointRef {
    pub segment: i64,
    pub position: i64,
}

/// `Some(text)` unless it is empty: the test API server (1.20) takes an
/// empty string in a custom resource for null, so none is ever sent.
pub fn unless_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// `segment-000042`.
pub fn segment_name(number: u64) -> String {
    format!("{NAME_PREFIX}{number:06}")
}

/// The number in a segment's name, if it is one.
pub fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl JournalSegmentSpec {
    /// The hash of the line before the first one (empty: none).
    pub fn prev_hash(&self) -> &str {
        self.prev_hash.as_deref().unwrap_or_default()
    }

    pub fn writer(&self) -> &str {
        self.writer.as_deref().unwrap_or_default()
    }

    pub fn first(&self) -> u64 {
        self.first.max(0) as u64
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.max(0) as u64
    }

    /// Position after the last line.
    pub fn end(&self) -> u64 {
        self.first() + self.lines.len() as u64
    }

    pub fn bytes(&self) -> usize {
        self.lines.iter().map(String::len).sum()
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed_at.is_some()
    }

    /// SHA-256 of the last line (or of the line before the segment, if empty).
    pub fn last_hash(&self) -> String {
        last_hash_of(&self.lines, self.prev_hash())
    }

    /// The lines from `position` on, and the hash of the line before them.
    pub fn lines_from(&self, position: u64) -> (&[String], String) {
        let skip = position.saturating_sub(self.first()) as usize;
        let skip = skip.min(self.lines.len());
        let prev = match skip {
            0 => self.prev_hash().to_owned(),
            n => line_hash(&self.lines[n - 1]),
        };
        (&self.lines[skip..], prev)
    }
}

/// The CRD as YAML, as `failover-bot journal crd` prints it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = JournalSegment::crd();
    let value = serde_json::to_value(&crd).unwrap_or_default();
    let mut out = String::from("# Generated by `failover-bot journal crd`; do not edit.\n");
    out.push_str(&serde_saphyr::to_string(&value).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_number_and_parse_back() {
        assert_eq!(segment_name(42), "segment-000042");
        assert_eq!(segment_number("segment-000042"), Some(42));
        assert_eq!(segment_number("segment-1234567"), Some(1_234_567));
        for other in [
            "segment-",
            "segment-12a",
            "segment--1",
            "other-000001",
            "segment-+1",
        ] {
            assert_eq!(segment_number(other), None, "{other}");
        }
    }

    #[test]
    fn lines_from_a_position_carry_the_hash_of_the_line_before() {
        let spec = JournalSegmentSpec {
            first: 10,
            prev_hash: Some("h9".into()),
            epoch: 1,
            writer: Some("a".into()),
            lines: vec!["x".into(), "y".into()],
            checkpoint: None,
            sealed_at: None,
            exported_at: None,
        };
        assert_eq!(spec.end(), 12);
        assert_eq!(spec.lines_from(10), (&spec.lines[..], "h9".to_owned()));
        assert_eq!(spec.lines_from(11), (&spec.lines[1..], line_hash("x")));
        assert_eq!(spec.lines_from(12).0.len(), 0);
        assert_eq!(spec.last_hash(), line_hash("y"));
    }

    #[test]
    fn the_crd_is_namespaced_in_the_bots_own_group() {
        let yaml = crd_yaml();
        assert!(
            yaml.contains("name: journalsegments.failover-bot.github.io"),
            "{yaml}"
        );
        assert!(yaml.contains("scope: Namespaced"), "{yaml}");
    }
}
