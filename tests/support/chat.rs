//! A chat that records what the channel saw: what engine tests assert on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use failover_bot::chat::{Chat, ChatError, Message, MessageRef};

/// One thing the bot did in chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Said {
    Post {
        at: MessageRef,
        thread: Option<MessageRef>,
        text: String,
    },
    Update {
        at: MessageRef,
        text: String,
    },
    Ephemeral {
        user: String,
        text: String,
    },
    React {
        at: MessageRef,
        name: String,
    },
}

impl Said {
    pub fn text(&self) -> &str {
        match self {
            Said::Post { text, .. } | Said::Update { text, .. } | Said::Ephemeral { text, .. } => {
                text
            }
            Said::React { name, .. } => name,
        }
    }
}

/// Message timestamps unique across every chat in the test process, as
/// Slack's are: a restarted engine must never reuse an old message's ts.
static NEXT_TS: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
pub struct RecordingChat {
    said: Mutex<Vec<Said>>,
}

impl RecordingChat {
    pub fn said(&self) -> Vec<Said> {
        self.said.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.said.lock().unwrap().clear();
    }

    /// Top-level posts (plans, status).
    pub fn posts(&self) -> Vec<(MessageRef, String)> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Post {
                    at,
                    thread: None,
                    text,
                } => Some((at, text)),
                _ => None,
            })
            .collect()
    }

    /// Posts that showed a plan awaiting approval.
    pub fn plans(&self) -> Vec<(MessageRef, String)> {
        self.posts()
            .into_iter()
            .filter(|(_, t)| t.contains("awaiting approval"))
            .collect()
    }

    pub fn thread(&self, at: &MessageRef) -> Vec<String> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Post {
                    thread: Some(t),
                    text,
                    ..
                } if &t == at => Some(text),
                _ => None,
            })
            .collect()
    }

    pub fn updates(&self, at: &MessageRef) -> Vec<String> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Update { at: a, text } if &a == at => Some(text),
                _ => None,
            })
            .collect()
    }

    pub fn ephemerals(&self, user: &str) -> Vec<String> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Ephemeral { user: u, text } if u == user => Some(text),
                _ => None,
            })
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
        let at = MessageRef {
            channel: channel.to_owned(),
            ts: format!("{}.000100", NEXT_TS.fetch_add(1, Ordering::SeqCst)),
        };
        self.said.lock().unwrap().push(Said::Post {
            at: at.clone(),
            thread: thread.cloned(),
            text: message.text.clone(),
        });
        Ok(at)
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        self.said.lock().unwrap().push(Said::Update {
            at: at.clone(),
            text: message.text.clone(),
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
            text: message.text.clone(),
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
}
