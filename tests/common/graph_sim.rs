//! Builds the production Graph client against a Graph simulator, with the credential chosen by
//! the production `identity::credential()` from the managed-identity environment variables.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use chrono::Utc;
use teams_presence::config::{GraphSettings, GraphTuning};
use teams_presence::graph::client::GraphClient;
use teams_presence::model::Slot;
use teams_presence::run::RunContext;
use teams_presence::simulator::SimHandle;

/// The environment is process-wide; tests in one binary run on several threads.
static ENV: Mutex<()> = Mutex::new(());

/// The credential production would build with `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` pointing at
/// `sim` (and `AZURE_CLIENT_ID` for a user-assigned identity).
pub fn managed_identity(sim: &SimHandle, client_id: Option<&str>) -> Arc<dyn TokenCredential> {
    let _guard = ENV.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // SAFETY: every test that touches the environment holds ENV, and std serialises its own
    // environment reads (azure_identity reads it through std).
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", sim.identity_endpoint());
        std::env::set_var("IDENTITY_HEADER", sim.identity_header());
        for name in ["AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID"] {
            std::env::remove_var(name);
        }
        if let Some(id) = client_id {
            std::env::set_var("AZURE_CLIENT_ID", id);
        }
    }
    let credential = teams_presence::identity::credential().expect("managed identity credential");
    // SAFETY: as above.
    unsafe { std::env::remove_var("AZURE_CLIENT_ID") };
    credential
}

/// Settings for tests: production defaults with short backoff steps.
pub fn settings(sim: &SimHandle) -> GraphSettings {
    GraphSettings {
        base_url: sim.base_url().parse().unwrap(),
        presence_concurrency: 4,
        presence_calls_per_30s: 1_500,
        tuning: GraphTuning {
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            request_timeout: Duration::from_secs(5),
            ..GraphTuning::default()
        },
    }
}

pub fn client(sim: &SimHandle, settings: &GraphSettings) -> GraphClient {
    GraphClient::new(settings, managed_identity(sim, None)).unwrap()
}

pub fn run(budget: Duration) -> RunContext {
    RunContext::new("test-run", Slot::new(Utc::now()), budget)
}

/// A fixed token, for the production client against a scripted Graph endpoint in tests that are
/// not about tokens (the token paths are tested against the simulator in graph_auth.rs).
#[derive(Debug)]
pub struct FixedToken;

pub const FIXED_TOKEN: &str = "fixed-test-token";

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(&self, _: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        let expires = azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        Ok(AccessToken::new(FIXED_TOKEN, expires))
    }
}
