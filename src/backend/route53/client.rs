//! The SDK client: TLS, timeouts and retries for a chat bot (short, bounded),
//! and a counter of every API request it transmits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::config::timeout::TimeoutConfig;
use aws_sdk_route53::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_route53::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_route53::Client;

use super::{Route53, Route53Error};

const SDK_MAX_ATTEMPTS: u32 = 3;

/// API requests made by one [`Route53`], by operation. Every HTTP attempt
/// counts, SDK retries included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiCalls {
    pub list_record_sets: u64,
    pub change_record_sets: u64,
    pub get_change: u64,
    /// Anything else (zone management in tests, ...).
    pub other: u64,
}

impl ApiCalls {
    pub fn total(&self) -> u64 {
        self.list_record_sets + self.change_record_sets + self.get_change + self.other
    }

    /// The calls made since `earlier` was taken.
    pub fn since(&self, earlier: &ApiCalls) -> ApiCalls {
        ApiCalls {
            list_record_sets: self.list_record_sets - earlier.list_record_sets,
            change_record_sets: self.change_record_sets - earlier.change_record_sets,
            get_change: self.get_change - earlier.get_change,
            other: self.other - earlier.other,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    total: AtomicU64,
    list: AtomicU64,
    change: AtomicU64,
    get_change: AtomicU64,
    other: AtomicU64,
}

impl Counters {
    fn record(&self, method: &str, uri: &str) {
        self.total.fetch_add(1, Ordering::SeqCst);
        let path = uri.split('?').next().unwrap_or(uri);
        let counter = if path.contains("/rrset") && method.eq_ignore_ascii_case("GET") {
            &self.list
        } else if path.contains("/rrset") && method.eq_ignore_ascii_case("POST") {
            &self.change
        } else if path.contains("/change/") && method.eq_ignore_ascii_case("GET") {
            &self.get_change
        } else {
            &self.other
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts every request the SDK transmits (retries included).
#[derive(Debug)]
struct CountCalls(Arc<Counters>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "failover-bot-route53-call-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        self.0.record(request.method(), request.uri());
        Ok(())
    }
}

fn http_client() -> aws_sdk_route53::config::SharedHttpClient {
    // rustls with ring, like kube and slack-morphism: the SDK's default
    // (aws-lc-rs) would add a second rustls crypto provider to the process.
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(8))
        .operation_timeout(Duration::from_secs(20))
        .build()
}

fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(2))
}

impl Route53 {
    /// The standard credential/region chain (region defaults to us-east-1,
    /// Route53 being global); `AWS_ENDPOINT_URL_ROUTE_53` / `AWS_ENDPOINT_URL`
    /// are honoured.
    pub async fn from_env() -> Route53 {
        let mut shared = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .timeout_config(timeouts())
            .retry_config(retries())
            .load()
            .await;
        if shared.region().is_none() {
            shared = shared
                .into_builder()
                .region(Region::new("us-east-1"))
                .build();
        }
        Self::from_sdk_config(&shared)
    }

    /// A fixed endpoint (moto, a proxy) with region us-east-1 and static
    /// test credentials.
    pub async fn for_endpoint(endpoint: &str) -> Route53 {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "failover-bot-test",
                "failover-bot-test",
                None,
                None,
                "failover-bot-static",
            ))
            .endpoint_url(endpoint)
            .http_client(http_client())
            .timeout_config(timeouts())
            .retry_config(retries())
            .load()
            .await;
        Self::from_sdk_config(&shared)
    }

    fn from_sdk_config(shared: &aws_config::SdkConfig) -> Route53 {
        let calls = Arc::new(Counters::default());
        let config = aws_sdk_route53::config::Builder::from(shared)
            .interceptor(CountCalls(calls.clone()))
            .build();
        Route53 {
            client: Client::from_conf(config),
            calls,
            page_size: None,
            insync_timeout: Duration::from_secs(180),
        }
    }

    /// Asks for `MaxItems` record sets per page (default: the server's, 300).
    pub fn with_page_size(mut self, page_size: i32) -> Route53 {
        self.page_size = Some(page_size.max(1));
        self
    }

    /// How long [`Route53::write_weights`] waits for `INSYNC` (default 180 s).
    pub fn with_insync_timeout(mut self, timeout: Duration) -> Route53 {
        self.insync_timeout = timeout;
        self
    }

    /// The underlying SDK client (its calls are counted too).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every API request made so far.
    pub fn api_calls(&self) -> u64 {
        self.calls.total.load(Ordering::SeqCst)
    }

    /// Every API request made so far, by operation.
    pub fn api_calls_by_operation(&self) -> ApiCalls {
        ApiCalls {
            list_record_sets: self.calls.list.load(Ordering::SeqCst),
            change_record_sets: self.calls.change.load(Ordering::SeqCst),
            get_change: self.calls.get_change.load(Ordering::SeqCst),
            other: self.calls.other.load(Ordering::SeqCst),
        }
    }
}

pub(super) fn is_throttling<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| {
            matches!(
                code,
                "Throttling" | "ThrottlingException" | "PriorRequestNotComplete"
            )
        })
}

/// A short, secret-free description of an SDK error.
pub(super) fn api_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> Route53Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const LIMIT: usize = 300;
    let short = |mut s: String| {
        if s.len() > LIMIT {
            let mut cut = LIMIT;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    };
    match &err {
        SdkError::TimeoutError(_) => {
            Route53Error::Timeout(format!("{operation}: no answer in time"))
        }
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            Route53Error::Timeout(format!("{operation}: connection timed out"))
        }
        SdkError::DispatchFailure(f) => Route53Error::Api(short(format!(
            "{operation}: cannot reach Route53 ({})",
            f.as_connector_error()
                .map(|c| DisplayErrorContext(c).to_string())
                .unwrap_or_else(|| "dispatch failure".into())
        ))),
        SdkError::ServiceError(s) => {
            let e = s.err();
            // A proxy or load balancer in the way answers without AWS's
            // error body: then the status is all there is to go on.
            let details = match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!(", {code}: {message}"),
                (Some(text), None) | (None, Some(text)) => format!(", {text}"),
                (None, None) => String::new(),
            };
            let status = s.raw().status().as_u16();
            Route53Error::Api(short(format!("{operation}: HTTP {status}{details}")))
        }
        _ => Route53Error::Api(short(format!("{operation}: {}", DisplayErrorContext(&err)))),
    }
}

/// Up to `max`, from a cheap hash of the clock and the attempt (no RNG
/// dependency; it only needs to spread concurrent retries).
pub(super) fn jitter(attempt: u32, max: Duration) -> Duration {
    let max_nanos = max.as_nanos() as u64;
    if max_nanos == 0 {
        return Duration::ZERO;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = now ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    Duration::from_nanos(x % (max_nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds() {
        for a in 0..100 {
            assert!(jitter(a, Duration::from_millis(10)) <= Duration::from_millis(10));
        }
        assert_eq!(jitter(1, Duration::ZERO), Duration::ZERO);
    }
}
