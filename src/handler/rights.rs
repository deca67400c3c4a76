//! The HTTP functions of a person's rights: `function-export` and `function-erase`.
//!
//! The host authorises the caller with a function or admin key before it invokes these (see their
//! function.json), so the handler only validates the input. The answer to the caller goes in
//! `Outputs.res`: 200 with the result, 400 naming a malformed id, 500 when the store fails (that
//! error is also logged, and so reaches Application Insights).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use super::http_trigger::{self, HttpTrigger};
use super::{AppState, invocation_id, invoke_error};
use crate::app;
use crate::model::{self, UserId};
use crate::rights::{self, Rights};

#[derive(Clone, Copy)]
enum Request {
    Export,
    Erase,
}

pub(super) async fn export(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    invoke(state, headers, body, Request::Export).await
}

pub(super) async fn erase(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    invoke(state, headers, body, Request::Erase).await
}

async fn invoke(state: Arc<AppState>, headers: HeaderMap, body: Bytes, request: Request) -> Response {
    let invocation_id = invocation_id(&headers);
    let telemetry = state.telemetry.clone();
    telemetry.invocation(&invocation_id, handle(state, invocation_id.clone(), body, request)).await
}

async fn handle(state: Arc<AppState>, invocation_id: String, body: Bytes, request: Request) -> Response {
    let trigger = match HttpTrigger::parse(&body) {
        Ok(trigger) => trigger,
        Err(e) => {
            warn!(error = %e, "rejected a malformed HTTP invocation");
            return invoke_error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let (user, format) = match validate(&trigger, request) {
        Ok(valid) => valid,
        Err(message) => {
            warn!(error = %message, "rejected a data-subject request");
            return reply(400, &json!({ "error": message }));
        }
    };
    let rights = match rights(&state).await {
        Ok(rights) => rights,
        Err(message) => {
            error!(error = %message, "data-subject request failed: the store is not available");
            return reply(500, &json!({ "error": message }));
        }
    };
    // An erasure must not interleave with a run that holds the user in memory.
    let _guard = state.run_lock.lock().await;
    match request {
        Request::Export => match rights.export(user, &invocation_id).await {
            Ok(records) => {
                let logs = vec![format!("export records={}", records.len())];
                ok(match format {
                    Format::Csv => {
                        http_trigger::response(200, "text/csv; charset=utf-8", rights::records_csv(&records), logs)
                    }
                    Format::Json => http_trigger::json_response(
                        200,
                        &json!({ "userId": user, "exported": records.len(), "records": records }),
                        logs,
                    ),
                })
            }
            Err(e) => failed("export", &e),
        },
        Request::Erase => match rights.erase(user, &invocation_id).await {
            Ok(erased) => {
                info!(history_records = erased.history_records, state_entries = erased.state_entries, "erased");
                let logs = vec![format!(
                    "erase history_records={} state_entries={}",
                    erased.history_records, erased.state_entries
                )];
                ok(http_trigger::json_response(200, &json!({ "userId": user, "erased": erased }), logs))
            }
            Err(e) => failed("erasure", &e),
        },
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn validate(trigger: &HttpTrigger, request: Request) -> Result<(UserId, Format), String> {
    let allowed: &[&str] = match request {
        Request::Export => &["GET", "POST"],
        Request::Erase => &["POST", "DELETE"],
    };
    if !allowed.contains(&trigger.method.as_str()) {
        return Err(format!("method {} is not accepted here: expected {}", trigger.method, allowed.join(" or ")));
    }
    let user = trigger
        .param("user")
        .ok_or_else(|| "no user given: expected ?user=<the user's Entra object id (GUID)>".to_string())?;
    let user = model::parse_user_id(&user).map_err(|e| format!("user {e}"))?;
    let format = match trigger.param("format").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") if matches!(request, Request::Export) => Format::Csv,
        Some(other) => return Err(format!("format {other:?} is not supported: expected json or csv")),
    };
    Ok((user, format))
}

async fn rights(state: &AppState) -> Result<Arc<Rights>, String> {
    let config = state.store_config.as_ref().map_err(ToString::to_string)?;
    state
        .rights
        .get_or_try_init(|| async { app::open_rights(config).await.map(Arc::new) })
        .await
        .cloned()
        .map_err(|e| e.to_string())
}

fn reply(status: u16, body: &Value) -> Response {
    ok(http_trigger::json_response(status, body, Vec::new()))
}

/// The invocation itself succeeded; the status for the caller is inside `Outputs.res`.
fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> Response {
    error!(error = %e, "{what} failed");
    reply(500, &json!({ "error": format!("{what} failed: {e}") }))
}
