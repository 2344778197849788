//! The production manifests against a real kube-apiserver (kube_env):
//! `manifests/home` (the bot in its home cluster) and `manifests/target/<mode>`
//! (each cluster it fails over) apply with schema validation and create what
//! they should; each ServiceAccount, with a real token of its own, may do what
//! the bot needs there (the bot's own leader election and journal store; the
//! bot's own permission check) and nothing else (its SelfSubjectRulesReview is
//! exactly the expected rules; `kubectl auth can-i` says no to the things it
//! must never do).
//!
//! Static checks keep the Deployment hardened, the ConfigMap copy equal to
//! examples/config.yaml, the Secret example free of real values, and the
//! Dockerfile running what the Deployment runs.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{SelfSubjectRulesReview, SelfSubjectRulesReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Probe, ServiceAccount, Volume};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use serde_json::Value;

use failover_bot::backend::kube::KubeBackend;
use failover_bot::clock::SystemClock;
use failover_bot::config::Config;
use failover_bot::leader::{LeaderElection, Leadership, LeaseTiming};
use failover_bot::store::kube::{KubeStore, KubeStoreSettings};
use failover_bot::store::{Batch, LineStore};
use support::kube_env::{wait_for, KubeEnv, CRD_NAME};

const HOME: &str = "manifests/home";
const HOME_NAMESPACE: &str = "failover-bot";
/// The RoutingWeight CRD, in a folder of its own: no target kustomization
/// includes it, so it is never applied over a site's own installation.
const CRD_DIR: &str = "manifests/target/crd";
/// Lunar's cluster-identity controller writes the identity ConfigMap into
/// every namespace annotated so.
const IDENTITY_INJECT: &str = "config.lunar.tech/cluster-identity-inject";
const TARGET_NAMESPACE: &str = "operators";
/// The ServiceAccount's name in both kinds of cluster, and the Lease's name.
const BOT: &str = "failover-bot";
/// The JournalSegment CRD the home kustomization installs.
const JOURNAL_CRD: &str = "journalsegments.failover-bot.github.io";
/// The container args the Deployment and the image's CMD must both have.
const SERVE_ARGS: [&str; 10] = [
    "serve",
    "--config",
    "/etc/failover-bot/config.yaml",
    "--listen",
    "0.0.0.0:8080",
    "--journal",
    "kube",
    "--leader-election",
    "--log-format",
    "json",
];
/// What every authenticated user may do (`system:basic-user`): ask about itself.
const BASIC_USER_RULES: [&str; 2] = [
    "create selfsubjectaccessreviews.authorization.k8s.io",
    "create selfsubjectrulesreviews.authorization.k8s.io",
];
/// Things no failover-bot identity may do, in either kind of cluster.
const NEVER: [&str; 10] = [
    "get secrets -n {ns}",
    "list secrets --all-namespaces",
    "create pods -n {ns}",
    "create deployments.apps -n {ns}",
    "patch deployments.apps --all-namespaces",
    "list configmaps -n {ns}",
    "list pods --all-namespaces",
    "create rolebindings.rbac.authorization.k8s.io -n {ns}",
    "create serviceaccounts --subresource=token -n {ns}",
    "impersonate users",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

// ------------------------------------------------------------ kubectl helpers

/// kubectl as admin on cluster 0; panics with its stderr if it fails.
fn kubectl(env: &KubeEnv, args: &[&str]) -> String {
    let out = env.kubectl(0, args, None);
    assert!(
        out.status.success(),
        "kubectl {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply` with client-side schema validation against the server's
/// OpenAPI (unknown fields and wrong types fail) on top of the server's own.
fn apply_validated(env: &KubeEnv, flag: &str, path: &str) -> String {
    let path = repo(path);
    kubectl(
        env,
        &["apply", "--validate=true", flag, path.to_str().unwrap()],
    )
}

fn get(env: &KubeEnv, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    serde_json::from_str(&kubectl(env, &args)).unwrap()
}

/// `kubectl auth can-i QUESTION` (`{ns}` replaced) as the token in `kubeconfig`.
fn can_i(env: &KubeEnv, kubeconfig: &Path, question: &str, ns: &str) -> bool {
    let question = question.replace("{ns}", ns);
    let mut args = vec!["auth", "can-i"];
    args.extend(question.split_whitespace());
    let out = env.kubectl_with(kubeconfig, 0, &args, None);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if answer == "yes" {
        true
    } else if answer == "no" || answer.starts_with("no - ") {
        false
    } else {
        panic!(
            "kubectl auth can-i {question}: no yes/no answer: {answer:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

fn assert_never(env: &KubeEnv, kubeconfig: &Path, questions: &[&str], ns: &str) {
    let allowed: Vec<String> = questions
        .iter()
        .filter(|q| can_i(env, kubeconfig, q, ns))
        .map(|q| q.replace("{ns}", ns))
        .collect();
    assert!(allowed.is_empty(), "allowed but must not be: {allowed:#?}");
}

/// A real token of ServiceAccount `namespace/name` (TokenRequest), as a pod
/// or a long-lived token Secret would carry.
async fn service_account_token(env: &KubeEnv, namespace: &str, name: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(env.client(0).await, namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
    issued.status.expect("TokenRequest status").token
}

/// Everything the token's user may do in `namespace` (its own
/// SelfSubjectRulesReview, which includes cluster-wide grants), one
/// `verb resource[.group][/name]` per entry.
async fn resource_rules(client: kube::Client, namespace: &str) -> BTreeSet<String> {
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(namespace.to_owned()),
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectRulesReview>::all(client)
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SelfSubjectRulesReview in {namespace}: {e}"));
    let status = answer.status.expect("SelfSubjectRulesReview status");
    assert!(!status.incomplete, "{:?}", status.evaluation_error);
    let mut rules = BTreeSet::new();
    for rule in status.resource_rules {
        let names: Vec<String> = rule.resource_names.unwrap_or_default();
        let suffixes: Vec<String> = if names.is_empty() {
            vec![String::new()]
        } else {
            names.iter().map(|n| format!("/{n}")).collect()
        };
        for verb in &rule.verbs {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    let dot_group = if group.is_empty() {
                        String::new()
                    } else {
                        format!(".{group}")
                    };
                    for suffix in &suffixes {
                        rules.insert(format!("{verb} {resource}{dot_group}{suffix}"));
                    }
                }
            }
        }
    }
    rules
}

fn rule_set(rules: &[&str]) -> BTreeSet<String> {
    rules
        .iter()
        .chain(BASIC_USER_RULES.iter())
        .map(|r| r.to_string())
        .collect()
}

// ------------------------------------------------------------ parsed files

fn deployment() -> Deployment {
    serde_saphyr::from_str(&read("manifests/home/deployment.yaml"))
        .expect("manifests/home/deployment.yaml is a Deployment")
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("the Deployment has a pod spec")
}

fn bot_container(deployment: &Deployment) -> &Container {
    let containers = &pod_spec(deployment).containers;
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// A probe's or Service's port, resolved through the container's named ports.
fn port_number(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

/// `name → key → value` of every Secret in manifests/home/secret-example.yaml.
fn example_secrets() -> BTreeMap<String, BTreeMap<String, String>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read("manifests/home/secret-example.yaml"))
        .expect("secret-example.yaml parses");
    let mut secrets = BTreeMap::new();
    for doc in docs.iter().filter(|d| !d.is_null()) {
        assert_eq!(doc["kind"], "Secret", "{doc}");
        assert_eq!(doc["metadata"]["namespace"], HOME_NAMESPACE, "{doc}");
        assert!(
            doc.get("data").is_none(),
            "only stringData, so every value can be seen to be a placeholder: {doc}"
        );
        let values = doc["stringData"]
            .as_object()
            .expect("stringData")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_owned()))
            .collect();
        let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
        secrets.insert(name, values);
    }
    secrets
}

fn dockerfile_json_array(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("Dockerfile has no {instruction}"));
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("Dockerfile {instruction} is not a JSON array ({e}): {line}"))
}

// ------------------------------------------------------------ home cluster

/// The pod volume `name`.
fn volume<'a>(pod: &'a PodSpec, name: &str) -> &'a Volume {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[tokio::test]
async fn home_kustomization_applies_with_validation_and_creates_every_object() {
    let env = KubeEnv::start(1).await;
    apply_validated(&env, "-k", HOME);

    let ns = Some(HOME_NAMESPACE);
    get(&env, "namespace", None, HOME_NAMESPACE);
    let sa = get(&env, "serviceaccount", ns, BOT);
    let irsa = &sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"];
    assert!(irsa.is_string(), "IRSA role annotation: {sa}");
    for role in ["failover-bot-leader-election", "failover-bot-journal"] {
        get(&env, "role", ns, role);
        let binding = get(&env, "rolebinding", ns, role);
        assert_eq!(binding["subjects"][0]["name"], BOT);
        assert_eq!(binding["subjects"][0]["namespace"], HOME_NAMESPACE);
    }
    assert!(
        crd_established(&env, JOURNAL_CRD).await,
        "the JournalSegment CRD is Established"
    );
    let volumes = kubectl(&env, &["get", "pvc", "-n", HOME_NAMESPACE, "-o", "name"]);
    assert_eq!(
        volumes.trim(),
        "",
        "no volume: the journal is in the API server"
    );

    let live: Deployment = serde_json::from_value(get(&env, "deployment", ns, BOT)).unwrap();
    assert_eq!(live.spec.as_ref().unwrap().replicas, Some(2));
    assert_volumes_resolve(&env, &live);
    assert_service_reaches_the_http_port(&env, &live);
    assert_secret_example_applies_on_its_own(&env);
}

