//! The Functions host's HTTP-trigger invocation payload (not forwarded), read leniently, and the
//! `Outputs.res` shape it expects back.
//!
//! Without `enableForwardingHttpRequest` the host authorises the caller (function or admin key),
//! then POSTs `{"Data":{"req":{"Url","Method","Query","Headers","Params","Body"}},"Metadata":{}}`
//! to `/<function folder>` and turns `Outputs.res` into the HTTP response. `Query` has been seen
//! as an object and as a JSON string; values may be strings or arrays of strings.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::invocation::get_ci;

/// The output binding name in the HTTP functions' function.json.
pub const RESPONSE_BINDING: &str = "res";

#[derive(Clone, Debug, PartialEq)]
pub struct HttpTrigger {
    pub method: String,
    query: Map<String, Value>,
    body: Option<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpTriggerError {
    #[error("the request body is not JSON: {0}")]
    NotJson(String),
    #[error("the request body is not an HTTP-trigger invocation: {0}")]
    Shape(String),
}

impl HttpTrigger {
    pub fn parse(body: &[u8]) -> Result<Self, HttpTriggerError> {
        let envelope: Value = serde_json::from_slice(body).map_err(|e| HttpTriggerError::NotJson(e.to_string()))?;
        let data =
            envelope.as_object().and_then(|e| get_ci(e, "Data")).and_then(Value::as_object).ok_or_else(|| {
                HttpTriggerError::Shape("\"Data\" is missing: expected {\"Data\":{\"req\":{\"Method\":…}}}".into())
            })?;
        let request = data
            .values()
            .filter_map(Value::as_object)
            .find(|o| get_ci(o, "Method").is_some() || get_ci(o, "Url").is_some())
            .ok_or_else(|| {
                let keys: Vec<&String> = data.keys().collect();
                HttpTriggerError::Shape(format!(
                    "no HTTP request in Data (keys {keys:?}): expected an object with Url, Method, Query"
                ))
            })?;
        let method = get_ci(request, "Method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
        let mut query = match get_ci(request, "Query") {
            Some(Value::Object(q)) => q.clone(),
            Some(Value::String(text)) => serde_json::from_str::<Map<String, Value>>(text).unwrap_or_default(),
            _ => Map::new(),
        };
        // The Url's own query string fills in what `Query` lacks.
        if let Some(url) = get_ci(request, "Url").and_then(Value::as_str).and_then(|u| url::Url::parse(u).ok()) {
            for (key, value) in url.query_pairs() {
                if get_ci(&query, &key).is_none() {
                    query.insert(key.into_owned(), Value::String(value.into_owned()));
                }
            }
        }
        let body = match get_ci(request, "Body") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.trim().is_empty() => None,
            Some(Value::String(text)) => Some(serde_json::from_str(text).unwrap_or(Value::String(text.clone()))),
            Some(other) => Some(other.clone()),
        };
        Ok(Self { method, query, body })
    }

    /// A parameter from the query string, else from a JSON object body (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<String> {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        get_ci(&self.query, name)
            .and_then(text)
            .or_else(|| self.body.as_ref().and_then(Value::as_object).and_then(|b| get_ci(b, name)).and_then(text))
    }
}

/// What the host turns into the HTTP response: `Outputs.res`, with the status, headers and body.
pub fn response(status: u16, content_type: &str, body: String, logs: Vec<String>) -> Value {
    json!({
        "Outputs": {
            RESPONSE_BINDING: {
                "statusCode": status,
                "headers": { "Content-Type": content_type },
                "body": body,
            }
        },
        "Logs": logs,
        "ReturnValue": null,
    })
}

/// A JSON body for `Outputs.res`.
pub fn json_response(status: u16, body: &impl Serialize, logs: Vec<String>) -> Value {
    let text = serde_json::to_string(body).unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise: {e}\"}}"));
    response(status, "application/json", text, logs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_objects_strings_urls_and_bodies() {
        let object = br#"{"Data":{"req":{"Url":"https://x/api/privacy/export","Method":"GET","Query":{"user":"a"},"Headers":{}}},"Metadata":{}}"#;
        assert_eq!(HttpTrigger::parse(object).unwrap().param("user").as_deref(), Some("a"));
        let string = br#"{"Data":{"req":{"Method":"get","Query":"{\"User\":[\"b\"]}"}}}"#;
        let parsed = HttpTrigger::parse(string).unwrap();
        assert_eq!((parsed.method.as_str(), parsed.param("user").as_deref()), ("GET", Some("b")));
        let url = br#"{"Data":{"req":{"Url":"https://x/api/privacy/erase?user=c&format=csv","Method":"POST"}}}"#;
        assert_eq!(HttpTrigger::parse(url).unwrap().param("format").as_deref(), Some("csv"));
        let body = br#"{"Data":{"req":{"Method":"POST","Query":{},"Body":"{\"user\":\"d\"}"}}}"#;
        assert_eq!(HttpTrigger::parse(body).unwrap().param("user").as_deref(), Some("d"));
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(matches!(HttpTrigger::parse(b"nope"), Err(HttpTriggerError::NotJson(_))));
        let error = HttpTrigger::parse(br#"{"Data":{"timer":{"IsPastDue":false}}}"#).unwrap_err();
        assert!(error.to_string().contains("\"timer\""), "{error}");
    }
}
