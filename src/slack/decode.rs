//! Decoding what Slack sends, with no I/O: the slash-command form and the
//! push-event JSON of the Events API over HTTP, and the Socket Mode envelope.
//!
//! Every byte here comes from the network, so these functions are the
//! fuzzing surface (`fuzz/`, `scripts/fuzz`): they return an error for
//! anything malformed and never panic. Both transports share the one
//! reaction extraction, [`callback`], so a reaction means the same thing
//! whichever way it arrived.

use serde::Deserialize;
use slack_morphism::prelude::*;

use super::intake::SlashCommand;
use crate::chat::{ButtonChoice, Click, MessageRef};
use crate::engine::Reaction;

/// Why a body from Slack could not be decoded. Kept short: it is logged,
/// and the body itself never is.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a slash command form: {0}")]
    Form(String),
    #[error("not a Slack push event: {0}")]
    PushEvent(String),
    #[error("not a Socket Mode envelope: {0}")]
    Envelope(String),
    #[error("not an interaction payload: {0}")]
    Interaction(String),
}

/// What an interaction payload means to the bot.
#[derive(Clone, Debug)]
pub enum Interactive {
    /// A click on a plan's Approve or Reject button.
    Click(Click),
    /// Well-formed, but none of the bot's business (the reason, for the log).
    Ignored(&'static str),
}

/// What a push event means to the bot.
#[derive(Clone, Debug)]
pub enum Inbound {
    /// Slack checking the Request URL; answer with the challenge.
    UrlVerification { challenge: String },
    /// A reaction added or removed on a message: the only event the bot acts on.
    Reaction(Reaction),
    /// Well-formed, but none of the bot's business (the reason, for the log).
    Ignored(&'static str),
    /// Slack says it is dropping events because the app is rate limited.
    RateLimited,
}

/// A Socket Mode WebSocket text frame, decoded.
#[derive(Clone, Debug)]
pub enum SocketFrame {
    Hello,
    Disconnect {
        reason: String,
    },
    /// An `events_api` envelope, its payload run through [`callback`].
    Event {
        envelope_id: String,
        inbound: Inbound,
    },
    /// A `slash_commands` envelope.
    Command {
        envelope_id: String,
        command: SlashCommand,
    },
    /// An `interactive` envelope, its payload run through [`interaction`].
    Interactive {
        envelope_id: String,
        interactive: Interactive,
    },
}

/// The form Slack posts for a slash command (only the fields we use).
#[derive(Deserialize)]
struct CommandForm {
    user_id: String,
    channel_id: String,
    #[serde(default)]
    text: String,
    trigger_id: String,
}

/// Decodes the `application/x-www-form-urlencoded` body Slack POSTs for a
/// slash command.
pub fn slash_command_form(body: &str) -> Result<SlashCommand, DecodeError> {
    let form: CommandForm =
        serde_urlencoded::from_str(body).map_err(|e| DecodeError::Form(e.to_string()))?;
    Ok(SlashCommand {
        user: form.user_id,
        channel: form.channel_id,
        text: form.text,
        trigger_id: form.trigger_id,
    })
}

/// A slash command as slack-morphism decodes it (Socket Mode), in the
/// shape both transports hand to the intake.
pub fn slash_command_event(event: SlackCommandEvent) -> SlashCommand {
    SlashCommand {
        user: event.user_id.to_string(),
        channel: event.channel_id.to_string(),
        text: event.text.unwrap_or_default(),
        trigger_id: event.trigger_id.to_string(),
    }
}

/// Decodes the JSON body POSTed to the Events API request URL.
pub fn push_event(body: &str) -> Result<Inbound, DecodeError> {
    let event: SlackPushEvent =
        serde_json::from_str(body).map_err(|e| DecodeError::PushEvent(e.to_string()))?;
    Ok(match event {
        SlackPushEvent::UrlVerification(v) => Inbound::UrlVerification {
            challenge: v.challenge,
        },
        SlackPushEvent::EventCallback(c) => callback(c),
        SlackPushEvent::AppRateLimited(_) => Inbound::RateLimited,
    })
}

/// The one reaction extraction, for both transports: a reaction added to
/// or removed from a message in a channel becomes a [`Reaction`]; anything
/// else is ignored, with the reason.
pub fn callback(callback: SlackPushEventCallback) -> Inbound {
    let event_id = callback.event_id.to_string();
    let (user, name, item, added) = match callback.event {
        SlackEventCallbackBody::ReactionAdded(e) => (e.user, e.reaction, e.item, true),
        SlackEventCallbackBody::ReactionRemoved(e) => (e.user, e.reaction, e.item, false),
        _ => return Inbound::Ignored("not a reaction event"),
    };
    let SlackReactionsItem::Message(message) = item else {
        return Inbound::Ignored("reaction on a file, not a message");
    };
    let Some(channel) = message.origin.channel else {
        return Inbound::Ignored("reaction on a message without a channel");
    };
    Inbound::Reaction(Reaction {
        user: user.to_string().into(),
        name: name.to_string(),
        message: MessageRef {
            channel: channel.to_string(),
            ts: message.origin.ts.to_string(),
        },
        added,
        event_id: Some(event_id),
    })
}

/// The form Slack POSTs to the interactivity request URL: one field,
/// `payload`, holding the interaction's JSON.
#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// Decodes the `application/x-www-form-urlencoded` body Slack POSTs to the
/// interactivity request URL (`payload=` and the JSON), then applies
/// [`interaction`], as Socket Mode does.
pub fn interaction_form(body: &str) -> Result<Interactive, DecodeError> {
    let form: InteractionForm =
        serde_urlencoded::from_str(body).map_err(|e| DecodeError::Interaction(e.to_string()))?;
    let event: SlackInteractionEvent =
        serde_json::from_str(&form.payload).map_err(|e| DecodeError::Interaction(e.to_string()))?;
    Ok(interaction(event))
}

/// The one click extraction, for both transports: a `block_actions`
/// payload whose first action is a plan's Approve or Reject button, on a
/// message in a channel, becomes a [`Click`]; anything else is ignored,
/// with the reason. The click's delivery id is its `trigger_id` (new for
/// every click; the same when Slack delivers one click again).
pub fn interaction(event: SlackInteractionEvent) -> Interactive {
    let SlackInteractionEvent::BlockActions(event) = event else {
        return Interactive::Ignored("not a block action");
    };
    let Some(user) = event.user else {
        return Interactive::Ignored("a block action without a user");
    };
    let SlackInteractionActionContainer::Message(container) = event.container else {
        return Interactive::Ignored("a block action outside a message");
    };
    let channel = container.channel_id.or_else(|| event.channel.map(|c| c.id));
    let Some(channel) = channel else {
        return Interactive::Ignored("a block action on a message without a channel");
    };
    let Some(action) = event.actions.into_iter().flatten().next() else {
        return Interactive::Ignored("a block action without an action");
    };
    let Some(choice) = ButtonChoice::parse(action.action_id.as_ref()) else {
        return Interactive::Ignored("not a plan button");
    };
    Interactive::Click(Click {
        user: user.id.to_string().into(),
        message: MessageRef {
            channel: channel.to_string(),
            ts: container.message_ts.to_string(),
        },
        choice,
        value: action.value.unwrap_or_default(),
        delivery_id: Some(format!("click:{}", event.trigger_id)),
    })
}

/// Slack-morphism's `SlackSocketModeEvent`, which its listener decodes
/// every frame into, is not exported (its `models::socket_mode` module is
/// shadowed by the listener's `socket_mode`), so this mirrors it: the same
/// `type` tag, the same required fields, and slack-morphism's own payload
/// types, so a frame decodes here exactly when it decodes there.
// Decoded once and taken apart at once, so its size does not matter
// (slack-morphism's own enum carries the same allow).
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Envelope {
    #[serde(rename = "hello")]
    Hello(#[allow(dead_code)] Hello),
    #[serde(rename = "disconnect")]
    Disconnect(Disconnect),
    #[serde(rename = "interactive")]
    Interactive(Enveloped<SlackInteractionEvent>),
    #[serde(rename = "events_api")]
    EventsApi(Enveloped<SlackPushEventCallback>),
    #[serde(rename = "slash_commands")]
    SlashCommands(Enveloped<SlackCommandEvent>),
}

#[derive(Deserialize)]
#[allow(dead_code)] // Read only so that decoding fails where slack-morphism's does.
struct Hello {
    connection_info: ConnectionInfo,
    num_connections: u32,
    debug_info: DebugInfo,
}

#[derive(Deserialize)]
#[allow(dead_code)] // As for `Hello`.
struct ConnectionInfo {
    app_id: SlackAppId,
}

#[derive(Deserialize)]
#[allow(dead_code)] // As for `Hello`.
struct DebugInfo {
    host: String,
    started: Option<String>,
    build_number: Option<u64>,
    approximate_connection_time: Option<u64>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // As for `Hello`.
struct Disconnect {
    reason: String,
    debug_info: DebugInfo,
}

#[derive(Deserialize)]
#[allow(dead_code)] // As for `Hello`.
struct Enveloped<P> {
    envelope_id: String,
    accepts_response_payload: bool,
    payload: P,
}

/// Decodes a Socket Mode text frame the way slack-morphism's listener does
/// (its `SlackSocketModeEvent`, mirrored by [`Envelope`]), then applies the
/// same rules as the HTTP path: [`callback`] for `events_api`,
/// [`slash_command_event`] for `slash_commands`.
///
/// Production Socket Mode still goes through slack-morphism's listener,
/// which hands the already-decoded payloads to [`super::intake::Intake`];
/// this function exists so that the decoding rules of both transports are
/// fuzzed together.
pub fn socket_mode_envelope(text: &str) -> Result<SocketFrame, DecodeError> {
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    Ok(match envelope {
        Envelope::Hello(_) => SocketFrame::Hello,
        Envelope::Disconnect(d) => SocketFrame::Disconnect { reason: d.reason },
        Envelope::Interactive(i) => SocketFrame::Interactive {
            envelope_id: i.envelope_id,
            interactive: interaction(i.payload),
        },
        Envelope::EventsApi(e) => SocketFrame::Event {
            envelope_id: e.envelope_id,
            inbound: callback(e.payload),
        },
        Envelope::SlashCommands(c) => SocketFrame::Command {
            envelope_id: c.envelope_id,
            command: slash_command_event(c.payload),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REACTION: &str = r#"{"token":"t","team_id":"T1","api_app_id":"A1",
        "type":"event_callback","event_id":"Ev1","event_time":1700000000,
        "event":{"type":"reaction_added","user":"UBOB","reaction":"white_check_mark",
        "item":{"type":"message","channel":"C1","ts":"1.000100"},"event_ts":"1.2"}}"#;

    #[test]
    fn a_reaction_event_becomes_a_reaction() {
        let Inbound::Reaction(r) = push_event(REACTION).unwrap() else {
            panic!("expected a reaction");
        };
        assert_eq!(
            (r.user.as_str(), r.name.as_str(), r.added),
            ("UBOB", "white_check_mark", true)
        );
        assert_eq!(r.message.channel, "C1");
        assert_eq!(r.message.ts, "1.000100");
        assert_eq!(r.event_id.as_deref(), Some("Ev1"));
    }

    #[test]
    fn both_transports_extract_the_same_reaction() {
        let envelope = format!(
            r#"{{"envelope_id":"E1","type":"events_api","accepts_response_payload":false,"payload":{REACTION}}}"#
        );
        let SocketFrame::Event {
            envelope_id,
            inbound,
        } = socket_mode_envelope(&envelope).unwrap()
        else {
            panic!("expected an events_api frame");
        };
        assert_eq!(envelope_id, "E1");
        // `Reaction` has no `PartialEq`; its Debug form shows every field.
        assert_eq!(
            format!("{inbound:?}"),
            format!("{:?}", push_event(REACTION).unwrap())
        );
    }

    #[test]
    fn url_verification_and_other_events() {
        let challenge = r#"{"token":"t","challenge":"abc","type":"url_verification"}"#;
        assert!(matches!(
            push_event(challenge).unwrap(),
            Inbound::UrlVerification { challenge } if challenge == "abc"
        ));
        let message = REACTION.replace(r#""type":"reaction_added""#, r#""type":"app_mention""#);
        assert!(matches!(push_event(&message).unwrap(), Inbound::Ignored(_)));
        assert!(matches!(
            push_event("{not json"),
            Err(DecodeError::PushEvent(_))
        ));
    }

    const CLICK: &str = r#"{"type":"block_actions","team":{"id":"T1"},
        "user":{"id":"UBOB","team_id":"T1"},"api_app_id":"A1","token":"t",
        "container":{"type":"message","message_ts":"1.000100","channel_id":"C1"},
        "trigger_id":"1.2.abc","channel":{"id":"C1","name":"failover"},
        "actions":[{"type":"button","action_id":"approve","block_id":"plan_actions",
        "value":"7:1:0123456789ab","action_ts":"1.3"}]}"#;

    fn form(payload: &str) -> String {
        serde_urlencoded::to_string([("payload", payload)]).unwrap()
    }

    #[test]
    fn a_block_action_on_a_plan_button_becomes_a_click() {
        let Interactive::Click(click) = interaction_form(&form(CLICK)).unwrap() else {
            panic!("expected a click");
        };
        assert_eq!(
            (click.user.as_str(), click.choice, click.value.as_str()),
            ("UBOB", ButtonChoice::Approve, "7:1:0123456789ab")
        );
        assert_eq!(
            (click.message.channel.as_str(), click.message.ts.as_str()),
            ("C1", "1.000100")
        );
        assert_eq!(click.delivery_id.as_deref(), Some("click:1.2.abc"));
    }

    #[test]
    fn both_transports_extract_the_same_click() {
        let envelope = format!(
            r#"{{"envelope_id":"E2","type":"interactive","accepts_response_payload":false,"payload":{CLICK}}}"#
        );
        let SocketFrame::Interactive {
            envelope_id,
            interactive,
        } = socket_mode_envelope(&envelope).unwrap()
        else {
            panic!("expected an interactive frame");
        };
        assert_eq!(envelope_id, "E2");
        assert_eq!(
            format!("{interactive:?}"),
            format!("{:?}", interaction_form(&form(CLICK)).unwrap())
        );
    }

    #[test]
    fn other_interactions_are_ignored_and_bad_bodies_refused() {
        let other_button = CLICK.replace(r#""action_id":"approve""#, r#""action_id":"open""#);
        assert!(matches!(
            interaction_form(&form(&other_button)).unwrap(),
            Interactive::Ignored("not a plan button")
        ));
        let no_actions = CLICK.replace(r#""actions":["#, r#""nothing":["#);
        assert!(matches!(
            interaction_form(&form(&no_actions)).unwrap(),
            Interactive::Ignored(_)
        ));
        let shortcut = r#"{"type":"shortcut","team":{"id":"T1"},"user":{"id":"U1"},
            "callback_id":"c","trigger_id":"t","token":"t","action_ts":"1.2"}"#;
        assert!(matches!(
            interaction_form(&form(shortcut)),
            Ok(Interactive::Ignored(_)) | Err(DecodeError::Interaction(_))
        ));
        for bad in [
            "",
            "payload=",
            "payload=%7Bnot",
            "text=hello",
            "payload=%5B%5D",
        ] {
            assert!(
                matches!(interaction_form(bad), Err(DecodeError::Interaction(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn slash_command_forms() {
        let c =
            slash_command_form("user_id=U1&channel_id=C1&text=shift+50%25&trigger_id=t1").unwrap();
        assert_eq!(
            (c.user.as_str(), c.channel.as_str(), c.text.as_str()),
            ("U1", "C1", "shift 50%")
        );
        assert_eq!(c.trigger_id, "t1");
        assert!(matches!(
            slash_command_form("user_id=U1"),
            Err(DecodeError::Form(_))
        ));
    }
}
