//! A loopback managed-identity token endpoint (the App Service protocol that Functions uses:
//! `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...[&client_id=...]` with the
//! `X-IDENTITY-HEADER` secret). It runs on a thread of its own so that it outlives any one
//! test's runtime, since `IDENTITY_ENDPOINT` is process-wide.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::json;

pub const IDENTITY_HEADER_SECRET: &str = "identity-header-secret-7d1f";

#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub query: HashMap<String, String>,
    pub identity_header: Option<String>,
}

#[derive(Clone)]
pub struct TokenEndpoint {
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenEndpoint {
    /// Every token it issues is `token_for(resource, client_id)`, so tests know what to look for.
    pub fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let state = requests.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new().route("/msi/token", get(token)).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { address: rx.recv().unwrap(), requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}/msi/token", self.address)
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

pub fn token_for(resource: &str, client_id: Option<&str>) -> String {
    let who = client_id.unwrap_or("system");
    format!("eyJ0eXAiOiJKV1Qi.{}.{}.sig", resource.replace(['/', ':'], "_"), who)
}

async fn token(
    State(requests): State<Arc<Mutex<Vec<TokenRequest>>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let identity_header = headers.get("x-identity-header").and_then(|v| v.to_str().ok()).map(str::to_string);
    requests.lock().unwrap().push(TokenRequest { query: query.clone(), identity_header: identity_header.clone() });
    if identity_header.as_deref() != Some(IDENTITY_HEADER_SECRET) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "missing X-IDENTITY-HEADER"})));
    }
    let resource = query.get("resource").cloned().unwrap_or_default();
    let expires_on = chrono::Utc::now().timestamp() + 3600;
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": token_for(&resource, query.get("client_id").map(String::as_str)),
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        })),
    )
}
