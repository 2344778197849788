//! external-dns's TXT registry, read the way external-dns reads it, so the
//! bot knows who owns each weighted record before it writes one.
//!
//! Read in kubernetes-sigs/external-dns, tags v0.12.0 to v0.22.0:
//!
//! - The value (`endpoint/labels.go`, `NewLabelsFromStringPlain`,
//!   `SerializePlain`): `"heritage=external-dns,external-dns/owner=OWNER,
//!   external-dns/resource=…"`, quotes trimmed, tokens split on `,`, each
//!   `key=value`; a value without `heritage=external-dns` is not a registry
//!   record (it is then an ordinary TXT record to external-dns).
//! - The names (`registry/txt.go` up to v0.21, `registry/mapper/mapper.go`
//!   from v0.22; `toTXTName`/`toNewTXTName`, later `ToTXTName`): the registry
//!   record of `api.dev.example.com` of type A is
//!   `PREFIX + "a-api" + SUFFIX + ".dev.example.com"` — the type goes on the
//!   first label, unless the prefix or suffix holds `%{record_type}`, which
//!   is then replaced by the lower-case type. A leading `*` label is replaced
//!   by `--txt-wildcard-replacement` when set.
//! - v0.12 to v0.17 also write the *old* form, `PREFIX + "api" + SUFFIX +
//!   ".dev.example.com"` (the same name as the record when there is no
//!   prefix or suffix) — not for AAAA from v0.16 on; v0.18 stopped writing it
//!   and leaves the old records behind, never updated again.
//! - AWS alias A records: v0.14 to v0.21 name their registry record with
//!   `cname-`; v0.22 writes `a-` and still reads `cname-` (`isAliasARecord`).
//! - Ownership (`TXTRegistry.Records`): keyed by name + type + set identifier;
//!   the typed form is preferred, then (alias A) `cname-`, then the old form
//!   (not for AAAA). The TXT record's own weight is never read.
//! - An external-dns instance updates and deletes only records whose owner
//!   is its own `--txt-owner-id` (`FilterEndpointsByOwnerID` in
//!   `ApplyChanges`): a record under another owner id is left alone. That is
//!   how the bot keeps its records: under an owner id of its own.

use std::collections::BTreeMap;

use aws_sdk_route53::types::{ResourceRecordSet, RrType};

use super::batch::unique_names;
use super::records::{is_routed, normalise, valid_records, valid_zone};
use super::{Route53, Route53Error};
use crate::config::Route53Config;

/// The placeholder external-dns replaces with the record type in a prefix
/// or suffix (`recordTemplate` in its mapper).
const RECORD_TYPE_TEMPLATE: &str = "%{record_type}";
/// The bot's owner id unless the config names another.
pub use crate::config::DEFAULT_ROUTE53_OWNER_ID as DEFAULT_OWNER_ID;

/// How the site's external-dns names its registry records, and the owner id
/// the bot's own records carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// The owner id of the bot's records (`route53.owner_id`).
    pub owner_id: String,
    /// external-dns's `--txt-prefix` (lower case, as external-dns uses it).
    pub prefix: String,
    /// external-dns's `--txt-suffix`.
    pub suffix: String,
    /// external-dns's `--txt-wildcard-replacement`.
    pub wildcard_replacement: String,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            owner_id: DEFAULT_OWNER_ID.to_owned(),
            prefix: String::new(),
            suffix: String::new(),
            wildcard_replacement: String::new(),
        }
    }
}

/// Who external-dns's registry says owns one weighted record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Owner {
    Named(String),
    /// No registry record names an owner: no external-dns manages it.
    Unowned,
    /// A TXT record sits where the registry record would be, but it is not
    /// external-dns's plain format (encrypted with `--txt-encrypt-enabled`,
    /// or someone else's TXT).
    Unreadable,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Named(owner) => write!(f, "owner {owner}"),
            Owner::Unowned => f.write_str("no registry record"),
            Owner::Unreadable => f.write_str("a registry record the bot cannot read"),
        }
    }
}

/// A weighted record the bot may not write: its registry names another
/// owner (or none).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForeignRecord {
    pub name: String,
    pub record_type: String,
    pub set_identifier: String,
    pub owner: Owner,
}

