//! The binary's subcommands. Kept thin: each one builds its parts and hands
//! over to the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::sandbox::{Sandbox, BUILT_IN_CONFIG};

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

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// The whole bot against in-memory clusters, with the terminal as the channel.
    /// Reads `@USER /failover …` and `@USER :reaction:` lines from standard input.
    Sandbox {
        /// Config to use instead of the built-in setup (examples/sandbox.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print what it describes; exit ≠ 0 on any problem.
    Check {
        #[arg(long)]
        config: PathBuf,
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
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        CliCommand::Sandbox { config } => sandbox(config).await,
        CliCommand::Check { config } => check(&config),
    }
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
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

fn check(path: &PathBuf) -> ExitCode {
    let config = match load(Some(path)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!(
        "config ok: mode {}, {} approver(s), approvals expire after {}",
        config.routing.mode,
        config.approval.approvers.len(),
        humantime::format_duration(config.approval.expires_after)
    );
    for (name, env) in &config.environments {
        println!("  {name}:");
        for cluster in &env.clusters {
            println!("    {} (context {})", cluster.name, cluster.context);
        }
    }
    ExitCode::SUCCESS
}
