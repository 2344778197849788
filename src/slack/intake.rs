//! What both transports do with what Slack sends: answer at once, work in a
//! task. Slash commands are deduplicated on their `trigger_id`, events on
//! their `event_id` (the engine keeps the ids it has acted on).

use std::sync::Arc;

use slack_morphism::prelude::*;

use crate::chat::{Message, MessageRef};
use crate::messages;
use crate::operation::engine::{CommandRequest, Engine, Reaction};

/// A slash command as both transports deliver it.
#[derive(Clone, Debug)]
pub struct SlashCommand {
    pub user: String,
    pub channel: String,
    pub text: String,
    pub trigger_id: String,
}

pub struct Intake {
    engine: Arc<Engine>,
}

impl Intake {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The immediate answer to a slash command (only its author sees it);
    /// any work continues in a task.
    pub fn command(&self, command: SlashCommand) -> Message {
        let request = CommandRequest {
            user: command.user,
            channel: command.channel,
            text: command.text,
            event_id: Some(format!("command:{}", command.trigger_id)),
        };
        let engine = self.engine.clone();
        match engine.quick_reply(&request) {
            Some(reply) => {
                tokio::spawn(async move { engine.log_command(request).await });
                reply
            }
            None => {
                let accepted = messages::accepted(&request.text);
                tokio::spawn(async move { engine.handle_command(request).await });
                accepted
            }
        }
    }

    /// A push event (`event_callback`): reactions are handed to the engine
    /// in a task; everything else is none of the bot's business.
    pub fn event(&self, callback: SlackPushEventCallback) {
        let event_id = callback.event_id.to_string();
        let (user, reaction, item, added) = match callback.event {
            SlackEventCallbackBody::ReactionAdded(e) => (e.user, e.reaction, e.item, true),
            SlackEventCallbackBody::ReactionRemoved(e) => (e.user, e.reaction, e.item, false),
            other => {
                tracing::debug!(event = ?std::mem::discriminant(&other), "ignoring event");
                return;
            }
        };
        let SlackReactionsItem::Message(message) = item else {
            return;
        };
        let Some(channel) = message.origin.channel else {
            return;
        };
        let reaction = Reaction {
            user: user.to_string(),
            name: reaction.to_string(),
            message: MessageRef {
                channel: channel.to_string(),
                ts: message.origin.ts.to_string(),
            },
            added,
            event_id: Some(event_id),
        };
        let engine = self.engine.clone();
        tokio::spawn(async move { engine.handle_reaction(reaction).await });
    }
}
