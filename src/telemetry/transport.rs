//! The exporter's HTTP client: posts the envelopes it builds to the ingestion endpoint of the
//! connection string, with an Entra bearer token when the authentication string asks for one.
//!
//! `opentelemetry-application-insights` builds and gzips the envelopes and decides what to retry;
//! where they go is ours to decide. It would post to `<endpoint>/v2/track` and upgrade `http` to
//! `https`, but Entra-authenticated ingestion is only accepted on `/v2.1/track` (the path the
//! Microsoft SDKs use for everything) and tests need a plain-http loopback endpoint, so the URL
//! comes from [`ExportSettings::track_url`](super::settings::ExportSettings) instead.
//!
//! Uploads run on a small runtime of their own: the SDK's batch processor and periodic reader
//! export from their own threads with a blocking executor, which cannot drive reqwest or the
//! token credential, and the app's runtime may be busy or already gone at shutdown.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use bytes::Bytes;
use http::{Request, Response};
use opentelemetry_http::{HttpClient, HttpError};
use url::Url;

/// Target of the transport's own log lines, which are never exported (no telemetry about
/// telemetry, and no loop when ingestion is down).
pub const UPLOAD_LOG_TARGET: &str = "teams_presence::telemetry::upload";

/// One POST may not hold the export thread longer than this; the exporter retries after it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot start the telemetry upload runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot build the telemetry HTTP client: {0}")]
    Client(String),
}

/// An Entra token source for one scope.
#[derive(Clone)]
pub struct EntraToken {
    pub credential: Arc<dyn TokenCredential>,
    pub scope: String,
}

/// The runtime that drives uploads; shut down in the background when the last handle goes,
/// which is allowed even from inside another runtime (a plain drop would panic there).
pub struct UploadRuntime(Option<tokio::runtime::Runtime>);

impl UploadRuntime {
    pub fn start() -> Result<Self, TransportError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("telemetry-upload")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(TransportError::Runtime)
    }

    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for UploadRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Clone)]
pub struct IngestionClient {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Handle,
}

struct Inner {
    http: reqwest::Client,
    track_url: Url,
    token: Option<EntraToken>,
    /// Whether the last upload failed, so that an outage is logged once, not on every retry.
    failing: AtomicBool,
}

impl fmt::Debug for IngestionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestionClient")
            .field("track_url", &self.inner.track_url.as_str())
            .field("entra", &self.inner.token.as_ref().map(|t| &t.scope))
            .finish()
    }
}

impl IngestionClient {
    pub fn new(runtime: &UploadRuntime, track_url: Url, token: Option<EntraToken>) -> Result<Self, TransportError> {
        let runtime = runtime.handle().ok_or_else(|| TransportError::Client("upload runtime is gone".into()))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| TransportError::Client(e.to_string()))?;
        Ok(Self { inner: Arc::new(Inner { http, track_url, token, failing: AtomicBool::new(false) }), runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for IngestionClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        let (parts, body) = request.into_parts();
        let result = self
            .runtime
            .spawn(async move { inner.post(parts.headers, body).await })
            .await
            .map_err(|e| UploadError::Task(e.to_string()))
            .and_then(|r| r);
        self.inner.note(&result);
        result.map_err(Into::into)
    }
}

#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("could not get an Entra token for {scope}: {message}")]
    Token { scope: String, message: String },
    #[error("POST {url} failed: {message}")]
    Send { url: String, message: String },
    #[error("the upload task stopped: {0}")]
    Task(String),
}

impl Inner {
    async fn post(&self, headers: http::HeaderMap, body: Bytes) -> Result<Response<Bytes>, UploadError> {
        // The exporter's headers (content type and gzip encoding) are kept; the URL is ours.
        let mut request = self.http.post(self.track_url.clone()).headers(headers).body(body);
        if let Some(token) = &self.token {
            let access = token
                .credential
                .get_token(&[token.scope.as_str()], None)
                .await
                .map_err(|e| UploadError::Token { scope: token.scope.clone(), message: e.to_string() })?;
            request = request.bearer_auth(access.token.secret());
        }
        let send_error =
            |e: reqwest::Error| UploadError::Send { url: self.track_url.to_string(), message: e.to_string() };
        let response = request.send().await.map_err(send_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(send_error)?;
        let mut out = Response::new(body);
        *out.status_mut() = status;
        Ok(out)
    }

    fn note(&self, result: &Result<Response<Bytes>, UploadError>) {
        let problem = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!(
                "ingestion answered {} {}",
                response.status(),
                String::from_utf8_lossy(&response.body()[..response.body().len().min(300)])
            )),
            Err(e) => Some(e.to_string()),
        };
        match problem {
            Some(problem) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(target: UPLOAD_LOG_TARGET, url = %self.track_url, %problem,
                    "telemetry upload failing; App Insights data is delayed or lost until it recovers");
            }
            None if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::warn!(target: UPLOAD_LOG_TARGET, url = %self.track_url, "telemetry upload recovered");
            }
            _ => {}
        }
    }
}
