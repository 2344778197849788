//! `failover-bot keys …`: the journal's signing keys.
//!
//! - `generate` prints a new key (for the bot's Secret) and its public key
//!   (for whoever verifies);
//! - `rotate` appends a record, signed by the old key, that hands signing
//!   over to the new one;
//! - `rekey` replaces a lost key: a record signed by the new key starts a
//!   new signed chain anchored on the journal's head, and the channels of
//!   every environment are told when the bot next starts.
//!
//! `rotate` and `rekey` write the journal file: stop the bot first (it
//! holds the journal's lock while it runs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;

use crate::journal::sign::{verify_lines, Signatures, Signer, Tail};
use crate::journal::{Entry, Journal};
use crate::notice::{Destination, Notice};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new signing key (hex seed, for the Secret) and its public key.
    Generate,
    /// Hand signing over from KEY to NEW_KEY, with a record signed by KEY.
    Rotate {
        #[arg(long)]
        journal: PathBuf,
        /// The key in force (its file).
        #[arg(long)]
        key: PathBuf,
        /// The key that signs from now on (its file).
        #[arg(long)]
        new_key: PathBuf,
    },
    /// The key in force is lost: start a new signed chain under NEW_KEY,
    /// anchored on the journal's head, and tell the channels why.
    Rekey {
        #[arg(long)]
        journal: PathBuf,
        #[arg(long)]
        new_key: PathBuf,
        /// The config: whose environments' channels are told.
        #[arg(long)]
        config: PathBuf,
        /// Why the old key was replaced (said in the channels).
        #[arg(long)]
        reason: String,
    },
}

pub fn run(command: KeysCommand) -> ExitCode {
    let done = match command {
        KeysCommand::Generate => generate(),
        KeysCommand::Rotate {
            journal,
            key,
            new_key,
        } => rotate(&journal, &key, &new_key),
        KeysCommand::Rekey {
            journal,
            new_key,
            config,
            reason,
        } => rekey(&journal, &new_key, &config, &reason),
    };
    match done {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("failover-bot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate() -> Result<String, String> {
    let signer = Signer::generate().map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!(
        "signing key (the Secret's `signing-key`): {}\npublic key (for `audit verify --public-key`): {}",
        signer.secret_hex(),
        signer.public()
    ))
}

fn signer(path: &Path) -> Result<Signer, String> {
    Signer::from_file(path).map_err(|e| e.to_string())
}

/// Opens the journal and checks that its signatures hold under `key`.
fn open_checked(path: &Path, key: &Signer) -> Result<(Journal, Signatures), String> {
    let tail = Tail::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let signatures = verify_lines(&tail.lines(), Some(&key.public())).map_err(|p| p.to_string())?;
    let (journal, _) = Journal::open(path).map_err(|e| e.to_string())?;
    Ok((journal, signatures))
}

fn rotate(path: &Path, key: &Path, new_key: &Path) -> Result<String, String> {
    let old = signer(key)?;
    let new = signer(new_key)?;
    let (mut journal, signatures) = open_checked(path, &old)?;
    journal
        .sign_with(Utc::now(), old, &signatures)
        .map_err(|e| e.to_string())?;
    let new_public = new.public().to_string();
    journal
        .append(
            Utc::now(),
            Entry::KeyRotated {
                new_key: new_public.clone(),
            },
        )
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "journal {}: signing handed over to {new_public}; start the bot with the new key",
        path.display()
    ))
}

fn rekey(path: &Path, new_key: &Path, config: &Path, reason: &str) -> Result<String, String> {
    let config = crate::config::Config::load(config).map_err(|e| e.to_string())?;
    let new = signer(new_key)?;
    let (mut journal, _) = Journal::open(path).map_err(|e| e.to_string())?;
    let old_head = journal.head().to_owned();
    let new_public = new.public().to_string();
    // No checkpoint: the `Rekeyed` record names the new key itself.
    journal
        .sign_with(Utc::now(), new.clone(), &Signatures::under(new.public()))
        .map_err(|e| e.to_string())?;
    let rekeyed = Entry::Rekeyed {
        new_key: new_public.clone(),
        old_head: old_head.clone(),
        reason: reason.to_owned(),
    };
    let says = channels(&config).into_iter().map(|channel| Entry::Say {
        to: Destination::Post {
            channel,
            thread: None,
        },
        notice: Notice::Rekeyed {
            new_key: new_public.clone(),
            old_head: old_head.clone(),
            reason: reason.to_owned(),
        },
    });
    let mut entries = vec![rekeyed];
    entries.extend(says);
    journal
        .append_batch(Utc::now(), entries)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "journal {}: a new signed chain under {new_public}, anchored on {old_head}; the channels hear of it when the bot starts",
        path.display()
    ))
}

/// Every environment's channels, once each.
fn channels(config: &crate::config::Config) -> Vec<String> {
    let mut all: Vec<String> = config
        .environments
        .values()
        .flat_map(|e| e.bound_channels())
        .map(str::to_owned)
        .chain(config.slack.channels.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}
