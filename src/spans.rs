//! Spans for calls to Microsoft Graph and Cosmos DB, shaped so that the App Insights exporter
//! writes them as `dependencies` rows.
//!
//! On the ground floor (it imports nothing of this crate): the Graph client and the stores build
//! their per-call spans here, and the phase spans around them (`graph::phases`, the
//! `telemetry::instrumented` wrappers) record their outcome with [`record_outcome`]. Whether and
//! where the spans are exported is decided by `telemetry`, from above.
//!
//! How a span maps (see the exporter's attribute table): `otel.kind = "client"` makes it a
//! dependency; `url.full` becomes its data, `server.address`:`server.port` its target,
//! `http.response.status_code` its result code; any `http.*` attribute makes its type `HTTP`, and
//! `db.system.name` names the type of a database call. The span status gives `success`.
//!
//! Used by `graph::request` (one span per HTTP attempt, retries included, so a 429 and its retry
//! are two rows; status, `Retry-After` wait and, on failures, Graph's `request-id`) and by
//! `store::cosmos` (one span per SDK operation of a run, with its final status and request
//! charge):
//! ```ignore
//! let span = spans::graph_call("POST", url, attempt); // named POST /communications/getPresencesByUserId
//! let response = client.execute(request).instrument(span.clone()).await;
//! match &response {
//!     Ok(r) => spans::record_http_status(&span, r.status().as_u16()),
//!     Err(e) => spans::record_failure(&span, e),
//! }
//! if failed { spans::record_request_id(&span, request_id); }
//! if throttled { spans::record_retry_after(&span, wait); }
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

/// Target of every span made here and of the phase spans; the console layer hides these spans
/// (see `telemetry`). The value is the module's former path, kept so that `LOG_LEVEL` directives
/// written for it still apply.
pub const DEPENDENCY_TARGET: &str = "teams_presence::telemetry::dependency";

/// `db.system.name` of Cosmos DB in the OpenTelemetry semantic conventions.
pub const COSMOS_DB_SYSTEM: &str = "azure.cosmosdb";

/// One HTTP request to Microsoft Graph (`attempt` counts from 1). The name is a template of the
/// path ([`graph_name`]); the URL is parsed only when some layer wants the span, so a call costs
/// next to nothing when nothing is exported.
pub fn graph_call(method: &str, url: &str, attempt: u32) -> Span {
    let span = tracing::info_span!(
        target: DEPENDENCY_TARGET,
        "graph",
        otel.name = Empty,
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        http.request.method = method,
        url.full = Empty,
        server.address = Empty,
        server.port = Empty,
        http.response.status_code = Empty,
        retry.attempt = attempt,
        retry_after_s = Empty,
        graph.request_id = Empty,
    );
    if !span.is_disabled() {
        match Url::parse(url) {
            Ok(url) => {
                span.record("otel.name", graph_name(method, &url).as_str());
                span.record("url.full", without_query(&url).as_str());
                span.record("server.address", url.host_str().unwrap_or_default());
                span.record("server.port", url.port_or_known_default().unwrap_or_default());
            }
            Err(_) => {
                span.record("otel.name", method);
            }
        }
    }
    span
}

/// `GET /groups/{id}/transitiveMembers`: the method and the path without the API version, with
/// every segment that names an object (a GUID, a UPN) replaced by `{id}`, so that dependency rows
/// group by operation and carry no identifier.
pub fn graph_name(method: &str, url: &Url) -> String {
    let mut name = String::with_capacity(64);
    name.push_str(method);
    name.push(' ');
    let segments = url.path_segments().into_iter().flatten().filter(|s| !s.is_empty());
    for (i, segment) in segments.enumerate() {
        if i == 0
            && (segment == "beta" || segment.starts_with('v') && segment[1..].starts_with(|c: char| c.is_ascii_digit()))
        {
            continue;
        }
        name.push('/');
        let names_an_object = uuid::Uuid::try_parse(segment).is_ok()
            || segment.contains('@')
            || segment.contains('%')
            || segment.bytes().filter(u8::is_ascii_digit).count() >= 8;
        name.push_str(if names_an_object { "{id}" } else { segment });
    }
    if name.ends_with(' ') {
        name.push('/');
    }
    name
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

/// Graph's `request-id` response header, which Microsoft support asks for about a failed call.
pub fn record_request_id(span: &Span, request_id: &str) {
    if !request_id.is_empty() {
        span.record("graph.request_id", request_id);
    }
}

/// The wait Graph asked for with `Retry-After` on a 429.
pub fn record_retry_after(span: &Span, wait: Duration) {
    span.record("retry_after_s", wait.as_secs_f64());
}

/// The outcome of a phase (a span around many calls): OK, or the error as its description.
pub fn record_outcome<T, E: Display>(span: &Span, result: &Result<T, E>) {
    match result {
        Ok(_) => span.record("otel.status_code", "OK"),
        Err(e) => span.record("otel.status_description", e.to_string().as_str()),
    };
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
    fn names_are_templates_without_ids_or_query() {
        let name = |m, u: &str| graph_name(m, &Url::parse(u).unwrap());
        assert_eq!(
            name(
                "GET",
                "https://graph.microsoft.com/v1.0/groups/6b1c0d2e-0000-4000-8000-000000000001/transitiveMembers?$select=id"
            ),
            "GET /groups/{id}/transitiveMembers"
        );
        assert_eq!(
            name("POST", "http://127.0.0.1:8089/v1.0/communications/getPresencesByUserId"),
            "POST /communications/getPresencesByUserId"
        );
        assert_eq!(
            name("GET", "https://graph.microsoft.com/beta/users/alice@contoso.com/presence"),
            "GET /users/{id}/presence"
        );
        assert_eq!(name("POST", "https://graph.microsoft.com/v1.0/$batch"), "POST /$batch");
    }

    #[test]
    fn url_full_drops_query_fragment_and_credentials() {
        let url =
            Url::parse("https://u:p@graph.microsoft.com/v1.0/groups/1/transitiveMembers?$skiptoken=abc#x").unwrap();
        assert_eq!(without_query(&url), "https://graph.microsoft.com/v1.0/groups/1/transitiveMembers");
    }
}
