//! Sending one Graph call under the retry policy: token, `client-request-id`, timeouts, the
//! presence rate limit, `Retry-After`, backoff, fresh connections and the run deadline.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::GraphError;
use super::rate_limit::RateLimiter;
use super::retry::{RetryPolicy, Verdict, parse_retry_after};
use super::token::TokenSource;
use crate::config::GraphTuning;
use crate::run::{RunContext, RunMetrics};
use crate::spans;

/// One logical Graph call (retries included).
pub struct Call<'a> {
    pub operation: &'static str,
    pub method: Method,
    pub url: &'a str,
    pub body: Option<Bytes>,
    /// Every attempt takes a slot from this limiter first.
    pub limiter: Option<&'a RateLimiter>,
}

pub struct Sender {
    /// Reuses connections: the normal path.
    pooled: reqwest::Client,
    /// Keeps no idle connections, so every request opens a new one: after a 5xx or a timeout,
    /// Graph's guidance is to retry over a new connection.
    fresh: reqwest::Client,
    tokens: TokenSource,
    policy: RetryPolicy,
}

/// Why an attempt failed, for the next step of the loop.
enum Attempt {
    Done(Bytes),
    Retry { wait: Duration, fresh_connection: bool, throttled: bool },
}

impl Sender {
    pub fn new(tuning: &GraphTuning, tokens: TokenSource) -> Result<Self, GraphError> {
        let build = |idle: usize| {
            reqwest::Client::builder()
                .connect_timeout(tuning.connect_timeout)
                .timeout(tuning.request_timeout)
                .pool_max_idle_per_host(idle)
                .user_agent(concat!("teams-presence/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| GraphError::Call { operation: "HTTP client setup".into(), message: e.to_string() })
        };
        Ok(Self { pooled: build(usize::MAX)?, fresh: build(0)?, tokens, policy: RetryPolicy::new(tuning) })
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Sends `call` until it succeeds, fails for good, or would pass the run's deadline.
    pub async fn send(&self, call: &Call<'_>, run: &RunContext) -> Result<Bytes, GraphError> {
        let metrics = &run.metrics;
        let mut attempt = 0u32;
        let mut refreshed_token = false;
        let mut fresh_connection = false;
        loop {
            attempt += 1;
            if let Some(limiter) = call.limiter {
                let waited = limiter.acquire(run.deadline).await.map_err(|_| deadline(call))?;
                RunMetrics::add(&metrics.throttle_wait_ms, waited.as_millis() as u64);
            }
            if Instant::now() >= run.deadline {
                return Err(deadline(call));
            }
            let bearer = self.tokens.bearer().await?;
            // One dependency row per HTTP attempt: a 429 and its retry are two rows.
            let span = spans::graph_call(call.method.as_str(), call.url, attempt);
            let exchange = self.attempt(call, run, &bearer, fresh_connection, attempt, &span);
            let step = match exchange.instrument(span.clone()).await? {
                Err(Unauthorized) if !refreshed_token => {
                    // An expired or revoked token: one refresh, and that retry is free.
                    refreshed_token = true;
                    attempt -= 1;
                    self.tokens.invalidate(&bearer).await;
                    continue;
                }
                Err(Unauthorized) => {
                    return Err(GraphError::Status {
                        operation: call.operation.into(),
                        status: 401,
                        code: "InvalidAuthenticationToken".into(),
                        request_id: String::new(),
                        message: "Graph refused a freshly fetched token".into(),
                    });
                }
                Ok(step) => step,
            };
            match step {
                Attempt::Done(body) => return Ok(body),
                Attempt::Retry { wait, fresh_connection: fresh, throttled } => {
                    if throttled {
                        RunMetrics::add(&metrics.throttled, 1);
                    }
                    if Instant::now() + wait >= run.deadline {
                        return Err(deadline(call));
                    }
                    tokio::time::sleep(wait).await;
                    if throttled {
                        RunMetrics::add(&metrics.throttle_wait_ms, wait.as_millis() as u64);
                    }
                    RunMetrics::add(&metrics.retries, 1);
                    fresh_connection = fresh;
                }
            }
        }
    }

    /// One HTTP exchange. `Ok(Err(Unauthorized))` asks the loop for a token refresh; a final
    /// failure is `Err`.
    async fn attempt(
        &self,
        call: &Call<'_>,
        run: &RunContext,
        bearer: &HeaderValue,
        fresh_connection: bool,
        attempt: u32,
        span: &Span,
    ) -> Result<Result<Attempt, Unauthorized>, GraphError> {
        let client_request_id = Uuid::new_v4();
        let client = if fresh_connection { &self.fresh } else { &self.pooled };
        let mut request = client
            .request(call.method.clone(), call.url)
            .header(AUTHORIZATION, bearer.clone())
            .header("client-request-id", client_request_id.to_string());
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        let last_attempt = attempt >= self.policy.max_attempts;
        let (status, headers, body) = match tokio::time::timeout_at(run.deadline, exchange).await {
            Err(_) => {
                let error = deadline(call);
                spans::record_failure(span, &error);
                return Err(error);
            }
            Ok(Err(e)) => {
                // Transport failure or timeout: the message names the host and path, never a header.
                let message = e.without_url().to_string();
                spans::record_failure(span, &message);
                tracing::warn!(operation = call.operation, %client_request_id, attempt, error = %message, "Graph call failed");
                if last_attempt {
                    return Err(GraphError::Call { operation: call.operation.into(), message });
                }
                let wait = self.policy.backoff(attempt);
                return Ok(Ok(Attempt::Retry { wait, fresh_connection: true, throttled: false }));
            }
            Ok(Ok(exchange)) => exchange,
        };
        spans::record_http_status(span, status.as_u16());
        let verdict = RetryPolicy::verdict(status.as_u16());
        if verdict == Verdict::Success {
            return Ok(Ok(Attempt::Done(body)));
        }
        let request_id = header_text(&headers, "request-id");
        spans::record_request_id(span, &request_id);
        let code = error_code(&body);
        if verdict == Verdict::Unauthorized {
            tracing::warn!(operation = call.operation, %client_request_id, request_id, code, "Graph refused the token");
            return Ok(Err(Unauthorized));
        }
        let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
        let failure = || GraphError::Status {
            operation: call.operation.into(),
            status: status.as_u16(),
            code: code.clone(),
            request_id: request_id.clone(),
            message: format!("after {attempt} attempt(s)"),
        };
        let wait = match verdict {
            Verdict::Throttled => retry_after
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
                .unwrap_or_else(|| self.policy.backoff(attempt)),
            Verdict::ServerError => self.policy.backoff(attempt),
            _ => {
                if status != StatusCode::NOT_FOUND {
                    tracing::warn!(operation = call.operation, status = status.as_u16(), code, request_id, %client_request_id, "Graph call failed");
                }
                return Err(failure());
            }
        };
        let throttled = status == StatusCode::TOO_MANY_REQUESTS;
        if throttled {
            spans::record_retry_after(span, wait);
            tracing::info!(operation = call.operation, retry_after, wait_ms = wait.as_millis() as u64, request_id, %client_request_id, attempt, "Graph throttled the call");
        } else {
            let message =
                if last_attempt { "Graph call failed; no attempts left" } else { "Graph call failed; retrying" };
            tracing::warn!(operation = call.operation, status = status.as_u16(), code, retry_after, request_id, %client_request_id, attempt, "{message}");
        }
        if last_attempt {
            return Err(failure());
        }
        // A 429 is the service pacing us, not a broken connection; anything else gets a new one.
        Ok(Ok(Attempt::Retry { wait, fresh_connection: !throttled, throttled }))
    }
}

struct Unauthorized;

fn deadline(call: &Call<'_>) -> GraphError {
    GraphError::Deadline { operation: call.operation.into() }
}

fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// Graph's `error.code`, the only part of an error body code should rely on.
fn error_code(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: String,
    }
    serde_json::from_slice::<Body>(body).map(|b| b.error.code).unwrap_or_default()
}
