//! What each fuzz target does with one input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the regression test that replays kept
//! inputs (`tests/fuzz_regressions.rs`, which includes this file by path),
//! so a kept input is replayed through exactly the code that was fuzzed.
//!
//! Each function returns a short name for how the input was handled; any
//! panic, hang or runaway allocation in the code under test is the bug the
//! fuzzer reports.

use std::sync::OnceLock;

use failover_bot::command::{self, cluster_labels, CommandError, Understood};
use failover_bot::config::{Config, ConfigError};
use failover_bot::slack::decode;

/// The sandbox's config (`examples/sandbox.yaml`): commands are resolved
/// against it.
fn sandbox() -> &'static Config {
    static SANDBOX: OnceLock<Config> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Config::from_yaml(include_str!("../examples/sandbox.yaml"))
            .expect("examples/sandbox.yaml is a valid config")
    })
}

/// Channels to resolve from: the sandbox's own, and one it refuses.
const CHANNELS: [&str; 2] = ["sandbox", "C0OTHER"];

/// `command_parser`: the text of a `/failover` command, parsed, then
/// resolved against the sandbox config; every error is rendered, since
/// the person who typed the command reads it.
pub fn command_parser(data: &[u8]) -> &'static str {
    let Ok(text) = std::str::from_utf8(data) else {
        // Both transports hand the parser a `String`.
        return "not-utf8";
    };
    parse_and_resolve(sandbox(), &CHANNELS, text)
}

/// Reads `text` from each channel: `help`, `resolved` if any channel takes
/// it, else whether its grammar or its names were wrong.
fn parse_and_resolve(config: &Config, channels: &[&str], text: &str) -> &'static str {
    let mut outcome = "resolve-error";
    for channel in channels {
        match command::understand(config, channel, text) {
            Ok(Understood::Help) => return "help",
            Ok(request) => {
                let _ = format!("{request:?}");
                return "resolved";
            }
            Err(error) => {
                let _ = error.to_string();
                if is_grammar(&error) {
                    outcome = "parse-error";
                }
            }
        }
    }
    outcome
}

/// A mistake in the words themselves, whatever the config says.
fn is_grammar(error: &CommandError) -> bool {
    matches!(
        error,
        CommandError::UnknownCommand { .. }
            | CommandError::MissingArgument { .. }
            | CommandError::BadPercent { .. }
            | CommandError::BadSteps { .. }
            | CommandError::UnexpectedWord { .. }
            | CommandError::RepeatedOption { .. }
    )
}

/// `slack_payloads`: the first byte picks the decoder, the rest is the
/// body (Slack bodies that are not UTF-8 are refused before decoding). A
/// first byte from 0x80 up picks the interactivity form (added later: the
/// kept inputs' first bytes keep their decoders).
pub fn slack_payloads(data: &[u8]) -> &'static str {
    let Some((selector, body)) = data.split_first() else {
        return "empty";
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return "not-utf8";
    };
    if *selector >= 0x80 {
        return match decode::interaction_form(body) {
            Ok(interactive) => {
                let _ = format!("{interactive:?}");
                "interaction-ok"
            }
            Err(error) => rendered(error, "interaction-err"),
        };
    }
    match selector % 3 {
        0 => match decode::slash_command_form(body) {
            // The form's text goes on to the parser, as in production.
            Ok(form) => {
                let _ = command::understand(sandbox(), "sandbox", &form.text);
                "form-ok"
            }
            Err(error) => rendered(error, "form-err"),
        },
        1 => match decode::push_event(body) {
            Ok(inbound) => {
                let _ = format!("{inbound:?}");
                "event-ok"
            }
            Err(error) => rendered(error, "event-err"),
        },
        _ => match decode::socket_mode_envelope(body) {
            Ok(frame) => {
                let _ = format!("{frame:?}");
                "envelope-ok"
            }
            Err(error) => rendered(error, "envelope-err"),
        },
    }
}

fn rendered(error: decode::DecodeError, outcome: &'static str) -> &'static str {
    let _ = error.to_string();
    outcome
}

/// Commands tried on every config that loads, to exercise what the config
/// feeds into (cluster labels, name resolution, default steps).
const COMMANDS: [&str; 5] = ["status", "to b", "shift 50 to a", "add x", "remove k8s"];

/// `config_loader`: a config file, loaded and validated; when it loads,
/// the code that reads a loaded config runs on it too.
pub fn config_loader(data: &[u8]) -> &'static str {
    let Ok(text) = std::str::from_utf8(data) else {
        // `Config::load` reads the file into a `String`, which refuses it.
        return "not-utf8";
    };
    match Config::from_yaml(text) {
        Ok(config) => {
            use_config(&config);
            "ok"
        }
        Err(error) => {
            let _ = error.to_string();
            match error {
                ConfigError::Syntax(_) => "syntax",
                ConfigError::Invalid(_) => "invalid",
                ConfigError::Read { .. } => "read",
            }
        }
    }
}

fn use_config(config: &Config) {
    for environment in config.environments.values() {
        let _ = cluster_labels(environment);
        let _ = environment.initial_weights();
    }
    // Each environment's channel selects it; the others test the refusal
    // and the "which environment?" paths.
    let mut channels: Vec<&str> = config
        .environments
        .values()
        .filter_map(|e| e.channel.as_deref())
        .collect();
    channels.extend(config.slack.channels.first().map(String::as_str));
    channels.extend(CHANNELS);
    for text in COMMANDS {
        let _ = parse_and_resolve(config, &channels, text);
    }
}
