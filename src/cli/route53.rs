//! `failover-bot route53 …`: the explicit, confirmed handover of Route53
//! records to the bot's external-dns owner id, after an engineer has taken
//! the names out of the external-dns that owned them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::backend::route53::{Adoption, HandoverAction, Registry, Route53};

#[derive(Debug, Subcommand)]
pub enum Route53Command {
    /// Rewrite the external-dns registry records of the environment's
    /// record names from another owner id to the bot's (`route53.owner_id`)
    /// and create one for a weighted record that has none. Prints what it
    /// would write; writes only with --yes. Take the names out of that
    /// external-dns first (--domain-filter, --exclude-domains), or it keeps
    /// its own weights on them no more.
    Adopt {
        #[arg(long)]
        config: PathBuf,
        /// The environment whose `route53` section names the zone and records.
        #[arg(long)]
        env: String,
        /// The external-dns owner id (`--txt-owner-id`) the records have now.
        #[arg(long)]
        from_owner: String,
        /// Write the changes (without it, nothing is written).
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(command: Route53Command) -> ExitCode {
    match command {
        Route53Command::Adopt {
            config,
            env,
            from_owner,
            yes,
        } => adopt(&config, &env, &from_owner, yes).await,
    }
}

async fn adopt(path: &PathBuf, env_name: &str, from_owner: &str, yes: bool) -> ExitCode {
    let config = match super::load(Some(path)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(env) = config.environment(env_name) else {
        eprintln!(
            "failover-bot: no environment {env_name} in the config (it has: {})",
            config.environment_names().join(", ")
        );
        return ExitCode::from(2);
    };
    let Some(dns) = &env.route53 else {
        eprintln!("failover-bot: environment {env_name} has no route53 section");
        return ExitCode::from(2);
    };
    let registry = Registry::from(dns);
    let clusters: Vec<String> = env.clusters.iter().map(|c| c.name.to_string()).collect();
    let route53 = Route53::from_env().await;
    let adoption = match route53
        .plan_handover(&registry, &dns.zone_id, &dns.records, &clusters, from_owner)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("failover-bot: {e}");
            return ExitCode::FAILURE;
        }
    };
    for line in describe(&adoption, env_name) {
        println!("{line}");
    }
    if !adoption.is_complete() {
        println!("Nothing written: hand those over (or take them out of the config) first.");
        return ExitCode::FAILURE;
    }
    if adoption.handovers.is_empty() {
        return ExitCode::SUCCESS;
    }
    if !yes {
        println!("Nothing written. Run again with --yes to write them.");
        return ExitCode::SUCCESS;
    }
    match route53.hand_over(&adoption).await {
        Ok(summary) => {
            println!(
                "Wrote {} change(s) in {} batch(es): the records are owner {}'s.",
                summary.changes, summary.batches, adoption.owner_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("failover-bot: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the handover would write, one line per registry record.
fn describe(adoption: &Adoption, env_name: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "Route53 zone {} (environment {env_name}): registry records from owner {} to {}",
        adoption.zone_id, adoption.from_owner, adoption.owner_id
    )];
    for h in &adoption.handovers {
        let what = match &h.action {
            HandoverAction::Rewrite { from } => {
                format!(
                    "rewrite {} TXT {}: owner {from} → {}",
                    h.name, h.set_identifier, adoption.owner_id
                )
            }
            HandoverAction::Create => format!(
                "create  {} TXT {}: owner {} (the record had no registry record)",
                h.name, h.set_identifier, adoption.owner_id
            ),
        };
        lines.push(format!("  {what}  [for {}]", h.record));
    }
    for record in &adoption.left {
        lines.push(format!(
            "  leave   {record}: neither {}'s nor the bot's",
            adoption.from_owner
        ));
    }
    lines.push(format!(
        "{} registry record(s) to rewrite, {} to create; {} record(s) already the bot's.",
        adoption.rewrites(),
        adoption.creations(),
        adoption.already_owned
    ));
    lines
}
