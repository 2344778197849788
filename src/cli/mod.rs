//! The binary's subcommands. Kept thin: each one builds its parts and hands
//! over to the library. What the operator-facing subcommands print lives
//! with them: [`audit`] and [`check`] (`check` and `status`).

mod audit;
mod check;
mod doctor;
mod journal;
mod keys;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod route53;

use crate::backend::kube::tls::TlsVerification;
use crate::config::Config;
use crate::journal::sign::Signer;
use crate::leader::LeaderElection;
use crate::sandbox::{Sandbox, BUILT_IN_CONFIG};
use crate::serve::JournalAt;
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "failover-bot",
    version,
    about = "Fail traffic over between Kubernetes clusters from Slack, with a second engineer's approval for every weight change."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
}

/// The `--journal` value that means the home cluster's JournalSegment store.
const KUBE_JOURNAL: &str = "kube";

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long)]
    config: PathBuf,
    /// Address for /healthz, /readyz, /metrics and the Events API.
    #[arg(long, default_value = "0.0.0.0:3000")]
    listen: std::net::SocketAddr,
    /// The journal: audit trail and restart state. A file path (keep it on
    /// durable storage; with --leader-election, storage every replica
    /// mounts), or `kube`: JournalSegment objects in the home cluster
    /// (--lease-context, in --lease-namespace), written as --identity.
    #[arg(long, default_value = "failover-journal.jsonl")]
    journal: PathBuf,
    /// Use in-memory clusters seeded from the config's `weight` keys
    /// (a demo or test workspace) instead of real clusters.
    #[arg(long)]
    in_memory: bool,
    /// Run as one of several replicas: act only while holding the Lease.
    #[arg(long, env = "FAILOVER_BOT_LEADER_ELECTION")]
    leader_election: bool,
    #[arg(long, default_value = "failover-bot")]
    lease_name: String,
    #[arg(long, env = "POD_NAMESPACE", default_value = "failover-bot")]
    lease_namespace: String,
    /// Kubeconfig context of the bot's home cluster, where the Lease lives
    /// (never a cluster it fails over).
    #[arg(long, default_value = crate::backend::kube::IN_CLUSTER)]
    lease_context: String,
    /// This replica's name in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log lines as text or as JSON objects.
    #[arg(long, env = "FAILOVER_BOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Sign every journal record with this Ed25519 key (a file holding the
    /// 32-byte seed in hex, as `failover-bot keys generate` prints it;
    /// mount it from the bot's Secret).
    #[arg(long, env = "FAILOVER_BOT_SIGNING_KEY_FILE")]
    signing_key: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// A kubeconfig context with `insecure-skip-tls-verify: true` is refused
/// unless this is given (see `backend/kube/tls.rs`).
#[derive(Args, Clone, Copy, Debug)]
pub struct TlsArgs {
    /// DANGEROUS: use kubeconfig contexts that set insecure-skip-tls-verify
    /// (anyone on the way could pose as the cluster). Give the clusters'
    /// CAs instead.
    #[arg(long)]
    dangerously_skip_tls_verify: bool,
}

