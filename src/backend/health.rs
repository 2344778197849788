//! The health gate: a cluster's `health_url` must answer 2xx before traffic
//! to it is raised. A few quick tries, each with a short timeout: a flaky
//! probe should not block a failover, a dead cluster must.

use std::time::Duration;

use crate::backend::{GateFailure, HealthFailure};

const TRIES: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(3);
const PAUSE: Duration = Duration::from_millis(300);

#[derive(Clone, Debug)]
pub struct HealthProbe {
    client: reqwest::Client,
}

impl Default for HealthProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthProbe {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { client }
    }

    /// Ok when `url` answers 2xx within [`TRIES`] tries; otherwise what the
    /// last try found.
    pub async fn check(&self, url: &str) -> Result<(), GateFailure> {
        let mut last = HealthFailure::Unreachable {
            url: url.to_owned(),
            tries: TRIES,
        };
        for attempt in 1..=TRIES {
            match self.client.get(url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    last = HealthFailure::Status {
                        url: url.to_owned(),
                        status: response.status().as_u16(),
                        tries: TRIES,
                    }
                }
                Err(error) if error.is_timeout() => {
                    last = HealthFailure::Timeout {
                        url: url.to_owned(),
                        seconds: TIMEOUT.as_secs(),
                        tries: TRIES,
                    }
                }
                Err(_) => {
                    last = HealthFailure::Unreachable {
                        url: url.to_owned(),
                        tries: TRIES,
                    }
                }
            }
            if attempt < TRIES {
                tokio::time::sleep(PAUSE).await;
            }
        }
        Err(GateFailure::Unhealthy { failure: last })
    }
}
