//! failover-bot: a Slack bot that moves production traffic between
//! Kubernetes clusters, with a second engineer's approval before every weight
//! change. The channel is the audit trail; the journal is the memory.
//!
//! # Layout
//!
//! Domain (plain types, no I/O):
//! - [`plan`] — weights, the shift arithmetic, [`plan::Plan`]: the one place
//!   the weight invariants are enforced.
//! - [`approval`] — the approval state machine of one step.
//! - [`command`] — the typed `/failover` command, its parser, and name
//!   resolution (environments, cluster prefixes and labels).
//! - [`config`] — the YAML config and its validation.
//! - [`messages`] — every text a person reads, and [`messages::UserError`].
//!
//! Operations (the engine):
//! - [`operation`] — operation types; [`operation::journal`] (append-only,
//!   fsync'd, hash-chained JSON lines); [`operation::ledger`] (the fold of
//!   records into state, used live and on replay); [`operation::apply`]
//!   (raise-then-lower writes with restore); [`operation::engine`] (commands,
//!   reactions, driving operations forward, resuming after a restart).
//!
//! Adapters (I/O, behind traits so the same engine runs everywhere):
//! - [`store`] — [`store::LineStore`]: the journal's lines, kept in order
//!   and fenced to one writer; [`store::memory`] and [`store::kube`]
//!   (`JournalSegment` objects in the home cluster).
//! - [`backend`] — [`backend::RoutingBackend`]; [`backend::memory`] for the
//!   sandbox and engine tests.
//! - [`chat`] — [`chat::Chat`] and [`chat::GroupResolver`].
//! - [`clock`] — [`clock::Clock`], injectable so expiry is testable.
//! - [`sandbox`] — the terminal channel and the script runner.
//! - [`cli`], [`telemetry`] — the binary's subcommands and logging.

pub mod approval;
pub mod backend;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
pub mod health;
pub mod leader;
pub mod messages;
pub mod metrics;
pub mod operation;
pub mod plan;
pub mod sandbox;
pub mod serve;
pub mod slack;
pub mod store;
pub mod telemetry;