impl std::fmt::Display for ForeignRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} ({})",
            self.name, self.record_type, self.set_identifier, self.owner
        )
    }
}

/// Mode `route53` refused before any write: these records are not the bot's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotOwned {
    /// The bot's owner id.
    pub owner_id: String,
    pub records: Vec<ForeignRecord>,
}

impl NotOwned {
    /// The other owners named, each once.
    pub fn other_owners(&self) -> Vec<&str> {
        let mut owners: Vec<&str> = self
            .records
            .iter()
            .filter_map(|r| match &r.owner {
                Owner::Named(o) => Some(o.as_str()),
                _ => None,
            })
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }
}

impl std::fmt::Display for NotOwned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 5;
        let shown: Vec<String> = self
            .records
            .iter()
            .take(SHOWN)
            .map(ToString::to_string)
            .collect();
        write!(
            f,
            "refused before any write: external-dns's registry does not give these records to owner id {}: {}",
            self.owner_id,
            shown.join("; ")
        )?;
        if self.records.len() > SHOWN {
            write!(f, "; and {} more", self.records.len() - SHOWN)?;
        }
        let from = match self.other_owners().as_slice() {
            [one] => (*one).to_owned(),
            _ => "OWNER".to_owned(),
        };
        write!(
            f,
            ". An external-dns that owns them puts its own weights back. Use mode routing-weight or \
             ingress-annotations, or take the names out of that external-dns (--domain-filter, \
             --exclude-domains) and hand them to the bot: \
             `failover-bot route53 adopt --config FILE --env ENV --from-owner {from}`"
        )
    }
}

/// Which of external-dns's forms a registry record name has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// With the record type (`a-api…`, or `%{record_type}` in an affix).
    Typed,
    /// The alias-A form of v0.14–v0.21 (`cname-api…`).
    LegacyAlias,
    /// The old form of v0.12–v0.17, without the type (the record's own name
    /// when there is no prefix or suffix).
    Old,
}

impl From<&Route53Config> for Registry {
    fn from(config: &Route53Config) -> Self {
        Registry {
            owner_id: config.owner_id.clone(),
            prefix: config.txt_prefix.to_ascii_lowercase(),
            suffix: config.txt_suffix.to_ascii_lowercase(),
            wildcard_replacement: config.txt_wildcard_replacement.to_ascii_lowercase(),
        }
    }
}

impl Route53 {
    /// The weighted records of `clusters` on `records` that external-dns's
    /// registry does not give to the bot's owner id (`failover-bot check`).
    pub async fn foreign_records(
        &self,
        registry: &Registry,
        zone_id: &str,
        records: &[String],
        clusters: &[String],
    ) -> Result<Vec<ForeignRecord>, Route53Error> {
        let zone = valid_zone(zone_id)?;
        valid_records(records)?;
        let mut foreign = Vec::new();
        for name in unique_names(records) {
            let view = self.read_with_registry(&zone, &name, registry).await?;
            for set in clusters.iter().flat_map(|c| view.traffic(c)) {
                match view.owner(set, registry) {
                    Owner::Named(owner) if owner == registry.owner_id => {}
                    other => foreign.push(view.foreign(set, other)),
                }
            }
        }
        Ok(foreign)
    }

    /// One record name as the bot judges ownership on it: its sets, and the
    /// TXT sets at it and at its registry names. One listing per name read
    /// (the registry names are siblings, not in the name's own listing).
    pub(super) async fn read_with_registry(
        &self,
        zone: &str,
        name: &str,
        registry: &Registry,
    ) -> Result<NameView, Route53Error> {
        let own = normalise(name);
        let sets = self.list_raw(zone, &own).await?;
        let txt_of = |sets: &[ResourceRecordSet]| -> Vec<ResourceRecordSet> {
            sets.iter()
                .filter(|s| s.r#type == RrType::Txt)
                .cloned()
                .collect()
        };
        let mut txt = BTreeMap::new();
        txt.insert(own.clone(), txt_of(&sets));
        for other in NameView::registry_names(&own, &sets, registry) {
            let found = self.list_raw(zone, &other).await?;
            txt.insert(other, txt_of(&found));
        }
        Ok(NameView {
            name: own,
            sets,
            txt,
        })
    }
}

impl Registry {
    fn type_in_affix(&self) -> bool {
        self.prefix.contains(RECORD_TYPE_TEMPLATE) || self.suffix.contains(RECORD_TYPE_TEMPLATE)
    }

