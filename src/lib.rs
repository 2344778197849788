//! failover-bot: a Slack bot that moves production traffic between
//! Kubernetes clusters, with a second engineer's approval before every weight
//! change. The channel is the audit trail; the journal is the memory.
//!
//! # Layout
//!
//! Layers, each importing only the ones above it (a test keeps it so:
//! `tests/layering.rs` fails on any import cycle between these modules):
//!
//! 1. Names: [`ids`] (environment, cluster and user ids, message refs).
//! 2. Domain, plain types with no I/O:
//!    - [`plan`] — weights, the shift arithmetic, [`plan::Plan`]: the one
//!      place the weight invariants are enforced;
//!    - [`approval`] — the approval state machine of one step;
//!    - [`config`] — the YAML config and its validation;
//!    - [`command`] — one file per verb (`command/shift.rs`, …): its
//!      grammar, usage line, name resolution, and the operation it starts
//!      with the weights each step aims at;
//!    - [`operation`] — operations as data, refusals, and
//!      [`operation::plan_step`], the one function that turns an operation
//!      into its next step's plan;
//!    - [`drill`] — drill timings, the scorecard's facts and the drill
//!      chart (PNG), computed without I/O;
//!    - [`readiness`] — the readiness doctor's findings, and when the
//!      scheduled check posts about them (on a change, and a weekly
//!      all-clear);
//!    - [`notice`] — everything the bot says, as kinds with facts;
//!    - [`journal`] — versioned records of facts, the hash chain, the file,
//!      and [`journal::ledger`], the fold of records into state.
//! 3. Words: [`messages`] renders notices (facts in, text out).
//! 4. Adapters behind traits, so the same engine runs everywhere:
//!    [`backend`] ([`backend::RoutingBackend`]: in memory, Kubernetes,
//!    Route53), [`chat`] ([`chat::Chat`]), [`clock`], [`blocking`] (waiting
//!    synchronously without stalling the runtime), [`metrics`], and
//!    [`gates`] (Prometheus and capacity gates: their config, the query
//!    client, the Deployment reader, and typed results), and [`store`]
//!    ([`store::LineStore`]: the journal's lines, kept in order and fenced
//!    to one writer; [`store::memory`] and [`store::kube`], `JournalSegment`
//!    objects in the home cluster).
//! 5. The engine: [`engine`] — commands, reactions and button clicks (one
//!    ballot path, `engine/reactions.rs`), driving operations, resuming
//!    after a restart.
//! 6. The outside: [`slack`], [`sandbox`], [`serve`], [`leader`],
//!    [`health`] (on [`listener`], the HTTP server's connection limits),
//!    [`doctor`] (the readiness checks of `failover-bot doctor` and of
//!    `serve`'s schedule),
//!    [`cli`], [`telemetry`].
//!
//! # One command, end to end
//!
//! `/failover shift 50` from Slack to the journal reads in six files:
//!
//! 1. `slack/socket.rs` (or `slack/http.rs`) — the command arrives;
//! 2. `slack/intake.rs` — it is read once ([`engine::Engine::understand`],
//!    which calls [`command::understand`]) and acknowledged at once;
//! 3. `command/shift.rs` — its grammar, the cluster it names, the operation
//!    it starts and the weights its step aims at;
//! 4. `engine/start.rs` — the command journaled, the environment checked,
//!    the step planned ([`operation::plan_step`]) and gated, the operation
//!    journaled as started, and its plan posted for approval;
//! 5. `engine/store.rs` — each record appended and folded into the ledger;
//! 6. `journal/file.rs` — the line made durable.

pub mod approval;
pub mod backend;
pub mod blocking;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
pub mod doctor;
pub mod drill;
pub mod engine;
pub mod gates;
pub mod health;
pub mod ids;
pub mod journal;
pub mod leader;
pub mod listener;
pub mod messages;
pub mod metrics;
pub mod notice;
pub mod operation;
pub mod plan;
pub mod promql;
pub mod readiness;
pub mod sandbox;
pub mod serve;
pub mod slack;
pub mod store;
pub mod telemetry;
