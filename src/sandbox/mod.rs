//! `failover-bot sandbox`: the whole bot against in-memory clusters, with the
//! terminal as the channel. Input lines are `@USER /failover …`,
//! `@USER :reaction:` (added to the newest plan awaiting approval) or
//! `@USER [Approve]` / `@USER [Reject]` (a click on that plan's button, with
//! the value it was printed with); the sandbox also knows `wait DURATION`
//! (moves its clock, to see approvals expire) and `# comments`.

pub mod terminal;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::backend::memory::MemoryBackend;
use crate::chat::{ButtonChoice, Click, MessageRef, StaticGroups};
use crate::clock::OffsetClock;
use crate::config::Config;
use crate::engine::{CommandRequest, Engine, EngineParts, Reaction};
use crate::journal::Journal;
use terminal::TerminalChat;

/// The built-in setup: dev with blue at 100 and green at 0; alice and bob
/// approve, carol does not.
pub const BUILT_IN_CONFIG: &str = include_str!("../../examples/sandbox.yaml");

pub const BOT_USER: &str = "failover-bot";

/// One line of a sandbox script.
#[derive(Debug, PartialEq, Eq)]
pub enum ScriptLine {
    Blank,
    Command { user: String, text: String },
    React { user: String, reaction: String },
    Click { user: String, choice: ButtonChoice },
    Wait(Duration),
    Invalid(String),
}

pub fn parse_line(line: &str) -> ScriptLine {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return ScriptLine::Blank;
    }
    if let Some(duration) = line.strip_prefix("wait ") {
        return match humantime::parse_duration(duration.trim()) {
            Ok(d) => ScriptLine::Wait(d),
            Err(_) => ScriptLine::Invalid(format!(
                "`{}` is not a duration; try `wait 16m`",
                duration.trim()
            )),
        };
    }
    let Some(rest) = line.strip_prefix('@') else {
        return ScriptLine::Invalid(
            "lines look like `@alice /failover shift 50`, `@bob :white_check_mark:` or `@bob [Approve]`".into(),
        );
    };
    let (user, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let text = text.trim();
    if user.is_empty() {
        return ScriptLine::Invalid("who is typing? Start the line with @name".into());
    }
    if let Some(reaction) = text
        .strip_prefix(':')
        .and_then(|t| t.strip_suffix(':'))
        .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
    {
        return ScriptLine::React {
            user: user.to_owned(),
            reaction: reaction.to_owned(),
        };
    }
    if let Some(button) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match ButtonChoice::parse(button.trim()) {
            Some(choice) => ScriptLine::Click {
                user: user.to_owned(),
                choice,
            },
            None => ScriptLine::Invalid(format!(
                "`[{button}]` is not a button; plans have [Approve] and [Reject]"
            )),
        };
    }
    if text.starts_with("/failover") {
        return ScriptLine::Command {
            user: user.to_owned(),
            text: text.to_owned(),
        };
    }
    ScriptLine::Invalid(format!(
        "@{user} can type `/failover …`, react with `:name:` or click `[Approve]` / `[Reject]`"
    ))
}

pub struct Sandbox {
    engine: Engine,
    chat: Arc<TerminalChat>,
    clock: Arc<OffsetClock>,
    channel: String,
    out: Arc<std::sync::Mutex<Box<dyn Write + Send>>>,
}

