//! The sandbox's chat: messages are printed as blocks prefixed with
//! `[failover-bot]`, Slack mrkdwn rendered for a terminal, a plan's buttons
//! as `[Approve] [Reject]`. It remembers the buttons each message shows
//! now, so a typed click acts on exactly what was printed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::chat::{ButtonChoice, Chat, ChatError, Message, MessageRef, PlanButtons, Upload};

const PREFIX: &str = "[failover-bot] ";

pub struct TerminalChat {
    inner: Mutex<Inner>,
}

struct Inner {
    out: Box<dyn Write + Send>,
    next_ts: u64,
    /// The buttons each message shows now, by its ts.
    buttons: HashMap<String, PlanButtons>,
}

impl TerminalChat {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                out,
                next_ts: 1,
                buttons: HashMap::new(),
            }),
        }
    }

    /// The buttons message `at` shows now, if any.
    pub fn buttons_on(&self, at: &MessageRef) -> Option<PlanButtons> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.buttons.get(&at.ts).cloned()
    }

    fn remember_buttons(&self, ts: &str, buttons: &Option<PlanButtons>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match buttons {
            Some(buttons) => inner.buttons.insert(ts.to_owned(), buttons.clone()),
            None => inner.buttons.remove(ts),
        };
    }

    fn print(&self, marker: &str, text: &str) -> Result<u64, ChatError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let block = render(marker, text);
        inner
            .out
            .write_all(block.as_bytes())
            .and_then(|()| inner.out.flush())
            .map_err(|e| ChatError::refused(e.to_string()))?;
        let ts = inner.next_ts;
        inner.next_ts += 1;
        Ok(ts)
    }
}

#[async_trait]
impl Chat for TerminalChat {
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &Message,
    ) -> Result<MessageRef, ChatError> {
        let marker = if thread.is_some() { "↳ " } else { "" };
        let ts = self.print(marker, &with_buttons(&message.text, message))?;
        self.remember_buttons(&ts.to_string(), &message.buttons);
        Ok(MessageRef {
            channel: channel.to_owned(),
            ts: ts.to_string(),
        })
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        // A terminal cannot rewrite what scrolled by: show the new headline
        // (and the approval count and buttons while the plan still awaits).
        // Once decided, the buttons give way to the plan's last line: who
        // decided and when.
        let had_buttons = self.buttons_on(at).is_some();
        let shown = match message.buttons {
            Some(_) => {
                let count = message.text.lines().find(|l| l.starts_with("Approvals: "));
                let headline = [Some(message.headline()), count].into_iter().flatten();
                with_buttons(&headline.collect::<Vec<_>>().join("\n"), message)
            }
            None if had_buttons => {
                let last = message.text.lines().last().unwrap_or_default();
                format!("{}\n{last}", message.headline())
            }
            None => message.headline().to_owned(),
        };
        self.remember_buttons(&at.ts, &message.buttons);
        self.print("✎ ", &shown).map(|_| ())
    }

    async fn post_ephemeral(
        &self,
        _channel: &str,
        user: &str,
        message: &Message,
    ) -> Result<(), ChatError> {
        self.print(&format!("(only @{user} sees this) "), &message.text)
            .map(|_| ())
    }

    async fn react(&self, _at: &MessageRef, _reaction: &str) -> Result<(), ChatError> {
        // The reaction hints are in the plan text already.
        Ok(())
    }

    /// A terminal shows no image: it says what Slack would show.
    async fn upload(&self, _thread: &MessageRef, file: &Upload) -> Result<(), ChatError> {
        if let Some(problem) = file.problem() {
            return Err(ChatError::refused(problem));
        }
        // No byte count: the sandbox's timings, and so the chart, differ
        // from run to run, and its transcripts should not.
        let shown = format!(
            "📎 {} — {} ({}; Slack shows the image here)",
            file.filename, file.title, file.content_type
        );
        self.print("↳ ", &shown).map(|_| ())
    }
}

/// `text`, and under it the message's buttons as `[Approve] [Reject]`.
fn with_buttons(text: &str, message: &Message) -> String {
    if message.buttons.is_none() {
        return text.to_owned();
    }
    let labels: Vec<String> = [ButtonChoice::Approve, ButtonChoice::Reject]
        .iter()
        .map(|c| format!("[{}]", c.label()))
        .collect();
    format!("{text}\n{}", labels.join(" "))
}

/// Renders mrkdwn for a terminal: mentions as `@name`, no bold markers or
/// code fences, the leading emoji as a symbol, continuation lines indented
/// under the prefix.
pub fn render(marker: &str, text: &str) -> String {
    let mut out = String::new();
    let indent = " ".repeat(PREFIX.chars().count());
    let mut first = true;
    for line in text.lines() {
        if line.trim() == "```" {
            continue;
        }
        let line = plain(line);
        if first {
            out.push_str(PREFIX);
            out.push_str(marker);
            out.push_str(&leading_emoji(&line));
            first = false;
        } else {
            out.push_str(&indent);
            out.push_str(&line);
        }
        out.push('\n');
    }
    if first {
        out.push_str(PREFIX);
        out.push('\n');
    }
    out
}

fn plain(line: &str) -> String {
    let mut s = line.replace('*', "");
    for (from, to) in [("<!subteam^", "@"), ("<@", "@"), ("<#", "#")] {
        while let Some(start) = s.find(from) {
            let Some(end) = s[start..].find('>') else {
                break;
            };
            let inner = s[start + from.len()..start + end].to_owned();
            s.replace_range(start..start + end + 1, &format!("{to}{inner}"));
        }
    }
    s
}

fn leading_emoji(line: &str) -> String {
    const SYMBOLS: &[(&str, &str)] = &[
        (":white_check_mark:", "✅"),
        (":x:", "❌"),
        (":warning:", "⚠️ "),
        (":hourglass_flowing_sand:", "⏳"),
        (":hourglass:", "⌛"),
        (":gear:", "⚙️ "),
        (":no_entry:", "⛔"),
        (":leftwards_arrow_with_hook:", "↩️ "),
        (":octagonal_sign:", "🛑"),
        (":recycle:", "♻️ "),
        (":rotating_light:", "🚨"),
        (":checkered_flag:", "🏁"),
        (":boom:", "💥"),
        (":bar_chart:", "📊"),
        (":scroll:", "📜"),
        (":arrows_counterclockwise:", "🔄"),
        (":stopwatch:", "⏱️ "),
    ];
    for (name, symbol) in SYMBOLS {
        if let Some(rest) = line.strip_prefix(name) {
            return format!("{symbol}{rest}");
        }
    }
    line.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_mentions_tables_and_icons() {
        let text =
            ":white_check_mark: *Done* by <@bob> in <#C1>\n```\na  1\n```\nfor <!subteam^S1>";
        assert_eq!(
            render("", text),
            "[failover-bot] ✅ Done by @bob in #C1\n               a  1\n               for @S1\n"
        );
    }
}