/// The CRD named `name` reports Established within a minute.
async fn crd_established(env: &KubeEnv, name: &str) -> bool {
    wait_for("CRD Established", Duration::from_secs(60), || async {
        let crd = get(env, "crd", None, name);
        crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
    .await
}

/// The live Deployment's volumes name the kubeconfig Secret (group-readable
/// only) and the generated, hash-named ConfigMap, which holds
/// examples/config.yaml; there is no other.
fn assert_volumes_resolve(env: &KubeEnv, live: &Deployment) {
    let pod = pod_spec(live);
    let names: BTreeSet<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["config", "kubeconfig"]));
    let kubeconfig = volume(pod, "kubeconfig").secret.as_ref().unwrap();
    assert_eq!(
        kubeconfig.secret_name.as_deref(),
        Some("failover-bot-kubeconfig")
    );
    assert_eq!(kubeconfig.default_mode, Some(0o440));
    let config_map = &volume(pod, "config").config_map.as_ref().unwrap().name;
    assert!(
        config_map.starts_with("failover-bot-config-"),
        "{config_map}"
    );
    let cm = get(env, "configmap", Some(HOME_NAMESPACE), config_map);
    let example = read("examples/config.yaml");
    assert_eq!(cm["data"]["config.yaml"].as_str(), Some(example.as_str()));
}

