//! The chat channel the bot talks through: Slack in production, the
//! terminal in the sandbox, a recorder in tests. Messages are Slack mrkdwn
//! (`*bold*`, fenced tables, `<@USER>` mentions); other channels render it.
//!
//! Every message carries its [`MessageKind`] and a few facts (which
//! operation, which step, how it stands), as bors tags its comments: tests
//! and other machines read those, people read the text. On Slack they travel
//! as the message's metadata. Imports nothing of the crate but its ids.

use async_trait::async_trait;

pub use crate::ids::MessageRef;

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
    Frozen,
    Unfrozen,
    DrillScorecard,
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
            MessageKind::Frozen => "frozen",
            MessageKind::Unfrozen => "unfrozen",
            MessageKind::DrillScorecard => "drill_scorecard",
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
/// people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub text: String,
    pub facts: Vec<(&'static str, String)>,
}

impl Message {
    pub fn new(kind: MessageKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
            facts: Vec::new(),
        }
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
