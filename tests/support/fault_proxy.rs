//! A fault-injecting HTTP/1.1 proxy for integration tests, started in front
//! of one upstream (a kube-apiserver, moto, the fake Slack's Web API). It
//! forwards every request unchanged until told to misbehave, then answers
//! chosen requests with an error status, holds them without an answer,
//! forwards them but loses the answer, resets the connection, delays them,
//! or stops accepting connections.
//!
//! - Plain HTTP upstreams (moto, the fake Slack) are proxied as they are.
//! - HTTPS upstreams (kube-apiservers) are terminated here with the serving
//!   certificate and key the upstream itself uses (its SANs include
//!   127.0.0.1, so a client that trusts the upstream's CA trusts the proxy
//!   too) and forwarded over a new TLS connection that trusts that CA.
//!   rustls runs on the ring provider, like the rest of the crate.
//! - Each downstream connection gets its own upstream connection, so
//!   keep-alive and streaming (watches) behave as without the proxy.
//! - WebSocket upgrades are not proxied (the fake Slack's Socket Mode is
//!   reached directly; it can drop sockets itself).
//!
//! A fault is a [`Rule`]: one [`Fault`], optionally only for requests whose
//! method and path match (so it can hit the middle of a step), after
//! skipping the first `skip` matches, for at most `times` matches. Counters
//! say how many requests arrived and how many faults of each kind were
//! injected.
//!
//! The file stands alone (no other support module) so test binaries that
//! include single support files with `#[path]` can use it too.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the proxy does to a matching request instead of forwarding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this HTTP status (with `Retry-After: secs` when given) and
    /// do not forward. The body is plain text unless [`Rule::body`] says
    /// otherwise.
    Status { code: u16, retry_after: Option<u64> },
    /// Read the request, then never answer (the client's timeout decides).
    Timeout,
    /// Forward the request and let the upstream act on it, then never pass
    /// its answer on: a write that landed but whose answer was lost.
    LoseAnswer,
    /// Read the request, then reset the connection (TCP RST, no answer).
    Reset,
    /// Wait this long, then forward.
    Slow(Duration),
    /// Stop accepting: the listener is closed (new connections are refused)
    /// and open connections are closed; [`FaultProxy::clear`] reopens it on
    /// the same port. Matching, `skip` and `times` do not apply.
    Refuse,
    /// An API's rate limit (Route53: 5 requests per second per account):
    /// a matching request that comes when `per_second` matching requests
    /// were forwarded in the last second is answered `code` (with
    /// [`Rule::body`]), the others are forwarded.
    OverRate { per_second: u32, code: u16 },
}

impl Fault {
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
        }
    }

    /// Short name for summaries: `429`, `timeout`, `reset`, ...
    pub fn kind(&self) -> String {
        match self {
            Fault::Status { code, .. } => code.to_string(),
            Fault::Timeout => "timeout".into(),
            Fault::LoseAnswer => "lost-answer".into(),
            Fault::Reset => "reset".into(),
            Fault::Slow(_) => "slow".into(),
            Fault::Refuse => "refuse".into(),
            Fault::OverRate { code, .. } => code.to_string(),
        }
    }
}

/// A fault and the requests it applies to.
#[derive(Clone, Debug)]
pub struct Rule {
    pub fault: Fault,
    /// Only requests with this method (any when `None`).
    pub method: Option<Method>,
    /// Only requests whose path and query contain this (any when `None`).
    pub path_contains: Option<String>,
    /// Let this many matching requests through first.
    pub skip: u32,
    /// Inject into at most this many matching requests (all when `None`).
    pub times: Option<u32>,
    /// `(content type, body)` of a [`Fault::Status`] or [`Fault::OverRate`] answer.
    pub body: Option<(String, String)>,
}

impl Rule {
    pub fn new(fault: Fault) -> Rule {
        Rule {
            fault,
            method: None,
            path_contains: None,
            skip: 0,
            times: None,
            body: None,
        }
    }

    /// Only `method` requests (empty: any method) whose path and query
    /// contain `path_contains`.
    pub fn only(mut self, method: &str, path_contains: &str) -> Rule {
        self.method = (!method.is_empty())
            .then(|| Method::from_bytes(method.as_bytes()).expect("a valid HTTP method"));
        self.path_contains = Some(path_contains.to_owned());
        self
    }

