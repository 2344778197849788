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
//! # The TXT ownership twin
//!
//! external-dns's TXT registry writes, beside each record it owns, a TXT
//! record with the ownership label (`"heritage=external-dns,external-dns/
//! owner=…,external-dns/resource=…"`) and the same set identifier and weight.
//! If the weighted record and its twin disagree, external-dns no longer
//! treats the pair as its own. This module uses the convention of
//! external-dns's TXT registry *without* `--txt-prefix`/`--txt-suffix`: the
//! twin has the **same name** as the record and the **same set identifier**.
//! (A registry configured with a prefix writes the twin under another name;
//! that layout is not supported here and a missing same-name twin is refused
//! by [`Route53::write_weights`].) The twin's value is never touched: an
//! UPSERT re-sends the record set exactly as it was read, with only the
//! weight changed.
//!
//! # Safety rules
//!
//! - Input is validated before any call; refusals are [`Route53Error::Invalid`].
//! - Every record name keeps a non-zero total weight (all zero means "split
//!   evenly" to Route53, the opposite of "everything off").
//! - A cluster without a weighted record (or without its TXT twin) is refused
//!   before any write: the bot only re-weights records, it never creates them.
//! - The bot never sends DELETE (and moto's DELETE-by-set-identifier would
//!   remove every record with that identifier in the zone).
//!
//! # Layout
//!
//! - [`client`]: building the SDK client (timeouts, retries, TLS) and
//!   counting its API calls;
//! - [`records`]: the record model ([`WeightedSet`]), reading a name with
//!   pagination, name normalisation and input validation;
//! - [`batch`]: change batches packed under Route53's limits,
//!   [`Route53::write_weights`] and waiting for `INSYNC`;
//! - [`verify`]: what Route53 serves against the planned weights
//!   ([`Route53::check`], [`Route53::wait_until`]) and the health-check gate.

mod batch;
mod client;
mod records;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::Client;

pub use batch::WriteSummary;
pub use client::ApiCalls;
pub use records::WeightedSet;
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
}

/// A Route53 client for one account, counting its API calls.
#[derive(Clone, Debug)]
pub struct Route53 {
    client: Client,
    calls: Arc<client::Counters>,
    page_size: Option<i32>,
    insync_timeout: Duration,
}
