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
use crate::backend::kube::client_for_context;
use crate::backend::kube::tls::TlsVerification;
use crate::backend::kube::KubeBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::route53::Route53;
use crate::backend::RoutingBackend;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, RoutingMode};
use crate::doctor::{schedule, Doctor, DoctorParts, Home};
use crate::engine::{Engine, EngineParts};
use crate::health::{self, Health};
use crate::journal::sign::{start_signing, Signer, Tail};
use crate::journal::{Journal, JournalError, Record};
use crate::leader::{LeaderElection, Leadership};
use crate::metrics::{MeteredBackend, Metrics};
use crate::slack::intake::Intake;
use crate::slack::web::SlackChat;
use crate::slack::{http, socket, SlackSettings};
use crate::store::journal::{Connect as ConnectStore, Fenced};
use crate::store::kube::{KubeStore, KubeStoreSettings};
use crate::store::LineStore;

/// How often pending approvals are checked for expiry.
const TICK: Duration = Duration::from_secs(1);
/// How often to try a journal another process holds.
const JOURNAL_RETRY: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub config: Config,
    pub listen: SocketAddr,
    pub journal: JournalAt,
    /// Run against in-memory clusters seeded from the config's weights.
    pub in_memory: bool,
    /// Campaign for a Lease and act only while holding it (two replicas).
    pub leader_election: Option<LeaderElection>,
    /// Signs every journal record (the key from the bot's Secret).
    pub signing_key: Option<Signer>,
    /// Whether a kubeconfig context may skip TLS verification.
    pub tls: TlsVerification,
}

/// Where `serve` keeps its journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalAt {
    /// A file: one process, or a volume every replica mounts.
    File(PathBuf),
    /// JournalSegment objects in `namespace` of the home cluster (kubeconfig
    /// `context`, or `in-cluster`), written as `writer`.
    Kube {
        context: String,
        namespace: String,
        writer: String,
    },
}

pub async fn serve(options: ServeOptions, settings: SlackSettings) -> Result<(), String> {
    if let Some(election) = &options.leader_election {
        election.check_home(&options.config)?;
    }
    let metrics = Arc::new(Metrics::new());
    let mut backends = backends(&options).await?;
    backends.routing = metered(backends.routing, &options, metrics.clone());
    if settings.api_url.starts_with("http://") {
        // Plain HTTP only for a local Slack stand-in (tests); Slack itself is HTTPS.
        let connector = SlackClientHyperConnector::with_connector(HttpConnector::new());
        serve_with(connector, options, settings, backends, metrics).await
    } else {
        let connector = SlackClientHyperConnector::new()
            .map_err(|e| format!("cannot set up TLS for Slack: {e}"))?;
        serve_with(connector, options, settings, backends, metrics).await
    }
}

fn metered(
    backend: Arc<dyn RoutingBackend>,
    options: &ServeOptions,
    metrics: Arc<Metrics>,
) -> Arc<dyn RoutingBackend> {
    let name = if options.in_memory {
        "memory".to_owned()
    } else {
        options.config.routing.mode.to_string()
    };
    Arc::new(MeteredBackend::new(backend, &name, metrics))
}

/// The routing backend, and the Route53 client inside it (one client, so
/// one rate budget, for the engine and the readiness check).
pub struct Backends {
    pub routing: Arc<dyn RoutingBackend>,
    pub route53: Option<Arc<Route53>>,
}

/// In-memory clusters (`--in-memory`), else the real ones.
pub async fn backends(options: &ServeOptions) -> Result<Backends, String> {
    if options.in_memory {
        return Ok(Backends {
            routing: Arc::new(MemoryBackend::from_config(&options.config)),
            route53: None,
        });
    }
    real_backends(&options.config, options.tls).await
}

/// The clusters of the config's mode, reached through `$KUBECONFIG` (and
/// the standard AWS chain for Route53): Route53 verification is added
/// wherever an environment has a `route53` section.
pub async fn real_backend(
    config: &Config,
    tls: TlsVerification,
) -> Result<Arc<dyn RoutingBackend>, String> {
    Ok(real_backends(config, tls).await?.routing)
}

/// [`real_backend`], with its Route53 client when it has one.
pub async fn real_backends(config: &Config, tls: TlsVerification) -> Result<Backends, String> {
    let kube = Arc::new(KubeBackend::connect_with(config, None, tls).await?);
    let timeout = config.routing.verify_timeout;
    let needs_dns = config.environments.values().any(|e| e.route53.is_some());
    let zones = cluster_zones(config);
    let route53 = match needs_dns || config.routing.mode == RoutingMode::Route53 {
        true => Arc::new(Route53::for_config(config).await),
        false => {
            return Ok(Backends {
                routing: kube,
                route53: None,
            })
        }
    };
    let routing: Arc<dyn RoutingBackend> = match config.routing.mode {
        RoutingMode::Route53 => Arc::new(Route53Mode::new(kube, route53.clone(), timeout, zones)),
        _ => Arc::new(DnsVerified::new(kube, route53.clone(), timeout, zones)),
    };
    Ok(Backends {
        routing,
        route53: Some(route53),
    })
}