impl TlsArgs {
    fn verification(self) -> TlsVerification {
        if self.dangerously_skip_tls_verify {
            TlsVerification::DangerouslySkippable
        } else {
            TlsVerification::Required
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// The whole bot against in-memory clusters, with the terminal as the channel.
    /// Reads `@USER /failover …` and `@USER :reaction:` lines from standard input.
    Sandbox {
        /// Config to use instead of the built-in setup (examples/sandbox.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The bot: Socket Mode when SLACK_APP_TOKEN is set, else the Events API
    /// over HTTP on --listen (needs SLACK_SIGNING_SECRET). SLACK_BOT_TOKEN is
    /// always needed; SLACK_API_URL points the bot at another Slack API base.
    Serve(ServeArgs),
    /// Print the RoutingWeight CustomResourceDefinition (YAML), as in
    /// manifests/target/crd/crd-routingweight.yaml.
    Crd,
    /// The journal in the home cluster (JournalSegment objects).
    Journal {
        #[command(subcommand)]
        command: journal::JournalCommand,
    },
    /// The audit trail in the journal.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Validate the config, reach every cluster (through $KUBECONFIG), verify
    /// each one's identity and the bot's permissions, print current weights;
    /// exit ≠ 0 on any problem.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Only validate the config file; do not contact any cluster.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Readiness: for every environment and cluster, identity, permissions
    /// (SelfSubjectAccessReview), health and Prometheus gates, DNS ownership
    /// and drift; the Lease holder; the age of the last drill. One line per
    /// finding (ok, warning, problem); exit ≠ 0 on any problem, and on
    /// warnings too with --strict.
    Doctor(doctor::DoctorArgs),
    /// The journal's signing keys: generate one, rotate to a new one, or
    /// start a new signed chain when the old key is lost.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Route53 records in mode `route53` (reads AWS credentials and
    /// AWS_ENDPOINT_URL_ROUTE_53 from the standard AWS environment).
    Route53 {
        #[command(subcommand)]
        command: route53::Route53Command,
    },
    /// Print current weights per environment (as set, and as carried by the
    /// controlled Ingresses/Services).
    Status {
        #[arg(long)]
        config: PathBuf,
        /// One environment; all when left out.
        env: Option<String>,
        #[command(flatten)]
        tls: TlsArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the journal's hash chain (any edited, inserted or deleted
    /// record breaks it) and print who requested and who approved every
    /// weight change; exit ≠ 0 if the chain is broken.
    Verify {
        file: PathBuf,
        /// Also check every record's signature against this public key (a
        /// file with 64 hex digits): the key in force at the journal's end.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The hash (16 hex digits or more) a finished operation's last
        /// thread message quoted: the chain must pass through that record.
        #[arg(long)]
        expect_head: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover-bot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // A task may still wait on a silent API server (a journal append the
    // store keeps trying): the process ends all the same.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        CliCommand::Sandbox { config } => sandbox(config).await,
        CliCommand::Check {
            config,
            offline,
            tls,
        } => match load(Some(&config)) {
            Ok(config) => check::check(&config, offline, tls.verification()).await,
            Err(code) => code,
        },
        CliCommand::Doctor(args) => match load(Some(&args.config)) {
            Ok(config) => doctor::doctor(config, &args).await,
            Err(code) => code,
        },
        CliCommand::Status { config, env, tls } => match load(Some(&config)) {
            Ok(config) => check::status(&config, env.as_deref(), tls.verification()).await,
            Err(code) => code,
        },
        CliCommand::Audit {
            command:
                AuditCommand::Verify {
                    file,
                    public_key,
                    expect_head,
                },
        } => audit::verify(&file, public_key.as_deref(), expect_head.as_deref()),
        CliCommand::Keys { command } => keys::run(command),
        CliCommand::Crd => {
            print!("{}", crate::backend::kube::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        CliCommand::Serve(args) => serve(args).await,
        CliCommand::Route53 { command } => route53::run(command).await,
        CliCommand::Journal { command } => journal::run(command).await,
    }
}

pub(crate) fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let loaded = match path {
        Some(path) => Config::load(path),
        None => Config::from_yaml(BUILT_IN_CONFIG),
    };
    loaded.map_err(|e| {
        eprintln!("failover-bot: {e}");
        ExitCode::from(2)
    })
}

async fn sandbox(config: Option<PathBuf>) -> ExitCode {
    crate::telemetry::init("warn");
    let config = match load(config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sandbox = Sandbox::new(config, Box::new(std::io::stdout()));
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    let result = if std::io::stdin().is_terminal() {
        sandbox.run_interactive(input).await
    } else {
        sandbox.run_script(input, true).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("failover-bot: reading standard input: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    crate::telemetry::init_with("info", args.log_format);
    let config = match load(Some(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let settings = match crate::slack::SlackSettings::from_env(|name| std::env::var(name).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("failover-bot: {e}");
            return ExitCode::from(2);
        }
    };
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let journal = journal_at(&args, &identity);
    let leader_election = args.leader_election.then(|| LeaderElection {
        lease_name: args.lease_name,
        namespace: args.lease_namespace,
        identity,
        context: args.lease_context,
        tls: args.tls.verification(),
        timing: crate::leader::LeaseTiming::default(),
    });
    let signing_key = match args.signing_key.as_deref().map(Signer::from_file) {
        Some(Err(e)) => {
            eprintln!("failover-bot: --signing-key: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(signer)) => Some(signer),
        None => None,
    };
    let options = crate::serve::ServeOptions {
        config,
        listen: args.listen,
        journal,
        in_memory: args.in_memory,
        leader_election,
        signing_key,
        tls: args.tls.verification(),
    };
    match crate::serve::serve(options, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped");
            eprintln!("failover-bot: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--journal kube` is the home cluster's store (beside the Lease); any
/// other value is a file (`./kube` for a file of that name).
fn journal_at(args: &ServeArgs, identity: &str) -> JournalAt {
    if args.journal == Path::new(KUBE_JOURNAL) {
        JournalAt::Kube {
            context: args.lease_context.clone(),
            namespace: args.lease_namespace.clone(),
            writer: identity.to_owned(),
        }
    } else {
        JournalAt::File(args.journal.clone())
    }
}

/// The host name and process id: unique among replicas on one machine too.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "failover-bot".into());
    format!("{host}-{}", std::process::id())
}
