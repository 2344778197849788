//! A small client for Prometheus's instant-query API (`/api/v1/query`),
//! also spoken by Thanos, Mimir, Cortex and VictoriaMetrics.
//!
//! Short timeouts on purpose: a gate is asked while someone waits for a plan,
//! and an unreachable Prometheus is an error the channel hears about, never
//! a pass.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::gates::PrometheusConfig;

/// Connecting may take at most this long (or the query timeout, if shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Answers larger than this are refused: a gate needs a few numbers, and a
/// query that returns megabytes is a mistake (a missing `sum`).
const MAX_BODY_BYTES: usize = 4 << 20;

/// One series of an instant vector, or a scalar (no labels).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What an instant query returned.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryValue {
    Vector(Vec<Sample>),
    Scalar(f64),
}

impl QueryValue {
    /// Every value as a sample (a scalar is one sample without labels).
    pub fn into_samples(self) -> Vec<Sample> {
        match self {
            QueryValue::Vector(samples) => samples,
            QueryValue::Scalar(value) => vec![Sample {
                labels: BTreeMap::new(),
                value,
            }],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("environment variable {variable} (prometheus.bearer_token_env) is not set")]
    MissingToken { variable: String },
    #[error("cannot set up a client for Prometheus at {url}: {reason}")]
    Setup { url: String, reason: String },
    #[error("Prometheus at {url} did not answer within {}s", timeout.as_secs_f64())]
    Timeout { url: String, timeout: Duration },
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus refused the query ({error_type}): {message}")]
    Rejected { error_type: String, message: String },
    #[error("Prometheus at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the query returns a {result_type}; a gate needs an instant vector or a scalar")]
    WrongType { result_type: String },
    #[error("cannot read Prometheus's answer: {reason}")]
    Malformed { reason: String },
}

/// Queries one Prometheus.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    http: reqwest::Client,
    /// `{url}/api/v1/query`
    endpoint: reqwest::Url,
    timeout: Duration,
}

impl PrometheusClient {
    /// A client for `config`; reads the bearer token from its variable now,
    /// so a missing one is found at start, not during a failover.
    pub fn new(config: &PrometheusConfig) -> Result<Self, QueryError> {
        let setup = |reason: String| QueryError::Setup {
            url: config.url.clone(),
            reason,
        };
        let endpoint = query_endpoint(&config.url).map_err(setup)?;
        let headers = request_headers(config, |variable| std::env::var(variable).ok())?;
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.timeout.min(CONNECT_TIMEOUT))
            .timeout(config.timeout)
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            timeout: config.timeout,
        })
    }

    /// The URL queries go to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// Evaluates `promql` at the current time. A query only reads, so one
    /// that could not be delivered is sent once more: a pooled connection
    /// that Prometheus closed (a restart) is not an outage.
    pub async fn query(&self, promql: &str) -> Result<QueryValue, QueryError> {
        match self.query_once(promql).await {
            Err(QueryError::Unreachable { .. }) => self.query_once(promql).await,
            answer => answer,
        }
    }

    async fn query_once(&self, promql: &str) -> Result<QueryValue, QueryError> {
        // POST: a long query does not hit URL length limits. Prometheus's
        // own `timeout` stops the evaluation when we stop waiting.
        let timeout = format!("{}ms", self.timeout.as_millis());
        let response = self
            .http
            .post(self.endpoint.clone())
            .form(&[("query", promql), ("timeout", timeout.as_str())])
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = self.read_body(response).await?;
        parse_answer(status.as_u16(), &body).map_err(|error| match error {
            // Not Prometheus's JSON at all: the status says more.
            QueryError::Malformed { .. } if !status.is_success() => QueryError::Status {
                url: self.endpoint.to_string(),
                status: status.as_u16(),
            },
            other => other,
        })
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, QueryError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(QueryError::Malformed {
                    reason: format!(
                        "the answer is larger than {} MiB; aggregate the query (sum, max)",
                        MAX_BODY_BYTES >> 20
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, error: &reqwest::Error) -> QueryError {
        let url = self.endpoint.to_string();
        if error.is_timeout() {
            return QueryError::Timeout {
                url,
                timeout: self.timeout,
            };
        }
        QueryError::Unreachable {
            url,
            reason: root_cause(error),
        }
    }
}

fn query_endpoint(base: &str) -> Result<reqwest::Url, String> {
    let joined = format!("{}/api/v1/query", base.trim_end_matches('/'));
    reqwest::Url::parse(&joined).map_err(|e| format!("not a URL: {e}"))
}

/// The configured headers, and the bearer token from `lookup(variable)`.
fn request_headers(
    config: &PrometheusConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<reqwest::header::HeaderMap, QueryError> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
    let setup = |reason: String| QueryError::Setup {
        url: config.url.clone(),
        reason,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| setup(format!("`{name}` is not a header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| setup(format!("the value of header {name} is not valid")))?;
        headers.insert(name, value);
    }
    if let Some(variable) = &config.bearer_token_env {
        let token = lookup(variable)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| QueryError::MissingToken {
                variable: variable.clone(),
            })?;
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                setup(format!(
                    "the token in {variable} is not a valid header value"
                ))
            })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}

/// The innermost error's text: "connection refused" rather than
/// "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// Prometheus's JSON envelope (success and error share it).
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Parses an answer body; `status` is the HTTP status, for the error text.
fn parse_answer(status: u16, body: &[u8]) -> Result<QueryValue, QueryError> {
    let malformed = |reason: String| QueryError::Malformed { reason };
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not Prometheus JSON (HTTP {status}): {e}")))?;
    if answer.status != "success" {
        return Err(QueryError::Rejected {
            error_type: answer.error_type.unwrap_or_else(|| "unknown".into()),
            message: answer.error.unwrap_or_else(|| format!("HTTP {status}")),
        });
    }
    let data: Data = answer
        .data
        .ok_or_else(|| malformed("success without data".into()))
        .and_then(|d| serde_json::from_value(d).map_err(|e| malformed(e.to_string())))?;
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<VectorSample> =
                serde_json::from_value(data.result).map_err(|e| malformed(e.to_string()))?;
            samples
                .into_iter()
                .map(|s| {
                    Ok(Sample {
                        labels: s.metric,
                        value: parse_value(&s.value.1)?,
                    })
                })
                .collect::<Result<_, _>>()
                .map(QueryValue::Vector)
        }
        "scalar" => {
            let (_, value): (f64, String) =
                serde_json::from_value(data.result).map_err(|e| malformed(e.to_string()))?;
            Ok(QueryValue::Scalar(parse_value(&value)?))
        }
        "matrix" => Err(QueryError::WrongType {
            result_type: "range vector (matrix)".into(),
        }),
        other => Err(QueryError::WrongType {
            result_type: other.into(),
        }),
    }
}

