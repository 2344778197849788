//! `failover-bot doctor`: the readiness checks at a terminal, in CI or a
//! CronJob. One line per finding, grouped by environment; exit ≠ 0 on any
//! problem, and on warnings too with `--strict`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::TlsArgs;
use crate::backend::kube::client_for_context;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::doctor::{Doctor, DoctorParts, Home};
use crate::journal::ledger::{Finished, Ledger};
use crate::journal::parse_line;
use crate::readiness::{Report, Severity};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// Exit ≠ 0 on warnings too (an old drill, drift, a gate failing now).
    #[arg(long)]
    strict: bool,
    /// The bot's journal file (`serve --journal`), read for the last drill;
    /// for a journal in the home cluster, `failover-bot journal export
    /// --output FILE` first.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Kubeconfig context of the bot's home cluster (`in-cluster` inside
    /// it): check the Lease there, who holds it and whether it is renewed,
    /// and the bot's permissions on it.
    #[arg(long)]
    lease_context: Option<String>,
    #[arg(long, env = "POD_NAMESPACE", default_value = "failover-bot")]
    lease_namespace: String,
    #[arg(long, default_value = "failover-bot")]
    lease_name: String,
    /// The journal is kept in the home cluster too (`serve --journal
    /// kube`): check the permissions it needs there.
    #[arg(long)]
    journal_in_home: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Why the doctor could not start examining.
#[derive(Debug, thiserror::Error)]
enum DoctorError {
    #[error("cannot read the journal {path}: {reason}")]
    Journal { path: String, reason: String },
    #[error("--journal-in-home needs --lease-context (the home cluster)")]
    NoHome,
    #[error("{0}")]
    Connect(String),
}

pub async fn doctor(config: Config, args: &DoctorArgs) -> ExitCode {
    let reports = match examine(config, args).await {
        Ok(reports) => reports,
        Err(e) => {
            eprintln!("failover-bot doctor: {e}");
            return ExitCode::from(2);
        }
    };
    for report in &reports {
        print!("{}", lines(report));
    }
    let count = |s| reports.iter().map(|r| r.count(s)).sum::<usize>();
    let (problems, warnings) = (count(Severity::Problem), count(Severity::Warning));
    println!("{}", summary(problems, warnings));
    if problems > 0 || (args.strict && warnings > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn examine(config: Config, args: &DoctorArgs) -> Result<Vec<Report>, DoctorError> {
    let finished = match &args.journal {
        Some(path) => Some(finished_operations(path)?),
        None => None,
    };
    let doctor = connect(config, args).await?;
    let mut reports = Vec::new();
    for env in doctor.config().environment_names() {
        reports.push(doctor.examine(&env, finished.as_deref()).await);
    }
    reports.extend(doctor.examine_home().await);
    Ok(reports)
}

async fn connect(config: Config, args: &DoctorArgs) -> Result<Doctor, DoctorError> {
    let tls = args.tls.verification();
    let backends = crate::serve::real_backends(&config, tls)
        .await
        .map_err(DoctorError::Connect)?;
    Ok(Doctor::new(DoctorParts {
        config: Arc::new(config),
        backend: backends.routing,
        route53: backends.route53,
        home: home(args).await?,
        clock: Arc::new(SystemClock),
    }))
}

async fn home(args: &DoctorArgs) -> Result<Option<Home>, DoctorError> {
    let Some(context) = &args.lease_context else {
        return match args.journal_in_home {
            true => Err(DoctorError::NoHome),
            false => Ok(None),
        };
    };
    let client = client_for_context(context, args.tls.verification())
        .await
        .map_err(DoctorError::Connect)?;
    Ok(Some(Home {
        client,
        context: context.clone(),
        namespace: args.lease_namespace.clone(),
        lease_name: args.lease_name.clone(),
        journal: args.journal_in_home,
    }))
}

/// The journal's finished operations. Read line by line, without taking
/// the file: the bot may be writing to it.
fn finished_operations(path: &Path) -> Result<Vec<Finished>, DoctorError> {
    let failed = |reason: String| DoctorError::Journal {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let mut records = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record = parse_line(line).map_err(|e| failed(format!("line {}: {e}", i + 1)))?;
        records.push(record);
    }
    Ok(Ledger::replay(&records).finished)
}

/// A report as `ENV:` and one line per finding.
fn lines(report: &Report) -> String {
    let mut text = format!("{}:\n", report.env);
    for finding in &report.findings {
        text.push_str(&format!(
            "  {:<8} {:<16} {}: {}\n",
            finding.severity.as_str(),
            finding.check.as_str(),
            finding.subject,
            finding.detail
        ));
    }
    text
}

fn summary(problems: usize, warnings: usize) -> String {
    match (problems, warnings) {
        (0, 0) => "ready: every check passed".to_owned(),
        (0, w) => format!("ready, with {w} warning(s)"),
        (p, w) => format!("not ready: {p} problem(s), {w} warning(s)"),
    }
}
