//! The simulator's HTTP endpoints.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::Shared;
use super::counters::Counters;
use super::directory::{page_json, user_index};
use super::faults::{Endpoint, Fault, RetryAfter};
use super::presence_model::{AVAILABILITIES, activity, sequence_number};
use crate::model::{GroupId, UserId};

type Sim = State<Arc<Shared>>;

/// Graph's documented cap on ids per presence call.
const MAX_IDS: usize = 650;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/msi/token", get(managed_identity_token))
        .route("/{tenant}/oauth2/v2.0/token", post(client_credentials_token))
        .route("/v1.0/groups/{id}/transitiveMembers", get(transitive_members))
        .route("/v1.0/communications/getPresencesByUserId", post(presences))
        .route("/v1.0/users/{id}/presence", get(user_presence))
        .route("/v1.0/$batch", post(batch))
        .route("/_sim/counters", get(counters))
        .route("/_sim/advance-epoch", post(advance_epoch))
        .with_state(shared)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Graph error response: `{"error":{"code","message","innerError"}}` with a `request-id`.
fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = Uuid::new_v4().to_string();
    let body = serde_json::json!({
        "error": {"code": code, "message": message, "innerError": {"request-id": request_id, "date": httpdate::fmt_http_date(SystemTime::now())}}
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", v);
    }
    response
}

fn json_response(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&Uuid::new_v4().to_string()) {
        response.headers_mut().insert("request-id", v);
    }
    response
}

fn issue_token(sim: &Shared) -> (String, u64) {
    let token = format!("simtok.{}.{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    lock(&sim.tokens).insert(token.clone(), Instant::now() + sim.config.token_lifetime);
    Counters::add(&sim.counters.tokens_issued, 1);
    let expires_on = (SystemTime::now() + sim.config.token_lifetime)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    (token, expires_on)
}

async fn managed_identity_token(
    State(sim): Sim,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let secret = headers.get("x-identity-header").and_then(|v| v.to_str().ok());
    if secret != Some(sim.config.identity_header.as_str()) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong X-IDENTITY-HEADER").into_response();
    }
    if let Err(response) = apply_fault(&sim, sim.faults.next(Endpoint::Token)).await {
        return response;
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return (StatusCode::BAD_REQUEST, "api-version must be 2019-08-01").into_response();
    }
    let resource = query.get("resource").map(|r| r.trim_end_matches('/'));
    if resource != Some(sim.origin.as_str()) {
        return (StatusCode::BAD_REQUEST, format!("resource must be {}", sim.origin)).into_response();
    }
    let client_id = query.get("client_id").or_else(|| query.get("principal_id")).or_else(|| query.get("object_id"));
    lock(&sim.counters.identity_client_ids).push(client_id.cloned());
    let (token, expires_on) = issue_token(&sim);
    axum::Json(serde_json::json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "not_before": expires_on.saturating_sub(sim.config.token_lifetime.as_secs()).to_string(),
        "resource": sim.origin,
        "token_type": "Bearer",
        "client_id": client_id.cloned().unwrap_or_else(|| "00000000-0000-4000-8000-00000000c11d".into()),
    }))
    .into_response()
}

async fn client_credentials_token(
    State(sim): Sim,
    Path(_tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let entra_error = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            axum::Json(serde_json::json!({"error": error, "error_description": description, "error_codes": [7000215]})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return entra_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be client_credentials");
    }
    if form.get("scope").map(String::as_str) != Some(format!("{}/.default", sim.origin).as_str()) {
        return entra_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope must be the Graph origin + /.default");
    }
    let given = (form.get("client_id"), form.get("client_secret"));
    let accepted = match &sim.config.client_credentials {
        Some((id, secret)) => given == (Some(id), Some(secret)),
        None => given.0.is_some_and(|v| !v.is_empty()) && given.1.is_some_and(|v| !v.is_empty()),
    };
    if !accepted {
        return entra_error(StatusCode::UNAUTHORIZED, "invalid_client", "invalid client secret");
    }
    if let Err(response) = apply_fault(&sim, sim.faults.next(Endpoint::Token)).await {
        return response;
    }
    let (token, _) = issue_token(&sim);
    let expires_in = sim.config.token_lifetime.as_secs();
    axum::Json(serde_json::json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token}))
        .into_response()
}

