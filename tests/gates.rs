//! Gates against real peers: a real Prometheus (tests/support/prometheus.rs)
//! scraping an exporter each test controls, evaluated through
//! `failover_bot::gates`; and the capacity gate's Deployment reader against a
//! real kube-apiserver (tests/support/kube_env.rs).

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_bot::gates::capacity::{
    check_capacity, clusters_to_read, read_ready, CapacityOutcome, CapacityPlan, KubeReplicaReader,
    Readiness,
};
use failover_bot::gates::{
    CapacityConfig, DeploymentRef, EvaluationError, Evaluator, GateConfig, GateResult, OnNoData,
    Outcome, PassIf, PrometheusClient, PrometheusConfig, QueryError, When,
};
use failover_bot::metrics::Metrics;
use failover_bot::plan::Weights;
use support::kube_env::KubeEnv;
use support::prometheus::{Exporter, Prometheus};

const ENV: &str = "prod";
const BLUE: &str = "k8s-blue.prod.example.com";
const GREEN: &str = "k8s-green.prod.example.com";

fn prometheus_config(url: &str, timeout: Duration) -> PrometheusConfig {
    PrometheusConfig {
        url: url.to_owned(),
        timeout,
        headers: BTreeMap::new(),
        bearer_token_env: None,
    }
}

fn evaluator(prometheus: &Prometheus) -> Evaluator {
    let config = prometheus_config(&prometheus.url(), Duration::from_secs(5));
    Evaluator::new(PrometheusClient::new(&config).expect("client"))
}

fn gate(name: &str, query: &str, pass_if: PassIf) -> GateConfig {
    GateConfig {
        name: name.to_owned(),
        query: query.to_owned(),
        when: When::After,
        pass_if,
        bake: None,
        on_no_data: OnNoData::Pause,
        advisory: false,
    }
}

const ERROR_RATE: &str = r#"max(app_error_ratio{cluster="{cluster}"})"#;

fn values(result: &GateResult) -> Vec<f64> {
    result.samples.iter().map(|s| s.sample.value).collect()
}

/// An exporter serving `series` (metric, cluster, value), and a Prometheus
/// that has scraped it.
async fn scraping(series: &[(&str, &str, f64)]) -> (Exporter, Prometheus) {
    let exporter = Exporter::start();
    for (metric, cluster, value) in series {
        exporter.set_for_cluster(metric, cluster, *value);
    }
    let prometheus = Prometheus::start(&exporter).await;
    for (metric, cluster, _) in series {
        let query = format!("{metric}{{cluster=\"{cluster}\"}}");
        prometheus.wait_for(&query, |v| v.len() == 1).await;
    }
    (exporter, prometheus)
}

