//! The health gate against a real local HTTP server: 2xx passes; an error
//! status, a refused connection and a timeout each fail with the reason;
//! through the engine, a failing gate refuses the step unless break-glass.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use failover_bot::backend::health::HealthProbe;
use failover_bot::backend::{GateFailure, HealthFailure};
use failover_bot::chat::MessageKind;
use support::chat::is;

/// `/ok` 200, `/down` 503, `/slow` answers after 10 s, `/flaky` fails once
/// then answers 200.
async fn health_server() -> String {
    let flaky = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route(
            "/flaky",
            get(move || {
                let flaky = flaky.clone();
                async move {
                    if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                        (StatusCode::BAD_GATEWAY, "once")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn reason(result: Result<(), GateFailure>) -> HealthFailure {
    match result {
        Err(GateFailure::Unhealthy { failure }) => failure,
        other => panic!("expected an unhealthy gate, got {other:?}"),
    }
}

#[tokio::test]
async fn two_hundred_passes_and_one_bad_answer_is_retried() {
    let base = health_server().await;
    let probe = HealthProbe::new();
    probe.check(&format!("{base}/ok")).await.unwrap();
    probe.check(&format!("{base}/flaky")).await.unwrap();
}

#[tokio::test]
async fn an_error_status_fails_with_the_status() {
    let base = health_server().await;
    let why = reason(HealthProbe::new().check(&format!("{base}/down")).await);
    assert!(
        matches!(
            why,
            HealthFailure::Status {
                status: 503,
                tries: 3,
                ..
            }
        ),
        "{why:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let why = reason(
        HealthProbe::new()
            .check(&format!("http://127.0.0.1:{port}/healthz"))
            .await,
    );
    assert!(
        matches!(why, HealthFailure::Unreachable { tries: 3, .. }),
        "{why:?}"
    );
}

#[tokio::test]
async fn a_timeout_fails_within_a_bound() {
    let base = health_server().await;
    let started = Instant::now();
    let why = reason(HealthProbe::new().check(&format!("{base}/slow")).await);
    assert!(
        matches!(why, HealthFailure::Timeout { tries: 3, .. }),
        "{why:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "bounded: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn through_the_engine_a_failing_gate_refuses_unless_break_glass() {
    use failover_bot::backend::kube::KubeBackend;
    use failover_bot::config::Config;
    use support::kube_env::{routing_weight_yaml, KubeEnv};

    let base = health_server().await;
    let env = KubeEnv::start(2).await;
    for (i, cluster) in env.clusters().iter().enumerate() {
        env.apply(
            i,
            &routing_weight_yaml(&cluster.name, if i == 0 { 100 } else { 0 }),
        );
    }
    let yaml = env
        .config_yaml("  mode: routing-weight\n  verify_timeout: 5s\n", "")
        .replace(
            &format!("context: {}}}", env.clusters()[1].context),
            &format!(
                "context: {}, health_url: \"{base}/down\"}}",
                env.clusters()[1].context
            ),
        );
    let config = Config::from_yaml(&yaml).unwrap();
    assert!(config.environments["dev"].clusters[1].health_url.is_some());
    let backend = Arc::new(
        KubeBackend::connect(&config, Some(env.kubeconfig()))
            .await
            .unwrap(),
    );
    let bot = support::TestBot::new(config, backend);

    bot.cmd("alice", "shift 50 to b").await;
    let refusal = bot.chat.ephemerals("alice").pop().expect("a refusal");
    assert!(
        is(
            &refusal,
            MessageKind::Refused,
            &[("gate", "unhealthy"), ("probe", "status")]
        ),
        "{refusal:?}"
    );
    assert!(bot.engine.pending_plan_messages().is_empty());

    bot.cmd("alice", "shift! 50 to b").await;
    let plan = bot.chat.plans().pop().unwrap().1;
    assert_eq!(plan.fact("break_glass"), Some("true"), "{plan:?}");
    bot.approve("bob").await;
    assert!(bot.last_step_verified(), "{}", bot.said());
}