    /// external-dns's `ToTXTName` (`record_type: Some`) or the old
    /// `toTXTName` (`None`), on a normalised name.
    fn txt_name(&self, name: &str, record_type: Option<&str>) -> String {
        let name = normalise(name);
        let (first, rest) = name.split_once('.').unwrap_or((name.as_str(), ""));
        let first = if first == "*" && !self.wildcard_replacement.is_empty() {
            self.wildcard_replacement.to_ascii_lowercase()
        } else {
            first.to_owned()
        };
        let fill = |affix: &str| {
            affix
                .to_ascii_lowercase()
                .replace(RECORD_TYPE_TEMPLATE, record_type.unwrap_or_default())
        };
        let label = match record_type {
            Some(ty) if !self.type_in_affix() => format!("{ty}-{first}"),
            _ => first,
        };
        let head = format!("{}{label}{}", fill(&self.prefix), fill(&self.suffix));
        normalise(&if rest.is_empty() {
            head
        } else {
            format!("{head}.{rest}")
        })
    }

    /// Where external-dns looks for the registry record of a record of
    /// `record_type` at `name`, in its order of preference.
    pub fn candidates(&self, name: &str, record_type: &str, alias: bool) -> Vec<(String, Form)> {
        let ty = record_type.to_ascii_lowercase();
        let mut out = vec![(self.txt_name(name, Some(&ty)), Form::Typed)];
        if alias && ty == "a" {
            out.push((self.txt_name(name, Some("cname")), Form::LegacyAlias));
        }
        if ty != "aaaa" {
            out.push((self.txt_name(name, None), Form::Old));
        }
        out
    }

    /// The registry record name external-dns v0.18+ writes for a record.
    pub fn current_name(&self, name: &str, record_type: &str) -> String {
        self.txt_name(name, Some(&record_type.to_ascii_lowercase()))
    }
}

/// The labels of a registry TXT value (`owner`, `resource`, …), or `None`
/// when the value is not external-dns's (no `heritage=external-dns`).
pub fn labels(value: &str) -> Option<BTreeMap<String, String>> {
    let text = value.trim().trim_matches('"');
    let mut labels = BTreeMap::new();
    let mut heritage = false;
    for token in text.split(',') {
        let Some((key, val)) = token.split_once('=') else {
            continue;
        };
        if key == "heritage" {
            if val != "external-dns" {
                return None;
            }
            heritage = true;
        } else if let Some(label) = key.strip_prefix("external-dns/") {
            labels.insert(label.to_owned(), val.to_owned());
        }
    }
    heritage.then_some(labels)
}

/// The owner a registry value names; `None` when it names none.
pub fn owner_of_value(value: &str) -> Option<Option<String>> {
    labels(value).map(|l| l.get("owner").filter(|o| !o.is_empty()).cloned())
}

/// `value` with its owner label set to `owner`, every other token kept in
/// place (an absent owner label is added after the heritage).
pub fn with_owner(value: &str, owner: &str) -> String {
    let text = value.trim().trim_matches('"');
    let token = format!("external-dns/owner={owner}");
    let mut tokens: Vec<String> = text.split(',').map(str::to_owned).collect();
    match tokens
        .iter_mut()
        .find(|t| t.starts_with("external-dns/owner="))
    {
        Some(t) => *t = token,
        None => {
            let at = tokens
                .iter()
                .position(|t| t.starts_with("heritage="))
                .map_or(0, |i| i + 1);
            tokens.insert(at, token);
        }
    }
    format!("\"{}\"", tokens.join(","))
}

/// A fresh registry value naming `owner`, in external-dns's format.
pub fn value_for(owner: &str) -> String {
    format!("\"heritage=external-dns,external-dns/owner={owner}\"")
}

/// One registry record found for a weighted record.
#[derive(Clone, Debug)]
pub struct RegistryRecord<'a> {
    pub set: &'a ResourceRecordSet,
    /// `None`: not external-dns's format; `Some(None)`: names no owner.
    pub owner: Option<Option<String>>,
}