/// A writer that several owners share (the chat and the runner).
struct Shared(Arc<std::sync::Mutex<Box<dyn Write + Send>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl Sandbox {
    pub fn new(config: Config, out: Box<dyn Write + Send>) -> Sandbox {
        let out = Arc::new(std::sync::Mutex::new(out));
        let clock = Arc::new(OffsetClock::new());
        let channel = sandbox_channel(&config);
        let backend = Arc::new(MemoryBackend::from_config(&config));
        let chat = Arc::new(TerminalChat::new(Box::new(Shared(out.clone()))));
        let engine = Engine::new(EngineParts {
            config: Arc::new(config),
            backend,
            chat: chat.clone(),
            groups: Arc::new(StaticGroups::default()),
            clock: clock.clone(),
            journal: Journal::in_memory(),
            records: Vec::new(),
            bot_user: BOT_USER.into(),
        });
        Sandbox {
            engine,
            chat,
            clock,
            channel,
            out,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn note(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "(sandbox) {text}");
        let _ = out.flush();
    }

    fn echo(&self, line: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "\n» {}", line.trim());
    }

    /// Runs one input line to completion.
    pub async fn line(&self, line: &str) {
        self.engine.tick().await;
        match parse_line(line) {
            ScriptLine::Blank => {}
            ScriptLine::Invalid(why) => self.note(&why),
            ScriptLine::Wait(d) => {
                self.clock.advance(d);
                self.note(&format!("{} later…", humantime::format_duration(d)));
                self.engine.tick().await;
            }
            ScriptLine::Command { user, text } => {
                self.engine
                    .handle_command(CommandRequest {
                        user: user.into(),
                        channel: self.channel.clone(),
                        text,
                        event_id: None,
                    })
                    .await;
            }
            ScriptLine::React { user, reaction } => match self.newest_pending() {
                Some(message) => {
                    self.engine
                        .handle_reaction(Reaction {
                            user: user.into(),
                            name: reaction,
                            message,
                            added: true,
                            event_id: None,
                        })
                        .await;
                }
                None => self.note("no message awaits approval; that reaction goes nowhere"),
            },
            ScriptLine::Click { user, choice } => self.click(user, choice).await,
        }
    }

    /// A click on a button of the newest plan awaiting approval, with the
    /// value that plan was printed with.
    async fn click(&self, user: String, choice: ButtonChoice) {
        let Some(message) = self.newest_pending() else {
            self.note("no message awaits approval; that click goes nowhere");
            return;
        };
        let Some(buttons) = self.chat.buttons_on(&message) else {
            self.note("the newest plan shows no buttons; it needs no approval");
            return;
        };
        self.engine
            .handle_click(Click {
                user: user.into(),
                message,
                choice,
                value: buttons.value,
                delivery_id: None,
            })
            .await;
    }

    fn newest_pending(&self) -> Option<MessageRef> {
        self.engine.pending_plan_messages().pop()
    }

    /// Runs a whole script; with `echo`, each input line is printed before
    /// its answers so a piped transcript reads like the channel.
    pub async fn run_script<R: AsyncBufRead + Unpin>(
        &self,
        input: R,
        echo: bool,
    ) -> std::io::Result<()> {
        let mut lines = input.lines();
        while let Some(line) = lines.next_line().await? {
            if echo && parse_line(&line) != ScriptLine::Blank {
                self.echo(&line);
            }
            self.line(&line).await;
        }
        Ok(())
    }

    /// Interactive: a prompt per line until end of input.
    pub async fn run_interactive<R: AsyncBufRead + Unpin>(&self, input: R) -> std::io::Result<()> {
        self.banner();
        let mut lines = input.lines();
        loop {
            self.prompt();
            let Some(line) = lines.next_line().await? else {
                break;
            };
            self.line(&line).await;
        }
        Ok(())
    }

    fn prompt(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write!(out, "> ");
        let _ = out.flush();
    }

    fn banner(&self) {
        let config = self.engine.config();
        let envs: Vec<String> = config
            .environments
            .iter()
            .map(|(name, env)| {
                let weights: Vec<String> = env
                    .clusters
                    .iter()
                    .map(|c| match c.weight {
                        Some(w) => format!("{} {w}", c.name),
                        None => format!("{} (not routed)", c.name),
                    })
                    .collect();
                format!("{name}: {}", weights.join(", "))
            })
            .collect();
        self.note(&format!(
            "in-memory clusters — {}. Approvers: {}. Try `@alice /failover shift 50`, then `@bob :{}:` or `@bob [Approve]`. `wait 16m` moves time; Ctrl-D quits.",
            envs.join("; "),
            config.approval.approvers.join(", "),
            config.approval.reaction
        ));
    }
}

fn sandbox_channel(config: &Config) -> String {
    config
        .slack
        .channels
        .first()
        .cloned()
        .or_else(|| config.environments.values().find_map(|e| e.channel.clone()))
        .unwrap_or_else(|| "sandbox".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_lines() {
        assert_eq!(parse_line("  # hi"), ScriptLine::Blank);
        assert_eq!(
            parse_line("@alice /failover shift 50"),
            ScriptLine::Command {
                user: "alice".into(),
                text: "/failover shift 50".into()
            }
        );
        assert_eq!(
            parse_line("@bob :white_check_mark:"),
            ScriptLine::React {
                user: "bob".into(),
                reaction: "white_check_mark".into()
            }
        );
        assert_eq!(
            parse_line("wait 16m"),
            ScriptLine::Wait(Duration::from_secs(960))
        );
        assert_eq!(
            parse_line("@bob [Approve]"),
            ScriptLine::Click {
                user: "bob".into(),
                choice: ButtonChoice::Approve
            }
        );
        assert_eq!(
            parse_line("@carol [reject]"),
            ScriptLine::Click {
                user: "carol".into(),
                choice: ButtonChoice::Reject
            }
        );
        assert!(matches!(parse_line("@bob [Maybe]"), ScriptLine::Invalid(_)));
        assert!(matches!(parse_line("hello"), ScriptLine::Invalid(_)));
        assert!(matches!(parse_line("@bob hello"), ScriptLine::Invalid(_)));
        assert!(matches!(parse_line("wait soon"), ScriptLine::Invalid(_)));
    }

    #[test]
    fn built_in_config_is_valid() {
        let config = Config::from_yaml(BUILT_IN_CONFIG).unwrap();
        assert_eq!(config.environments["dev"].clusters.len(), 2);
    }
}
