//! Slack's deliveries to the process, over its transport: slash commands,
//! events and button clicks, as Socket Mode envelopes (acknowledged on the socket) or
//! signed Events API requests (answered over HTTP), first copies or
//! Slack's retries.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::fake_slack::{self, FakeSlack};
use super::{ServeProc, Transport};

/// How long a delivery may wait for its Socket Mode ack.
const ACK_WITHIN: Duration = Duration::from_secs(30);

/// What the bot answered one delivery with, and how long it took.
#[derive(Clone, Debug)]
pub struct Acked {
    /// HTTP status (200 for a Socket Mode ack).
    pub status: u16,
    /// The immediate reply text of a slash command, if any.
    pub text: String,
    /// From sending to the answer (HTTP response, or the ack frame seen by
    /// the fake, which polls every 10 ms).
    pub elapsed: Duration,
}

/// Unix seconds, as Slack stamps requests.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ServeProc {
    /// Types `/failover TEXT` as `user` in C1; returns the immediate
    /// (ephemeral) reply.
    pub async fn slash(&self, fake: &FakeSlack, user: &str, text: &str, trigger: &str) -> String {
        let envelope = fake.next_envelope_id();
        let command = (user, "C1", text, trigger);
        let acked = self.deliver_command(fake, command, &envelope, 0).await;
        let acked =
            acked.unwrap_or_else(|| panic!("slash command acknowledged; log:\n{}", self.log()));
        assert_eq!(acked.status, 200, "log:\n{}", self.log());
        acked.text
    }

    /// Delivers a reaction event (added or removed) on message `ts` in C1;
    /// returns once the bot acknowledged it.
    pub async fn reaction(
        &self,
        fake: &FakeSlack,
        event_id: &str,
        user: &str,
        name: &str,
        ts: &str,
        added: bool,
    ) {
        let event = fake_slack::reaction_event(event_id, user, name, "C1", ts, added);
        let envelope = fake.next_envelope_id();
        let acked = self.deliver_event(fake, event, &envelope, 0).await;
        let acked = acked.unwrap_or_else(|| panic!("event acknowledged; log:\n{}", self.log()));
        assert_eq!(acked.status, 200, "log:\n{}", self.log());
    }

    /// `user` clicks the button `action_id` (`approve`, `reject`) on
    /// message `ts` as it shows now; returns once the bot acknowledged the
    /// click. Panics if the message shows no such button.
    pub async fn click(&self, fake: &FakeSlack, user: &str, ts: &str, action_id: &str) {
        let trigger = format!("trigger-click-{}", fake.next_envelope_id());
        let payload = fake
            .click_payload(user, ts, action_id, &trigger)
            .unwrap_or_else(|| panic!("message {ts} shows no {action_id} button"));
        let envelope = fake.next_envelope_id();
        let acked = self.deliver_interaction(fake, payload, &envelope, 0).await;
        let acked = acked.unwrap_or_else(|| panic!("click acknowledged; log:\n{}", self.log()));
        assert_eq!(acked.status, 200, "log:\n{}", self.log());
    }

    /// Delivers a `block_actions` payload, attempt `attempt`: an
    /// `interactive` envelope, or the signed `payload=` form POSTed to
    /// `/slack/interactivity`.
    pub async fn deliver_interaction(
        &self,
        fake: &FakeSlack,
        payload: Value,
        envelope_id: &str,
        attempt: u32,
    ) -> Option<Acked> {
        match self.transport() {
            Transport::Http => {
                let form = fake_slack::interaction_form(&payload);
                Some(
                    self.post_signed("/slack/interactivity", &form, attempt)
                        .await,
                )
            }
            Transport::Socket => {
                self.deliver_envelope(fake, envelope_id, "interactive", payload, attempt)
                    .await
            }
        }
    }

    /// Delivers a `/failover` slash command `(user, channel, text,
    /// trigger)`, attempt `attempt` (0 = first). Over Socket Mode the
    /// envelope id is `envelope_id`; over HTTP it is not used. `None` if a
    /// Socket Mode envelope was never acknowledged.
    pub async fn deliver_command(
        &self,
        fake: &FakeSlack,
        payload: (&str, &str, &str, &str),
        envelope_id: &str,
        attempt: u32,
    ) -> Option<Acked> {
        let (user, channel, text, trigger) = payload;
        match self.transport() {
            Transport::Http => {
                let form = fake_slack::slash_command_form(user, channel, text, trigger);
                Some(self.post_signed("/slack/commands", &form, attempt).await)
            }
            Transport::Socket => {
                let command = fake_slack::slash_command(user, channel, text, trigger);
                self.deliver_envelope(fake, envelope_id, "slash_commands", command, attempt)
                    .await
            }
        }
    }

    /// Delivers an Events API `event_callback`, attempt `attempt`.
    pub async fn deliver_event(
        &self,
        fake: &FakeSlack,
        event: Value,
        envelope_id: &str,
        attempt: u32,
    ) -> Option<Acked> {
        match self.transport() {
            Transport::Http => Some(
                self.post_signed("/slack/events", &event.to_string(), attempt)
                    .await,
            ),
            Transport::Socket => {
                self.deliver_envelope(fake, envelope_id, "events_api", event, attempt)
                    .await
            }
        }
    }

    async fn deliver_envelope(
        &self,
        fake: &FakeSlack,
        envelope_id: &str,
        kind: &str,
        payload: Value,
        attempt: u32,
    ) -> Option<Acked> {
        let accepts = kind == "slash_commands";
        let started = Instant::now();
        fake.send_envelope_as(envelope_id, kind, payload, accepts, attempt)
            .await;
        let ack = fake.wait_ack(envelope_id, ACK_WITHIN).await?;
        Some(Acked {
            status: 200,
            text: ack["payload"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            elapsed: started.elapsed(),
        })
    }

    /// POSTs `body` to `path`, signed with the bot's signing secret now. A
    /// retry (`attempt` > 0) carries `X-Slack-Retry-Num` and
    /// `X-Slack-Retry-Reason`, as Slack's redeliveries do.
    pub async fn post_signed(&self, path: &str, body: &str, attempt: u32) -> Acked {
        let mut request = self.signed_request(path, body, now());
        if attempt > 0 {
            request = request
                .header("X-Slack-Retry-Num", attempt.to_string())
                .header("X-Slack-Retry-Reason", "http_timeout");
        }
        let started = Instant::now();
        let response = request.send().await.expect("the bot answers HTTP");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let elapsed = started.elapsed();
        let text = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["text"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Acked {
            status,
            text,
            elapsed,
        }
    }

    /// POSTs `body` to `path`, signed with the bot's signing secret as of
    /// `timestamp` (a stale one, say); the response as it came.
    pub async fn post_signed_at(
        &self,
        path: &str,
        body: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        let request = self.signed_request(path, body, timestamp);
        request.send().await.expect("the bot answers HTTP")
    }

    fn signed_request(&self, path: &str, body: &str, timestamp: i64) -> reqwest::RequestBuilder {
        let secret = &self.options.secrets.signing_secret;
        self.http
            .post(self.url(path))
            .header("X-Slack-Request-Timestamp", timestamp.to_string())
            .header(
                "X-Slack-Signature",
                fake_slack::sign(secret, timestamp, body),
            )
            .body(body.to_owned())
    }
}