/// `None` when the bearer token is valid; otherwise the 401 to send.
fn check_token(sim: &Shared, headers: &HeaderMap) -> Option<Response> {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let valid = token.is_some_and(|t| lock(&sim.tokens).get(t).is_some_and(|expiry| Instant::now() < *expiry));
    if valid {
        return None;
    }
    Counters::add(&sim.counters.unauthorized, 1);
    let message =
        if token.is_some() { "Lifetime validation failed, the token is expired." } else { "Access token is empty." };
    Some(graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message))
}

fn retry_after_value(r: &RetryAfter) -> String {
    match r {
        RetryAfter::Seconds(s) => s.to_string(),
        RetryAfter::Fractional(s) => format!("{s:.3}"),
        RetryAfter::HttpDate(d) => httpdate::fmt_http_date(SystemTime::now() + *d),
    }
}

/// Applies a fault that replaces the answer; `Ok(extra_drop)` lets the normal answer go on.
async fn apply_fault(sim: &Shared, fault: Option<Fault>) -> Result<usize, Response> {
    match fault {
        None => Ok(0),
        Some(Fault::Status { status, retry_after }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status == StatusCode::TOO_MANY_REQUESTS {
                Counters::add(&sim.counters.throttled, 1);
            }
            let code = match status.as_u16() {
                429 => "TooManyRequests",
                503 => "ServiceUnavailable",
                404 => "Request_ResourceNotFound",
                400 => "BadRequest",
                _ => "UnknownError",
            };
            let mut response = graph_error(status, code, "injected fault");
            if let Some(v) = retry_after.as_ref().map(retry_after_value).and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Err(response)
        }
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(0)
        }
        Some(Fault::Hang) => {
            sim.shutdown.notified().await;
            Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
        Some(Fault::Malformed) => Err(json_response("<html><body>upstream connect error</body></html>".into())),
        Some(Fault::Truncated) => Err(json_response(r#"{"value":[{"id":"5eed0000-0000-4000-8000-0000"#.into())),
        Some(Fault::DropIds(n)) => Ok(n),
        Some(Fault::Pass) => Ok(0),
    }
}

async fn transitive_members(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = check_token(&sim, &headers) {
        return denied;
    }
    Counters::add(&sim.counters.member_calls, 1);
    if let Err(response) = apply_fault(&sim, sim.faults.next(Endpoint::Members)).await {
        return response;
    }
    tokio::time::sleep(sim.call_latency()).await;
    let not_found = || {
        Counters::add(&sim.counters.not_found, 1);
        graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    };
    let group = Uuid::try_parse(&id).ok().map(GroupId::from_uuid);
    let Some((group_id, group)) = group.and_then(|g| Some((g, sim.directory.group(&g)?))) else {
        return not_found();
    };
    let top = match query.get("$top").map(|t| t.parse::<u32>()) {
        None => 100,
        Some(Ok(t @ 1..=999)) => t,
        Some(_) => {
            return graph_error(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", "Invalid page size specified.");
        }
    }
    .min(sim.config.max_page_size);
    let key = group_id.as_uuid().as_u128() as u64;
    let offset = match query.get("$skiptoken") {
        None => 0,
        Some(token) => match u64::from_str_radix(token, 16).map(|t| t ^ key) {
            Ok(offset) if offset < group.len() => offset,
            _ => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "Directory_ExpiredPageToken",
                    "The specified page token value has expired.",
                );
            }
        },
    };
    let (mut body, next) = page_json(group, offset, u64::from(top));
    if let Some(next) = next {
        body.pop();
        let _ = write!(
            body,
            r#","@odata.nextLink":"{}/v1.0/groups/{group_id}/transitiveMembers?$select=id&$top={top}&$skiptoken={:016x}"}}"#,
            sim.origin,
            next ^ key
        );
    }
    json_response(body)
}

#[derive(Deserialize)]
struct PresenceRequest {
    ids: Vec<String>,
}

async fn presences(
    State(sim): Sim,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    if let Some(denied) = check_token(&sim, &headers) {
        return denied;
    }
    let request: PresenceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Invalid request body: {e}")),
    };
    sim.counters.record_presence(arrived, peer, request.ids.len());
    if let Some(wait) = throttle(&sim, arrived) {
        return throttled_response(&sim, wait);
    }
    let drop = match apply_fault(&sim, sim.faults.next(Endpoint::Presence)).await {
        Ok(drop) => drop,
        Err(response) => return response,
    };
    tokio::time::sleep(sim.call_latency()).await;
    if request.ids.len() > MAX_IDS {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Maximum of 650 user IDs are supported per API request.",
        );
    }
    let mut indexes = Vec::with_capacity(request.ids.len());
    for id in &request.ids {
        let Ok(uuid) = Uuid::try_parse(id) else {
            return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid user id.");
        };
        let index = user_index(&UserId::from_uuid(uuid)).filter(|&i| i < sim.config.users);
        if index.is_some_and(|i| sim.rejected.contains(&i)) {
            return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "");
        }
        indexes.push((uuid, index));
    }
    let (epoch, state) = sim.model.read().unwrap_or_else(std::sync::PoisonError::into_inner).current();
    sim.counters.record_epoch(epoch);
    let mut out = String::with_capacity(indexes.len() * 520 + 64);
    out.push_str(r#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.presence)","value":["#);
    let mut first = true;
    for (uuid, index) in indexes.iter().skip(drop) {
        let Some(i) = *index else { continue };
        if sim.missing.contains(&i) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_presence(&mut out, uuid, i, epoch, &state);
    }
    out.push_str("]}");
    json_response(out)
}

