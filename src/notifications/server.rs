//! The receiver's HTTP side. Its host.json forwards HTTP requests unchanged
//! (`enableForwardingHttpRequest`), so Azure's POST arrives here as sent, at
//! `/api/notifications` or below it (the docs' samples post to `<endpoint>/resource`), with the
//! host's invocation id header.
//!
//! A request without `sig` gets 401 and one with a wrong `sig` 403 (publish-notifications,
//! "Endpoint authentication"), before the body is read: nothing is stored or logged of it. A body
//! that is not a documented notification gets 400; a store failure 500, which Azure retries
//! ("Notification retries": on 5xx and 429, for up to 10 hours).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::counts::{InstallCounts, Recorded};
use super::event::InstallEvent;
use crate::telemetry::Telemetry;

/// The function's route (publisher/function-notifications/function.json) under the host's `api/`.
pub const ROUTE: &str = "/api/notifications";
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
/// A notification is well under 2 KB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct Receiver {
    counts: Arc<dyn InstallCounts>,
    sig_digest: [u8; 32],
    telemetry: Telemetry,
}

impl Receiver {
    pub fn new(counts: Arc<dyn InstallCounts>, sig_digest: [u8; 32]) -> Self {
        Self { counts, sig_digest, telemetry: Telemetry::disabled() }
    }

    pub fn with_telemetry(self, telemetry: Telemetry) -> Self {
        Self { telemetry, ..self }
    }
}

pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(ROUTE, post(notification))
        .route(&format!("{ROUTE}/{{*rest}}"), post(notification))
        .fallback(|| async {
            (StatusCode::NOT_FOUND, axum::Json(json!({ "error": format!("POST notifications to {ROUTE}") })))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(receiver)
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn notification(
    State(receiver): State<Arc<Receiver>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let invocation_id = headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| format!("local-{}", uuid::Uuid::new_v4()), str::to_string);
    let telemetry = receiver.telemetry.clone();
    telemetry.invocation(&invocation_id, handle(receiver, query, body)).await
}

async fn handle(receiver: Arc<Receiver>, query: Option<String>, body: Bytes) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(sig) = param("sig") else {
        warn!("notification refused: no sig in the URL");
        return reply(StatusCode::UNAUTHORIZED, json!({ "error": "the notification URL carries no sig" }));
    };
    if Sha256::digest(sig.as_bytes()).as_slice() != receiver.sig_digest.as_slice() {
        warn!("notification refused: wrong sig");
        return reply(StatusCode::FORBIDDEN, json!({ "error": "the sig does not match this receiver's" }));
    }
    let event = match InstallEvent::parse(&body, param("version"), &receiver.sig_digest) {
        Ok(event) => event,
        Err(e) => {
            warn!(error = %e, "notification refused: not a documented notification");
            return reply(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() }));
        }
    };
    let k = &event.key;
    match receiver.counts.record(&event, Utc::now()).await {
        Ok(outcome) => {
            let outcome = match outcome {
                Recorded::Counted => "counted",
                Recorded::Duplicate => "duplicate",
            };
            info!(plan = %k.plan, version = %k.version, event = %k.event, day = %k.day, outcome, "notification");
            reply(StatusCode::OK, json!({ "recorded": outcome }))
        }
        Err(e) => {
            error!(error = %e, plan = %k.plan, event = %k.event, "notification not counted: Azure will deliver it again");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e.to_string() }))
        }
    }
}
