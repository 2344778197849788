//! The Slack Web API as the bot's chat: posts, updates, ephemerals, the
//! reaction hints, file uploads, and user-group lookups — through
//! slack-morphism, at the API base URL from `SLACK_API_URL`.
//!
//! A 429 is retried after its `Retry-After` (bounded); nothing else is
//! retried, because Slack may have acted on a request that failed with a 5xx
//! and a failover channel must not show a message twice.
//!
//! Files go up by Slack's external upload flow (`files.upload` is retired):
//! `files.getUploadURLExternal` gives an upload URL and a file id, the bytes
//! are POSTed to that URL (not a Web API method: it answers `OK - <length>`
//! as text), and `files.completeUploadExternal` shares the file in the
//! thread. Only the last step shows in the channel.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyper_util::client::legacy::connect::Connect;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::Secret;
use crate::chat::{
    is_user_group, ButtonChoice, Chat, ChatError, GroupResolver, Message, MessageRef, PlanButtons,
    Upload,
};

/// At most this many retries after a 429, and never a wait longer than this.
const MAX_RATE_LIMIT_RETRIES: usize = 3;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// User groups change rarely; a short cache keeps approvals from costing an
/// API call each.
const GROUP_CACHE_TTL: Duration = Duration::from_secs(60);

pub type Connector<H> = SlackClientHyperConnector<H>;

/// User group → when it was looked up, and its members (`None`: no such group).
type GroupCache = HashMap<String, (Instant, Option<Vec<String>>)>;

pub struct SlackChat<H: Send + Sync + Clone + Connect + 'static> {
    client: Arc<SlackClient<Connector<H>>>,
    token: SlackApiToken,
    groups: Mutex<GroupCache>,
}

impl<H: Send + Sync + Clone + Connect + 'static> SlackChat<H> {
    pub fn new(client: Arc<SlackClient<Connector<H>>>, bot_token: &Secret) -> Self {
        Self {
            client,
            token: SlackApiToken::new(bot_token.expose().into()),
            groups: Mutex::default(),
        }
    }

    /// The bot's own user id (`auth.test`): its reactions are hints, not votes.
    pub async fn bot_user_id(&self) -> Result<String, ChatError> {
        let session = self.client.open_session(&self.token);
        let response = with_rate_limit_retry(|| session.auth_test()).await?;
        Ok(response.user_id.to_string())
    }
}

/// Runs a Web API call, retrying after `Retry-After` on 429.
async fn with_rate_limit_retry<T, F, Fut>(call: F) -> Result<T, ChatError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ClientResult<T>>,
{
    let mut retries = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(SlackClientError::RateLimitError(limit)) if retries < MAX_RATE_LIMIT_RETRIES => {
                retries += 1;
                let wait = limit
                    .retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(MAX_RETRY_AFTER);
                tracing::warn!(?wait, retries, "Slack rate limit: waiting before retrying");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(chat_error(&error)),
        }
    }
}

/// A short description that never includes request bodies or tokens.
/// Slack API error codes that mean "Slack is having trouble", not "no".
const UNAVAILABLE_CODES: [&str; 4] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// A failed call as a [`ChatError`]: is it worth trying again later?
fn chat_error(error: &SlackClientError) -> ChatError {
    let unavailable = match error {
        SlackClientError::ApiError(e) => UNAVAILABLE_CODES.contains(&e.code.as_str()),
        SlackClientError::HttpError(e) => e.status_code.is_server_error(),
        SlackClientError::RateLimitError(_)
        | SlackClientError::HttpProtocolError(_)
        | SlackClientError::EndOfStream(_) => true,
        _ => false,
    };
    ChatError {
        reason: describe(error),
        unavailable,
    }
}

fn describe(error: &SlackClientError) -> String {
    match error {
        SlackClientError::ApiError(e) => format!("Slack API error: {}", e.code),
        SlackClientError::HttpError(e) => format!("Slack HTTP error: status {}", e.status_code),
        SlackClientError::RateLimitError(_) => "Slack rate limit: gave up after retries".into(),
        other => format!(
            "Slack call failed: {}",
            other.to_string().chars().take(200).collect::<String>()
        ),
    }
}

