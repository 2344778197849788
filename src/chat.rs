//! The chat channel the bot talks through: Slack in production, the
//! terminal in the sandbox, a recorder in tests. Messages are Slack mrkdwn
//! (`*bold*`, fenced tables, `<@USER>` mentions); other channels render it.
//!
//! Every message carries its [`MessageKind`] and a few facts (which
//! operation, which step, how it stands), as bors tags its comments: tests
//! and other machines read those, people read the text. On Slack they travel
//! as the message's metadata. A plan awaiting approval also carries its
//! Approve and Reject buttons ([`PlanButtons`]); a click comes back as a
//! [`Click`]. Imports nothing of the crate but its ids.

use async_trait::async_trait;

pub use crate::ids::MessageRef;
use crate::ids::UserId;

/// What a message is, whatever its words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    Plan,
    StepResult,
    Superseded,
    Finished,
    Resuming,
    StepStopped,
    ApprovalTakenBack,
    ApprovalTooLate,
    Refused,
    InternalError,
    CommandCutShort,
    Help,
    Working,
    Status,
    History,
    Bake,
    GateTripped,
    HoldReminder,
    Rekeyed,
    Frozen,
    Unfrozen,
    DrillScorecard,
    DrillChart,
    Drills,
    Readiness,
    AllClear,
    Legacy,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Plan => "plan",
            MessageKind::StepResult => "step_result",
            MessageKind::Superseded => "superseded",
            MessageKind::Finished => "finished",
            MessageKind::Resuming => "resuming",
            MessageKind::StepStopped => "step_stopped",
            MessageKind::ApprovalTakenBack => "approval_taken_back",
            MessageKind::ApprovalTooLate => "approval_too_late",
            MessageKind::Refused => "refused",
            MessageKind::InternalError => "internal_error",
            MessageKind::CommandCutShort => "command_cut_short",
            MessageKind::Help => "help",
            MessageKind::Working => "working",
            MessageKind::Status => "status",
            MessageKind::History => "history",
            MessageKind::Bake => "bake",
            MessageKind::GateTripped => "gate_tripped",
            MessageKind::HoldReminder => "hold_reminder",
            MessageKind::Rekeyed => "rekeyed",
            MessageKind::Frozen => "frozen",
            MessageKind::Unfrozen => "unfrozen",
            MessageKind::DrillScorecard => "drill_scorecard",
            MessageKind::DrillChart => "drill_chart",
            MessageKind::Drills => "drills",
            MessageKind::Readiness => "readiness",
            MessageKind::AllClear => "all_clear",
            MessageKind::Legacy => "legacy",
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message: its kind and facts for machines, its text (Slack mrkdwn) for
/// people, and, on a plan awaiting approval, its buttons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub text: String,
    pub facts: Vec<(&'static str, String)>,
    pub buttons: Option<PlanButtons>,
}

/// Which button of a plan was clicked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ButtonChoice {
    Approve,
    Reject,
}

impl ButtonChoice {
    /// The button's `action_id` on Slack.
    pub fn action_id(self) -> &'static str {
        match self {
            ButtonChoice::Approve => "approve",
            ButtonChoice::Reject => "reject",
        }
    }

    /// The button's label.
    pub fn label(self) -> &'static str {
        match self {
            ButtonChoice::Approve => "Approve",
            ButtonChoice::Reject => "Reject",
        }
    }

    /// The choice an `action_id` (or a label, in any case) names.
    pub fn parse(name: &str) -> Option<ButtonChoice> {
        [ButtonChoice::Approve, ButtonChoice::Reject]
            .into_iter()
            .find(|c| name.eq_ignore_ascii_case(c.action_id()))
    }
}

/// The Approve and Reject buttons under a plan awaiting approval. Both
/// carry `value`, which names the exact plan shown; each asks to confirm
/// with a short text naming the environment and the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanButtons {
    pub value: String,
    /// The confirmation dialog's title and text, per button.
    pub approve: Confirmation,
    pub reject: Confirmation,
}

impl PlanButtons {
    pub fn confirmation(&self, choice: ButtonChoice) -> &Confirmation {
        match choice {
            ButtonChoice::Approve => &self.approve,
            ButtonChoice::Reject => &self.reject,
        }
    }
}

/// A confirmation dialog: Slack caps the title at 100 characters and the
/// text at 300.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub title: String,
    pub text: String,
}

/// A click on a plan's button, as a transport delivers it.
#[derive(Clone, Debug)]
pub struct Click {
    pub user: UserId,
    /// The message the button was on.
    pub message: MessageRef,
    pub choice: ButtonChoice,
    /// The button's value: the plan it was shown with.
    pub value: String,
    /// The transport's identity of this click (Slack's `trigger_id`): a
    /// repeated delivery is ignored.
    pub delivery_id: Option<String>,
}

impl Message {
    pub fn new(kind: MessageKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
            facts: Vec::new(),
            buttons: None,
        }
    }

    pub fn with_buttons(mut self, buttons: Option<PlanButtons>) -> Self {
        self.buttons = buttons;
        self
    }

    pub fn with_facts(mut self, facts: Vec<(&'static str, String)>) -> Self {
        self.facts = facts;
        self
    }

    /// The value of one fact, if the message has it.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first line: what a notification or an update notice shows.
    pub fn headline(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("chat: {reason}")]
pub struct ChatError {
    pub reason: String,
    /// Slack could not take the call now (unreachable, timed out, 5xx,
    /// rate-limited): the same call may work later.
    pub unavailable: bool,
}

impl ChatError {
    /// Slack answered and said no: retrying the same call cannot help.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            unavailable: false,
        }
    }

    /// Slack was not there to answer; the call may work later.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            unavailable: true,
        }
    }
}