/// One presence object as Graph serialises it, with the fields the client must drop.
fn write_presence(out: &mut String, uuid: &Uuid, i: u32, epoch: u64, state: &[u8]) {
    let availability = AVAILABILITIES[state[i as usize] as usize];
    let ooo = i.is_multiple_of(17);
    let _ = write!(
        out,
        concat!(
            r##"{{"@odata.type":"#microsoft.graph.presence","id":"{id}","availability":"{a}","activity":"{act}","##,
            r##""statusMessage":{{"message":{{"content":"Heads down on the Q3 plan, back at 3","contentType":"text"}},"##,
            r##""expiryDateTime":{{"dateTime":"9999-12-30T23:00:00.0000000","timeZone":"UTC"}},"publishedDateTime":"2025-06-01T08:00:00.0000000Z"}},"##,
            r##""outOfOfficeSettings":{{"message":{ooo_message},"isOutOfOffice":{ooo}}},"##,
            r##""sequenceNumber":"{seq}","workLocation":{{"workLocationType":"office","source":"manual","placeId":null}}}}"##
        ),
        id = uuid,
        a = availability,
        act = activity(availability),
        ooo_message = if ooo { "\"On leave until Monday\"" } else { "null" },
        ooo = ooo,
        seq = sequence_number(i, epoch),
    );
}

/// The single-user presence of `id`: `Ok(json)`, or the status and Graph error to answer.
fn one_presence(sim: &Shared, id: &str) -> Result<String, (StatusCode, &'static str, String)> {
    let not_found = || (StatusCode::NOT_FOUND, "Request_ResourceNotFound", format!("User '{id}' was not found."));
    let uuid = Uuid::try_parse(id).map_err(|_| not_found())?;
    let index = user_index(&UserId::from_uuid(uuid))
        .filter(|&i| i < sim.config.users && !sim.missing.contains(&i))
        .ok_or_else(not_found)?;
    let (epoch, state) = sim.model.read().unwrap_or_else(std::sync::PoisonError::into_inner).current();
    let mut out = String::with_capacity(600);
    write_presence(&mut out, &uuid, index, epoch, &state);
    Ok(out)
}

/// `GET /users/{id}/presence`: what scripts that read one user at a time call. It shares the
/// presence limit (1,500 calls / 30 s per app per tenant) with `getPresencesByUserId`.
async fn user_presence(State(sim): Sim, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let arrived = Instant::now();
    if let Some(denied) = check_token(&sim, &headers) {
        return denied;
    }
    Counters::add(&sim.counters.user_presence_calls, 1);
    if let Some(wait) = throttle(&sim, arrived) {
        return throttled_response(&sim, wait);
    }
    tokio::time::sleep(sim.call_latency()).await;
    match one_presence(&sim, &id) {
        Ok(body) => json_response(body),
        Err((status, code, message)) => graph_error(status, code, &message),
    }
}