/// The message as Block Kit (one mrkdwn section, and a plan's Approve and
/// Reject buttons while it awaits approval) with the text as the
/// plain-text fallback that notifications and screen readers use, and its
/// kind and facts as the message's metadata: a machine reading the channel
/// (a test, an audit export) need not parse the words. An update without
/// buttons replaces the blocks whole, so a decided plan shows none.
fn content(message: &Message) -> SlackMessageContent {
    let section = SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(
        SlackBlockMarkDownText::new(truncate(&message.text, 3000)),
    ));
    let mut blocks = vec![section.into()];
    if let Some(buttons) = &message.buttons {
        blocks.push(actions(buttons).into());
    }
    SlackMessageContent::new()
        .with_text(message.text.clone())
        .with_blocks(blocks)
        .with_metadata(metadata(message))
}

/// The block id of a plan's buttons.
pub const PLAN_ACTIONS_BLOCK: &str = "plan_actions";

fn actions(buttons: &PlanButtons) -> SlackActionsBlock {
    let button = |choice: ButtonChoice, style: SlackBlockButtonStyle| {
        let dialog = buttons.confirmation(choice);
        let confirm = SlackBlockConfirmItem::new(
            truncate(&dialog.title, 100).into(),
            SlackBlockText::Plain(SlackBlockPlainText::new(truncate(&dialog.text, 300))),
            choice.label().into(),
            "Cancel".into(),
        );
        SlackActionBlockElement::Button(
            SlackBlockButtonElement::new(choice.label().into())
                .with_action_id(choice.action_id().into())
                .with_value(buttons.value.clone())
                .with_style(style)
                .with_confirm(confirm),
        )
    };
    SlackActionsBlock::new(vec![
        button(ButtonChoice::Approve, SlackBlockButtonStyle::Primary),
        button(ButtonChoice::Reject, SlackBlockButtonStyle::Danger),
    ])
    .with_block_id(PLAN_ACTIONS_BLOCK.into())
}

/// Prefix of the metadata `event_type` of every message the bot posts.
pub const EVENT_TYPE_PREFIX: &str = "failover_bot_";

fn metadata(message: &Message) -> SlackMessageMetadata {
    let payload = message
        .facts
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    SlackMessageMetadata {
        event_type: format!("{EVENT_TYPE_PREFIX}{}", message.kind),
        event_payload: Some(payload),
    }
}

/// Block text is limited to 3,000 characters; cut on a char boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[async_trait]
impl<H: Send + Sync + Clone + Connect + 'static> Chat for SlackChat<H> {
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &Message,
    ) -> Result<MessageRef, ChatError> {
        let session = self.client.open_session(&self.token);
        let mut request = SlackApiChatPostMessageRequest::new(channel.into(), content(message));
        if let Some(thread) = thread {
            request = request.with_thread_ts(thread.ts.clone().into());
        }
        let response = with_rate_limit_retry(|| session.chat_post_message(&request)).await?;
        Ok(MessageRef {
            channel: response.channel.to_string(),
            ts: response.ts.to_string(),
        })
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiChatUpdateRequest::new(
            at.channel.clone().into(),
            content(message),
            at.ts.clone().into(),
        );
        with_rate_limit_retry(|| session.chat_update(&request)).await?;
        Ok(())
    }

    async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        message: &Message,
    ) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        // chat.postEphemeral takes no metadata (and a refusal no buttons):
        // only the words.
        let mut words = content(message);
        words.metadata = None;
        let request = SlackApiChatPostEphemeralRequest::new(channel.into(), user.into(), words);
        with_rate_limit_retry(|| session.chat_post_ephemeral(&request)).await?;
        Ok(())
    }

    async fn react(&self, at: &MessageRef, reaction: &str) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiReactionsAddRequest::new(
            at.channel.clone().into(),
            reaction.into(),
            at.ts.clone().into(),
        );
        with_rate_limit_retry(|| session.reactions_add(&request)).await?;
        Ok(())
    }

    async fn upload(&self, thread: &MessageRef, file: &Upload) -> Result<(), ChatError> {
        if let Some(problem) = file.problem() {
            return Err(ChatError::refused(problem));
        }
        let session = self.client.open_session(&self.token);
        let ticket =
            SlackApiFilesGetUploadUrlExternalRequest::new(file.filename.clone(), file.bytes.len())
                .with_alt_txt(file.alt_text.clone());
        let ticket = with_rate_limit_retry(|| session.get_upload_url_external(&ticket)).await?;
        let bytes = SlackApiFilesUploadViaUrlRequest::new(
            ticket.upload_url,
            file.bytes.clone(),
            file.content_type.clone(),
        );
        with_rate_limit_retry(|| session.files_upload_via_url(&bytes)).await?;
        let shared = SlackApiFilesComplete::new(ticket.file_id).with_title(file.title.clone());
        let complete = SlackApiFilesCompleteUploadExternalRequest::new(vec![shared])
            .with_channel_id(thread.channel.clone().into())
            .with_thread_ts(thread.ts.clone().into());
        with_rate_limit_retry(|| session.files_complete_upload_external(&complete)).await?;
        Ok(())
    }
}

