//! Checks the real-Kubernetes test environment itself (etcd + several
//! kube-apiservers from `scripts/test-env/provision`), so a failing backend
//! test can be trusted to be about the bot.
//!
//! The tests run one at a time (a lock), so start-up times are not skewed by
//! several environments competing for the CPU.

#[path = "support/kube_env.rs"]
mod kube_env;

use std::path::Path;
use std::time::{Duration, Instant};

use failover_bot::backend::kube::crd::{Annotation, RoutingWeight, RoutingWeightSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_env::*;
use serde_json::json;

const PREFIX: &str = "external-dns.alpha.kubernetes.io/";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn identity_api(client: kube::Client) -> Api<ConfigMap> {
    Api::namespaced(client, NAMESPACE)
}

fn weights_api(client: kube::Client) -> Api<RoutingWeight> {
    Api::namespaced(client, NAMESPACE)
}

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Lunar's published example, with this cluster's name.
fn lunar_example(cluster_name: &str, weight: u8) -> String {
    format!(
        r#"apiVersion: routing.lunar.tech/v1alpha1
kind: RoutingWeight
metadata:
  name: {cluster_name}
  namespace: operators
spec:
  clusterName: {cluster_name}
  dryRun: false
  annotations:
  - key: external-dns.alpha.kubernetes.io/aws-weight
    value: "{weight}"
  - key: external-dns.alpha.kubernetes.io/set-identifier
    value: {cluster_name}
"#
    )
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes whose command line mentions `needle` (our temp dir).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Nothing of a dropped environment is left: none of its pids lives, no
/// process mentions its temp dir, and the temp dir is gone.
fn assert_nothing_left(pids: &[u32], dir: &Path) {
    let dir_str = dir.to_str().unwrap();
    for &pid in pids {
        let proc_dir = format!("/proc/{pid}");
        if let Ok(raw) = std::fs::read(format!("{proc_dir}/cmdline")) {
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            // A reused pid would not mention our temp dir.
            assert!(
                !cmdline.contains(dir_str),
                "pid {pid} still runs after drop: {cmdline}"
            );
        }
    }
    let left = processes_mentioning(dir_str);
    assert!(left.is_empty(), "processes left after drop: {left:?}");
    assert!(!dir.exists(), "temp dir {} not removed", dir.display());
}

fn mb(kb: Option<u64>) -> u64 {
    kb.unwrap_or(0) / 1024
}

#[tokio::test]
async fn three_clusters_start_with_own_identity_and_isolated_storage() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let env = KubeEnv::start(3).await;
    let took = t0.elapsed();
    let rss: Vec<u64> = (0..3).map(|i| mb(env.apiserver_rss_kb(i))).collect();
    eprintln!(
        "kube_env: start(3) took {took:.2?}; kube-apiserver RSS {rss:?} MB, etcd RSS {} MB",
        mb(env.etcd_rss_kb())
    );

    // Names, labels, contexts, servers.
    let clusters = env.clusters();
    assert_eq!(clusters.len(), 3);
    for (i, label) in ["a", "b", "c"].iter().enumerate() {
        let c = &clusters[i];
        assert_eq!(c.label, *label);
        assert_eq!(c.name, format!("k8s-{label}.test.example.com"));
        assert_eq!(c.context, format!("ctx-{label}"));
        assert!(c.server.starts_with("https://127.0.0.1:"), "{}", c.server);
    }
    let mut servers: Vec<&str> = clusters.iter().map(|c| c.server.as_str()).collect();
    servers.sort();
    servers.dedup();
    assert_eq!(servers.len(), 3, "each cluster has its own port");
    assert!(
        rss.iter().all(|&r| r > 50),
        "every API server runs: {rss:?}"
    );

    // The kubeconfig file has one context per cluster, reachable with kube.
    let kc = kube::config::Kubeconfig::read_from(env.kubeconfig()).unwrap();
    let contexts: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(contexts, ["ctx-a", "ctx-b", "ctx-c"]);

    // Each cluster's identity, through kube and through real kubectl.
    for (i, c) in clusters.iter().enumerate() {
        let cm = identity_api(env.client(i).await)
            .get(IDENTITY_CONFIGMAP)
            .await
            .unwrap();
        assert_eq!(
            cm.data.unwrap().get("clusterName").map(String::as_str),
            Some(c.name.as_str())
        );
        let name = stdout(&env.kubectl(
            i,
            &[
                "-n",
                "operators",
                "get",
                "configmap",
                "cluster-identity",
                "-o",
                "jsonpath={.data.clusterName}",
            ],
            None,
        ));
        assert_eq!(name, c.name);
        let version = env.client(i).await.apiserver_version().await.unwrap();
        assert_eq!(
            (version.major.as_str(), version.minor.as_str()),
            ("1", "20")
        );
    }

    // Separate etcd prefixes: what cluster a stores, b and c do not see.
    let probe = RoutingWeight::new(
        "isolation-probe",
        RoutingWeightSpec::new_at_zero(&clusters[0].name, PREFIX),
    );
    weights_api(env.client(0).await)
        .create(&PostParams::default(), &probe)
        .await
        .unwrap();
    assert_eq!(
        weights_api(env.client(0).await)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    for i in [1, 2] {
        let api = weights_api(env.client(i).await);
        let err = api.get("isolation-probe").await.unwrap_err();
        assert_eq!(api_code(&err), Some(404), "cluster {i}: {err}");
        assert!(api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty());
    }

    // set_identity rewrites one cluster's identity only.
    env.set_identity(2, "k8s-a.test.example.com");
    let name_of = |cm: ConfigMap| cm.data.unwrap()["clusterName"].clone();
    let c2 = identity_api(env.client(2).await)
        .get(IDENTITY_CONFIGMAP)
        .await
        .unwrap();
    assert_eq!(name_of(c2), "k8s-a.test.example.com");
    let c1 = identity_api(env.client(1).await)
        .get(IDENTITY_CONFIGMAP)
        .await
        .unwrap();
    assert_eq!(name_of(c1), "k8s-b.test.example.com");
}

#[tokio::test]
async fn lunars_example_routing_weight_round_trips_and_merge_patches() {
    let _serial = SERIAL.lock().await;
    let env = KubeEnv::start(1).await;
    let name = env.clusters()[0].name.clone();

    // Lunar's published example, applied with real kubectl.
    env.apply(0, &lunar_example(&name, 100));
    let api = weights_api(env.client(0).await);
    let rw = api.get(&name).await.unwrap();
    assert_eq!(rw.metadata.namespace.as_deref(), Some("operators"));
    assert_eq!(rw.spec.cluster_name, name);
    assert!(!rw.spec.dry_run);
    assert_eq!(rw.spec.weight(PREFIX), Some(100));
    assert_eq!(
        rw.spec.annotations,
        vec![
            Annotation {
                key: format!("{PREFIX}aws-weight"),
                value: "100".into()
            },
            Annotation {
                key: format!("{PREFIX}set-identifier"),
                value: name.clone()
            },
        ]
    );
    let printed = stdout(&env.kubectl(0, &["-n", "operators", "get", "routingweights"], None));
    assert!(printed.contains(&name), "{printed}");

    // Merge patch: the weight to 0 (annotations is a list: replaced whole).
    let mut spec = rw.spec.clone();
    spec.set_weight(PREFIX, 0);
    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "annotations": spec.annotations } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.weight(PREFIX), Some(0));
    assert_eq!(patched.spec.annotations.len(), 2);
    assert_ne!(
        patched.metadata.resource_version,
        rw.metadata.resource_version
    );
    let on_server = stdout(&env.kubectl(
        0,
        &[
            "-n",
            "operators",
            "get",
            "routingweight",
            &name,
            "-o",
            "jsonpath={.spec.annotations[0].value}",
        ],
        None,
    ));
    assert_eq!(on_server, "0");

    // A merge patch carrying a stale resourceVersion is a 409 Conflict.
    let err = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "resourceVersion": rw.metadata.resource_version },
                "spec": { "dryRun": true },
            })),
        )
        .await
        .unwrap_err();
    match &err {
        kube::Error::Api(status) => assert!(status.is_conflict(), "{err}"),
        other => panic!("expected a 409, got {other}"),
    }
    assert!(!api.get(&name).await.unwrap().spec.dry_run);

    // The typed create path works too.
    let other = RoutingWeight::new("typed", RoutingWeightSpec::new_at_zero(&name, PREFIX));
    let created = api.create(&PostParams::default(), &other).await.unwrap();
    assert_eq!(created.spec, other.spec);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
}

