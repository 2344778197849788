//! The outbox: what the bot says about an operation reaches the channel even
//! when Slack is down for a while, in the order it was said.
//!
//! A message is sent at once when nothing is waiting. If Slack cannot take it
//! (connection refused or reset, a timeout, a 5xx, a 429 past the chat's own
//! retries), it is queued and a single drainer retries the head of the queue
//! with a growing pause; everything said later waits behind it, so a thread
//! never reads out of order. A refusal that retrying cannot fix (a missing
//! channel, a bad token) is logged and dropped, so it cannot block the queue.
//!
//! The step itself never waits for the outbox: the journal is the record,
//! and a Slack outage must not leave weights half-changed.
//!
//! Durable too: the engine journals each notice (`Say`) before handing it
//! here, and the outbox journals `Delivered` once Slack has taken it (or
//! refused it for good). A crash in between leaves it in the ledger's
//! `unsaid`, and the next start sends it again — at least once, never lost.
//!
//! Notices are put in words ([`crate::messages::render`]) only when they are
//! sent, so a notice journaled by one release is worded by the one that
//! sends it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::store::Store;
use crate::chat::{Chat, ChatError, Message, MessageRef};
use crate::clock::Clock;
use crate::config::Config;
use crate::journal::Entry;
use crate::messages;
use crate::notice::{Destination, Notice};

/// A chat call that takes longer than this counts as Slack being down.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// A notice on its way, with the seq of the journal record that holds it
/// (`None` if it could not be journaled).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub id: Option<u64>,
    pub to: Destination,
    pub notice: Notice,
    /// Sent again after a restart: a post says it may show twice.
    pub resent: bool,
}

impl Outgoing {
    fn message(&self, config: &Config) -> Message {
        let is_post = matches!(self.to, Destination::Post { .. });
        if self.resent && is_post {
            messages::render_resent(&self.notice, config)
        } else {
            messages::render(&self.notice, config)
        }
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// A drainer task owns the head of the queue.
    draining: bool,
}

pub struct Outbox {
    chat: Arc<dyn Chat>,
    queue: Mutex<Queue>,
    store: Store,
    clock: Arc<dyn Clock>,
    config: Arc<Config>,
}

impl Outbox {
    pub fn new(
        chat: Arc<dyn Chat>,
        store: Store,
        clock: Arc<dyn Clock>,
        config: Arc<Config>,
    ) -> Arc<Self> {
        Arc::new(Self {
            chat,
            queue: Mutex::default(),
            store,
            clock,
            config,
        })
    }

    /// Sends `item` now, or queues it behind what is already waiting.
    pub async fn send(self: &Arc<Self>, item: Outgoing) {
        if self.queue_behind_waiting(&item) {
            return;
        }
        match self.deliver(&item).await {
            Ok(()) => self.settle(&item),
            Err(error) if error.unavailable => {
                tracing::warn!(%error, "Slack is unavailable: queuing the message");
                self.queue_and_drain(item);
            }
            Err(error) => {
                tracing::error!(%error, kind = %item.notice.kind(), "Slack refused a message; dropped");
                self.settle(&item);
            }
        }
    }

    /// The message needs no sending again, after a restart either.
    fn settle(&self, item: &Outgoing) {
        let Some(say) = item.id else { return };
        if let Err(error) = self
            .store
            .append(self.clock.now(), Entry::Delivered { say })
        {
            // Only costs a second copy after the next restart.
            tracing::error!(%error, say, "could not journal a delivery");
        }
    }

    /// Messages still waiting for Slack.
    fn waiting(&self) -> usize {
        self.lock().items.len()
    }

    fn queue_behind_waiting(&self, item: &Outgoing) -> bool {
        let mut queue = self.lock();
        if queue.items.is_empty() {
            return false;
        }
        queue.items.push_back(item.clone());
        true
    }

    fn queue_and_drain(self: &Arc<Self>, item: Outgoing) {
        let mut queue = self.lock();
        queue.items.push_back(item);
        if !queue.draining {
            queue.draining = true;
            tokio::spawn(self.clone().drain());
        }
    }

