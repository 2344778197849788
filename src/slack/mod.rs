//! Slack: the Web API as the bot's [`Chat`](crate::chat::Chat) and
//! [`GroupResolver`](crate::chat::GroupResolver) ([`web`]), and the two ways
//! commands, events and button clicks arrive — Socket Mode ([`socket`], the
//! default: it needs no public ingress, which matters for a bot whose job is
//! to move the ingress and DNS it would otherwise depend on) and the Events
//! API and interactivity over HTTP ([`http`]).
//!
//! Both transports go through [`intake`]: acknowledge at once, then do the
//! work in a task, so Slack's 3-second limit holds whatever the clusters do.

pub mod decode;
pub mod http;
pub mod intake;
pub mod socket;
pub mod web;

use std::fmt;

/// A token or secret: never printed, logged or put in an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// What the bot needs from the environment to talk to Slack.
#[derive(Clone, Debug)]
pub struct SlackSettings {
    pub bot_token: Secret,
    /// Socket Mode when set.
    pub app_token: Option<Secret>,
    /// Required for the Events API over HTTP.
    pub signing_secret: Option<Secret>,
    pub api_url: String,
}

impl SlackSettings {
    /// Reads `SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`, `SLACK_SIGNING_SECRET` and
    /// `SLACK_API_URL` through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<SlackSettings, String> {
        let non_empty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let bot_token = non_empty("SLACK_BOT_TOKEN").ok_or(
            "SLACK_BOT_TOKEN is not set: the bot token (xoxb-…) from the Slack app's OAuth page",
        )?;
        let app_token = non_empty("SLACK_APP_TOKEN");
        if let Some(token) = &app_token {
            if !token.starts_with("xapp-") {
                return Err(
                    "SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write"
                        .into(),
                );
            }
        }
        let signing_secret = non_empty("SLACK_SIGNING_SECRET");
        if app_token.is_none() && signing_secret.is_none() {
            return Err("set SLACK_APP_TOKEN for Socket Mode, or SLACK_SIGNING_SECRET for the Events API over HTTP".into());
        }
        let api_url = non_empty("SLACK_API_URL")
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        Ok(SlackSettings {
            bot_token: Secret::new(bot_token),
            app_token: app_token.map(Secret::new),
            signing_secret: signing_secret.map(Secret::new),
            api_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("xoxb-very-secret");
        assert_eq!(format!("{s:?} {s}"), "Secret(<redacted>) <redacted>");
        let settings = SlackSettings::from_env(|name| match name {
            "SLACK_BOT_TOKEN" => Some("xoxb-very-secret".into()),
            "SLACK_APP_TOKEN" => Some("xapp-also-secret".into()),
            _ => None,
        })
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("also-secret"),
            "{shown}"
        );
        assert_eq!(settings.api_url, DEFAULT_API_URL);
    }

    #[test]
    fn settings_explain_what_is_missing() {
        let err = SlackSettings::from_env(|_| None).unwrap_err();
        assert!(err.contains("SLACK_BOT_TOKEN"));
        let err = SlackSettings::from_env(|n| (n == "SLACK_BOT_TOKEN").then(|| "xoxb-1".into()))
            .unwrap_err();
        assert!(err.contains("SLACK_APP_TOKEN") && err.contains("SLACK_SIGNING_SECRET"));
    }
}
