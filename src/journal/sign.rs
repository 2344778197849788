//! Tamper evidence: each record the bot writes carries an Ed25519
//! signature made with a key from the bot's Secret, so whoever can write
//! the journal cannot extend or rewrite it unnoticed, and whoever verifies
//! it (with the public key only) cannot forge it either.
//!
//! The signature covers the line's exact bytes as written without it, and
//! is appended as the line's last field (`…,"sig":"HEX"}`): verifying never
//! re-serialises a record, so a later release that adds fields still
//! verifies what an earlier one signed. The hash chain (`prev`) covers the
//! whole line, signature included.
//!
//! The chain of keys:
//! - a journal written before signing (or by a bot without a key) is an
//!   unsigned prefix; the first signed record is a [`Entry::Checkpoint`]
//!   naming its key and covering that prefix through the hash chain;
//! - [`Entry::KeyRotated`], signed by the old key, names the new one;
//! - [`Entry::Rekeyed`], signed by a new key, replaces a lost one: it
//!   starts a new signed chain anchored on the head it names.
//!
//! From the first checkpoint on, every record must be signed by the key in
//! force; the verifier's key must be the one in force at the end.

use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

use chrono::{DateTime, Utc};

use super::{parse_line, Entry, Journal, JournalError};

/// The bot's signing key (its Secret holds the 32-byte seed, in hex).
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.public())
    }
}

/// A public key, written as 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} must be 64 hex digits (32 bytes)")]
    Shape { what: &'static str },
    #[error("not an Ed25519 public key")]
    NotAPoint,
}

fn bytes32(text: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Shape { what })?;
    bytes.try_into().map_err(|_| KeyError::Shape { what })
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl Signer {
    /// A key from its seed, in hex (as `journal keygen` prints it).
    pub fn from_hex(text: &str) -> Result<Signer, KeyError> {
        let seed = bytes32(text, "a signing key")?;
        Ok(Signer {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn from_file(path: &Path) -> Result<Signer, KeyError> {
        Signer::from_hex(&read(path)?)
    }

    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<Signer, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)?;
        Ok(Signer {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The seed, in hex: what goes into the Secret.
    pub fn secret_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// `unsigned` (one record's JSON object) with its signature appended
    /// as the last field.
    pub fn sign_line(&self, unsigned: &str) -> String {
        let signature = self.key.sign(unsigned.as_bytes());
        let body = unsigned.strip_suffix('}').unwrap_or(unsigned);
        format!("{body},\"sig\":\"{}\"}}", hex::encode(signature.to_bytes()))
    }
}

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = bytes32(text, "a public key")?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::NotAPoint)
    }

    pub fn from_file(path: &Path) -> Result<PublicKey, KeyError> {
        PublicKey::from_hex(&read(path)?)
    }

    fn verifies(&self, unsigned: &str, signature: &[u8; 64]) -> bool {
        self.0
            .verify(unsigned.as_bytes(), &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.to_bytes()))
    }
}

/// A signed line split into what was signed and the signature; `None`
/// for a line without one.
fn split_signed(line: &str) -> Option<(String, Option<[u8; 64]>)> {
    const FIELD: &str = ",\"sig\":\"";
    let at = line.rfind(FIELD)?;
    let hex_sig = line[at + FIELD.len()..].strip_suffix("\"}")?;
    let signature = hex::decode(hex_sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok());
    Some((format!("{}}}", &line[..at]), signature))
}

/// What is wrong with a journal's signatures, and on which line (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("journal line {line}: {problem}")]
pub struct SignatureProblem {
    pub line: usize,
    pub problem: String,
}

/// How a journal's signatures stand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signatures {
    /// The key in force at the end; `None`: nothing is signed yet.
    pub key: Option<PublicKey>,
    /// Signed records.
    pub signed: usize,
}

impl Signatures {
    /// `key` in force, with nothing counted: no checkpoint is due.
    pub fn under(key: PublicKey) -> Signatures {
        Signatures {
            key: Some(key),
            signed: 0,
        }
    }
}

/// Checks every signature in `lines` and the chain of keys; `trusted` is
/// the key that must be in force at the end, when given.
pub fn verify_lines(
    lines: &[&str],
    trusted: Option<&PublicKey>,
) -> Result<Signatures, SignatureProblem> {
    verify_from(lines, trusted, Signatures::default())
}

/// [`verify_lines`] from `start`: the key in force before `lines[0]`.
fn verify_from(
    lines: &[&str],
    trusted: Option<&PublicKey>,
    start: Signatures,
) -> Result<Signatures, SignatureProblem> {
    let mut state = start;
    for (i, line) in lines.iter().enumerate() {
        let problem = |problem: String| SignatureProblem {
            line: i + 1,
            problem,
        };
        let entry = parse_line(line).map_err(|e| problem(e.to_string()))?.entry;
        let signed = split_signed(line);
        let key = key_for(&entry, state.key).map_err(problem)?;
        match (signed, key) {
            (None, None) => continue,
            (None, Some(_)) => return Err(problem("no signature".into())),
            (Some(_), None) => {
                return Err(problem(
                    "signed, but no checkpoint names its key before it".into(),
                ))
            }
            (Some((_, None)), Some(_)) => {
                return Err(problem("a signature that is not 64 bytes of hex".into()))
            }
            (Some((unsigned, Some(signature))), Some(key)) => {
                if !key.verifies(&unsigned, &signature) {
                    return Err(problem(format!("bad signature (key {key})")));
                }
                state.signed += 1;
                state.key = Some(after_record(&entry, key));
            }
        }
    }
    if let (Some(trusted), Some(key)) = (trusted, state.key) {
        if *trusted != key {
            return Err(SignatureProblem {
                line: lines.len(),
                problem: format!(
                    "the journal is signed with key {key}, not {trusted}; rotate keys (`failover-bot journal rotate-key`) or, if the old key is lost, `failover-bot journal rekey`"
                ),
            });
        }
    }
    Ok(state)
}

