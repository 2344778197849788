//! Turning the names a person typed into the config's names: which
//! environment (`in ENV`, the channel's environment, or the only one) and
//! which cluster (full name, unique prefix, or label such as `green`).

use super::grammar::did_you_mean;
use super::CommandError;
use crate::config::{Config, EnvironmentConfig};
use crate::ids::{ClusterId, EnvId};

/// The environment a command is about, resolved: names of its clusters
/// resolve against it.
pub struct Scope<'a> {
    pub env: EnvId,
    pub environment: &'a EnvironmentConfig,
}

impl<'a> Scope<'a> {
    /// Resolves the environment of a command sent from `channel`.
    pub fn resolve(
        config: &'a Config,
        channel: &str,
        given: Option<&str>,
    ) -> Result<Scope<'a>, CommandError> {
        if is_direct_message(channel) {
            return Err(CommandError::DirectMessage);
        }
        let allowed = &config.slack.channels;
        if !allowed.is_empty() && !allowed.iter().any(|c| c == channel) {
            return Err(CommandError::ChannelNotAllowed {
                allowed: allowed.clone(),
            });
        }
        let env = resolve_env(config, channel, given)?;
        let environment = &config.environments[&env];
        let bound = environment.bound_channels();
        if !bound.is_empty() && !bound.contains(&channel) {
            return Err(CommandError::WrongChannel {
                env,
                channels: bound.into_iter().map(str::to_owned).collect(),
            });
        }
        Ok(Scope { env, environment })
    }

    /// The one configured cluster `given` names: its full name, its label,
    /// or a unique prefix of either (case-insensitive).
    pub fn cluster(&self, given: &str) -> Result<ClusterId, CommandError> {
        let labels = cluster_labels(self.environment);
        let wanted = given.to_ascii_lowercase();
        let exact: Vec<&(ClusterId, String)> = labels
            .iter()
            .filter(|(name, label)| name.eq_ignore_ascii_case(&wanted) || *label == wanted)
            .collect();
        if let [(name, _)] = exact.as_slice() {
            return Ok(name.clone());
        }
        let by_prefix: Vec<&(ClusterId, String)> = labels
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
                Err(CommandError::UnknownCluster {
                    given: given.to_owned(),
                    env: self.env.clone(),
                    suggestion: did_you_mean(&wanted, &names),
                    known,
                })
            }
            several => Err(CommandError::AmbiguousCluster {
                given: given.to_owned(),
                env: self.env.clone(),
                matches: several.iter().map(|(_, l)| l.clone()).collect(),
            }),
        }
    }
}

/// Slack's direct-message channel ids start with `D`: a failover is never
/// requested where the rest of the team cannot see it.
fn is_direct_message(channel: &str) -> bool {
    channel.starts_with('D')
}

fn resolve_env(config: &Config, channel: &str, given: Option<&str>) -> Result<EnvId, CommandError> {
    let known = config.environment_names();
    if let Some(given) = given {
        let lower = given.to_ascii_lowercase();
        if let Some((name, _)) = config.environments.get_key_value(lower.as_str()) {
            return Ok(name.clone());
        }
        let names: Vec<&str> = known.iter().map(EnvId::as_str).collect();
        return Err(CommandError::UnknownEnvironment {
            given: given.to_owned(),
            suggestion: did_you_mean(&lower, &names),
            known,
        });
    }
    if let Some((name, _)) = config
        .environments
        .iter()
        .find(|(_, e)| e.bound_channels().contains(&channel))
    {
        return Ok(name.clone());
    }
    match known.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(CommandError::WhichEnvironment { known }),
    }
}

/// Each cluster's full name and short label, in config order. The label is
/// the first DNS label without the prefix all clusters share up to a `-`:
/// `k8s-blue.dev.example.com` and `k8s-green.dev.example.com` become `blue`
/// and `green`.
pub fn cluster_labels(environment: &EnvironmentConfig) -> Vec<(ClusterId, String)> {
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
    use crate::command::{understand, Command, Understood};

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

    fn env_of(channel: &str, text: &str) -> Result<EnvId, CommandError> {
        match understand(&config(), channel, text)? {
            Understood::Request(r) => Ok(r.env),
            Understood::Help => panic!("not help"),
        }
    }

    fn added(text: &str) -> Result<ClusterId, CommandError> {
        match understand(&config(), "C1", text)? {
            Understood::Request(r) => match r.command {
                Command::Add(add) => Ok(add.cluster),
                other => panic!("not add: {other:?}"),
            },
            Understood::Help => panic!("not help"),
        }
    }

    #[test]
    fn labels_strip_the_shared_dash_prefix() {
        let c = config();
        let labels = |env: &str| -> Vec<String> {
            cluster_labels(&c.environments[env])
                .into_iter()
                .map(|(_, l)| l)
                .collect()
        };
        assert_eq!(labels("dev"), ["blue", "green", "grey"]);
        assert_eq!(labels("prod"), ["2022xx", "2022yy"]);
    }

    #[test]
    fn channel_selects_environment() {
        assert_eq!(env_of("C1", "status").unwrap(), "dev");
        assert!(matches!(
            env_of("C2", "status"),
            Err(CommandError::WhichEnvironment { .. })
        ));
        assert_eq!(env_of("C2", "status in prod").unwrap(), "prod");
        assert!(matches!(
            env_of("C9", "status in prod"),
            Err(CommandError::ChannelNotAllowed { .. })
        ));
    }

    #[test]
    fn a_bound_environment_is_acted_on_only_from_its_channels() {
        // dev names C1: from C2, `in dev` is refused and names C1.
        let err = env_of("C2", "status in dev").unwrap_err();
        assert_eq!(
            err,
            CommandError::WrongChannel {
                env: "dev".into(),
                channels: vec!["C1".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "dev is acted on only from <#C1>; send it there."
        );
        // prod names none: any of slack.channels will do.
        assert_eq!(env_of("C1", "status in prod").unwrap(), "prod");
    }

    #[test]
    fn direct_messages_are_refused_but_help_works() {
        assert_eq!(
            env_of("D0123", "status in dev").unwrap_err(),
            CommandError::DirectMessage
        );
        assert_eq!(
            understand(&config(), "D0123", "help").unwrap(),
            Understood::Help
        );
    }

    #[test]
    fn clusters_by_label_prefix_and_full_name() {
        assert_eq!(added("add green").unwrap(), "k8s-green.dev.example.com");
        assert_eq!(added("add BL").unwrap(), "k8s-blue.dev.example.com");
        assert_eq!(
            added("add k8s-grey.dev.example.com").unwrap(),
            "k8s-grey.dev.example.com"
        );
        assert_eq!(
            added("add 2022xx in prod").unwrap(),
            "k8s-2022xx.prod.example.com"
        );
    }

    #[test]
    fn unknown_and_ambiguous_clusters_explain_themselves() {
        let err = added("add gren").unwrap_err().to_string();
        assert_eq!(
            err,
            "no cluster matches `gren` — did you mean `green`? Clusters in dev: blue, green, grey."
        );
        let err = added("add gr").unwrap_err().to_string();
        assert_eq!(
            err,
            "`gr` matches more than one cluster in dev: green, grey. Type more of the name."
        );
        let err = env_of("C1", "status in dve").unwrap_err().to_string();
        assert!(err.contains("did you mean `dev`"), "{err}");
    }
}
