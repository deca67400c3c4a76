//! Bearer tokens for Graph: fetched through the credential, cached, refreshed before they expire,
//! and refreshed once more when Graph refuses one. The token only ever lives in a header value
//! marked sensitive, so no `Debug` output or log line can carry it.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::time::OffsetDateTime;
use reqwest::header::HeaderValue;
use tokio::sync::Mutex;

use super::GraphError;

/// Refresh this long before expiry, or at half the lifetime for short-lived tokens.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

pub struct TokenSource {
    credential: Arc<dyn TokenCredential>,
    scope: String,
    current: Mutex<Option<Cached>>,
}

#[derive(Clone)]
struct Cached {
    header: HeaderValue,
    refresh_at: OffsetDateTime,
}

impl TokenSource {
    pub fn new(credential: Arc<dyn TokenCredential>, scope: String) -> Self {
        Self { credential, scope, current: Mutex::new(None) }
    }

    /// The `Authorization` header value to send now.
    pub async fn bearer(&self) -> Result<HeaderValue, GraphError> {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref()
            && OffsetDateTime::now_utc() < cached.refresh_at
        {
            return Ok(cached.header.clone());
        }
        let fresh = self.fetch().await?;
        let header = fresh.header.clone();
        *current = Some(fresh);
        Ok(header)
    }

    /// Graph refused `rejected`: drop it so the next `bearer` fetches a new one. Calls that were
    /// in flight with the same token do not each trigger a refresh.
    pub async fn invalidate(&self, rejected: &HeaderValue) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.header == rejected) {
            *current = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, GraphError> {
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| GraphError::Token(format!("scope {}: {e}", self.scope)))?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.token.secret()))
            .map_err(|_| GraphError::Token(format!("scope {}: the token is not a valid header value", self.scope)))?;
        header.set_sensitive(true);
        let now = OffsetDateTime::now_utc();
        let lifetime = (token.expires_on - now).max(azure_core::time::Duration::ZERO);
        let margin = lifetime
            .checked_div(2)
            .unwrap_or(lifetime)
            .min(azure_core::time::Duration::try_from(REFRESH_MARGIN).unwrap_or(azure_core::time::Duration::ZERO));
        tracing::debug!(expires_in_s = lifetime.whole_seconds(), "new Graph token");
        Ok(Cached { header, refresh_at: token.expires_on - margin })
    }
}
