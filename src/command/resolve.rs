//! Turning the names a person typed into the config's names: which
//! environment (`in ENV`, the channel's environment, or the only one) and
//! which cluster (full name, unique prefix, or label such as `green`).

use super::parse::did_you_mean;
use super::Command;
use crate::config::{Config, EnvironmentConfig};
use crate::messages::UserError;
use crate::plan::Percent;

/// A command with its environment and cluster names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub env: String,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Status,
    History,
    Abort,
    Rollback,
    Shift {
        percent: Percent,
        to: Option<String>,
        force: bool,
    },
    To {
        cluster: String,
        steps: Vec<Percent>,
    },
    Add {
        cluster: String,
    },
    Remove {
        cluster: String,
    },
}

/// Resolves a parsed command sent from `channel`. `Help` has no environment
/// and is handled before this.
pub fn resolve(config: &Config, channel: &str, command: &Command) -> Result<Request, UserError> {
    if !config.slack.channels.is_empty() && !config.slack.channels.iter().any(|c| c == channel) {
        return Err(UserError::ChannelNotAllowed {
            allowed: config.slack.channels.clone(),
        });
    }
    let env = resolve_env(config, channel, command.env())?;
    let environment = &config.environments[&env];
    let cluster = |given: &str| resolve_cluster(&env, environment, given);
    let action = match command {
        Command::Help => return Err(UserError::Invalid("help has no environment".into())),
        Command::Status { .. } => Action::Status,
        Command::History { .. } => Action::History,
        Command::Abort { .. } => Action::Abort,
        Command::Rollback { .. } => Action::Rollback,
        Command::Shift {
            percent, to, force, ..
        } => Action::Shift {
            percent: *percent,
            to: to.as_deref().map(cluster).transpose()?,
            force: *force,
        },
        Command::To {
            cluster: target,
            steps,
            ..
        } => Action::To {
            cluster: cluster(target)?,
            steps: match steps {
                Some(steps) => steps.clone(),
                // Validated when the config was loaded.
                None => crate::config::validate_steps(&config.routing.default_steps)
                    .map_err(UserError::Invalid)?,
            },
        },
        Command::Add { cluster: c, .. } => Action::Add {
            cluster: cluster(c)?,
        },
        Command::Remove { cluster: c, .. } => Action::Remove {
            cluster: cluster(c)?,
        },
    };
    Ok(Request { env, action })
}

fn resolve_env(config: &Config, channel: &str, given: Option<&str>) -> Result<String, UserError> {
    let known = config.environment_names();
    if let Some(given) = given {
        let lower = given.to_ascii_lowercase();
        if config.environments.contains_key(&lower) {
            return Ok(lower);
        }
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        return Err(UserError::UnknownEnvironment {
            given: given.to_owned(),
            suggestion: did_you_mean(&lower, &names),
            known,
        });
    }
    if let Some((name, _)) = config
        .environments
        .iter()
        .find(|(_, e)| e.channel.as_deref() == Some(channel))
    {
        return Ok(name.clone());
    }
    match known.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(UserError::WhichEnvironment { known }),
    }
}

/// Finds the one configured cluster `given` names: its full name, its label,
/// or a unique prefix of either (case-insensitive).
fn resolve_cluster(
    env: &str,
    environment: &EnvironmentConfig,
    given: &str,
) -> Result<String, UserError> {
    let labels = cluster_labels(environment);
    let wanted = given.to_ascii_lowercase();
    let exact: Vec<&(String, String)> = labels
        .iter()
        .filter(|(name, label)| name.eq_ignore_ascii_case(&wanted) || *label == wanted)
        .collect();
    if let [(name, _)] = exact.as_slice() {
        return Ok(name.clone());
    }
    let by_prefix: Vec<&(String, String)> = labels
        .iter()
        .filter(|(name, label)| {
            name.to_ascii_lowercase().starts_with(&wanted) || label.starts_with(&wanted)
        })
        .collect();
    match by_prefix.as_slice() {
        [(name, _)] => Ok(name.clone()),
        [] => {
            let known: Vec<String> = labels.iter().map(|(_, l)| l.clone()).collect();
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            Err(UserError::UnknownCluster {
                given: given.to_owned(),
                env: env.to_owned(),
                suggestion: did_you_mean(&wanted, &names),
                known,
            })
        }
        several => Err(UserError::AmbiguousCluster {
            given: given.to_owned(),
            env: env.to_owned(),
            matches: several.iter().map(|(_, l)| l.clone()).collect(),
        }),
    }
}

