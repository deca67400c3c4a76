//! The Azure Functions custom-handler protocol: the HTTP server the Functions host starts.
//!
//! The host polls `GET /` until anything answers, then POSTs each timer invocation to
//! `/function-timer` (the function's folder name) and reads `{"Outputs","Logs","ReturnValue"}`
//! back. A non-2xx marks the invocation failed and the host drops the body, so failures are also
//! written to stderr, which the host forwards to Application Insights at Error level.

pub mod http_trigger;
pub mod invocation;
mod rights;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, OnceCell};
use tracing::{error, info, warn};

use crate::app;
use crate::config::{Config, ConfigError, RawSettings, StoreConfig};
use crate::cycle::PollCycle;
use crate::rights::Rights;
use crate::run::RunContext;
use crate::telemetry::{FailedStage, Telemetry};
use invocation::TimerInvocation;

/// The timer function's folder name, which is also its invocation path.
pub const TIMER_FUNCTION: &str = "function-timer";
/// The HTTP functions of a person's rights (folder names; the host protects them with keys).
pub const EXPORT_FUNCTION: &str = "function-export";
pub const ERASE_FUNCTION: &str = "function-erase";
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
/// Timer payloads are a few hundred bytes; anything near this is not from the host.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct AppState {
    config: Result<Arc<Config>, ConfigError>,
    /// What export and erasure need: only the store settings, so that they work even while the
    /// group list is misconfigured.
    store_config: Result<StoreConfig, ConfigError>,
    /// Built on the first invocation, so the listener opens before any slow initialisation.
    cycle: OnceCell<Arc<PollCycle>>,
    rights: OnceCell<Arc<Rights>>,
    /// Runs (and erasures) never overlap inside one process: the host's own lock does not cover
    /// manual runs or HTTP functions.
    run_lock: Mutex<()>,
    telemetry: Telemetry,
}

impl AppState {
    /// A bad configuration does not stop the server: the host would restart it in a loop and
    /// then shut down. Instead every invocation fails with the configuration error, which ops
    /// see on each failed run.
    pub fn new(settings: &RawSettings) -> Self {
        Self {
            config: Config::parse(settings).map(Arc::new),
            store_config: StoreConfig::parse(settings),
            cycle: OnceCell::new(),
            rights: OnceCell::new(),
            run_lock: Mutex::new(()),
            telemetry: Telemetry::disabled(),
        }
    }

    pub fn config_error(&self) -> Option<&ConfigError> {
        self.config.as_ref().err()
    }

    /// Exports each run's spans and figures and flushes them before the response goes back.
    pub fn with_telemetry(self, telemetry: Telemetry) -> Self {
        Self { telemetry, ..self }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(&format!("/{TIMER_FUNCTION}"), post(timer))
        .route(&format!("/{EXPORT_FUNCTION}"), post(rights::export))
        .route(&format!("/{ERASE_FUNCTION}"), post(rights::erase))
        .fallback(unknown_function)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` completes, then lets the in-flight run finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// The host's response shape for a function invocation.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InvokeResponse {
    outputs: Value,
    logs: Vec<String>,
    return_value: Value,
}

fn invoke_ok(logs: Vec<String>) -> Response {
    (StatusCode::OK, axum::Json(InvokeResponse { outputs: json!({}), logs, return_value: Value::Null })).into_response()
}

/// Error responses carry the message for people and tools calling the handler directly; the host
/// itself discards the body of a non-2xx response.
fn invoke_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The host's invocation id, or a generated one for a caller that is not the host.
fn invocation_id(headers: &HeaderMap) -> String {
    headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| format!("local-{}", uuid::Uuid::new_v4()), str::to_string)
}

async fn timer(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let invocation_id = invocation_id(&headers);
    let telemetry = state.telemetry.clone();
    let work = run_timer(state, invocation_id.clone(), body);
    telemetry.invocation(&invocation_id, work).await
}

async fn run_timer(state: Arc<AppState>, invocation_id: String, body: Bytes) -> Response {
    let started = tokio::time::Instant::now();
    let invocation = match TimerInvocation::parse(&body).and_then(|i| i.slot().map(|s| (i, s))) {
        Ok(parsed) => parsed,
        Err(e) => {
            warn!(error = %e, "rejected a malformed timer invocation");
            return invoke_error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let (invocation, slot) = invocation;
    let config = match &state.config {
        Ok(config) => config.clone(),
        Err(e) => {
            error!(error = %e, "run failed: the configuration is invalid");
            state.telemetry.record_failed_run(FailedStage::Configuration, None, started.elapsed(), e);
            return invoke_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };

    let _guard = state.run_lock.lock().await;
    if invocation.is_past_due {
        warn!(%slot, "past-due run: catching up a missed schedule slot");
    }
    info!(%slot, invocation = %invocation.describe(), "run started");
    let cycle = match state.cycle.get_or_try_init(|| async { app::build_cycle(&config).await.map(Arc::new) }).await {
        Ok(cycle) => cycle.clone(),
        Err(e) => {
            error!(error = %e, "run failed: could not initialise");
            state.telemetry.record_failed_run(FailedStage::Initialisation, None, started.elapsed(), &e);
            return invoke_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let run = RunContext::new(invocation_id, slot, config.run_deadline);
    match cycle.run(&run).await {
        Ok(summary) => {
            state.telemetry.record_run(&summary);
            let line = format!("{}{}", summary.line(), if invocation.is_past_due { " past_due=true" } else { "" });
            info!(summary = %line, "run finished");
            invoke_ok(vec![line])
        }
        Err(e) => {
            error!(error = %e, %slot, "run failed");
            state.telemetry.record_failed_run(FailedStage::Cycle, Some(&run), started.elapsed(), &e);
            invoke_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn unknown_function(uri: axum::http::Uri) -> Response {
    invoke_error(
        StatusCode::NOT_FOUND,
        format!(
            "no function at {uri}: this handler serves POST /{TIMER_FUNCTION}, /{EXPORT_FUNCTION} and /{ERASE_FUNCTION}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(response: Response) -> (StatusCode, Option<String>, Value) {
        let status = response.status();
        let content_type =
            response.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY_BYTES).await.unwrap();
        (status, content_type, serde_json::from_slice(&bytes).unwrap())
    }

    /// What the handler answers the host after a run, as the host reads it (status, content type,
    /// the PascalCase body).
    #[tokio::test]
    async fn success_response_has_the_host_shape() {
        let (status, content_type, body) = read(invoke_ok(vec!["run slot=x".into()])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(body, json!({"Outputs": {}, "Logs": ["run slot=x"], "ReturnValue": null}));
    }

    #[tokio::test]
    async fn error_response_carries_the_status_and_the_message() {
        let (status, content_type, body) =
            read(invoke_error(StatusCode::BAD_REQUEST, "IsPastDue is 3: expected true or false".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(body, json!({"error": "IsPastDue is 3: expected true or false"}));
    }
}