/// The Service selects the Deployment's pods and targets their port 8080.
fn assert_service_reaches_the_http_port(env: &KubeEnv, live: &Deployment) {
    let service = get(env, "service", Some(HOME_NAMESPACE), BOT);
    let template = &live.spec.as_ref().unwrap().template;
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
    let selector: BTreeMap<String, String> =
        serde_json::from_value(service["spec"]["selector"].clone()).unwrap();
    assert!(
        !selector.is_empty()
            && selector
                .iter()
                .all(|(k, v)| labels.as_ref().and_then(|l| l.get(k)) == Some(v)),
        "selector {selector:?} vs pod labels {labels:?}"
    );
    let target_port: IntOrString =
        serde_json::from_value(service["spec"]["ports"][0]["targetPort"].clone()).unwrap();
    assert_eq!(port_number(bot_container(live), &target_port), 8080);
}

/// The Secret example is not applied by the kustomization (so re-applying it
/// never overwrites real tokens), but is itself a valid manifest.
fn assert_secret_example_applies_on_its_own(env: &KubeEnv) {
    let ns = Some(HOME_NAMESPACE);
    let secrets = kubectl(env, &["get", "secrets", "-n", HOME_NAMESPACE, "-o", "name"]);
    assert!(!secrets.contains("failover-bot-slack"), "{secrets}");
    apply_validated(env, "-f", "manifests/home/secret-example.yaml");
    let slack = get(env, "secret", ns, "failover-bot-slack");
    assert!(slack["data"]["SLACK_BOT_TOKEN"].is_string(), "{slack}");
    let kubeconfig = get(env, "secret", ns, "failover-bot-kubeconfig");
    assert!(kubeconfig["data"]["config"].is_string(), "{kubeconfig}");
}

/// Short lease timings, so a replica that waits outlasts several leases.
const QUICK_LEASE: LeaseTiming = LeaseTiming {
    duration: Duration::from_secs(2),
    margin: Duration::from_millis(500),
    retry_every: Duration::from_millis(250),
    call_timeout: Duration::from_millis(400),
};

/// The bot's own leader election, as replica `identity`, through `client`.
fn replica(client: &kube::Client, identity: &str) -> Leadership {
    let election = LeaderElection {
        lease_name: BOT.into(),
        namespace: HOME_NAMESPACE.into(),
        identity: identity.into(),
        context: "unused".into(),
        tls: failover_bot::backend::kube::tls::TlsVerification::Required,
        timing: QUICK_LEASE,
    };
    election.campaign_on(client.clone()).expect("campaign")
}

