//! Names of the things the bot acts on, as types: an environment, a cluster
//! and a Slack user are all strings on the wire, and mixing them up (a user
//! id where a cluster belongs) should not compile.
//!
//! Each is a transparent string in JSON, so the journal's format is the same
//! as when these were plain strings. Imports nothing of the crate.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&$name> for $name {
            fn from(value: &$name) -> Self {
                value.clone()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id! {
    /// An environment's name in the config (`dev`, `prod`).
    EnvId
}

string_id! {
    /// A cluster's name: its identity (`k8s-blue.dev.example.com`), which
    /// its `cluster-identity` ConfigMap must say.
    ClusterId
}

string_id! {
    /// A Slack user id (`U…`, `W…`); in the sandbox, a name.
    UserId
}

/// An operation's number, unique in a journal; shown as `#7`.
pub type OpId = u64;

/// Where a posted message lives: reactions and thread replies refer to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

impl fmt::Display for MessageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel, self.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_strings_in_json() {
        let cluster = ClusterId::new("k8s-blue.dev.example.com");
        assert_eq!(
            serde_json::to_string(&cluster).unwrap(),
            "\"k8s-blue.dev.example.com\""
        );
        let back: ClusterId = serde_json::from_str("\"k8s-blue.dev.example.com\"").unwrap();
        assert_eq!(back, cluster);
        assert_eq!(cluster, "k8s-blue.dev.example.com");
    }
}
