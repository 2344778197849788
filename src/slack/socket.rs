//! Socket Mode: slack-morphism keeps the WebSocket (and reconnects after a
//! `disconnect` envelope or a dropped connection); envelopes are
//! acknowledged when the callback returns, so callbacks only hand work to
//! [`Intake`] and return.

use std::future::Future;
use std::sync::Arc;

use hyper_util::client::legacy::connect::Connect;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::intake::{Intake, SlashCommand};
use super::web::Connector;
use super::Secret;

/// Listens until `shutdown` completes.
pub async fn run<H>(
    client: Arc<SlackClient<Connector<H>>>,
    app_token: &Secret,
    intake: Arc<Intake>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String>
where
    H: Send + Sync + Clone + Connect + 'static,
{
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command::<H>)
        .with_push_events(on_push_event::<H>)
        .with_interaction_events(on_interaction::<H>);
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client)
            .with_error_handler(on_error::<H>)
            .with_user_state(intake),
    );
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new()
            .with_max_connections_count(1)
            .with_initial_backoff_in_seconds(1)
            .with_reconnect_timeout_in_seconds(5),
        environment,
        callbacks,
    );
    listener
        .listen_for(&SlackApiToken::new(app_token.expose().into()))
        .await
        .map_err(|e| format!("cannot open a Socket Mode connection: {}", short(&e)))?;
    listener.start().await;
    tracing::info!("listening on Slack Socket Mode");
    shutdown.await;
    listener.shutdown().await;
    Ok(())
}

fn short(error: &SlackClientError) -> String {
    match error {
        SlackClientError::ApiError(e) => e.code.clone(),
        other => other.to_string().chars().take(200).collect(),
    }
}

async fn intake_of(states: &SlackClientEventsUserState) -> Option<Arc<Intake>> {
    states.read().await.get_user_state::<Arc<Intake>>().cloned()
}

async fn on_command<H>(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<Connector<H>>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse>
where
    H: Send + Sync + Clone + Connect + 'static,
{
    let intake = intake_of(&states)
        .await
        .ok_or("no intake in the listener state")?;
    let reply = intake.command(SlashCommand {
        user: event.user_id.to_string(),
        channel: event.channel_id.to_string(),
        text: event.text.unwrap_or_default(),
        trigger_id: event.trigger_id.to_string(),
    });
    Ok(
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(reply.text))
            .with_response_type(SlackMessageResponseType::Ephemeral),
    )
}

async fn on_push_event<H>(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector<H>>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()>
where
    H: Send + Sync + Clone + Connect + 'static,
{
    let intake = intake_of(&states)
        .await
        .ok_or("no intake in the listener state")?;
    intake.event(event);
    Ok(())
}

async fn on_interaction<H>(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector<H>>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()>
where
    H: Send + Sync + Clone + Connect + 'static,
{
    let intake = intake_of(&states)
        .await
        .ok_or("no intake in the listener state")?;
    intake.interaction(event);
    Ok(())
}

fn on_error<H>(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackClient<Connector<H>>>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode
where
    H: Send + Sync + Clone + Connect + 'static,
{
    tracing::warn!(%error, "Socket Mode event could not be handled");
    HttpStatusCode::OK
}