#[tokio::test]
async fn home_service_account_may_hold_the_lease_and_keep_the_journal_and_nothing_else() {
    let env = KubeEnv::start(1).await;
    apply_validated(&env, "-k", HOME);
    assert!(crd_established(&env, JOURNAL_CRD).await);
    let token = service_account_token(&env, HOME_NAMESPACE, BOT).await;
    let client = env.client_for(0, &token).await;

    // Two replicas with the bot's own election, as this ServiceAccount: the
    // first creates and takes the Lease, keeps renewing it while the second
    // waits (longer than the lease lasts), and on release the second takes over.
    let mut a = replica(&client, "pod-a");
    tokio::time::timeout(Duration::from_secs(30), a.acquired())
        .await
        .expect("a creates and takes the Lease (get, create)");
    let mut b = replica(&client, "pod-b");
    tokio::time::sleep(QUICK_LEASE.duration * 3).await;
    assert!(
        a.deadline().check().is_ok(),
        "a renews (patch) and stays leader"
    );
    assert!(b.deadline().check().is_err(), "b waits");
    a.release().await;
    tokio::time::timeout(Duration::from_secs(30), b.acquired())
        .await
        .expect("b takes the released Lease");
    let lease: Lease = Api::namespaced(env.client(0).await, HOME_NAMESPACE)
        .get(BOT)
        .await
        .unwrap();
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("pod-b"));

    // The journal store, as this ServiceAccount: every call it makes.
    keeps_the_journal(&client).await;

    // Exactly these rules, in its namespace and anywhere else.
    let rules = [
        "get leases.coordination.k8s.io/failover-bot",
        "patch leases.coordination.k8s.io/failover-bot",
        // `create` cannot be limited by name (see manifests/home/rbac.yaml).
        "create leases.coordination.k8s.io",
        "get journalsegments.failover-bot.github.io",
        "list journalsegments.failover-bot.github.io",
        "create journalsegments.failover-bot.github.io",
        "patch journalsegments.failover-bot.github.io",
        "delete journalsegments.failover-bot.github.io",
    ];
    assert_eq!(
        resource_rules(client.clone(), HOME_NAMESPACE).await,
        rule_set(&rules)
    );
    assert_eq!(
        resource_rules(client.clone(), "default").await,
        rule_set(&[])
    );

    let kubeconfig = env.kubeconfig_for(&token);
    let home_never = [
        "delete leases.coordination.k8s.io/failover-bot -n {ns}",
        "update leases.coordination.k8s.io/failover-bot -n {ns}",
        "get leases.coordination.k8s.io/another -n {ns}",
        "patch leases.coordination.k8s.io/another -n {ns}",
        "list leases.coordination.k8s.io -n {ns}",
        "get leases.coordination.k8s.io/failover-bot -n default",
        "create leases.coordination.k8s.io -n default",
        "list leases.coordination.k8s.io --all-namespaces",
        "get configmaps -n {ns}",
        "patch configmaps -n {ns}",
        "update journalsegments.failover-bot.github.io -n {ns}",
        "watch journalsegments.failover-bot.github.io -n {ns}",
        "deletecollection journalsegments.failover-bot.github.io -n {ns}",
        "list journalsegments.failover-bot.github.io -n default",
        "create journalsegments.failover-bot.github.io -n default",
        "list journalsegments.failover-bot.github.io --all-namespaces",
        "patch customresourcedefinitions.apiextensions.k8s.io",
        "delete customresourcedefinitions.apiextensions.k8s.io",
    ];
    assert_never(&env, &kubeconfig, &home_never, HOME_NAMESPACE);
    assert_never(&env, &kubeconfig, &NEVER, HOME_NAMESPACE);
}

