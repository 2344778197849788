//! `failover-bot check` (config, clusters, identity, permissions, Route53)
//! and `failover-bot status` (weights as set and as served), for operators
//! at a terminal.

use std::process::ExitCode;

use crate::backend::kube::{ClusterCheck, KubeBackend};
use crate::config::{ClusterConfig, Config, Route53Config};
use crate::messages;
use crate::notice::{Notice, StatusNotice};

pub async fn check(config: &Config, offline: bool) -> ExitCode {
    println!(
        "config ok: mode {}, {} approver(s), approvals expire after {}",
        config.routing.mode,
        config.approval.approvers.len(),
        humantime::format_duration(config.approval.expires_after)
    );
    for warning in unbound_environments(config) {
        println!("  ! {warning}");
    }
    if offline {
        for (name, env) in &config.environments {
            println!("  {name}:");
            for cluster in &env.clusters {
                println!("    {} (context {})", cluster.name, cluster.context);
            }
        }
        return ExitCode::SUCCESS;
    }
    let backend = match KubeBackend::connect(config, None).await {
        Ok(b) => b,
        Err(e) => {
            println!("✗ {e}");
            return ExitCode::FAILURE;
        }
    };
    let route53 = match config.environments.values().any(|e| e.route53.is_some()) {
        true => Some(crate::backend::route53::Route53::from_env().await),
        false => None,
    };
    let mut ok = true;
    for (name, env) in &config.environments {
        println!("{name}:");
        for cluster in &env.clusters {
            let found = backend.check_cluster(cluster).await;
            ok &= found.is_ok();
            println!("{}", cluster_check(cluster, &found));
        }
        if let (Some(route53), Some(dns)) = (&route53, &env.route53) {
            let mut problems = crate::backend::dns::check_records(route53, env, dns).await;
            if config.routing.mode == crate::config::RoutingMode::Route53 {
                problems.extend(crate::backend::dns::check_ownership(route53, env, dns).await);
            }
            ok &= problems.is_empty();
            println!("{}", records_check(dns, &problems));
        }
    }
    if ok {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("some checks failed");
        ExitCode::FAILURE
    }
}

pub async fn status(config: &Config, only: Option<&str>) -> ExitCode {
    if let Some(env) = only.filter(|e| !config.environments.contains_key(*e)) {
        eprintln!(
            "failover-bot: no environment {env}; environments: {}",
            config
                .environment_names()
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(2);
    }
    let backend = match crate::serve::real_backend(config).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("failover-bot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    for (name, env) in &config.environments {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        match backend.read(env).await {
            Ok(snapshot) => {
                let observed = backend.observe(env, &snapshot.weights()).await.ok();
                let notice = Notice::Status(Box::new(StatusNotice {
                    env: name.clone(),
                    snapshot,
                    observed,
                    running: None,
                    frozen: None,
                }));
                let text = messages::render(&notice, config).text;
                println!(
                    "{}",
                    crate::sandbox::terminal::render("", &text).replace("[failover-bot] ", "")
                );
            }
            Err(e) => {
                println!("{name}: cannot read weights: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

/// The Route53 line of `failover-bot check`.
fn records_check(dns: &Route53Config, problems: &[String]) -> String {
    if problems.is_empty() {
        format!(
            "  ✓ Route53 zone {}: every record has a weighted set per cluster ({})",
            dns.zone_id,
            dns.records.join(", ")
        )
    } else {
        format!("  ✗ Route53 zone {}: {}", dns.zone_id, problems.join("; "))
    }
}

/// One line per cluster for `failover-bot check`.
fn cluster_check(cluster: &ClusterConfig, found: &ClusterCheck) -> String {
    let mut problems = Vec::new();
    if let Err(e) = &found.identity {
        problems.push(format!("identity: {e}"));
    }
    if let Err(e) = &found.weight {
        problems.push(format!("weight: {e}"));
    }
    if !found.missing_permissions.is_empty() {
        problems.push(format!(
            "missing permissions (see manifests/target/MODE/rbac.yaml): {}",
            found.missing_permissions.join(", ")
        ));
    }
    let weight = match &found.weight {
        Ok(Some(w)) => format!("weight {w}"),
        Ok(None) => "not routed".to_owned(),
        Err(_) => "weight unknown".to_owned(),
    };
    if problems.is_empty() {
        format!(
            "  ✓ {} (context {}): identity verified, {weight}",
            cluster.name, cluster.context
        )
    } else {
        format!(
            "  ✗ {} (context {}): {}",
            cluster.name,
            cluster.context,
            problems.join("; ")
        )
    }
}

/// Environments any channel may act on: they name no channel of their own.
fn unbound_environments(config: &Config) -> Vec<String> {
    let anywhere = match config.slack.channels.as_slice() {
        [] => "any channel the bot is in".to_owned(),
        channels => format!("any of slack.channels ({})", channels.join(", ")),
    };
    config
        .environments
        .iter()
        .filter(|(_, e)| e.bound_channels().is_empty())
        .map(|(env, _)| {
            format!("environments.{env} names no channel: {anywhere} may act on it; set `channel:` or `channels:`")
        })
        .collect()
}