/// A file for a thread (the drill chart): its bytes and how Slack shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Upload {
    /// The file's name, with its extension (`drills-dev.png`).
    pub filename: String,
    /// Shown with the file.
    pub title: String,
    /// Read out by screen readers in place of an image.
    pub alt_text: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Upload {
    pub fn png(filename: &str, title: &str, alt_text: &str, bytes: Vec<u8>) -> Self {
        Upload {
            filename: filename.to_owned(),
            title: title.to_owned(),
            alt_text: alt_text.to_owned(),
            content_type: "image/png".to_owned(),
            bytes,
        }
    }

    /// What is wrong with it before any call, if anything: Slack refuses
    /// an empty file or a file without a name.
    pub fn problem(&self) -> Option<&'static str> {
        if self.bytes.is_empty() {
            Some("the file to upload is empty")
        } else if self.filename.trim().is_empty() {
            Some("the file to upload has no name")
        } else {
            None
        }
    }
}

/// The bytes stay out of logs and errors: a chart is 20 KB of noise.
impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("filename", &self.filename)
            .field("title", &self.title)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait Chat: Send + Sync {
    /// Posts in `channel`, or in the thread under `thread`.
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &Message,
    ) -> Result<MessageRef, ChatError>;

    /// Replaces a message the bot posted earlier.
    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError>;

    /// A message only `user` sees.
    async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        message: &Message,
    ) -> Result<(), ChatError>;

    /// Adds the bot's own reaction to a message (the approve/reject hint).
    async fn react(&self, at: &MessageRef, reaction: &str) -> Result<(), ChatError>;

    /// Shares `file` in the thread under `thread`. A chat that cannot take
    /// files (the terminal, test recorders) need not implement it: the
    /// default refuses, and a file is never the only copy of what the bot
    /// says (the drill chart illustrates the scorecard's text).
    async fn upload(&self, thread: &MessageRef, file: &Upload) -> Result<(), ChatError> {
        let _ = (thread, file);
        Err(ChatError::refused("this chat does not take files"))
    }
}

/// Slack user-group ids start with `S` (user ids with `U` or `W`).
pub fn is_user_group(id: &str) -> bool {
    id.len() > 1
        && id.starts_with('S')
        && id[1..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Resolves user groups (`S…` ids) to their members; Slack's
/// `usergroups.users.list` in production.
#[async_trait]
pub trait GroupResolver: Send + Sync {
    /// The members of `group`, or `None` when `group` is not a user group.
    async fn members(&self, group: &str) -> Result<Option<Vec<String>>, ChatError>;
}

/// A fixed set of groups: the sandbox (none) and tests.
#[derive(Clone, Debug, Default)]
pub struct StaticGroups(pub std::collections::BTreeMap<String, Vec<String>>);

#[async_trait]
impl GroupResolver for StaticGroups {
    async fn members(&self, group: &str) -> Result<Option<Vec<String>>, ChatError> {
        Ok(self.0.get(group).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chat with only the methods every chat must have.
    struct Plain;

    #[async_trait]
    impl Chat for Plain {
        async fn post(
            &self,
            _: &str,
            _: Option<&MessageRef>,
            _: &Message,
        ) -> Result<MessageRef, ChatError> {
            unreachable!("not called")
        }
        async fn update(&self, _: &MessageRef, _: &Message) -> Result<(), ChatError> {
            unreachable!("not called")
        }
        async fn post_ephemeral(&self, _: &str, _: &str, _: &Message) -> Result<(), ChatError> {
            unreachable!("not called")
        }
        async fn react(&self, _: &MessageRef, _: &str) -> Result<(), ChatError> {
            unreachable!("not called")
        }
    }

    fn chart() -> Upload {
        Upload::png(
            "drills-dev.png",
            "Drills in dev",
            "a bar chart",
            vec![1, 2, 3],
        )
    }

    #[tokio::test]
    async fn a_chat_that_takes_no_files_says_so() {
        let thread = MessageRef {
            channel: "C1".into(),
            ts: "1.000100".into(),
        };
        let error = Plain.upload(&thread, &chart()).await.unwrap_err();
        assert!(!error.unavailable, "retrying cannot help");
        assert!(error.reason.contains("does not take files"), "{error}");
    }

    #[test]
    fn an_upload_without_bytes_or_name_is_refused_and_bytes_are_not_logged() {
        assert_eq!(chart().problem(), None);
        let empty = Upload::png("drills-dev.png", "t", "a", vec![]);
        assert_eq!(empty.problem(), Some("the file to upload is empty"));
        let unnamed = Upload::png(" ", "t", "a", vec![1]);
        assert_eq!(unnamed.problem(), Some("the file to upload has no name"));
        let shown = format!("{:?}", Upload::png("c.png", "t", "a", vec![7; 2000]));
        assert!(
            shown.contains("bytes: 2000") && !shown.contains("7, 7"),
            "{shown}"
        );
    }
}