/// Each cluster's full name and short label, in config order. The label is
/// the first DNS label without the prefix all clusters share up to a `-`:
/// `k8s-blue.dev.example.com` and `k8s-green.dev.example.com` become `blue`
/// and `green`.
pub fn cluster_labels(environment: &EnvironmentConfig) -> Vec<(String, String)> {
    let first_labels: Vec<String> = environment
        .clusters
        .iter()
        .map(|c| c.name.split('.').next().unwrap_or("").to_ascii_lowercase())
        .collect();
    let shared = shared_dash_prefix(&first_labels);
    environment
        .clusters
        .iter()
        .zip(&first_labels)
        .map(|(c, first)| {
            let label = first
                .get(shared..)
                .filter(|l| !l.is_empty())
                .unwrap_or(first);
            (c.name.clone(), label.to_owned())
        })
        .collect()
}

/// Length of the longest prefix, ending in `-`, that all labels share
/// (0 for a single cluster: its label stays whole).
fn shared_dash_prefix(labels: &[String]) -> usize {
    let [first, rest @ ..] = labels else {
        return 0;
    };
    if rest.is_empty() {
        return 0;
    }
    let mut len = first.len();
    for other in rest {
        len = first
            .bytes()
            .zip(other.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // By bytes: `len` may end inside a multi-byte character (`xé` and `xê`
    // share the byte 0xC3), where slicing the `str` would panic. A `-` byte
    // is always a whole character, so the length up to it is a boundary.
    first.as_bytes()[..len]
        .iter()
        .rposition(|b| *b == b'-')
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    fn config() -> Config {
        Config::from_yaml(
            r#"
slack:
  channels: [C1, C2]
approval:
  approvers: [U1]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue}
      - {name: k8s-green.dev.example.com, context: green}
      - {name: k8s-grey.dev.example.com, context: grey}
  prod:
    clusters:
      - {name: k8s-2022xx.prod.example.com, context: xx}
      - {name: k8s-2022yy.prod.example.com, context: yy}
"#,
        )
        .unwrap()
    }

    fn resolve_text(channel: &str, text: &str) -> Result<Request, UserError> {
        resolve(&config(), channel, &parse(text).unwrap())
    }

    #[test]
    fn labels_strip_the_shared_dash_prefix() {
        let c = config();
        let labels: Vec<String> = cluster_labels(&c.environments["dev"])
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(labels, ["blue", "green", "grey"]);
        let labels: Vec<String> = cluster_labels(&c.environments["prod"])
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(labels, ["2022xx", "2022yy"]);
    }

    #[test]
    fn channel_selects_environment() {
        let r = resolve_text("C1", "status").unwrap();
        assert_eq!(r.env, "dev");
        assert!(matches!(
            resolve_text("C2", "status"),
            Err(UserError::WhichEnvironment { .. })
        ));
        assert_eq!(resolve_text("C2", "status in prod").unwrap().env, "prod");
        assert!(matches!(
            resolve_text("C9", "status in prod"),
            Err(UserError::ChannelNotAllowed { .. })
        ));
    }

    #[test]
    fn clusters_by_label_prefix_and_full_name() {
        let to = |text: &str| match resolve_text("C1", text).map(|r| r.action) {
            Ok(Action::Add { cluster }) => Ok(cluster),
            other => Err(other),
        };
        assert_eq!(to("add green").unwrap(), "k8s-green.dev.example.com");
        assert_eq!(to("add BL").unwrap(), "k8s-blue.dev.example.com");
        assert_eq!(
            to("add k8s-grey.dev.example.com").unwrap(),
            "k8s-grey.dev.example.com"
        );
        assert_eq!(
            to("add 2022xx in prod").unwrap(),
            "k8s-2022xx.prod.example.com"
        );
    }

    #[test]
    fn unknown_and_ambiguous_clusters_explain_themselves() {
        let err = resolve_text("C1", "add gren").unwrap_err().to_string();
        assert_eq!(
            err,
            "no cluster matches `gren` — did you mean `green`? Clusters in dev: blue, green, grey."
        );
        let err = resolve_text("C1", "add gr").unwrap_err().to_string();
        assert_eq!(
            err,
            "`gr` matches more than one cluster in dev: green, grey. Type more of the name."
        );
        let err = resolve_text("C1", "status in dve").unwrap_err().to_string();
        assert!(err.contains("did you mean `dev`"), "{err}");
    }
}
