//! What both transports do with what Slack sends: answer at once, work in a
//! task. Slash commands and button clicks are deduplicated on their
//! `trigger_id`, events on their `event_id` (the engine keeps the ids it
//! has acted on).

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::decode::{self, Inbound, Interactive};
use crate::chat::{Click, Message};
use crate::engine::{CommandRequest, Engine, Reaction};

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

    /// The immediate answer to a slash command (only its author sees it):
    /// the command is read once, here, and what was understood goes on to
    /// the engine in a task.
    pub fn command(&self, command: SlashCommand) -> Message {
        self.engine.metrics().slack_event("slash_command");
        let request = CommandRequest {
            user: command.user.into(),
            channel: command.channel,
            text: command.text,
            event_id: Some(format!("command:{}", command.trigger_id)),
        };
        let understood = self.engine.understand(request);
        let answer = self.engine.first_answer(&understood);
        let engine = self.engine.clone();
        tokio::spawn(async move { engine.handle(understood).await });
        answer
    }

    /// A push event (`event_callback`) as Socket Mode delivers it: decoded
    /// by [`decode::callback`], the same extraction the HTTP path uses.
    pub fn event(&self, callback: SlackPushEventCallback) {
        match decode::callback(callback) {
            Inbound::Reaction(reaction) => self.reaction(reaction),
            other => {
                self.engine.metrics().slack_event("other");
                tracing::debug!(?other, "ignoring event");
            }
        }
    }

    /// An interaction payload as Socket Mode delivers it: decoded by
    /// [`decode::interaction`], the same extraction the HTTP path uses.
    pub fn interaction(&self, event: SlackInteractionEvent) {
        self.interactive(decode::interaction(event));
    }

    /// A decoded interaction: a click goes to the engine in a task.
    pub fn interactive(&self, interactive: Interactive) {
        match interactive {
            Interactive::Click(click) => self.click(click),
            Interactive::Ignored(why) => {
                self.engine.metrics().slack_event("other");
                tracing::debug!(why, "ignoring interaction");
            }
        }
    }

    fn click(&self, click: Click) {
        self.engine.metrics().slack_event("block_actions");
        let engine = self.engine.clone();
        tokio::spawn(async move { engine.handle_click(click).await });
    }

    /// A reaction, handed to the engine in a task.
    pub fn reaction(&self, reaction: Reaction) {
        let kind = if reaction.added {
            "reaction_added"
        } else {
            "reaction_removed"
        };
        self.engine.metrics().slack_event(kind);
        let engine = self.engine.clone();
        tokio::spawn(async move { engine.handle_reaction(reaction).await });
    }
}
