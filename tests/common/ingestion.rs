//! A loopback stand-in for the Application Insights ingestion endpoint (Breeze): it accepts
//! `POST .../track` with a gzipped JSON array of envelopes, keeps every upload, and answers
//! like the service (`{"itemsReceived":n,"itemsAccepted":n,"errors":[]}`).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};

pub const INSTRUMENTATION_KEY: &str = "0b1f3c2e-8a55-4c49-9d4e-2f61a7c3b0de";

/// One POST as received.
#[derive(Clone, Debug)]
pub struct Upload {
    pub path: String,
    pub authorization: Option<String>,
    pub content_encoding: Option<String>,
    /// Bytes on the wire (gzipped), which is what leaves the function app.
    pub wire_bytes: usize,
    /// Bytes of the JSON once decompressed, which is closer to what App Insights bills.
    pub json_bytes: usize,
    pub json: String,
    pub items: Vec<Value>,
}

#[derive(Clone)]
pub struct IngestionServer {
    pub address: SocketAddr,
    uploads: Arc<Mutex<Vec<Upload>>>,
}

impl IngestionServer {
    /// Serves on the current tokio runtime until the runtime ends.
    pub async fn start() -> Self {
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(track).with_state(uploads.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { address, uploads }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// A connection string shaped like the portal's, naming this server as IngestionEndpoint.
    pub fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={};LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId=5e1c9a3d-0d41-4a8e-9d56-0a4f7a9c2b11",
            self.endpoint()
        )
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.uploads.lock().unwrap().clone()
    }

    pub fn items(&self) -> Vec<Value> {
        self.uploads().into_iter().flat_map(|u| u.items).collect()
    }

    pub fn clear(&self) {
        self.uploads.lock().unwrap().clear();
    }
}

async fn track(
    State(uploads): State<Arc<Mutex<Vec<Upload>>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_encoding = header("content-encoding");
    let mut json = String::new();
    if content_encoding.as_deref() == Some("gzip") {
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut json).expect("gzip body");
    } else {
        json = String::from_utf8(body.to_vec()).expect("utf-8 body");
    }
    let items: Vec<Value> = serde_json::from_str(&json).expect("a JSON array of envelopes");
    let n = items.len();
    uploads.lock().unwrap().push(Upload {
        path: uri.path().to_string(),
        authorization: header("authorization"),
        content_encoding,
        wire_bytes: body.len(),
        json_bytes: json.len(),
        json,
        items,
    });
    axum::Json(json!({ "itemsReceived": n, "itemsAccepted": n, "errors": [] }))
}

/// Accessors for the envelope shapes App Insights defines.
pub mod envelope {
    use serde_json::Value;

    pub fn base_type(item: &Value) -> &str {
        item["data"]["baseType"].as_str().unwrap_or_default()
    }

    pub fn base(item: &Value) -> &Value {
        &item["data"]["baseData"]
    }

    pub fn tag<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
        item["tags"][key].as_str()
    }

    pub fn property<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
        base(item)["properties"][key].as_str()
    }

    /// `(name, value, properties)` of every metric data point.
    pub fn metrics(items: &[Value]) -> Vec<(String, f64, Value)> {
        items
            .iter()
            .filter(|i| base_type(i) == "MetricData")
            .flat_map(|i| {
                base(i)["metrics"].as_array().cloned().unwrap_or_default().into_iter().map(move |m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["value"].as_f64().unwrap_or(f64::NAN),
                        base(i)["properties"].clone(),
                    )
                })
            })
            .collect()
    }

    pub fn dependencies<'a>(items: &'a [Value], name: &str) -> Vec<&'a Value> {
        items.iter().filter(|i| base_type(i) == "RemoteDependencyData" && base(i)["name"] == name).collect()
    }
}