#[tokio::test]
async fn bot_token_is_forbidden_until_rbac_grants_it() {
    let _serial = SERIAL.lock().await;
    let env = KubeEnv::start(1).await;
    assert!(env.bot_token().starts_with("bot-token-"));
    assert_ne!(env.bot_token(), ADMIN_TOKEN);
    let bot = weights_api(env.client_for(0, env.bot_token()).await);

    let err = bot.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_code(&err), Some(403), "{err}");
    match &err {
        kube::Error::Api(status) => {
            assert!(status.is_forbidden());
            assert!(
                !status.message.contains("system:anonymous") && status.message.contains(BOT_USER),
                "the token authenticates as {BOT_USER}: {}",
                status.message
            );
        }
        other => panic!("{other}"),
    }
    // kubectl with kubeconfig_for(bot token) is forbidden too.
    let bot_kubeconfig = env.kubeconfig_for(env.bot_token());
    let out = env.kubectl_with(
        &bot_kubeconfig,
        0,
        &["-n", "operators", "get", "routingweights"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong token is 401, not 403.
    let err = weights_api(env.client_for(0, "no-such-token").await)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(401), "{err}");

    env.apply(
        0,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: failover-bot
  namespace: operators
rules:
- apiGroups: ["routing.lunar.tech"]
  resources: ["routingweights"]
  verbs: ["get", "list", "watch", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: failover-bot
  namespace: operators
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: failover-bot
subjects:
- kind: ServiceAccount
  name: failover-bot
  namespace: operators
"#,
    );
    let granted = wait_for("RBAC grant", Duration::from_secs(10), || async {
        bot.list(&ListParams::default()).await.is_ok()
    })
    .await;
    assert!(granted, "{:?}", bot.list(&ListParams::default()).await);
    let out = env.kubectl_with(
        &bot_kubeconfig,
        0,
        &["-n", "operators", "get", "routingweights"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only what the Role grants: no create, nothing in other namespaces.
    let rw = RoutingWeight::new("x", RoutingWeightSpec::new_at_zero("x", PREFIX));
    let err = bot.create(&PostParams::default(), &rw).await.unwrap_err();
    assert_eq!(api_code(&err), Some(403), "{err}");
    let err = Api::<RoutingWeight>::namespaced(env.client_for(0, env.bot_token()).await, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(403), "{err}");
}

#[tokio::test]
async fn killed_apiserver_fails_fast_while_others_work_and_drop_cleans_up() {
    let _serial = SERIAL.lock().await;
    let env = KubeEnv::start(3).await;
    let timeout = Duration::from_secs(2);
    // Clients made before the kill, with pooled connections.
    let mut before = Vec::new();
    for i in 0..3 {
        let client = env.client_with_timeout(i, timeout).await;
        identity_api(client.clone())
            .get(IDENTITY_CONFIGMAP)
            .await
            .unwrap();
        before.push(client);
    }
    let killed_pid = env.apiserver_pid(1).unwrap();

    env.kill_apiserver(1);
    assert!(env.apiserver_pid(1).is_none());
    assert!(!Path::new(&format!("/proc/{killed_pid}")).exists());

    // Cluster 1 fails fast, with a pooled and with a fresh client.
    let fresh = env.client_with_timeout(1, timeout).await;
    for client in [before[1].clone(), fresh] {
        let t = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            identity_api(client).get(IDENTITY_CONFIGMAP),
        )
        .await
        .expect("the dead cluster's request must end by itself, not hang");
        assert!(result.is_err(), "cluster 1 still answers: {result:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
    }
    let out = env.kubectl(1, &["get", "namespaces", "--request-timeout=3s"], None);
    assert!(!out.status.success());

    // Clusters 0 and 2 keep working, old and new clients alike.
    for i in [0, 2] {
        let cm = identity_api(before[i].clone())
            .get(IDENTITY_CONFIGMAP)
            .await
            .unwrap();
        assert_eq!(cm.data.unwrap()["clusterName"], env.clusters()[i].name);
        let api = weights_api(env.client(i).await);
        let rw = RoutingWeight::new(
            &env.clusters()[i].name,
            RoutingWeightSpec::new_at_zero(&env.clusters()[i].name, PREFIX),
        );
        api.create(&PostParams::default(), &rw).await.unwrap();
        assert_eq!(
            api.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
        let out = env.kubectl(i, &["get", "namespace", "operators"], None);
        stdout(&out);
    }

    // Drop: every process (etcd, API servers, watchdog) and the temp dir are gone.
    let pids = env.pids();
    assert_eq!(
        pids.len(),
        4,
        "etcd + 2 live API servers + watchdog: {pids:?}"
    );
    let dir = env.dir().to_owned();
    assert!(!processes_mentioning(dir.to_str().unwrap()).is_empty());
    drop(before);
    drop(env);
    assert_nothing_left(&pids, &dir);
}

#[tokio::test]
async fn drop_while_panicking_leaves_no_process() {
    let _serial = SERIAL.lock().await;
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let env = KubeEnv::start(1).await;
            tx.send((env.pids(), env.dir().to_owned())).unwrap();
            // Unwinds like a failed assertion (without the panic hook's noise).
            std::panic::resume_unwind(Box::new("a test failing while its KubeEnv lives"))
        })
    })
    .join();
    assert!(result.is_err(), "the thread panicked");
    let (pids, dir) = rx.recv().unwrap();
    assert_eq!(pids.len(), 3, "etcd + API server + watchdog: {pids:?}");
    assert_nothing_left(&pids, &dir);
}
