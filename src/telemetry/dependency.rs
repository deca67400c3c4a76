//! Spans for calls to Microsoft Graph and Cosmos DB, shaped so that the App Insights exporter
//! writes them as `dependencies` rows.
//!
//! How a span maps (see the exporter's attribute table): `otel.kind = "client"` makes it a
//! dependency; `url.full` becomes its data, `server.address`:`server.port` its target,
//! `http.response.status_code` its result code; any `http.*` attribute makes its type `HTTP`, and
//! `db.system.name` names the type of a database call. The span status gives `success`.
//!
//! Conventions for the Graph client and the store (one span per HTTP request, retries included,
//! so a 429 and its retry are two rows):
//! ```ignore
//! let span = dependency::graph_call("POST /communications/getPresencesByUserId", "POST", &url, attempt);
//! let response = client.execute(request).instrument(span.clone()).await;
//! match &response {
//!     Ok(r) => dependency::record_http_status(&span, r.status().as_u16()),
//!     Err(e) => dependency::record_failure(&span, e),
//! }
//! if throttled { dependency::record_retry_after(&span, retry_after); }
//! ```
//! Names are low-cardinality templates (`GET /groups/{id}/transitiveMembers`), never a URL with
//! ids in it; the query string (skip tokens, `$select`) is left out of `url.full`; no user id
//! goes on any span. These spans are exported but never printed to the console, so log lines
//! inside them still carry the run's `invocation_id`.

use std::fmt::Display;
use std::time::Duration;

use tracing::Span;
use tracing::field::Empty;
use url::Url;

/// Target of every span made here; the console layer hides these spans (see `super`).
pub const DEPENDENCY_TARGET: &str = "teams_presence::telemetry::dependency";

/// `db.system.name` of Cosmos DB in the OpenTelemetry semantic conventions.
pub const COSMOS_DB_SYSTEM: &str = "azure.cosmosdb";

/// One HTTP request to Microsoft Graph. `name` is a template such as
/// `GET /groups/{id}/transitiveMembers`; `attempt` counts from 1.
pub fn graph_call(name: &str, method: &str, url: &Url, attempt: u32) -> Span {
    tracing::info_span!(
        target: DEPENDENCY_TARGET,
        "graph",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        http.request.method = method,
        url.full = %without_query(url),
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().unwrap_or_default(),
        http.response.status_code = Empty,
        retry.attempt = attempt,
        retry_after_s = Empty,
    )
}

/// One Cosmos DB operation (`operation` such as `upsert_item` or `query_items`) on a container.
/// `endpoint` is the account endpoint.
pub fn cosmos_call(operation: &str, database: &str, container: &str, endpoint: &Url) -> Span {
    tracing::info_span!(
        target: DEPENDENCY_TARGET,
        "cosmos",
        otel.name = %format_args!("{operation} {container}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        db.system.name = COSMOS_DB_SYSTEM,
        db.namespace = database,
        db.collection.name = container,
        db.operation.name = operation,
        server.address = endpoint.host_str().unwrap_or_default(),
        server.port = endpoint.port_or_known_default().unwrap_or_default(),
        db.response.status_code = Empty,
        azure.cosmosdb.operation.request_charge = Empty,
    )
}

/// The HTTP status of a Graph call: 4xx and 5xx (429 included) mark the dependency failed.
pub fn record_http_status(span: &Span, status: u16) {
    span.record("http.response.status_code", i64::from(status));
    set_outcome(span, status < 400, || format!("HTTP {status}"));
}

/// The result of a Cosmos DB operation and the request units it was charged.
pub fn record_cosmos_status(span: &Span, status: u16, request_charge: f64) {
    span.record("db.response.status_code", i64::from(status));
    span.record("azure.cosmosdb.operation.request_charge", request_charge);
    set_outcome(span, status < 400, || format!("status {status}"));
}

/// The call did not get an answer (connection, timeout, token): failed, with the reason.
/// The reason must not contain a token or secret; error types in this crate never do.
pub fn record_failure(span: &Span, error: &dyn Display) {
    set_outcome(span, false, || error.to_string());
}

/// The wait Graph asked for with `Retry-After` on a 429.
pub fn record_retry_after(span: &Span, wait: Duration) {
    span.record("retry_after_s", wait.as_secs_f64());
}

fn set_outcome(span: &Span, ok: bool, description: impl FnOnce() -> String) {
    if ok {
        span.record("otel.status_code", "OK");
    } else {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", description().as_str());
    }
}

fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_full_drops_query_fragment_and_credentials() {
        let url =
            Url::parse("https://u:p@graph.microsoft.com/v1.0/groups/1/transitiveMembers?$skiptoken=abc#x").unwrap();
        assert_eq!(without_query(&url), "https://graph.microsoft.com/v1.0/groups/1/transitiveMembers");
    }
}