/// Takes the journal over, appends across segment boundaries, reads it
/// back, exports, marks and prunes it: every call the store makes.
async fn keeps_the_journal(client: &kube::Client) {
    let settings = KubeStoreSettings {
        segment_bytes: 64,
        call_timeout: Duration::from_secs(5),
        ..KubeStoreSettings::default()
    };
    let store = KubeStore::new(
        client.clone(),
        HOME_NAMESPACE,
        settings,
        Arc::new(SystemClock),
    );
    let mut head = store
        .takeover("pod-b")
        .await
        .expect("takeover (list, create)")
        .head;
    for i in 0..4 {
        let line = format!(r#"{{"seq":{i},"text":"{}"}}"#, "x".repeat(40));
        let batch = match i {
            3 => Batch::checkpoint(vec![line]),
            _ => Batch::new(vec![line]),
        };
        head = store
            .append(&head, &batch)
            .await
            .expect("append (patch, create)");
    }
    let loaded = store.load_from(0).await.expect("load (list, get)");
    assert_eq!(loaded.lines.len(), 4);
    let mut out = Vec::new();
    let export = store.export(0, &mut out).await.expect("export");
    assert_eq!(export.lines, 4);
    let marked = store
        .mark_exported(&export)
        .await
        .expect("mark exported (patch)");
    assert_eq!(marked, 3, "the sealed segments");
    let pruned = store.prune(Duration::ZERO).await.expect("prune (delete)");
    assert_eq!(pruned.deleted.len(), 3, "{pruned:?}");
    assert_eq!(store.load().await.unwrap().lines.len(), 1);
}

// ------------------------------------------------------------ target clusters

/// Applies `manifests/target/<mode>`, checks its objects exist, and that the
/// ServiceAccount's real token passes the bot's own permission check for
/// `mode` (`failover-bot check`) and has exactly `operators_rules` in
/// `operators` and `cluster_rules` everywhere else.
async fn target_grants_exactly(
    env: &KubeEnv,
    mode: &str,
    operators_rules: &[&str],
    cluster_rules: &[&str],
) -> PathBuf {
    apply_validated(env, "-k", &format!("manifests/target/{mode}"));
    let ns = Some(TARGET_NAMESPACE);
    let namespace = get(env, "namespace", None, TARGET_NAMESPACE);
    assert_eq!(
        namespace["metadata"]["annotations"][IDENTITY_INJECT], "true",
        "the target namespace keeps Lunar's inject annotation: {namespace}"
    );
    get(env, "serviceaccount", ns, BOT);
    let token_secret = get(env, "secret", ns, "failover-bot-token");
    assert_eq!(token_secret["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        token_secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        BOT
    );
    let binding = get(env, "rolebinding", ns, BOT);
    assert_eq!(binding["roleRef"]["name"], BOT);
    get(env, "role", ns, BOT);
    let cluster_role = match mode {
        "routing-weight" => "failover-bot-verify",
        _ => "failover-bot-annotate",
    };
    get(env, "clusterrole", None, cluster_role);
    let cluster_binding = get(env, "clusterrolebinding", None, cluster_role);
    assert_eq!(cluster_binding["subjects"][0]["name"], BOT);
    assert_eq!(
        cluster_binding["subjects"][0]["namespace"],
        TARGET_NAMESPACE
    );

    let token = service_account_token(env, TARGET_NAMESPACE, BOT).await;
    let kubeconfig = env.kubeconfig_for(&token);
    let config = Config::from_yaml(&env.config_yaml(&format!("  mode: {mode}\n"), "")).unwrap();
    let backend = KubeBackend::connect(&config, Some(&kubeconfig))
        .await
        .unwrap();
    let check = backend
        .check_cluster(&config.environments["dev"].clusters[0])
        .await;
    assert!(
        check.is_ok(),
        "failover-bot check as the ServiceAccount: {check:?}"
    );

    let client = env.client_for(0, &token).await;
    assert_eq!(
        resource_rules(client.clone(), TARGET_NAMESPACE).await,
        rule_set(&[operators_rules, cluster_rules].concat())
    );
    assert_eq!(
        resource_rules(client, "default").await,
        rule_set(cluster_rules)
    );
    assert_never(env, &kubeconfig, &NEVER, TARGET_NAMESPACE);
    kubeconfig
}

#[tokio::test]
async fn routing_weight_target_grants_what_check_needs_and_nothing_else() {
    let env = KubeEnv::start(1).await;
    // kube_env installed the CRD; remove it so the CRD's own kustomization
    // must create it and get it Established.
    kubectl(&env, &["delete", "crd", CRD_NAME, "--wait=true"]);
    apply_validated(&env, "-k", CRD_DIR);
    let established = wait_for("CRD Established", Duration::from_secs(60), || async {
        let crd = get(&env, "crd", None, CRD_NAME);
        crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
    .await;
    assert!(established, "the RoutingWeight CRD is Established");
    let kubeconfig = target_grants_exactly(
        &env,
        "routing-weight",
        &[
            "get configmaps/cluster-identity",
            "list routingweights.routing.lunar.tech",
            "create routingweights.routing.lunar.tech",
            "update routingweights.routing.lunar.tech",
            "delete routingweights.routing.lunar.tech",
        ],
        &[
            "list ingresses.networking.k8s.io",
            "watch ingresses.networking.k8s.io",
            "list services",
            "watch services",
        ],
    )
    .await;

    let never = [
        "patch routingweights.routing.lunar.tech -n {ns}",
        "create routingweights.routing.lunar.tech -n default",
        "delete routingweights.routing.lunar.tech -n default",
        "patch services --all-namespaces",
        "patch ingresses.networking.k8s.io --all-namespaces",
        "delete customresourcedefinitions.apiextensions.k8s.io",
    ];
    assert_never(&env, &kubeconfig, &never, TARGET_NAMESPACE);
}

#[tokio::test]
async fn ingress_annotations_target_grants_what_check_needs_and_nothing_else() {
    let env = KubeEnv::start(1).await;
    let kubeconfig = target_grants_exactly(
        &env,
        "ingress-annotations",
        &["get configmaps/cluster-identity"],
        &[
            "list ingresses.networking.k8s.io",
            "watch ingresses.networking.k8s.io",
            "patch ingresses.networking.k8s.io",
            "list services",
            "watch services",
            "patch services",
        ],
    )
    .await;
    let never = [
        "get routingweights.routing.lunar.tech -n {ns}",
        "list routingweights.routing.lunar.tech -n {ns}",
        "update routingweights.routing.lunar.tech -n {ns}",
        "delete routingweights.routing.lunar.tech -n {ns}",
        "update services --all-namespaces",
        "delete ingresses.networking.k8s.io --all-namespaces",
        "create services -n {ns}",
    ];
    assert_never(&env, &kubeconfig, &never, TARGET_NAMESPACE);
}

#[tokio::test]
async fn capacity_target_lets_the_bot_read_deployments_where_bound_and_nowhere_else() {
    use failover_bot::backend::RoutingBackend;
    use failover_bot::config::gates::DeploymentRef;
    use kube::api::{Patch, PatchParams};

    let env = KubeEnv::start(1).await;
    apply_validated(&env, "-k", "manifests/target/routing-weight");
    kubectl(&env, &["create", "namespace", "payments"]);
    apply_validated(&env, "-k", "manifests/target/capacity");
    kubectl(
        &env,
        &[
            "create",
            "deployment",
            "api",
            "--image=registry.example.com/api:1",
            "-n",
            "payments",
        ],
    );
    // The test API server runs no controller manager: set the status as the
    // Deployment controller would.
    let deployments: Api<Deployment> = Api::namespaced(env.client(0).await, "payments");
    let status = serde_json::json!({"status": {"replicas": 4, "readyReplicas": 3}});
    deployments
        .patch_status("api", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch Deployment status");

    let token = service_account_token(&env, TARGET_NAMESPACE, BOT).await;
    let kubeconfig = env.kubeconfig_for(&token);
    let config = Config::from_yaml(&env.config_yaml("  mode: routing-weight\n", "")).unwrap();
    let backend = KubeBackend::connect(&config, Some(&kubeconfig))
        .await
        .unwrap();
    let cluster = &config.environments["dev"].clusters[0];
    let deployment = |name: &str| DeploymentRef {
        namespace: "payments".into(),
        name: name.into(),
    };
    assert_eq!(
        backend
            .ready_replicas(cluster, &deployment("api"))
            .await
            .unwrap(),
        Some(3),
        "the ServiceAccount reads status.readyReplicas"
    );
    assert_eq!(
        backend
            .ready_replicas(cluster, &deployment("worker"))
            .await
            .unwrap(),
        None,
        "a Deployment that is not there reads as missing, not as an error"
    );
    assert!(can_i(
        &env,
        &kubeconfig,
        "get deployments.apps -n {ns}",
        "payments"
    ));
    let never = [
        "list deployments.apps -n {ns}",
        "watch deployments.apps -n {ns}",
        "update deployments.apps -n {ns}",
        "get deployments.apps -n default",
        "get deployments.apps -n operators",
    ];
    assert_never(&env, &kubeconfig, &never, "payments");
}

// ------------------------------------------------------------ static checks

#[tokio::test]
async fn no_target_kustomization_carries_the_crd_and_the_crd_folder_does() {
    // kubectl's own kustomize (v2 in the test kubectl) renders each folder.
    let env = KubeEnv::start(1).await;
    for mode in ["routing-weight", "ingress-annotations"] {
        let path = repo(&format!("manifests/target/{mode}"));
        let rendered = kubectl(&env, &["kustomize", path.to_str().unwrap()]);
        assert!(
            !rendered.contains("kind: CustomResourceDefinition"),
            "manifests/target/{mode} must not apply the CRD over a site's own"
        );
        assert!(rendered.contains("kind: Namespace"), "{rendered}");
    }
    let path = repo(CRD_DIR);
    let rendered = kubectl(&env, &["kustomize", path.to_str().unwrap()]);
    assert!(
        rendered.contains("kind: CustomResourceDefinition"),
        "{rendered}"
    );
    assert!(
        !rendered.contains("kind: Namespace"),
        "the CRD alone: {rendered}"
    );
}

#[test]
fn deployment_pods_run_non_root_on_a_read_only_root_without_privileges() {
    let deployment = deployment();
    let pod = pod_spec(&deployment);
    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    let seccomp = pod_security.seccomp_profile.as_ref().expect("seccomp");
    assert_eq!(seccomp.type_, "RuntimeDefault");

    let c = bot_container(&deployment);
    let security = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let caps = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert!(caps.add.as_ref().is_none_or(Vec::is_empty));

    // Nothing is writable: the journal is in the API server.
    let writable: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.read_only != Some(true))
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(writable.is_empty(), "{writable:?}");
    // The token is mounted because the Lease and the journal need it.
    assert_eq!(pod.service_account_name.as_deref(), Some(BOT));
    assert_eq!(pod.automount_service_account_token, Some(true));
}

#[test]
fn deployment_runs_two_leader_elected_replicas_with_probes_and_resources() {
    let deployment = deployment();
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));
    let c = bot_container(&deployment);
    assert_eq!(c.args.as_deref(), Some(&SERVE_ARGS.map(String::from)[..]));

    let probe = |p: &Option<Probe>| {
        let get = p
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .expect("httpGet probe");
        (get.path.unwrap_or_default(), port_number(c, &get.port))
    };
    assert_eq!(probe(&c.liveness_probe), ("/healthz".to_owned(), 8080));
    assert_eq!(probe(&c.readiness_probe), ("/readyz".to_owned(), 8080));

    let resources = c.resources.as_ref().expect("resources");
    for (what, set) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let set = set.as_ref().unwrap_or_else(|| panic!("no {what}"));
        let both = set.contains_key("cpu") && set.contains_key("memory");
        assert!(both, "{what}: {set:?}");
    }

    let env: BTreeMap<&str, &EnvVar> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let field = |name: &str| {
        let from = env[name].value_from.as_ref();
        from.and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str())
    };
    assert_eq!(field("POD_NAME"), Some("metadata.name"));
    assert_eq!(field("POD_NAMESPACE"), Some("metadata.namespace"));
    let kubeconfig = env["KUBECONFIG"].value.as_deref();
    assert_eq!(kubeconfig, Some("/etc/failover-bot/kubeconfig/config"));
}

