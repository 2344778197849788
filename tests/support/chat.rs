//! A chat that records what the channel saw: what engine tests assert on.
//! Each message is kept whole — its kind and facts for the assertions, its
//! text for failure output (the wording is pinned by `tests/messages.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use failover_bot::chat::{Chat, ChatError, Message, MessageKind, MessageRef, Upload};

/// One thing the bot did in chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Said {
    Post {
        at: MessageRef,
        thread: Option<MessageRef>,
        message: Message,
    },
    Update {
        at: MessageRef,
        message: Message,
    },
    Ephemeral {
        user: String,
        message: Message,
    },
    React {
        at: MessageRef,
        name: String,
    },
}

impl Said {
    pub fn text(&self) -> &str {
        match self {
            Said::Post { message, .. }
            | Said::Update { message, .. }
            | Said::Ephemeral { message, .. } => &message.text,
            Said::React { name, .. } => name,
        }
    }

    pub fn message(&self) -> Option<&Message> {
        match self {
            Said::Post { message, .. }
            | Said::Update { message, .. }
            | Said::Ephemeral { message, .. } => Some(message),
            Said::React { .. } => None,
        }
    }
}

/// What a list of messages says, kind by kind, for an assertion's output.
pub fn kinds(messages: &[Message]) -> Vec<MessageKind> {
    messages.iter().map(|m| m.kind).collect()
}

/// Whether `message` is of `kind` and has every fact in `facts`.
pub fn is(message: &Message, kind: MessageKind, facts: &[(&str, &str)]) -> bool {
    message.kind == kind && facts.iter().all(|(k, v)| message.fact(k) == Some(*v))
}

/// Message timestamps unique across every chat in the test process, as
/// Slack's are: a restarted engine must never reuse an old message's ts.
static NEXT_TS: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
pub struct RecordingChat {
    said: Mutex<Vec<Said>>,
    /// Slack's answer to the next post: refused with this error code.
    refuse_next_post: Mutex<Option<String>>,
    /// Files shared, with the thread each went to.
    uploads: Mutex<Vec<(MessageRef, Upload)>>,
}

impl RecordingChat {
    /// The files shared so far, with their threads, in order.
    pub fn uploads(&self) -> Vec<(MessageRef, Upload)> {
        self.uploads.lock().unwrap().clone()
    }

    /// The next `chat.postMessage` is refused with `error` (a Slack error
    /// code such as `channel_not_found`), as Slack does.
    pub fn refuse_next_post(&self, error: &str) {
        *self.refuse_next_post.lock().unwrap() = Some(error.to_owned());
    }

    pub fn said(&self) -> Vec<Said> {
        self.said.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.said.lock().unwrap().clear();
    }

    /// Top-level posts (plans, status).
    pub fn posts(&self) -> Vec<(MessageRef, Message)> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Post {
                    at,
                    thread: None,
                    message,
                } => Some((at, message)),
                _ => None,
            })
            .collect()
    }

    /// Posts that showed a plan awaiting approval.
    pub fn plans(&self) -> Vec<(MessageRef, Message)> {
        self.posts()
            .into_iter()
            .filter(|(_, m)| is(m, MessageKind::Plan, &[("status", "pending")]))
            .collect()
    }

    /// Replies in the thread of `at`, oldest first.
    pub fn thread(&self, at: &MessageRef) -> Vec<Message> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Post {
                    thread: Some(t),
                    message,
                    ..
                } if &t == at => Some(message),
                _ => None,
            })
            .collect()
    }

    /// Whether the thread of `at` has a message of `kind` with `facts`.
    pub fn thread_has(&self, at: &MessageRef, kind: MessageKind, facts: &[(&str, &str)]) -> bool {
        self.thread(at).iter().any(|m| is(m, kind, facts))
    }

    /// Updates of the message at `at`, oldest first.
    pub fn updates(&self, at: &MessageRef) -> Vec<Message> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Update { at: a, message } if &a == at => Some(message),
                _ => None,
            })
            .collect()
    }

    /// The message at `at` as it shows now: its newest update, else as posted.
    pub fn shown(&self, at: &MessageRef) -> Option<Message> {
        self.updates(at).pop().or_else(|| {
            self.posts()
                .into_iter()
                .find(|(posted, _)| posted == at)
                .map(|(_, message)| message)
        })
    }

    /// The status the plan message at `at` shows now (its newest update).
    pub fn plan_status(&self, at: &MessageRef) -> Option<String> {
        let newest = self.updates(at).pop()?;
        newest.fact("status").map(str::to_owned)
    }

    pub fn ephemerals(&self, user: &str) -> Vec<Message> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Ephemeral { user: u, message } if u == user => Some(message),
                _ => None,
            })
            .collect()
    }

    /// Every message of `kind`, wherever it went.
    pub fn of_kind(&self, kind: MessageKind) -> Vec<Message> {
        self.said()
            .iter()
            .filter_map(Said::message)
            .filter(|m| m.kind == kind)
            .cloned()
            .collect()
    }

    pub fn all_text(&self) -> String {
        self.said()
            .iter()
            .map(Said::text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[async_trait]
impl Chat for RecordingChat {
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &Message,
    ) -> Result<MessageRef, ChatError> {
        if let Some(error) = self.refuse_next_post.lock().unwrap().take() {
            return Err(ChatError::refused(format!("Slack API error: {error}")));
        }
        let at = MessageRef {
            channel: channel.to_owned(),
            ts: format!("{}.000100", NEXT_TS.fetch_add(1, Ordering::SeqCst)),
        };
        self.said.lock().unwrap().push(Said::Post {
            at: at.clone(),
            thread: thread.cloned(),
            message: message.clone(),
        });
        Ok(at)
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        self.said.lock().unwrap().push(Said::Update {
            at: at.clone(),
            message: message.clone(),
        });
        Ok(())
    }

    async fn post_ephemeral(
        &self,
        _channel: &str,
        user: &str,
        message: &Message,
    ) -> Result<(), ChatError> {
        self.said.lock().unwrap().push(Said::Ephemeral {
            user: user.to_owned(),
            message: message.clone(),
        });
        Ok(())
    }

    async fn react(&self, at: &MessageRef, reaction: &str) -> Result<(), ChatError> {
        self.said.lock().unwrap().push(Said::React {
            at: at.clone(),
            name: reaction.to_owned(),
        });
        Ok(())
    }

    async fn upload(&self, thread: &MessageRef, file: &Upload) -> Result<(), ChatError> {
        if let Some(problem) = file.problem() {
            return Err(ChatError::refused(problem));
        }
        self.uploads
            .lock()
            .unwrap()
            .push((thread.clone(), file.clone()));
        Ok(())
    }
}

/// A chat that only hands out message ids (benchmarks measure the engine,
/// not a recording of what it said).
#[derive(Default)]
pub struct NullChat(std::sync::atomic::AtomicU64);

#[async_trait]
impl Chat for NullChat {
    async fn post(
        &self,
        channel: &str,
        _: Option<&MessageRef>,
        _: &Message,
    ) -> Result<MessageRef, ChatError> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(MessageRef {
            channel: channel.to_owned(),
            ts: n.to_string(),
        })
    }
    async fn update(&self, _: &MessageRef, _: &Message) -> Result<(), ChatError> {
        Ok(())
    }
    async fn post_ephemeral(&self, _: &str, _: &str, _: &Message) -> Result<(), ChatError> {
        Ok(())
    }
    async fn react(&self, _: &MessageRef, _: &str) -> Result<(), ChatError> {
        Ok(())
    }
}