/// One record name as the bot needs it to judge ownership: every set at the
/// name, and the TXT sets at the name and at its registry names.
#[derive(Clone, Debug, Default)]
pub struct NameView {
    pub name: String,
    pub sets: Vec<ResourceRecordSet>,
    /// TXT sets by normalised name.
    pub txt: BTreeMap<String, Vec<ResourceRecordSet>>,
}

pub fn is_alias(set: &ResourceRecordSet) -> bool {
    set.alias_target.is_some()
}

impl NameView {
    /// The registry names to read for the weighted records at the name
    /// (other than the name itself, already read).
    pub fn registry_names(
        name: &str,
        sets: &[ResourceRecordSet],
        registry: &Registry,
    ) -> Vec<String> {
        let own = normalise(name);
        let mut names: Vec<String> = Vec::new();
        for set in sets.iter().filter(|s| is_routed(&s.r#type)) {
            for (candidate, _) in registry.candidates(&own, set.r#type.as_str(), is_alias(set)) {
                if candidate != own && !names.contains(&candidate) {
                    names.push(candidate);
                }
            }
        }
        names
    }

    /// The weighted traffic records (A, AAAA, CNAME, alias) of `cluster`.
    pub fn traffic(&self, cluster: &str) -> Vec<&ResourceRecordSet> {
        self.sets
            .iter()
            .filter(|s| is_routed(&s.r#type))
            .filter(|s| s.weight.is_some() && s.set_identifier.as_deref() == Some(cluster))
            .collect()
    }

    /// The registry records of one traffic record, in external-dns's order
    /// of preference.
    pub fn registry_of(
        &self,
        set: &ResourceRecordSet,
        registry: &Registry,
    ) -> Vec<RegistryRecord<'_>> {
        let mut out = Vec::new();
        for (name, _) in registry.candidates(&self.name, set.r#type.as_str(), is_alias(set)) {
            let at_name = self.txt.get(&name).map(Vec::as_slice).unwrap_or_default();
            for txt in at_name
                .iter()
                .filter(|t| t.r#type == RrType::Txt && t.set_identifier == set.set_identifier)
            {
                let first = txt
                    .resource_records
                    .as_deref()
                    .unwrap_or_default()
                    .first()
                    .map(|r| r.value.as_str())
                    .unwrap_or_default();
                out.push(RegistryRecord {
                    set: txt,
                    owner: owner_of_value(first),
                });
            }
        }
        out
    }

    /// Who owns a traffic record: the first registry record in external-
    /// dns's order that is external-dns's, as external-dns decides.
    pub fn owner(&self, set: &ResourceRecordSet, registry: &Registry) -> Owner {
        let found = self.registry_of(set, registry);
        match found.iter().find_map(|r| r.owner.clone()) {
            Some(Some(owner)) => Owner::Named(owner),
            Some(None) => Owner::Unowned,
            None if found.is_empty() => Owner::Unowned,
            None => Owner::Unreadable,
        }
    }

    pub fn foreign(&self, set: &ResourceRecordSet, owner: Owner) -> ForeignRecord {
        ForeignRecord {
            name: self.name.clone(),
            record_type: set.r#type.as_str().to_owned(),
            set_identifier: set.set_identifier.clone().unwrap_or_default(),
            owner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(prefix: &str, suffix: &str) -> Registry {
        Registry {
            prefix: prefix.into(),
            suffix: suffix.into(),
            ..Registry::default()
        }
    }

    fn names(r: &Registry, name: &str, ty: &str, alias: bool) -> Vec<String> {
        r.candidates(name, ty, alias)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn names_follow_external_dns_mapper() {
        // Expected values from external-dns's own mapper tests
        // (registry/mapper/mapper_test.go, registry/txt_test.go).
        let plain = Registry::default();
        assert_eq!(
            names(&plain, "api.dev.example.com.", "A", false),
            ["a-api.dev.example.com.", "api.dev.example.com."]
        );
        assert_eq!(
            names(&plain, "api.dev.example.com.", "AAAA", false),
            ["aaaa-api.dev.example.com."]
        );
        assert_eq!(
            names(&plain, "api.dev.example.com.", "A", true),
            [
                "a-api.dev.example.com.",
                "cname-api.dev.example.com.",
                "api.dev.example.com."
            ]
        );
        assert_eq!(
            names(&registry("txt.", ""), "api.example.com", "CNAME", false),
            ["txt.cname-api.example.com.", "txt.api.example.com."]
        );
        assert_eq!(
            names(&registry("", "-txt"), "api.example.com", "A", false),
            ["a-api-txt.example.com.", "api-txt.example.com."]
        );
        assert_eq!(
            names(
                &registry("%{record_type}-reg.", ""),
                "api.example.com",
                "A",
                false
            ),
            ["a-reg.api.example.com.", "-reg.api.example.com."]
        );
        let wild = Registry {
            wildcard_replacement: "wildcard".into(),
            ..Registry::default()
        };
        assert_eq!(
            wild.current_name("*.example.com.", "A"),
            "a-wildcard.example.com."
        );
    }

    #[test]
    fn labels_parse_like_external_dns() {
        let v = "\"heritage=external-dns,external-dns/owner=default,external-dns/resource=ingress/web/api\"";
        assert_eq!(owner_of_value(v), Some(Some("default".into())));
        assert_eq!(owner_of_value("\"heritage=external-dns\""), Some(None));
        assert_eq!(owner_of_value("\"v=spf1 -all\""), None);
        assert_eq!(
            owner_of_value("\"heritage=other,external-dns/owner=x\""),
            None
        );
        assert_eq!(
            with_owner(v, "failover-bot"),
            "\"heritage=external-dns,external-dns/owner=failover-bot,external-dns/resource=ingress/web/api\""
        );
        assert_eq!(
            with_owner("\"heritage=external-dns\"", "bot"),
            "\"heritage=external-dns,external-dns/owner=bot\""
        );
        assert_eq!(owner_of_value(&value_for("bot")), Some(Some("bot".into())));
    }

    fn set(name: &str, ty: &str, id: &str, value: &str) -> ResourceRecordSet {
        ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::from(ty))
            .set_identifier(id)
            .weight(1)
            .ttl(60)
            .resource_records(
                aws_sdk_route53::types::ResourceRecord::builder()
                    .value(value)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn view(sets: Vec<ResourceRecordSet>) -> NameView {
        let name = "api.example.com.".to_owned();
        let (txt, own): (Vec<_>, Vec<_>) = sets.into_iter().partition(|s| s.r#type == RrType::Txt);
        let mut by_name: BTreeMap<String, Vec<ResourceRecordSet>> = BTreeMap::new();
        for t in txt {
            by_name
                .entry(normalise(&t.name))
                .or_default()
                .push(t.clone());
        }
        NameView {
            name,
            sets: own,
            txt: by_name,
        }
    }

    fn owned_by(owner: &str) -> String {
        value_for(owner)
    }

    #[test]
    fn the_typed_form_wins_over_a_stale_same_name_one_as_in_external_dns() {
        let registry = Registry::default();
        let a = set("api.example.com", "A", "k8s-a", "10.0.0.1");
        // After an upgrade: same-name (stale, old owner) and prefixed.
        let v = view(vec![
            a.clone(),
            set("api.example.com", "TXT", "k8s-a", &owned_by("old")),
            set(
                "a-api.example.com",
                "TXT",
                "k8s-a",
                &owned_by("failover-bot"),
            ),
        ]);
        assert_eq!(
            v.owner(&v.sets[0], &registry),
            Owner::Named("failover-bot".into())
        );
        // Only the old form: it decides.
        let v = view(vec![
            a.clone(),
            set("api.example.com", "TXT", "k8s-a", &owned_by("default")),
        ]);
        assert_eq!(
            v.owner(&v.sets[0], &registry),
            Owner::Named("default".into())
        );
        // Another set identifier's registry record says nothing about this one.
        let v = view(vec![
            a.clone(),
            set(
                "a-api.example.com",
                "TXT",
                "k8s-b",
                &owned_by("failover-bot"),
            ),
        ]);
        assert_eq!(v.owner(&v.sets[0], &registry), Owner::Unowned);
        // An encrypted (unreadable) registry record is not "nobody's".
        let v = view(vec![
            a,
            set("a-api.example.com", "TXT", "k8s-a", "\"bm9ub25jZQ==\""),
        ]);
        assert_eq!(v.owner(&v.sets[0], &registry), Owner::Unreadable);
    }
}