fn throttled_response(sim: &Shared, wait: Duration) -> Response {
    Counters::add(&sim.counters.throttled, 1);
    let mut response = graph_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Too many requests.");
    if let Ok(v) = HeaderValue::from_str(&retry_after_seconds(wait)) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn retry_after_seconds(wait: Duration) -> String {
    format!("{:.3}", wait.as_secs_f64())
}

#[derive(Deserialize)]
struct BatchRequest {
    requests: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    method: String,
    url: String,
}

/// Graph's documented cap on requests in one JSON batch.
const MAX_BATCH: usize = 20;

/// `POST /$batch` of `GET /users/{id}/presence` items. As documented, each item is evaluated
/// against the presence limit on its own: a throttled item gets its own 429 and `Retry-After`
/// while the batch itself answers 200; more than 20 items or a malformed body is a 400.
async fn batch(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    if let Some(denied) = check_token(&sim, &headers) {
        return denied;
    }
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Invalid batch payload: {e}")),
    };
    if request.requests.len() > MAX_BATCH {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Number of batch request steps exceeds the maximum of 20.",
        );
    }
    Counters::add(&sim.counters.batch_calls, 1);
    tokio::time::sleep(sim.call_latency()).await;
    let mut out = String::with_capacity(request.requests.len() * 700 + 32);
    out.push_str(r#"{"responses":["#);
    for (n, item) in request.requests.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        Counters::add(&sim.counters.user_presence_calls, 1);
        let path = item.url.trim_start_matches('/');
        let user = path.strip_prefix("users/").and_then(|rest| rest.strip_suffix("/presence"));
        let id = serde_json::to_string(&item.id).unwrap_or_else(|_| "\"\"".into());
        let (status, headers, body) = match (item.method.eq_ignore_ascii_case("GET"), user) {
            (true, Some(user)) => match throttle(&sim, arrived) {
                Some(wait) => {
                    Counters::add(&sim.counters.throttled, 1);
                    (
                        429,
                        format!(r#"{{"Retry-After":"{}"}}"#, retry_after_seconds(wait)),
                        r#"{"error":{"code":"TooManyRequests","message":"Too many requests."}}"#.to_string(),
                    )
                }
                None => match one_presence(&sim, user) {
                    Ok(body) => (200, r#"{"Content-Type":"application/json"}"#.to_string(), body),
                    Err((status, code, message)) => (
                        status.as_u16(),
                        "{}".to_string(),
                        serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
                    ),
                },
            },
            _ => (
                400,
                "{}".to_string(),
                r#"{"error":{"code":"BadRequest","message":"This simulator batches GET users/{id}/presence only."}}"#
                    .to_string(),
            ),
        };
        let _ = write!(out, r#"{{"id":{id},"status":{status},"headers":{headers},"body":{body}}}"#);
    }
    out.push_str("]}");
    json_response(out)
}

/// `Some(wait)` when this call is over the limit: the time until the oldest accepted call in the
/// window leaves it.
fn throttle(sim: &Shared, now: Instant) -> Option<Duration> {
    let window = sim.config.throttle_window;
    let mut accepted = lock(&sim.throttle);
    while accepted.front().is_some_and(|t| now.duration_since(*t) >= window) {
        accepted.pop_front();
    }
    if accepted.len() >= sim.config.throttle_limit as usize {
        let oldest = accepted.front().copied().unwrap_or(now);
        return Some((oldest + window).duration_since(now).max(Duration::from_millis(1)));
    }
    accepted.push_back(now);
    None
}

async fn counters(State(sim): Sim) -> Response {
    axum::Json(sim.counters.snapshot(sim.config.throttle_window)).into_response()
}

async fn advance_epoch(State(sim): Sim) -> Response {
    axum::Json(serde_json::json!({"epoch": sim.advance_epoch()})).into_response()
}