/// Prometheus writes values as strings: `"0.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`.
fn parse_value(text: &str) -> Result<f64, QueryError> {
    text.parse::<f64>().map_err(|_| QueryError::Malformed {
        reason: format!("`{text}` is not a number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_vector_with_labels() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","cluster":"a"},"value":[1700000000.1,"0.5"]},
            {"metric":{},"value":[1700000000.1,"+Inf"]}]}}"#;
        let QueryValue::Vector(samples) = parse_answer(200, body).unwrap() else {
            panic!("vector")
        };
        assert_eq!(samples[0].labels["cluster"], "a");
        assert_eq!(samples[0].value, 0.5);
        assert_eq!(samples[1].value, f64::INFINITY);
    }

    #[test]
    fn parses_scalars_and_special_values() {
        let body = br#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"NaN"]}}"#;
        let QueryValue::Scalar(value) = parse_answer(200, body).unwrap() else {
            panic!("scalar")
        };
        assert!(value.is_nan());
        assert_eq!(parse_value("-Inf").unwrap(), f64::NEG_INFINITY);
        assert!(parse_value("1,5").is_err());
    }

    #[test]
    fn refuses_matrices_strings_and_errors_with_their_reason() {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_answer(200, matrix),
            Err(QueryError::WrongType { .. })
        ));
        let string = br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert_eq!(
            parse_answer(200, string),
            Err(QueryError::WrongType {
                result_type: "string".into()
            })
        );
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse_answer(400, error),
            Err(QueryError::Rejected {
                error_type: "bad_data".into(),
                message: "parse error".into()
            })
        );
        assert!(matches!(
            parse_answer(502, b"<html>bad gateway</html>"),
            Err(QueryError::Malformed { .. })
        ));
    }

    fn config(bearer_token_env: Option<&str>) -> PrometheusConfig {
        PrometheusConfig {
            url: "http://prometheus:9090".into(),
            timeout: Duration::from_secs(5),
            headers: BTreeMap::from([("X-Scope-OrgID".to_owned(), "prod".to_owned())]),
            bearer_token_env: bearer_token_env.map(Into::into),
        }
    }

    #[test]
    fn headers_carry_the_tenant_and_the_token_from_its_variable() {
        let lookup = |v: &str| (v == "PROM_TOKEN").then(|| "s3cret\n".to_owned());
        let headers = request_headers(&config(Some("PROM_TOKEN")), lookup).unwrap();
        assert_eq!(headers["x-scope-orgid"], "prod");
        assert_eq!(headers["authorization"], "Bearer s3cret");
        assert!(
            headers["authorization"].is_sensitive(),
            "kept out of debug output"
        );
        assert_eq!(request_headers(&config(None), lookup).unwrap().len(), 1);
    }

    #[test]
    fn a_missing_token_is_found_when_the_client_is_made() {
        let error = request_headers(&config(Some("NOT_SET")), |_| None).unwrap_err();
        assert_eq!(
            error,
            QueryError::MissingToken {
                variable: "NOT_SET".into()
            }
        );
        assert!(PrometheusClient::new(&config(Some(
            "FAILOVER_BOT_TEST_VARIABLE_THAT_IS_NEVER_SET"
        )))
        .is_err());
    }

    #[test]
    fn the_endpoint_keeps_a_path_prefix() {
        assert_eq!(
            query_endpoint("https://mimir/prometheus/")
                .unwrap()
                .as_str(),
            "https://mimir/prometheus/api/v1/query"
        );
    }
}