async fn serve_with<H>(
    connector: SlackClientHyperConnector<H>,
    options: ServeOptions,
    settings: SlackSettings,
    backends: Backends,
    metrics: Arc<Metrics>,
) -> Result<(), String>
where
    H: Send + Sync + Clone + Connect + 'static,
{
    let started = std::time::Instant::now();
    let health = Health::new(metrics.clone());
    let server = health::listen(options.listen, health.clone()).await?;
    let mut leadership = match &options.leader_election {
        Some(election) => Some(lead(election).await?),
        None => None,
    };
    // Holds the Lease now, or is the only replica.
    metrics.set_leader(true);
    let client = Arc::new(SlackClient::new(
        connector.with_slack_api_url(&settings.api_url),
    ));
    let chat = Arc::new(SlackChat::new(client.clone(), &settings.bot_token));
    let bot_user = chat
        .bot_user_id()
        .await
        .map_err(|e| format!("cannot reach Slack with SLACK_BOT_TOKEN: {e}"))?;
    // Opened only now: with leader election, the previous leader may have
    // written to it until a moment ago.
    let OpenedJournal {
        mut journal,
        records,
        fenced,
        tail,
    } = open_journal(&options.journal, options.tls).await?;
    let distrust = match options.signing_key.clone() {
        Some(signer) => {
            let tail = match tail {
                Some(tail) => tail,
                None => file_tail(&options.journal)?,
            };
            start_signing(&mut journal, &tail, signer, chrono::Utc::now())
                .map_err(|e| e.to_string())?
        }
        None => None,
    };
    let journal = match &leadership {
        Some(leadership) => journal.guarded(Box::new(leadership.deadline())),
        None => journal,
    };
    let config = Arc::new(options.config.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(EngineParts {
        config: config.clone(),
        backend: backends.routing.clone(),
        chat: chat.clone(),
        groups: chat,
        clock: clock.clone(),
        journal,
        records,
        bot_user: bot_user.into(),
    })
    .with_metrics(metrics.clone());
    if let Some(problem) = distrust {
        engine.distrust_journal(problem);
    }
    let engine = Arc::new(engine);
    engine.resume().await;
    let ticker = tokio::spawn(tick_forever(engine.clone()));
    let doctor = match config.doctor.every {
        Some(every) => {
            let doctor = scheduled_doctor(&options, config.clone(), backends, clock).await;
            Some(tokio::spawn(schedule::run(
                Arc::new(doctor),
                engine.clone(),
                every,
            )))
        }
        None => None,
    };
    let intake = Arc::new(Intake::new(engine));
    if let Some(secret) = &settings.signing_secret {
        health.take_slack_events(http::router(intake.clone(), secret));
    }
    health.set_ready();
    tracing::info!(ms = started.elapsed().as_millis() as u64, "ready");
    let stop = Stop::new();
    let halt = must_stop(leadership.as_mut(), fenced);
    let result = run_transport(&settings, client, intake, &stop, halt).await;
    metrics.set_leader(false);
    ticker.abort();
    if let Some(doctor) = doctor {
        doctor.abort();
    }
    server.abort();
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    result
}

/// The scheduled readiness check's doctor: the engine's backends and
/// clock, and the home cluster's Lease (and journal) when this replica
/// campaigns for it.
async fn scheduled_doctor(
    options: &ServeOptions,
    config: Arc<Config>,
    backends: Backends,
    clock: Arc<dyn Clock>,
) -> Doctor {
    let home = match &options.leader_election {
        Some(election) => home_of(election, &options.journal, options.tls).await,
        None => None,
    };
    Doctor::new(DoctorParts {
        config,
        backend: backends.routing,
        route53: backends.route53,
        home,
        clock,
    })
}

/// The home cluster as the readiness check sees it. Not reaching it leaves
/// the Lease unchecked, not the bot stopped: the bot reached it a moment
/// ago to lead, and a check is no reason to give up serving.
async fn home_of(
    election: &LeaderElection,
    journal: &JournalAt,
    tls: TlsVerification,
) -> Option<Home> {
    match client_for_context(&election.context, tls).await {
        Ok(client) => Some(Home {
            client,
            context: election.context.clone(),
            namespace: election.namespace.clone(),
            lease_name: election.lease_name.clone(),
            journal: matches!(journal, JournalAt::Kube { .. }),
        }),
        Err(error) => {
            tracing::error!(%error, "readiness check: cannot reach the home cluster; its Lease goes unchecked");
            None
        }
    }
}

/// Takes events until stopped, or until `halt` says why this replica must
/// stop acting.
async fn run_transport<H>(
    settings: &SlackSettings,
    client: Arc<SlackClient<SlackClientHyperConnector<H>>>,
    intake: Arc<Intake>,
    stop: &Stop,
    halt: impl std::future::Future<Output = String>,
) -> Result<(), String>
where
    H: Send + Sync + Clone + Connect + 'static,
{
    match &settings.app_token {
        Some(app_token) => {
            let run = socket::run(client, app_token, intake, stop.wait());
            tokio::select! {
                result = run => result,
                why = halt => Err(why),
            }
        }
        None if settings.signing_secret.is_some() => {
            tokio::select! {
                () = stop.wait() => Ok(()),
                why = halt => Err(why),
            }
        }
        None => Err("no Slack transport configured".into()),
    }
}

/// Resolves when this replica must stop acting: its lease is lost (or its
/// deadline passed unrenewed), or the journal refuses appends for good
/// (another writer took it over). Pending while neither happens.
async fn must_stop(leadership: Option<&mut Leadership>, fenced: Option<Fenced>) -> String {
    let lease = async {
        match leadership {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    let journal = async {
        match fenced {
            Some(mut f) => f.broken().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = lease => "lost the leader lease: stopping so that only the new leader acts".into(),
        why = journal => format!("the journal stopped taking records ({why}): stopping before acting on anything it could not record"),
    }
}

/// A journal as `serve` opened it.
struct OpenedJournal {
    journal: Journal,
    records: Vec<Record>,
    /// A store's journal tells when another writer took it over.
    fenced: Option<Fenced>,
    /// A store's journal: the lines it loaded (from its latest checkpoint
    /// segment on), for the signature check. A file is read again only
    /// when the bot signs.
    tail: Option<Tail>,
}

/// The file journal's lines from its latest snapshot on (what start-up
/// replays), for the signature check.
fn file_tail(at: &JournalAt) -> Result<Tail, String> {
    match at {
        JournalAt::File(path) => Tail::read_since_snapshot(path)
            .map_err(|e| format!("cannot read journal {}: {e}", path.display())),
        JournalAt::Kube { .. } => Ok(Tail::default()),
    }
}

/// Opens the journal where `at` says.
async fn open_journal(at: &JournalAt, tls: TlsVerification) -> Result<OpenedJournal, String> {
    match at {
        JournalAt::File(path) => {
            let (journal, records) = open_journal_file(path).await?;
            Ok(OpenedJournal {
                journal,
                records,
                fenced: None,
                tail: None,
            })
        }
        JournalAt::Kube {
            context,
            namespace,
            writer,
        } => {
            let name = format!("kube:{namespace}");
            let connect = kube_store(context, namespace, tls);
            let opened = crate::store::journal::open(connect, writer, &name)
                .await
                .map_err(|e| format!("journal {name}: {e}"))?;
            Ok(OpenedJournal {
                journal: opened.journal,
                records: opened.records,
                fenced: Some(opened.fenced),
                tail: Some(opened.tail),
            })
        }
    }
}

/// The JournalSegment store in `namespace` of kubeconfig `context`.
fn kube_store(context: &str, namespace: &str, tls: TlsVerification) -> ConnectStore {
    let (context, namespace) = (context.to_owned(), namespace.to_owned());
    Box::new(move || {
        Box::pin(async move {
            let settings = KubeStoreSettings {
                tls,
                ..KubeStoreSettings::default()
            };
            let clock = Arc::new(SystemClock);
            let store = KubeStore::connect(&context, &namespace, settings, clock).await?;
            Ok(Arc::new(store) as Arc<dyn LineStore>)
        })
    })
}

/// Opens the journal file, waiting while another process still holds it (a
/// previous leader on its way out).
async fn open_journal_file(path: &std::path::Path) -> Result<(Journal, Vec<Record>), String> {
    let mut said = false;
    loop {
        match Journal::open(path) {
            Err(JournalError::Locked { .. }) => {
                if !said {
                    tracing::warn!(path = %path.display(), "journal in use by another process: waiting");
                    said = true;
                }
                tokio::time::sleep(JOURNAL_RETRY).await;
            }
            opened => return opened.map_err(|e| e.to_string()),
        }
    }
}

/// Campaigns and waits to lead; logs while it waits.
async fn lead(election: &LeaderElection) -> Result<Leadership, String> {
    let mut leadership = election.campaign().await.map_err(|e| e.to_string())?;
    tracing::info!(
        lease = %election.lease_name,
        namespace = %election.namespace,
        identity = %election.identity,
        "waiting to lead"
    );
    leadership.acquired().await;
    tracing::info!(identity = %election.identity, "leading");
    Ok(leadership)
}

/// Ctrl-C or SIGTERM, as a future any number of tasks can wait on.
#[derive(Clone)]
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    fn new() -> Self {
        let (tell, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tell.send_replace(true);
        });
        Stop(stopped)
    }

    fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopped = self.0.clone();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Time moves operations on: approvals expire, bakes read their gates.
async fn tick_forever(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        engine.tick().await;
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
