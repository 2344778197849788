//! The chat channel the bot talks through: Slack in production, the
//! terminal in the sandbox, a recorder in tests. Messages are Slack mrkdwn
//! (`*bold*`, fenced tables, `<@USER>` mentions); other channels render it.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where a posted message lives: reactions and thread replies refer to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

impl fmt::Display for MessageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel, self.ts)
    }
}

/// A message, as Slack mrkdwn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
}

impl Message {
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// The first line: what a notification or an update notice shows.
    pub fn headline(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

/// Something the bot says that needs no answer from Slack: journaled
/// before it is sent, so a restart sends what a crash cut off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Said {
    Post {
        channel: String,
        thread: Option<MessageRef>,
        message: Message,
    },
    Update {
        at: MessageRef,
        message: Message,
    },
}

/// Marks a post sent again after a restart: Slack may already have taken
/// the first copy just before the crash, and then the channel shows both.
pub const RESENT_NOTE: &str = "_(sent again after a restart; it may show twice)_";

impl Said {
    /// The same, to send again after a restart. An update sets a message to
    /// a state, so sending it twice is harmless; a post says so.
    pub fn resent(self) -> Said {
        match self {
            Said::Post {
                channel,
                thread,
                message,
            } => Said::Post {
                channel,
                thread,
                message: Message::new(format!("{}\n{RESENT_NOTE}", message.text)),
            },
            update @ Said::Update { .. } => update,
        }
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
