//! `failover-bot serve`: the bot in a Slack workspace. Builds the engine on
//! the journal, resumes what a previous run left, expires approvals on a
//! timer, and takes events from Socket Mode (when `SLACK_APP_TOKEN` is set)
//! or the Events API over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use slack_morphism::prelude::*;

use crate::backend::dns::{cluster_zones, DnsVerified, Route53Mode};
use crate::backend::kube::KubeBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::route53::Route53;
use crate::backend::RoutingBackend;
use crate::clock::SystemClock;
use crate::config::{Config, RoutingMode};
use crate::operation::engine::{Engine, EngineParts};
use crate::operation::journal::Journal;
use crate::slack::intake::Intake;
use crate::slack::web::SlackChat;
use crate::slack::{http, socket, SlackSettings};

/// How often pending approvals are checked for expiry.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub config: Config,
    pub listen: SocketAddr,
    pub journal: PathBuf,
    /// Run against in-memory clusters seeded from the config's weights.
    pub in_memory: bool,
}

pub async fn serve(options: ServeOptions, settings: SlackSettings) -> Result<(), String> {
    let backend = backend(&options).await?;
    if settings.api_url.starts_with("http://") {
        // Plain HTTP only for a local Slack stand-in (tests); Slack itself is HTTPS.
        let connector = SlackClientHyperConnector::with_connector(HttpConnector::new());
        serve_with(connector, options, settings, backend).await
    } else {
        let connector = SlackClientHyperConnector::new()
            .map_err(|e| format!("cannot set up TLS for Slack: {e}"))?;
        serve_with(connector, options, settings, backend).await
    }
}

/// In-memory clusters (`--in-memory`), else the real ones.
pub async fn backend(options: &ServeOptions) -> Result<Arc<dyn RoutingBackend>, String> {
    if options.in_memory {
        return Ok(Arc::new(MemoryBackend::from_config(&options.config)));
    }
    real_backend(&options.config).await
}

/// The clusters of the config's mode, reached through `$KUBECONFIG` (and
/// the standard AWS chain for Route53): Route53 verification is added
/// wherever an environment has a `route53` section.
pub async fn real_backend(config: &Config) -> Result<Arc<dyn RoutingBackend>, String> {
    let kube = Arc::new(KubeBackend::connect(config, None).await?);
    let timeout = config.routing.verify_timeout;
    let needs_dns = config.environments.values().any(|e| e.route53.is_some());
    let zones = cluster_zones(config);
    match config.routing.mode {
        RoutingMode::Route53 => {
            let route53 = Arc::new(Route53::from_env().await);
            Ok(Arc::new(Route53Mode::new(kube, route53, timeout, zones)))
        }
        _ if needs_dns => {
            let route53 = Arc::new(Route53::from_env().await);
            Ok(Arc::new(DnsVerified::new(kube, route53, timeout, zones)))
        }
        _ => Ok(kube),
    }
}

async fn serve_with<H>(
    connector: SlackClientHyperConnector<H>,
    options: ServeOptions,
    settings: SlackSettings,
    backend: Arc<dyn RoutingBackend>,
) -> Result<(), String>
where
    H: Send + Sync + Clone + Connect + 'static,
{
    let client = Arc::new(SlackClient::new(
        connector.with_slack_api_url(&settings.api_url),
    ));
    let chat = Arc::new(SlackChat::new(client.clone(), &settings.bot_token));
    let bot_user = chat
        .bot_user_id()
        .await
        .map_err(|e| format!("cannot reach Slack with SLACK_BOT_TOKEN: {e}"))?;
    let (journal, records) = Journal::open(&options.journal).map_err(|e| e.to_string())?;
    let engine = Arc::new(Engine::new(EngineParts {
        config: Arc::new(options.config),
        backend,
        chat: chat.clone(),
        groups: chat,
        clock: Arc::new(SystemClock),
        journal,
        records,
        bot_user,
    }));
    engine.resume().await;
    let ticker = tokio::spawn(expire_forever(engine.clone()));
    let intake = Arc::new(Intake::new(engine));
    let result = match (&settings.app_token, &settings.signing_secret) {
        (Some(app_token), _) => socket::run(client, app_token, intake, shutdown_signal()).await,
        (None, Some(secret)) => {
            http::serve(options.listen, intake, secret, shutdown_signal()).await
        }
        (None, None) => Err("no Slack transport configured".into()),
    };
    ticker.abort();
    result
}

async fn expire_forever(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    loop {
        tick.tick().await;
        engine.expire_due().await;
    }
}

/// Ctrl-C or SIGTERM (what Kubernetes sends before it kills a pod).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