/// The journal's lines as read at start: all of a file, or a store's from
/// its latest checkpoint segment on.
#[derive(Clone, Debug, Default)]
pub struct Tail {
    /// The journal line number of `lines[0]` (1-based).
    pub first_line: usize,
    pub lines: Vec<String>,
}

impl Tail {
    /// A whole journal file.
    pub fn read(path: &Path) -> std::io::Result<Tail> {
        let text = std::fs::read_to_string(path)?;
        Ok(Tail {
            first_line: 1,
            lines: text.lines().map(str::to_owned).collect(),
        })
    }

    /// A journal file from its latest snapshot on: the lines start-up
    /// reads ([`Journal::open`]); a torn last line is left out.
    pub fn read_since_snapshot(path: &Path) -> std::io::Result<Tail> {
        use std::io::{BufRead, Seek};
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let from = super::scan::latest_snapshot(&file, len)?;
        let mut reader = std::io::BufReader::new(file);
        reader.seek(std::io::SeekFrom::Start(from.map_or(0, |at| at.offset)))?;
        let mut lines = Vec::new();
        for line in reader.split(b'\n') {
            lines.push(String::from_utf8_lossy(&line?).into_owned());
        }
        Ok(Tail {
            first_line: from.map_or(1, |at| at.seq as usize),
            lines,
        })
    }

    pub fn lines(&self) -> Vec<&str> {
        self.lines.iter().map(String::as_str).collect()
    }
}

/// Signs what the bot writes from now on with `signer`, after checking
/// what `tail` (the journal as it is) carries: an unsigned journal gets a
/// checkpoint under the key; one whose signatures do not hold is the
/// problem returned (the bot then refuses weight changes, and says which
/// line), and the bot signs on without vouching for it.
///
/// A tail that does not start at line 1 and starts signed continues a
/// chain begun before it: it is checked against the bot's own key.
pub fn start_signing(
    journal: &mut Journal,
    tail: &Tail,
    signer: Signer,
    at: DateTime<Utc>,
) -> Result<Option<SignatureProblem>, JournalError> {
    let ours = signer.public();
    let lines = tail.lines();
    let continues = tail.first_line > 1 && lines.first().is_some_and(|l| split_signed(l).is_some());
    let start = Signatures {
        key: continues.then_some(ours),
        signed: 0,
    };
    match verify_from(&lines, Some(&ours), start) {
        Ok(signatures) => {
            journal.sign_with(at, signer, &signatures)?;
            Ok(None)
        }
        Err(mut problem) => {
            problem.line += tail.first_line.saturating_sub(1);
            journal.sign_with(at, signer, &Signatures::under(ours))?;
            Ok(Some(problem))
        }
    }
}

/// The key that must have signed `entry`, given the key in force; an error
/// for a record that may not appear here.
fn key_for(entry: &Entry, current: Option<PublicKey>) -> Result<Option<PublicKey>, String> {
    let named = |hex: &str| PublicKey::from_hex(hex).map_err(|e| e.to_string());
    match entry {
        Entry::Checkpoint { key, .. } => {
            let key = named(key)?;
            match current {
                Some(current) if current != key => Err(format!(
                    "a checkpoint under key {key} while {current} is in force: keys change only by rotation"
                )),
                _ => Ok(Some(key)),
            }
        }
        Entry::Rekeyed { new_key, .. } => Ok(Some(named(new_key)?)),
        _ => Ok(current),
    }
}

/// The key in force after `entry`, signed by `signer`.
fn after_record(entry: &Entry, signer: PublicKey) -> PublicKey {
    match entry {
        Entry::KeyRotated { new_key, .. } => PublicKey::from_hex(new_key).unwrap_or(signer),
        _ => signer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_line_verifies_and_a_changed_one_does_not() {
        let signer = Signer::generate().unwrap();
        let line = signer.sign_line(r#"{"v":2,"seq":1}"#);
        let (unsigned, signature) = split_signed(&line).unwrap();
        assert_eq!(unsigned, r#"{"v":2,"seq":1}"#);
        assert!(signer.public().verifies(&unsigned, &signature.unwrap()));
        assert!(!signer
            .public()
            .verifies(r#"{"v":2,"seq":2}"#, &signature.unwrap()));
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let signer = Signer::generate().unwrap();
        let again = Signer::from_hex(&signer.secret_hex()).unwrap();
        assert_eq!(again.public(), signer.public());
        let public = PublicKey::from_hex(&signer.public().to_string()).unwrap();
        assert_eq!(public, signer.public());
        assert!(matches!(
            Signer::from_hex("abc"),
            Err(KeyError::Shape { .. })
        ));
    }
}