    /// Retries the head of the queue until Slack takes it, then the next.
    async fn drain(self: Arc<Self>) {
        // The call that queued the head has just failed: pause first.
        let mut pause = FIRST_PAUSE;
        tokio::time::sleep(pause).await;
        loop {
            let Some(head) = self.head() else { return };
            match self.deliver(&head).await {
                Ok(()) => {
                    pause = FIRST_PAUSE;
                    self.settle(&head);
                    self.pop();
                }
                Err(error) if error.unavailable => {
                    pause = (pause * 2).min(MAX_PAUSE);
                    tracing::warn!(%error, ?pause, waiting = self.waiting(), "Slack still unavailable");
                    tokio::time::sleep(pause).await;
                }
                Err(error) => {
                    tracing::error!(%error, kind = %head.notice.kind(), "Slack refused a queued message; dropped");
                    self.settle(&head);
                    self.pop();
                }
            }
        }
    }

    /// The head of the queue, or `None` (and the drainer stops) when empty.
    fn head(&self) -> Option<Outgoing> {
        let mut queue = self.lock();
        let head = queue.items.front().cloned();
        if head.is_none() {
            queue.draining = false;
        }
        head
    }

    fn pop(&self) {
        self.lock().items.pop_front();
    }

    async fn deliver(&self, item: &Outgoing) -> Result<(), ChatError> {
        let call = async {
            match &item.to {
                Destination::Post { channel, thread } => self
                    .chat
                    .post(channel, thread.as_ref(), &item.message(&self.config))
                    .await
                    .map(|_| ()),
                Destination::Update { at } => {
                    self.chat.update(at, &item.message(&self.config)).await
                }
                Destination::Upload { thread } => self.upload(thread, &item.notice).await,
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(ChatError::unavailable("no answer within 10 s")))
    }

    /// Shares the file a notice stands for (the drill chart, drawn now
    /// from the drills it names) in `thread`.
    async fn upload(&self, thread: &MessageRef, notice: &Notice) -> Result<(), ChatError> {
        let Notice::DrillChart(chart) = notice else {
            return Err(ChatError::refused(format!(
                "a {} message is not a file to upload",
                notice.kind()
            )));
        };
        let file = messages::chart_file(chart)
            .map_err(|error| ChatError::refused(format!("the drill chart: {error}")))?;
        self.chat.upload(thread, &file).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails the first `down` calls as unavailable (or refused), then takes
    /// everything.
    struct FlakyChat {
        down: AtomicUsize,
        refuse: bool,
        posted: Mutex<Vec<String>>,
    }

    impl FlakyChat {
        fn new(down: usize, refuse: bool) -> Arc<Self> {
            Arc::new(Self {
                down: AtomicUsize::new(down),
                refuse,
                posted: Mutex::default(),
            })
        }

        fn outcome(&self, text: &str) -> Result<(), ChatError> {
            let still_down = self
                .down
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            match (still_down, self.refuse) {
                (false, _) => {
                    self.posted.lock().unwrap().push(text.to_owned());
                    Ok(())
                }
                (true, false) => Err(ChatError::unavailable("503")),
                (true, true) => Err(ChatError::refused("channel_not_found")),
            }
        }
    }

    #[async_trait]
    impl Chat for FlakyChat {
        async fn post(
            &self,
            channel: &str,
            _thread: Option<&MessageRef>,
            message: &Message,
        ) -> Result<MessageRef, ChatError> {
            self.outcome(&message.text).map(|()| MessageRef {
                channel: channel.into(),
                ts: "1.0".into(),
            })
        }
        async fn update(&self, _at: &MessageRef, message: &Message) -> Result<(), ChatError> {
            self.outcome(&format!("update: {}", message.text))
        }
        async fn post_ephemeral(&self, _: &str, _: &str, _: &Message) -> Result<(), ChatError> {
            Ok(())
        }
        async fn react(&self, _: &MessageRef, _: &str) -> Result<(), ChatError> {
            Ok(())
        }
    }

    fn post(text: &str) -> (Destination, Notice) {
        let to = Destination::Post {
            channel: "C1".into(),
            thread: None,
        };
        (to, Notice::Legacy { text: text.into() })
    }

    fn config() -> Arc<Config> {
        let yaml = "approval: {approvers: [bob]}\nenvironments:\n  dev:\n    clusters: [{name: a, context: a}]\n";
        Arc::new(Config::from_yaml(yaml).unwrap())
    }

    /// An outbox over an in-memory journal, as the engine builds it.
    fn outbox(chat: Arc<FlakyChat>) -> (Arc<Outbox>, Store) {
        let store = Store::new(
            crate::journal::Journal::in_memory(),
            crate::journal::ledger::Ledger::default(),
            Arc::new(crate::metrics::Metrics::new()),
            0,
        );
        let clock = Arc::new(crate::clock::SystemClock);
        (Outbox::new(chat, store.clone(), clock, config()), store)
    }

    /// `said`, journaled the way the engine journals it before sending.
    fn journaled(store: &Store, (to, notice): (Destination, Notice)) -> Outgoing {
        let entry = Entry::Say {
            to: to.clone(),
            notice: notice.clone(),
        };
        let record = store.append(chrono::Utc::now(), entry).unwrap();
        Outgoing {
            id: Some(record.seq),
            to,
            notice,
            resent: false,
        }
    }

    fn unsaid(store: &Store) -> usize {
        store.with_ledger(|l| l.unsaid.len())
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_queues_messages_and_posts_them_in_order_when_slack_is_back() {
        let chat = FlakyChat::new(4, false);
        let (outbox, store) = outbox(chat.clone());
        outbox.send(journaled(&store, post("step 1 applied"))).await;
        outbox
            .send(journaled(&store, post("step 1 verified")))
            .await;
        let update = (
            Destination::Update {
                at: MessageRef {
                    channel: "C1".into(),
                    ts: "1.0".into(),
                },
            },
            Notice::Legacy {
                text: "done".into(),
            },
        );
        outbox.send(journaled(&store, update)).await;
        assert_eq!(outbox.waiting(), 3, "all three wait while Slack is down");
        assert!(chat.posted.lock().unwrap().is_empty());
        assert_eq!(unsaid(&store), 3, "a restart now would send all three");

        // Pauses of 1, 2, 4 and 8 s: Slack answers on the fifth try.
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(
            *chat.posted.lock().unwrap(),
            ["step 1 applied", "step 1 verified", "update: done"]
        );
        assert_eq!(outbox.waiting(), 0);
        assert_eq!(unsaid(&store), 0, "each delivery is journaled");

        outbox.send(journaled(&store, post("later"))).await;
        assert_eq!(chat.posted.lock().unwrap().last().unwrap(), "later");
        assert_eq!(unsaid(&store), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_slack_refuses_is_dropped_not_retried() {
        let chat = FlakyChat::new(1, true);
        let (outbox, store) = outbox(chat.clone());
        outbox
            .send(journaled(&store, post("to a channel that is gone")))
            .await;
        outbox.send(journaled(&store, post("next"))).await;
        assert_eq!(outbox.waiting(), 0);
        assert_eq!(*chat.posted.lock().unwrap(), ["next"]);
        assert_eq!(
            unsaid(&store),
            0,
            "a refused message is not sent again after a restart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_between_retries_grows_to_thirty_seconds() {
        let chat = FlakyChat::new(9, false);
        let (outbox, _) = outbox(chat.clone());
        outbox
            .send(Outgoing {
                id: None,
                to: post("x").0,
                notice: post("x").1,
                resent: false,
            })
            .await;
        // 1+2+4+8+16+30+30+30+30 = 151 s of pauses before the tenth try.
        tokio::time::sleep(Duration::from_secs(150)).await;
        assert!(chat.posted.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(*chat.posted.lock().unwrap(), ["x"]);
    }
}