#[test]
fn configmap_copy_is_byte_equal_to_examples_config() {
    assert_eq!(
        read("manifests/home/config.yaml"),
        read("examples/config.yaml"),
        "manifests/home/config.yaml is stale: cp examples/config.yaml manifests/home/config.yaml"
    );
    let kustomization: Value =
        serde_saphyr::from_str(&read("manifests/home/kustomization.yaml")).unwrap();
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(generator["name"], "failover-bot-config");
    assert_eq!(generator["files"], serde_json::json!(["config.yaml"]));
}

#[test]
fn secret_example_has_every_secret_key_the_deployment_reads() {
    let secrets = example_secrets();
    let deployment = deployment();
    // Required keys are in the example; optional ones are at least mentioned.
    let text = read("manifests/home/secret-example.yaml");
    let env = bot_container(&deployment).env.iter().flatten();
    for key_ref in env.filter_map(|v| v.value_from.as_ref()?.secret_key_ref.as_ref()) {
        let (name, key) = (&key_ref.name, &key_ref.key);
        if key_ref.optional == Some(true) {
            assert!(text.contains(key.as_str()), "{key} not mentioned");
        } else {
            let present = secrets.get(name).is_some_and(|s| s.contains_key(key));
            assert!(present, "{name}/{key} missing");
        }
    }
    // The kubeconfig volume: KUBECONFIG=/etc/failover-bot/kubeconfig/config.
    let mounted = volume(pod_spec(&deployment), "kubeconfig")
        .secret
        .as_ref()
        .unwrap();
    let name = mounted.secret_name.as_deref().unwrap();
    assert!(secrets[name].contains_key("config"), "{name}/config");
}