#[async_trait]
impl<H: Send + Sync + Clone + Connect + 'static> GroupResolver for SlackChat<H> {
    async fn members(&self, group: &str) -> Result<Option<Vec<String>>, ChatError> {
        if !is_user_group(group) {
            return Ok(None);
        }
        if let Some((at, members)) = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
        {
            if at.elapsed() < GROUP_CACHE_TTL {
                return Ok(members.clone());
            }
        }
        let session = self.client.open_session(&self.token);
        let request = SlackApiUserGroupsUsersListRequest::new(group.into());
        let members = match with_rate_limit_retry(|| session.usergroups_users_list(&request)).await
        {
            Ok(response) => Some(response.users.iter().map(ToString::to_string).collect()),
            Err(e) if e.reason.contains("no_such_subteam") => None,
            Err(e) => return Err(e),
        };
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_owned(), (Instant::now(), members.clone()));
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_groups_are_told_from_users() {
        assert!(is_user_group("S0SREGROUP"));
        assert!(!is_user_group("U01BOB"));
        assert!(!is_user_group("sam"));
        assert!(!is_user_group("S"));
    }

    fn plan_with_buttons() -> Message {
        let dialog = |title: &str| crate::chat::Confirmation {
            title: title.to_owned(),
            text: "In dev: blue 100→50, green 0→50. The bot applies it at once.".to_owned(),
        };
        Message::new(crate::chat::MessageKind::Plan, "plan").with_buttons(Some(PlanButtons {
            value: "7:1:0123456789ab".to_owned(),
            approve: dialog("Approve #7 · step 1/1?"),
            reject: dialog("Reject #7 · step 1/1?"),
        }))
    }

    #[test]
    fn a_plan_with_buttons_carries_an_actions_block_with_confirmations() {
        let json = serde_json::to_value(content(&plan_with_buttons())).unwrap();
        let blocks = json["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2, "{json}");
        let actions = &blocks[1];
        assert_eq!(actions["type"], "actions");
        assert_eq!(actions["block_id"], PLAN_ACTIONS_BLOCK);
        let buttons = actions["elements"].as_array().unwrap();
        let ids: Vec<&str> = buttons
            .iter()
            .map(|b| b["action_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["approve", "reject"]);
        let approve = &buttons[0];
        assert_eq!(
            (
                &approve["value"],
                &approve["style"],
                &approve["text"]["text"]
            ),
            (
                &"7:1:0123456789ab".into(),
                &"primary".into(),
                &"Approve".into()
            )
        );
        assert_eq!(buttons[1]["style"], "danger");
        let confirm = &approve["confirm"];
        assert_eq!(confirm["title"]["text"], "Approve #7 · step 1/1?");
        assert_eq!(
            confirm["text"]["text"],
            "In dev: blue 100→50, green 0→50. The bot applies it at once."
        );
        assert_eq!(
            (&confirm["confirm"]["text"], &confirm["deny"]["text"]),
            (&"Approve".into(), &"Cancel".into())
        );
    }

    #[test]
    fn a_message_without_buttons_has_only_its_section() {
        let mut decided = plan_with_buttons();
        decided.buttons = None;
        let json = serde_json::to_value(content(&decided)).unwrap();
        assert_eq!(json["blocks"].as_array().unwrap().len(), 1, "{json}");
    }

    #[test]
    fn long_texts_are_cut_for_blocks() {
        let long = "é".repeat(3100);
        let cut = truncate(&long, 3000);
        assert_eq!(cut.chars().count(), 3000);
        assert!(cut.ends_with('…'));
    }
}
