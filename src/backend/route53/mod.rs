//! Route53 weighted records: read, verify, and (mode `route53`) write them.
//!
//! external-dns turns a cluster's routing annotations into one *weighted
//! record set* per record name: `SetIdentifier` = the cluster's name, `Weight`
//! = its share. This module
//!
//! - reads every record set of a name, paginating with
//!   `StartRecordName`/`StartRecordType`/`StartRecordIdentifier` and never
//!   looping when a server repeats a page (moto ignores
//!   `StartRecordIdentifier`: see [`Route53::record_sets`]);
//! - compares what Route53 serves with the planned weights
//!   ([`Route53::check`], [`Route53::wait_until`]);
//! - in mode `route53`, writes a whole step in as few atomic
//!   `ChangeResourceRecordSets` batches as the API limits allow — one per zone
//!   when it fits — and waits for `INSYNC` ([`Route53::write_weights`]).
//!
//! # Beside external-dns: the TXT registry
//!
//! external-dns's TXT registry writes, beside each record it owns, a TXT
//! record naming its owner id (`"heritage=external-dns,external-dns/
//! owner=…,external-dns/resource=…"`) with the same set identifier — under
//! the record's own name (v0.12–v0.17), a type-prefixed name (`a-api…`,
//! v0.12 on, the only one from v0.18), or with a site's `--txt-prefix` /
//! `--txt-suffix`. [`registry`] reads every form the way external-dns does.
//! An external-dns instance updates only records whose owner is its own
//! `--txt-owner-id`, so in mode `route53` the bot writes only records whose
//! registry names the bot's owner id (`route53.owner_id`, default
//! `failover-bot`): a record another owner holds would get its old weight
//! back at that external-dns's next sync, so it is refused before any write
//! ([`Route53Error::NotOwned`]). [`Route53::plan_handover`] and
//! [`Route53::hand_over`] rewrite the registry records of names an engineer
//! has taken out of another external-dns to the bot's owner id (the CLI's
//! `failover-bot route53 adopt`). The bot keeps the weights of its own
//! registry records equal to their records'; verification never reads TXT
//! weights (stale registry records left by an upgrade do not count).
//!
//! # Safety rules
//!
//! - Input is validated before any call; refusals are [`Route53Error::Invalid`].
//! - Every record name keeps a non-zero total weight (all zero means "split
//!   evenly" to Route53, the opposite of "everything off").
//! - A cluster without a weighted record, or whose record is not the bot's
//!   by the registry, is refused before any write: the bot only re-weights
//!   its own records, it never creates traffic records.
//! - The bot never sends DELETE (and moto's DELETE-by-set-identifier would
//!   remove every record with that identifier in the zone).
//!
//! # Layout
//!
//! - [`client`]: building the SDK client (timeouts, retries, TLS) and
//!   counting its API calls;
//! - [`budget`]: the rate budget every request waits for, a step's first;
//! - [`records`]: the record model ([`WeightedSet`]), reading a name with
//!   pagination, name normalisation and input validation;
//! - [`batch`]: change batches packed under Route53's limits,
//!   [`Route53::write_weights`] and waiting for `INSYNC`;
//! - [`registry`]: external-dns's TXT registry — names, labels, owners;
//! - [`verify`]: what Route53 serves against the planned weights
//!   ([`Route53::check`], [`Route53::wait_until`]) and the health-check gate;
//! - [`adopt`]: handing records over to the bot's owner id.

mod adopt;
mod batch;
pub mod budget;
mod client;
mod records;
mod registry;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::Client;

pub use adopt::{Adoption, Handover, HandoverAction};
pub use batch::WriteSummary;
pub use client::ApiCalls;
pub use records::WeightedSet;
pub use registry::{ForeignRecord, NotOwned, Owner, Registry, DEFAULT_OWNER_ID};
pub use verify::{health_verdict, RecordReport};

#[derive(Debug, thiserror::Error)]
pub enum Route53Error {
    /// Refused: the request was invalid or unsafe; nothing was written.
    #[error("refused: {0}")]
    Invalid(String),
    /// Route53 answered with an error, or could not be reached. (No
    /// "Route53:" prefix: every caller names Route53 as what failed.)
    #[error("{0}")]
    Api(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// Route53 took every change batch (each is atomic and will apply),
    /// but did not confirm them `INSYNC`: `GetChange` failed or the wait
    /// ran out. The changes landed; only their propagation is unconfirmed.
    #[error("submitted, not confirmed INSYNC: {0}")]
    Pending(String),
    /// Refused before any write: external-dns's registry gives these
    /// records to another owner (or none) than the bot's owner id.
    #[error("{0}")]
    NotOwned(NotOwned),
}

/// A Route53 client for one account, counting its API calls.
#[derive(Clone, Debug)]
pub struct Route53 {
    client: Client,
    calls: Arc<client::Counters>,
    page_size: Option<i32>,
    insync_timeout: Duration,
    budget: Arc<budget::RateBudget>,
}