#[test]
fn secret_example_holds_placeholders_only_and_is_not_in_the_kustomization() {
    let secrets = example_secrets();
    for (key, value) in &secrets["failover-bot-slack"] {
        let placeholder = value.ends_with("REPLACE-ME") && value.len() <= 15;
        assert!(placeholder, "{key}: {value}");
    }
    let kubeconfig: Value = serde_saphyr::from_str(&secrets["failover-bot-kubeconfig"]["config"])
        .expect("the example kubeconfig is YAML");
    let all = |list: &str, field: &str| -> Vec<Value> {
        let items = kubeconfig[list].as_array().cloned().unwrap_or_default();
        assert!(!items.is_empty(), "kubeconfig {list}");
        items.iter().map(|item| item[field].clone()).collect()
    };
    for cluster in all("clusters", "cluster") {
        let server = cluster["server"].as_str().unwrap_or_default();
        assert!(server.contains("REPLACE-ME"), "{cluster}");
        assert_eq!(cluster["certificate-authority-data"], "REPLACE-ME");
    }
    for user in all("users", "user") {
        assert_eq!(user, serde_json::json!({ "token": "REPLACE-ME" }));
    }

    // Re-applying the kustomization must never overwrite the real values.
    let kustomization: Value =
        serde_saphyr::from_str(&read("manifests/home/kustomization.yaml")).unwrap();
    let resources = kustomization["resources"].as_array().expect("resources");
    assert!(!resources.contains(&Value::from("secret-example.yaml")));
    assert!(kustomization.get("secretGenerator").is_none());
}