    pub fn skip(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }

    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }

    pub fn body(mut self, content_type: &str, body: &str) -> Rule {
        self.body = Some((content_type.to_owned(), body.to_owned()));
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

impl From<Fault> for Rule {
    fn from(fault: Fault) -> Rule {
        Rule::new(fault)
    }
}

/// Where the proxy forwards to.
#[derive(Clone)]
pub enum Upstream {
    /// `http://host:port`.
    Http { url: String },
    /// `https://host:port`, served to clients with `cert_pem`/`key_pem`
    /// (PEM; the chain may hold several certificates) and reached trusting
    /// every certificate in `ca_pem`.
    Https {
        url: String,
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
}

impl Upstream {
    pub fn http(url: &str) -> Upstream {
        Upstream::Http {
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    pub fn https(url: &str, ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Upstream {
        Upstream::Https {
            url: url.trim_end_matches('/').to_owned(),
            ca_pem,
            cert_pem,
            key_pem,
        }
    }

    fn url(&self) -> &str {
        match self {
            Upstream::Http { url } | Upstream::Https { url, .. } => url,
        }
    }
}

/// How many faults of each kind were injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// HTTP status → answers injected.
    pub status: BTreeMap<u16, u64>,
    pub timeouts: u64,
    /// Requests forwarded whose answers were not passed on.
    pub lost_answers: u64,
    pub resets: u64,
    pub slow: u64,
    /// Times the listener was closed.
    pub refusals: u64,
    /// Open connections closed by a refusal.
    pub connections_closed: u64,
}

impl Injected {
    /// Faults injected (a refusal counts once, however many connections
    /// it closed).
    pub fn total(&self) -> u64 {
        self.status.values().sum::<u64>()
            + self.timeouts
            + self.lost_answers
            + self.resets
            + self.slow
            + self.refusals
    }

    /// By kind, as in [`Fault::kind`]; kinds never injected are left out.
    pub fn by_kind(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = self
            .status
            .iter()
            .map(|(code, n)| (code.to_string(), *n))
            .collect();
        for (kind, n) in [
            ("timeout", self.timeouts),
            ("lost-answer", self.lost_answers),
            ("reset", self.resets),
            ("slow", self.slow),
            ("refuse", self.refusals),
        ] {
            if n > 0 {
                out.insert(kind.to_owned(), n);
            }
        }
        out
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self
            .by_kind()
            .iter()
            .map(|(kind, n)| format!("{kind}×{n}"))
            .collect();
        if kinds.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&kinds.join(" "))
        }
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What to do with one request.
enum Action {
    Forward,
    Answer {
        code: u16,
        retry_after: Option<u64>,
        body: Option<(String, String)>,
    },
    Hold,
    ForwardThenHold,
    Reset,
    Delay(Duration),
}

#[derive(Default)]
struct State {
    rule: Option<Rule>,
    /// Matching requests let through because of `skip`, under this rule.
    skipped: u32,
    /// Matching requests faulted under this rule.
    hits: u32,
    requests: u64,
    /// When the matching requests of the last second were forwarded
    /// ([`Fault::OverRate`]).
    forwarded: std::collections::VecDeque<std::time::Instant>,
    injected: Injected,
    accepting: Option<AbortHandle>,
    connections: Vec<AbortHandle>,
}

struct Shared {
    addr: SocketAddr,
    /// `host:port` of the upstream, for connecting and the Host header.
    upstream_authority: String,
    upstream_host: String,
    tls_server: Option<TlsAcceptor>,
    tls_client: Option<TlsConnector>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the request and decides its fate under the current rule.
    fn decide(&self, method: &Method, path: &str) -> Action {
        let mut state = self.state();
        state.requests += 1;
        let Some(rule) = state.rule.clone() else {
            return Action::Forward;
        };
        if !rule.matches(method, path) {
            return Action::Forward;
        }
        if state.skipped < rule.skip {
            state.skipped += 1;
            return Action::Forward;
        }
        if rule.times.is_some_and(|t| state.hits >= t) {
            return Action::Forward;
        }
        if let Fault::OverRate { per_second, .. } = rule.fault {
            if state.within_rate(per_second) {
                return Action::Forward;
            }
        }
        state.hits += 1;
        let injected = &mut state.injected;
        match rule.fault {
            Fault::Status { code, retry_after } => {
                *injected.status.entry(code).or_default() += 1;
                Action::Answer {
                    code,
                    retry_after,
                    body: rule.body,
                }
            }
            Fault::Timeout => {
                injected.timeouts += 1;
                Action::Hold
            }
            Fault::LoseAnswer => {
                injected.lost_answers += 1;
                Action::ForwardThenHold
            }
            Fault::Reset => {
                injected.resets += 1;
                Action::Reset
            }
            Fault::Slow(delay) => {
                injected.slow += 1;
                Action::Delay(delay)
            }
            Fault::OverRate { code, .. } => {
                *injected.status.entry(code).or_default() += 1;
                Action::Answer {
                    code,
                    retry_after: None,
                    body: rule.body,
                }
            }
            // Refuse acts on the listener, never on a request.
            Fault::Refuse => Action::Forward,
        }
    }
}

impl State {
    /// Whether one more request fits in `per_second` (a sliding second);
    /// if it does, it is counted.
    fn within_rate(&mut self, per_second: u32) -> bool {
        let now = std::time::Instant::now();
        while self
            .forwarded
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
        {
            self.forwarded.pop_front();
        }
        if self.forwarded.len() >= per_second as usize {
            return false;
        }
        self.forwarded.push_back(now);
        true
    }
}

/// One proxy in front of one upstream; stops (and closes every
/// connection) when dropped.
pub struct FaultProxy {
    shared: Arc<Shared>,
    url: String,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if let Some(task) = state.accepting.take() {
            task.abort();
        }
        for task in state.connections.drain(..) {
            task.abort();
        }
    }
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream`.
    /// Panics if the upstream's URL or TLS material is unusable.
    pub async fn start(upstream: Upstream) -> FaultProxy {
        let uri: Uri = upstream
            .url()
            .parse()
            .unwrap_or_else(|e| panic!("fault_proxy: bad upstream URL {}: {e}", upstream.url()));
        let authority = uri
            .authority()
            .unwrap_or_else(|| panic!("fault_proxy: no host:port in {}", upstream.url()))
            .to_string();
        let host = uri.host().unwrap_or("127.0.0.1").to_owned();
        let (tls_server, tls_client, scheme) = match &upstream {
            Upstream::Http { .. } => (None, None, "http"),
            Upstream::Https {
                ca_pem,
                cert_pem,
                key_pem,
                ..
            } => (
                Some(tls_acceptor(cert_pem, key_pem)),
                Some(tls_connector(ca_pem)),
                "https",
            ),
        };
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("fault_proxy: bound address");
        let shared = Arc::new(Shared {
            addr,
            upstream_authority: authority,
            upstream_host: host,
            tls_server,
            tls_client,
            state: Mutex::new(State::default()),
        });
        let accepting = tokio::spawn(accept_forever(shared.clone(), listener)).abort_handle();
        shared.state().accepting = Some(accepting);
        FaultProxy {
            shared,
            url: format!("{scheme}://{addr}"),
        }
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// Replaces the current rule (counting `skip` and `times` afresh).
    /// Must be called inside a Tokio runtime.
    pub fn set(&self, rule: impl Into<Rule>) {
        let rule = rule.into();
        if rule.fault == Fault::Refuse {
            self.refuse();
        } else {
            self.reopen();
        }
        let mut state = self.shared.state();
        state.rule = Some(rule);
        state.skipped = 0;
        state.hits = 0;
    }

    /// Forwards everything again (and accepts again after a refusal).
    /// Requests already held by a [`Fault::Timeout`] stay unanswered.
    pub fn clear(&self) {
        self.reopen();
        let mut state = self.shared.state();
        state.rule = None;
        state.skipped = 0;
        state.hits = 0;
    }

    /// Requests received since the start (faulted or not).
    pub fn requests(&self) -> u64 {
        self.shared.state().requests
    }

    /// Faults injected since the start.
    pub fn faults_injected(&self) -> u64 {
        self.shared.state().injected.total()
    }

    /// Faults injected since the start, by kind.
    pub fn injected(&self) -> Injected {
        self.shared.state().injected.clone()
    }

    fn refuse(&self) {
        let mut state = self.shared.state();
        let Some(accepting) = state.accepting.take() else {
            return;
        };
        // Aborting the accept loop drops the listener: the port is closed.
        accepting.abort();
        let open: Vec<AbortHandle> = state.connections.drain(..).collect();
        state.injected.refusals += 1;
        state.injected.connections_closed +=
            open.iter().filter(|c| !c.is_finished()).count() as u64;
        for connection in open {
            connection.abort();
        }
    }

    fn reopen(&self) {
        let mut state = self.shared.state();
        if state.accepting.is_some() {
            return;
        }
        let listener = bind(self.shared.addr);
        state.accepting =
            Some(tokio::spawn(accept_forever(self.shared.clone(), listener)).abort_handle());
    }
}

/// A listener with SO_REUSEADDR, so the same port can be bound again after
/// a refusal even with connections in TIME_WAIT.
fn bind(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("fault_proxy: socket");
    socket
        .set_reuseaddr(true)
        .expect("fault_proxy: SO_REUSEADDR");
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("fault_proxy: bind {addr}: {e}"));
    socket
        .listen(128)
        .unwrap_or_else(|e| panic!("fault_proxy: listen on {addr}: {e}"))
}

fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .expect("fault_proxy: serving certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem).expect("fault_proxy: serving key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("fault_proxy: TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("fault_proxy: serving certificate and key");
    // HTTP/1.1 only: this proxy speaks nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

fn tls_connector(ca_pem: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.expect("fault_proxy: CA PEM"))
            .expect("fault_proxy: CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("fault_proxy: TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn accept_forever(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let task = tokio::spawn(serve_connection(shared.clone(), tcp)).abort_handle();
        let mut state = shared.state();
        state.connections.retain(|c| !c.is_finished());
        state.connections.push(task);
    }
}

async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    // A second handle on the same socket: after a Reset it sets SO_LINGER
    // to zero and is closed last, so the kernel sends RST instead of FIN.
    let Some((tcp, second)) = duplicate(tcp) else {
        return;
    };
    let reset = Arc::new(Notify::new());
    let upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>> = Arc::default();
    let service = {
        let (shared, reset) = (shared.clone(), reset.clone());
        service_fn(move |request| handle(shared.clone(), upstream.clone(), reset.clone(), request))
    };
    let was_reset = match &shared.tls_server {
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) => run(TokioIo::new(tls), service, &reset).await,
            Err(_) => false,
        },
        None => run(TokioIo::new(tcp), service, &reset).await,
    };
    if was_reset {
        let _ = second.set_zero_linger();
    }
    drop(second);
}

fn duplicate(tcp: TcpStream) -> Option<(TcpStream, TcpStream)> {
    let std = tcp.into_std().ok()?;
    let copy = std.try_clone().ok()?;
    copy.set_nonblocking(true).ok()?;
    Some((
        TcpStream::from_std(std).ok()?,
        TcpStream::from_std(copy).ok()?,
    ))
}

/// Serves HTTP/1.1 on `io` until the client leaves or a Reset is asked
/// for; returns whether it was a Reset. Dropping the connection closes `io`.
async fn run<I, S>(io: I, service: S, reset: &Notify) -> bool
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
        Request<Incoming>,
        Response = Response<ProxyBody>,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        _ = connection => false,
        () = reset.notified() => true,
    }
}

async fn handle(
    shared: Arc<Shared>,
    upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>>,
    reset: Arc<Notify>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match shared.decide(request.method(), &path) {
        Action::Forward => Ok(forward(&shared, &upstream, request).await),
        Action::Delay(delay) => {
            tokio::time::sleep(delay).await;
            Ok(forward(&shared, &upstream, request).await)
        }
        Action::Answer {
            code,
            retry_after,
            body,
        } => {
            drain(request).await;
            Ok(answer(code, retry_after, body))
        }
        Action::Hold => {
            drain(request).await;
            std::future::pending().await
        }
        Action::ForwardThenHold => {
            // The upstream has acted once its answer starts; read it all,
            // as a client would, and never pass it on.
            let answer = forward(&shared, &upstream, request).await;
            let _ = answer.into_body().collect().await;
            std::future::pending().await
        }
        Action::Reset => {
            drain(request).await;
            reset.notify_one();
            std::future::pending().await
        }
    }
}

/// Reads the whole request, as a server that acts on it would.
async fn drain(request: Request<Incoming>) {
    let _ = request.into_body().collect().await;
}

fn full(content_type: &str, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn answer(
    code: u16,
    retry_after: Option<u64>,
    body: Option<(String, String)>,
) -> Response<ProxyBody> {
    let (content_type, text) = body.unwrap_or_else(|| {
        (
            "text/plain".to_owned(),
            format!("fault proxy: injected HTTP {code}"),
        )
    });
    let mut response = full(&content_type, text);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn bad_gateway(why: String) -> Response<ProxyBody> {
    let mut response = full("text/plain", format!("fault proxy: upstream: {why}"));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

async fn forward(
    shared: &Shared,
    upstream: &tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = request.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"));
    if let Ok(host) = HeaderValue::from_str(&shared.upstream_authority) {
        parts.headers.insert(HOST, host);
    }
    let request = Request::from_parts(parts, body);
    let mut sender = upstream.lock().await;
    let usable = match sender.as_mut() {
        Some(s) => s.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        match connect(shared).await {
            Ok(s) => *sender = Some(s),
            Err(why) => return bad_gateway(why),
        }
    }
    let Some(s) = sender.as_mut() else {
        return bad_gateway("no connection".into());
    };
    match s.send_request(request).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(e) => bad_gateway(e.to_string()),
    }
}

/// A new HTTP/1.1 connection to the upstream (TLS when it is HTTPS).
async fn connect(shared: &Shared) -> Result<SendRequest<Incoming>, String> {
    let tcp = TcpStream::connect(&shared.upstream_authority)
        .await
        .map_err(|e| format!("connect {}: {e}", shared.upstream_authority))?;
    let _ = tcp.set_nodelay(true);
    match &shared.tls_client {
        Some(connector) => {
            let name = ServerName::try_from(shared.upstream_host.clone())
                .map_err(|e| format!("server name {}: {e}", shared.upstream_host))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS to {}: {e}", shared.upstream_authority))?;
            handshake(TokioIo::new(tls)).await
        }
        None => handshake(TokioIo::new(tcp)).await,
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // Ends when the sender is dropped (its downstream connection closed)
    // or the upstream closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