#[tokio::test]
async fn a_value_meeting_pass_if_passes_and_one_that_does_not_fails_with_its_value() {
    let (_exporter, prometheus) = scraping(&[
        ("app_error_ratio", BLUE, 0.002),
        ("app_error_ratio", GREEN, 0.2),
    ])
    .await;
    let gate = gate("error-rate", ERROR_RATE, PassIf::Below(0.01));

    let blue = evaluator(&prometheus).evaluate(ENV, &gate, BLUE).await;
    assert_eq!(blue.outcome, Outcome::Pass, "{blue:?}");
    assert_eq!(values(&blue), [0.002]);
    assert!(blue.passed() && !blue.blocks());
    assert_eq!(
        blue.query,
        format!(r#"max(app_error_ratio{{cluster="{BLUE}"}})"#)
    );

    let green = evaluator(&prometheus).evaluate(ENV, &gate, GREEN).await;
    assert_eq!(green.outcome, Outcome::Fail, "{green:?}");
    assert_eq!(values(&green), [0.2]);
    assert_eq!(green.failing().map(|s| s.value).collect::<Vec<_>>(), [0.2]);
    assert_eq!(
        (green.pass_if.operator(), green.pass_if.threshold()),
        ("<", 0.01)
    );
    assert!(green.blocks());

    let advisory = GateConfig {
        advisory: true,
        ..gate.clone()
    };
    let reported = evaluator(&prometheus).evaluate(ENV, &advisory, GREEN).await;
    assert_eq!(reported.outcome, Outcome::Fail, "still reported as failing");
    assert!(!reported.blocks(), "an advisory gate does not block");
}

#[tokio::test]
async fn no_data_pauses_by_default_and_passes_where_the_gate_says_so() {
    let (exporter, prometheus) = scraping(&[("app_error_ratio", BLUE, 0.002)]).await;
    let pausing = gate("error-rate", ERROR_RATE, PassIf::Below(0.01));
    let passing = GateConfig {
        on_no_data: OnNoData::Pass,
        ..pausing.clone()
    };
    let evaluator = evaluator(&prometheus);

    // Green has never reported the metric (a cluster at weight 0).
    let paused = evaluator.evaluate(ENV, &pausing, GREEN).await;
    assert_eq!(paused.outcome, Outcome::NoData, "{paused:?}");
    assert!(paused.samples.is_empty());
    assert!(!paused.passed() && paused.blocks(), "no data pauses");
    let passed = evaluator.evaluate(ENV, &passing, GREEN).await;
    assert_eq!(passed.outcome, Outcome::NoData);
    assert!(passed.passed() && !passed.blocks(), "on_no_data: pass");

    // A metric that stops being reported is no data too, not its last value.
    exporter.remove("app_error_ratio", &[("cluster", BLUE)]);
    let query = format!(r#"app_error_ratio{{cluster="{BLUE}"}}"#);
    prometheus.wait_for(&query, <[f64]>::is_empty).await;
    let gone = evaluator.evaluate(ENV, &pausing, BLUE).await;
    assert_eq!(gone.outcome, Outcome::NoData, "{gone:?}");

    // 0/0 (no traffic) is NaN in PromQL: no data, not a failure.
    exporter.set_for_cluster("app_requests", BLUE, 0.0);
    prometheus
        .wait_for(&format!(r#"app_requests{{cluster="{BLUE}"}}"#), |v| {
            v == [0.0]
        })
        .await;
    let ratio = gate(
        "ratio",
        r#"sum(app_requests{cluster="{cluster}"}) / sum(app_requests{cluster="{cluster}"})"#,
        PassIf::Below(0.01),
    );
    let nan = evaluator.evaluate(ENV, &ratio, BLUE).await;
    assert_eq!(nan.outcome, Outcome::NoData, "{nan:?}");
    assert!(values(&nan)[0].is_nan(), "the NaN is kept to be shown");
}

#[tokio::test]
async fn cluster_and_env_are_substituted_escaped_and_match_only_their_own_series() {
    // Names Prometheus allows as label values but that would break a query
    // pasted in unescaped, or match other clusters as a regex.
    let odd = r#"k8s-"odd"\name.example.com"#;
    let lookalike = "k8s-blueXprod.example.com"; // matches BLUE's dots as a regex
    let exporter = Exporter::start();
    for (cluster, value) in [(BLUE, 1.0), (odd, 2.0), (lookalike, 3.0)] {
        exporter.set("app_up", &[("cluster", cluster), ("env", ENV)], value);
        exporter.set("app_up", &[("cluster", cluster), ("env", "staging")], 100.0);
    }
    let prometheus = Prometheus::start(&exporter).await;
    prometheus.wait_for("app_up", |v| v.len() == 6).await;
    let evaluator = evaluator(&prometheus);

    let exact = gate(
        "up",
        r#"app_up{cluster="{cluster}", env='{env}'}"#,
        PassIf::AtLeast(1.0),
    );
    let regex = gate(
        "up-regex",
        r#"app_up{cluster=~"{cluster}", env=~"{env}"}"#,
        PassIf::AtLeast(1.0),
    );
    for (cluster, value) in [(BLUE, 1.0), (odd, 2.0), (lookalike, 3.0)] {
        for gate in [&exact, &regex] {
            let result = evaluator.evaluate(ENV, gate, cluster).await;
            assert_eq!(result.outcome, Outcome::Pass, "{cluster}: {result:?}");
            assert_eq!(values(&result), [value], "{} for {cluster}", gate.name);
            let labels = &result.samples[0].sample.labels;
            assert_eq!(labels["cluster"], cluster);
            assert_eq!(labels["env"], ENV);
        }
    }
}

#[tokio::test]
async fn a_value_that_rises_after_a_step_turns_the_gate_from_pass_to_fail() {
    let (exporter, prometheus) = scraping(&[("app_error_ratio", GREEN, 0.001)]).await;
    let gate = gate("error-rate", ERROR_RATE, PassIf::AtMost(0.05));
    let evaluator = evaluator(&prometheus);
    let before = evaluator.evaluate(ENV, &gate, GREEN).await;
    assert_eq!(before.outcome, Outcome::Pass);
    assert_eq!(values(&before), [0.001]);

    exporter.set_for_cluster("app_error_ratio", GREEN, 0.3);
    let query = format!(r#"app_error_ratio{{cluster="{GREEN}"}}"#);
    prometheus.wait_for(&query, |v| v == [0.3]).await;

    let after = evaluator.evaluate(ENV, &gate, GREEN).await;
    assert_eq!(after.outcome, Outcome::Fail, "{after:?}");
    assert_eq!(values(&after), [0.3]);
}

#[tokio::test]
async fn every_gate_for_every_cluster_at_once_and_each_evaluation_counted() {
    let (_exporter, prometheus) = scraping(&[
        ("app_error_ratio", BLUE, 0.002),
        ("app_error_ratio", GREEN, 0.2),
    ])
    .await;
    let metrics = Arc::new(Metrics::new());
    let evaluator = evaluator(&prometheus).with_metrics(metrics.clone());
    let gates = [
        gate("error-rate", ERROR_RATE, PassIf::Below(0.01)),
        gate("broken", "sum(", PassIf::Below(1.0)),
    ];
    let clusters = [BLUE.to_owned(), GREEN.to_owned()];
    let results = evaluator.evaluate_all(ENV, &gates, &clusters).await;
    let summary: Vec<(&str, &str, &str)> = results
        .iter()
        .map(|r| (r.gate.as_str(), r.cluster.as_str(), r.outcome.label()))
        .collect();
    assert_eq!(
        summary,
        [
            ("error-rate", BLUE, "pass"),
            ("error-rate", GREEN, "fail"),
            ("broken", BLUE, "error"),
            ("broken", GREEN, "error"),
        ]
    );
    let text = metrics.render();
    for (gate, result, count) in [
        ("error-rate", "pass", 1),
        ("error-rate", "fail", 1),
        ("broken", "error", 2),
    ] {
        let line = format!(
            "failover_bot_gate_evaluations_total{{env=\"{ENV}\",gate=\"{gate}\",result=\"{result}\"}} {count}"
        );
        assert!(text.contains(&line), "no `{line}` in\n{text}");
    }
}

#[tokio::test]
async fn queries_prometheus_refuses_are_errors_with_its_reason() {
    let (_exporter, prometheus) = scraping(&[("app_error_ratio", BLUE, 0.002)]).await;
    let evaluator = evaluator(&prometheus);
    let lenient = |name: &str, query: &str| GateConfig {
        on_no_data: OnNoData::Pass,
        ..gate(name, query, PassIf::Below(1.0))
    };

    let syntax = evaluator
        .evaluate(ENV, &lenient("syntax", "sum(rate("), BLUE)
        .await;
    let Outcome::Error(EvaluationError::Query(QueryError::Rejected {
        error_type,
        message,
    })) = &syntax.outcome
    else {
        panic!("expected a rejected query: {syntax:?}")
    };
    assert_eq!(error_type, "bad_data");
    assert!(message.contains("parse error"), "{message}");
    assert!(
        !syntax.passed(),
        "an error is never a pass, even with on_no_data: pass"
    );

    let range = lenient("range", r#"app_error_ratio{cluster="{cluster}"}[1m]"#);
    let matrix = evaluator.evaluate(ENV, &range, BLUE).await;
    assert!(
        matches!(
            matrix.outcome,
            Outcome::Error(EvaluationError::Query(QueryError::WrongType { .. }))
        ),
        "{matrix:?}"
    );

    let scalar = evaluator
        .evaluate(
            ENV,
            &lenient("scalar", r#"scalar(app_error_ratio{cluster="{cluster}"})"#),
            BLUE,
        )
        .await;
    assert_eq!(scalar.outcome, Outcome::Pass, "{scalar:?}");
    assert_eq!(values(&scalar), [0.002]);
    assert!(scalar.samples[0].sample.labels.is_empty());
}

#[tokio::test]
async fn prometheus_down_is_a_clear_error_never_a_pass() {
    let (_exporter, prometheus) = scraping(&[("app_error_ratio", BLUE, 0.002)]).await;
    let evaluator = evaluator(&prometheus);
    let gate = GateConfig {
        on_no_data: OnNoData::Pass,
        ..gate("error-rate", ERROR_RATE, PassIf::Below(0.01))
    };
    assert_eq!(
        evaluator.evaluate(ENV, &gate, BLUE).await.outcome,
        Outcome::Pass
    );

    prometheus.kill();
    let down = evaluator.evaluate(ENV, &gate, BLUE).await;
    let Outcome::Error(EvaluationError::Query(error)) = &down.outcome else {
        panic!("expected an error: {down:?}")
    };
    assert!(matches!(error, QueryError::Unreachable { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("cannot reach Prometheus at") && text.contains(&prometheus.url()),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!down.passed() && down.blocks());
}

#[tokio::test]
async fn a_prometheus_that_does_not_answer_times_out_quickly() {
    // A port that accepts connections and never answers (a hung server).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let timeout = Duration::from_millis(500);
    let client = PrometheusClient::new(&prometheus_config(&url, timeout)).unwrap();
    let started = Instant::now();
    let result = Evaluator::new(client)
        .evaluate(
            ENV,
            &gate("error-rate", ERROR_RATE, PassIf::Below(0.01)),
            BLUE,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        result.outcome,
        Outcome::Error(EvaluationError::Query(QueryError::Timeout {
            url: format!("{url}/api/v1/query"),
            timeout
        }))
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(silent);
}

// ------------------------------------------------------------------ capacity

fn deployment_yaml(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: payments
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: app
          image: registry.example.com/{name}:1
"#
    )
}

/// Sets a Deployment's `status.readyReplicas` as its controller would (the
/// test API servers run no controller manager).
async fn set_ready(client: &kube::Client, name: &str, ready: i32) {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<Deployment> = Api::namespaced(client.clone(), "payments");
    let status = serde_json::json!({"status": {"replicas": ready, "readyReplicas": ready}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch Deployment status");
}

#[tokio::test]
async fn capacity_reads_ready_replicas_from_real_clusters_and_refuses_too_few_with_the_numbers() {
    let env = KubeEnv::start(2).await;
    let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    let (blue, green) = (names[0].as_str(), names[1].as_str());
    let mut clients = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        env.apply(
            i,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments}\n",
        );
        env.apply(i, &deployment_yaml("api", 10));
        clients.insert(name.clone(), env.client(i).await);
    }
    set_ready(&clients[blue], "api", 10).await;
    set_ready(&clients[green], "api", 5).await;
    // The bot's own identity has no RBAC grant for Deployments.
    let mut unauthorised = clients.clone();
    unauthorised.insert(green.to_owned(), env.client_for(1, env.bot_token()).await);

    let api = DeploymentRef {
        namespace: "payments".into(),
        name: "api".into(),
    };
    let worker = DeploymentRef {
        namespace: "payments".into(),
        name: "worker".into(),
    };
    let config = CapacityConfig {
        deployments: vec![api.clone(), worker.clone()],
        headroom: 1.2,
    };
    let before: Weights = [(blue, 100), (green, 0)].into_iter().collect();
    let after: Weights = [(blue, 50), (green, 50)].into_iter().collect();

    let reader = KubeReplicaReader::new(clients);
    let clusters = clusters_to_read(&before, &after);
    let ready = read_ready(&reader, &clusters, &config.deployments).await;
    assert_eq!(ready.get(&api, blue), Readiness::Ready(10));
    assert_eq!(ready.get(&api, green), Readiness::Ready(5));
    assert_eq!(ready.get(&worker, green), Readiness::Missing);

    let checks = check_capacity(CapacityPlan {
        config: &config,
        before: &before,
        after: &after,
        ready: &ready,
    });
    let api_green = checks
        .iter()
        .find(|c| c.deployment == api && c.cluster == green)
        .expect("a check of api in green");
    assert_eq!(api_green.outcome, CapacityOutcome::TooFew);
    assert_eq!(
        (
            api_green.serving,
            api_green.required,
            api_green.readiness.ready()
        ),
        (10, 6, 5),
        "10 serving × 50% × 1.2 = 6 needed, 5 ready"
    );
    let worker_green = checks.iter().find(|c| c.deployment == worker).unwrap();
    assert_eq!(worker_green.readiness, Readiness::Missing);
    assert_eq!(worker_green.outcome, CapacityOutcome::TooFew);
    assert_eq!(checks.len(), 2, "only green's share rises: {checks:#?}");

    set_ready(&env.client(1).await, "api", 6).await;
    let ready = read_ready(&reader, &clusters, &config.deployments).await;
    let checks = check_capacity(CapacityPlan {
        config: &config,
        before: &before,
        after: &after,
        ready: &ready,
    });
    let api_green = checks.iter().find(|c| c.deployment == api).unwrap();
    assert_eq!(api_green.outcome, CapacityOutcome::Enough, "{api_green:?}");

    let denied = read_ready(
        &KubeReplicaReader::new(unauthorised),
        &clusters,
        std::slice::from_ref(&api),
    )
    .await;
    let Readiness::Unreadable(reason) = denied.get(&api, green) else {
        panic!("expected unreadable: {denied:?}")
    };
    assert!(
        reason.contains("forbidden") && reason.contains("403"),
        "{reason}"
    );
}