#[test]
fn secret_example_kubeconfig_has_a_context_for_every_cluster_in_the_config() {
    let secrets = example_secrets();
    let kubeconfig = Kubeconfig::from_yaml(&secrets["failover-bot-kubeconfig"]["config"])
        .expect("the example kubeconfig parses");
    let config = Config::from_yaml(&read("manifests/home/config.yaml")).unwrap();
    let needed: BTreeSet<&str> = config
        .environments
        .values()
        .flat_map(|e| e.clusters.iter().map(|c| c.context.as_str()))
        .collect();
    let clusters: BTreeSet<&str> = kubeconfig
        .clusters
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let users: BTreeSet<&str> = kubeconfig
        .auth_infos
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    for name in needed {
        let context = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.context.as_ref())
            .unwrap_or_else(|| panic!("no context {name}"));
        assert!(
            clusters.contains(context.cluster.as_str()),
            "{name}: {context:?}"
        );
        let user = context.user.as_deref().unwrap_or_default();
        assert!(users.contains(user), "{name}: {context:?}");
    }
}

#[test]
fn dockerfile_runs_what_the_deployment_runs_as_the_same_user() {
    let dockerfile = read("Dockerfile");
    assert_eq!(
        dockerfile_json_array(&dockerfile, "ENTRYPOINT"),
        ["/usr/local/bin/failover-bot"]
    );
    assert!(dockerfile.lines().any(|l| l == "USER 65532:65532"));
    let deployment = deployment();
    let pod = pod_spec(&deployment).security_context.clone().unwrap();
    assert_eq!(
        (pod.run_as_user, pod.run_as_group),
        (Some(65532), Some(65532))
    );
    let image_cmd = dockerfile_json_array(&dockerfile, "CMD");
    assert_eq!(bot_container(&deployment).args.as_ref(), Some(&image_cmd));
}

#[test]
fn the_binary_accepts_the_deployment_args_and_the_shipped_config() {
    // The Deployment's args with the shipped config: the arguments parse and
    // the config loads, so the bot stops only later, at what a pod would have
    // (here: no Slack token, no cluster). A bot that kept running would have
    // got past all of that too; it is stopped after a while.
    let mut args = SERVE_ARGS.map(String::from);
    args[2] = repo("manifests/home/config.yaml").display().to_string();
    let mut bot = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(&args)
        .env_remove("SLACK_BOT_TOKEN")
        .env_remove("SLACK_APP_TOKEN")
        .env_remove("SLACK_SIGNING_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while bot.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = bot.kill();
    let out = bot.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.starts_with("error: ") && !stderr.contains("Usage:"),
        "the args do not parse: {stderr}"
    );
    for config_error in [
        "cannot read config file",
        "config is not valid",
        "config is invalid",
    ] {
        assert!(!stderr.contains(config_error), "{stderr}");
    }
}

#[test]
fn docker_image_can_ship_the_binary_ci_builds() {
    let dockerfile = read("Dockerfile");
    let test_script = read("scripts/test");
    assert!(test_script
        .lines()
        .any(|l| l == "cargo build --release --locked"));
    assert!(dockerfile.contains("COPY target/release/failover-bot "));
    assert!(dockerfile.contains("FROM runtime AS prebuilt\nCOPY --from=prebuilt-binary "));
    assert!(dockerfile.contains("RUN cargo build --release --locked"));
    assert!(dockerfile.contains("gcr.io/distroless/cc-debian12:nonroot"));
    let dockerignore = read(".dockerignore");
    let ignored: BTreeSet<&str> = dockerignore.lines().collect();
    for line in [
        "target",
        "!target/release/failover-bot",
        "fuzz/target",
        ".git",
    ] {
        assert!(ignored.contains(line), ".dockerignore lacks {line}");
    }
}
