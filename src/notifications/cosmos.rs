//! The counts in Cosmos DB for NoSQL (serverless), reached with the receiver's managed identity.
//!
//! Why Cosmos DB: the receiver's host storage account could hold a table, but no maintained Rust
//! crate speaks Table storage with Entra tokens, while this crate already uses the Cosmos DB SDK
//! (and tests it on the SDK's in-memory emulator); a serverless account costs a few cents a
//! month at a handful of notifications a day.
//!
//! One container partitioned by `/day`. Per (plan, version, event) a count document
//! `c:<plan>:<version>:<event>`; per delivery a receipt document `r:<digest>` with a `ttl`, which
//! Cosmos DB deletes by itself (the container's default TTL is -1: on, per item). The receipt is
//! created and the count raised in one transactional batch (both live in the day's partition), so a
//! delivery is counted exactly once or not at all; the count's etag makes concurrent deliveries
//! retry instead of losing an increment.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::options::{BatchReplaceOptions, Precondition};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosClientBuilder, FeedScope, RoutingStrategy,
    TransactionalBatch,
};
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::counts::{CountError, CountRow, InstallCounts, RECEIPT_TTL, Recorded};
use super::event::{CountKey, InstallEvent};

/// Concurrent deliveries for the same count retry this often before the request fails (500, and
/// Azure delivers it again later).
const ATTEMPTS: usize = 8;

pub struct CosmosCounts {
    container: ContainerClient,
    description: String,
}

#[derive(Serialize, Deserialize)]
struct CountDoc {
    id: String,
    day: String,
    kind: String,
    plan: String,
    version: String,
    event: String,
    count: u64,
}

#[derive(Serialize)]
struct ReceiptDoc<'a> {
    id: String,
    day: String,
    kind: &'a str,
    ttl: u64,
}

impl CosmosCounts {
    pub async fn connect(
        endpoint: &str,
        database: &str,
        container: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Self, CountError> {
        let account_endpoint: AccountEndpoint = endpoint
            .parse()
            .map_err(|e| CountError::Open(endpoint.to_string(), format!("not a Cosmos DB account endpoint: {e}")))?;
        let client = CosmosClientBuilder::new()
            .build(
                AccountReference::with_credential(account_endpoint, credential),
                RoutingStrategy::PreferredRegions(Vec::new()),
            )
            .await
            .map_err(|e| CountError::Open(endpoint.to_string(), e.to_string()))?;
        Self::from_client(client, endpoint, database, container).await
    }

    /// Uses a built client (tests build one on the SDK's in-memory emulator). The container must
    /// exist, partitioned by `/day`: the receiver's template creates it.
    pub async fn from_client(
        client: CosmosClient,
        endpoint: &str,
        database: &str,
        container: &str,
    ) -> Result<Self, CountError> {
        let description = format!("Cosmos DB {endpoint} database {database} container {container}");
        let container = client
            .database_client(database)
            .container_client(container, None)
            .await
            .map_err(|e| CountError::Open(description.clone(), e.to_string()))?;
        Ok(Self { container, description })
    }

    async fn read_count(&self, day: &str, id: &str) -> Result<Option<(CountDoc, String)>, CountError> {
        match self.container.read_item(day.to_string(), id, None).await {
            Ok(response) => {
                let etag = response.headers().etag().map(|e| e.to_string()).unwrap_or_default();
                let doc: CountDoc = response.into_model().map_err(|e| CountError::Io("read a count", e.to_string()))?;
                Ok(Some((doc, etag)))
            }
            Err(e) if e.status().status_code() == azure_core::http::StatusCode::NotFound => Ok(None),
            Err(e) => Err(CountError::Io("read a count", e.to_string())),
        }
    }
}

impl CosmosCounts {
    /// One transactional batch: the receipt created and the count raised (or created) from the
    /// `current` read. `None` when another delivery changed the count since that read.
    async fn attempt(
        &self,
        event: &InstallEvent,
        current: Option<(CountDoc, String)>,
    ) -> Result<Option<Recorded>, CountError> {
        let day = event.key.day.to_string();
        let id = count_id(&event.key);
        let batch_error = |e: azure_data_cosmos::CosmosError| CountError::Io("write a count", e.to_string());
        let receipt = ReceiptDoc {
            id: format!("r:{}", event.receipt.as_str()),
            day: day.clone(),
            kind: "receipt",
            ttl: RECEIPT_TTL.as_secs(),
        };
        let batch = TransactionalBatch::new(day.clone()).create_item(&receipt).map_err(batch_error)?;
        let batch = match current {
            Some((mut doc, etag)) => {
                doc.count += 1;
                let options = BatchReplaceOptions::default().with_precondition(Precondition::if_match(etag));
                batch.replace_item(id.clone(), &doc, Some(options)).map_err(batch_error)?
            }
            None => {
                let k = &event.key;
                let doc = CountDoc {
                    id: id.clone(),
                    day: day.clone(),
                    kind: "count".into(),
                    plan: k.plan.clone(),
                    version: k.version.clone(),
                    event: k.event.clone(),
                    count: 1,
                };
                batch.create_item(&doc).map_err(batch_error)?
            }
        };
        let response = self.container.execute_transactional_batch(batch, None).await.map_err(batch_error)?;
        let results = response.into_model().map_err(batch_error)?;
        let statuses: Vec<u16> = results.results().iter().map(|r| r.status_code()).collect();
        match statuses.as_slice() {
            [r, c] if (200..300).contains(r) && (200..300).contains(c) => Ok(Some(Recorded::Counted)),
            [409, _] => Ok(Some(Recorded::Duplicate)),
            // Another delivery changed or created the count first: read it again.
            [_, 412] | [_, 409] => Ok(None),
            other => Err(CountError::Io("write a count", format!("the batch answered {other:?}"))),
        }
    }
}

fn count_id(key: &CountKey) -> String {
    // Labels are letters, digits, '.', '-' and '_' (event::label); '/' is not allowed in an id.
    format!("c:{}:{}:{}", key.plan, key.version, key.event.replace('/', "-"))
}

#[async_trait]
impl InstallCounts for CosmosCounts {
    async fn record(&self, event: &InstallEvent, _now: DateTime<Utc>) -> Result<Recorded, CountError> {
        let day = event.key.day.to_string();
        let id = count_id(&event.key);
        for _ in 0..ATTEMPTS {
            let current = self.read_count(&day, &id).await?;
            if let Some(recorded) = self.attempt(event, current).await? {
                return Ok(recorded);
            }
        }
        Err(CountError::Io("write a count", format!("{ATTEMPTS} concurrent updates in a row")))
    }

    async fn counts(&self) -> Result<Vec<CountRow>, CountError> {
        let docs: Vec<serde_json::Value> = self
            .container
            .query_items("SELECT * FROM c", FeedScope::full_container(), None)
            .await
            .map_err(|e| CountError::Io("read the counts", e.to_string()))?
            .try_collect()
            .await
            .map_err(|e| CountError::Io("read the counts", e.to_string()))?;
        let mut rows = Vec::new();
        for doc in docs.into_iter().filter(|d| d["kind"] == "count") {
            let doc: CountDoc =
                serde_json::from_value(doc).map_err(|e| CountError::Io("read the counts", e.to_string()))?;
            let day = NaiveDate::parse_from_str(&doc.day, "%Y-%m-%d")
                .map_err(|e| CountError::Io("read the counts", format!("day {:?}: {e}", doc.day)))?;
            rows.push(CountRow {
                key: CountKey { plan: doc.plan, version: doc.version, event: doc.event, day },
                count: doc.count,
            });
        }
        rows.sort_by(|a, b| {
            (a.key.day, &a.key.plan, &a.key.version, &a.key.event).cmp(&(
                b.key.day,
                &b.key.plan,
                &b.key.version,
                &b.key.event,
            ))
        });
        Ok(rows)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_data_cosmos::CosmosRuntimeBuilder;
    use azure_data_cosmos::options::Region;
    use azure_data_cosmos_driver::in_memory_emulator::{
        InMemoryEmulatorHttpClient, VirtualAccountConfig, VirtualRegion,
    };

    const ENDPOINT: &str = "https://eastus.emulator.local";

    async fn counts() -> CosmosCounts {
        let config = VirtualAccountConfig::new(vec![VirtualRegion::new(
            "East US",
            azure_core::http::Url::parse(ENDPOINT).unwrap(),
        )])
        .unwrap();
        let emulator = Arc::new(InMemoryEmulatorHttpClient::new(config));
        emulator.store().create_database("installs");
        let by_day =
            serde_json::from_value(serde_json::json!({ "paths": ["/day"], "kind": "Hash", "version": 2 })).unwrap();
        emulator.store().create_container("installs", "installs", by_day);
        let runtime = CosmosRuntimeBuilder::from(emulator.runtime_builder()).build().await.unwrap();
        let account = AccountReference::with_authentication_key(
            ENDPOINT.parse::<AccountEndpoint>().unwrap(),
            azure_core::credentials::Secret::new("dGVzdGtleQ=="),
        );
        let client = CosmosClientBuilder::new()
            .with_runtime(runtime)
            .build(account, RoutingStrategy::ProximityTo(Region::EAST_US))
            .await
            .unwrap();
        CosmosCounts::from_client(client, ENDPOINT, "installs", "installs").await.unwrap()
    }

    fn event(time: &str) -> InstallEvent {
        let body = serde_json::json!({
            "eventType": "PUT", "provisioningState": "Succeeded", "eventTime": time, "applicationId": "/subscriptions/x/app",
            "plan": { "name": "standard", "version": "1.0.0" }
        });
        InstallEvent::parse(body.to_string().as_bytes(), None, b"k").unwrap()
    }

    /// Two deliveries that read the same count: the second's stale etag makes its batch fail
    /// whole (no receipt, no increment), and reading again counts it.
    #[tokio::test]
    async fn a_stale_count_is_read_again_instead_of_losing_an_increment() {
        let counts = counts().await;
        let (first, second) = (event("2026-01-02T10:00:00Z"), event("2026-01-02T11:00:00Z"));
        counts.record(&first, Utc::now()).await.unwrap();
        let day = first.key.day.to_string();
        let stale = counts.read_count(&day, &count_id(&first.key)).await.unwrap();
        counts.record(&event("2026-01-02T12:00:00Z"), Utc::now()).await.unwrap();
        assert_eq!(counts.attempt(&second, stale).await.unwrap(), None, "the stale etag must be refused");
        assert_eq!(
            counts.record(&second, Utc::now()).await.unwrap(),
            Recorded::Counted,
            "not a duplicate: no receipt was left"
        );
        assert_eq!(counts.counts().await.unwrap()[0].count, 3);
        // A count created meanwhile is a conflict too.
        let other = event("2026-01-03T10:00:00Z");
        counts.record(&event("2026-01-03T11:00:00Z"), Utc::now()).await.unwrap();
        assert_eq!(counts.attempt(&other, None).await.unwrap(), None);
    }

    /// The documented payloads (tests/fixtures/notifications): each counted once however often
    /// delivered, receipts expiring after 48 hours, and no identifier of a payload in any document.
    #[tokio::test]
    async fn documented_payloads_count_once_and_leave_no_identifier() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notifications");
        let mut payloads = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                payloads.push(std::fs::read_to_string(path).unwrap());
            }
        }
        assert_eq!(payloads.len(), 4);
        let counts = counts().await;
        let mut identifiers = Vec::new();
        for body in &payloads {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            for field in ["applicationId", "applicationDefinitionId"] {
                if let Some(id) = v[field].as_str() {
                    let segments: Vec<&str> = id.trim_start_matches('/').split('/').collect();
                    identifiers.extend([1, 3, 7].map(|i| segments[i].to_lowercase()));
                }
            }
            if let Some(usage) = v["billingDetails"]["resourceUsageId"].as_str() {
                identifiers.push(usage.to_lowercase());
            }
            let event = InstallEvent::parse(body.as_bytes(), Some("2.0.0"), b"k").unwrap();
            assert_eq!(counts.record(&event, Utc::now()).await.unwrap(), Recorded::Counted);
            assert_eq!(counts.record(&event, Utc::now()).await.unwrap(), Recorded::Duplicate);
        }
        let rows = counts.counts().await.unwrap();
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(rows.iter().all(|r| r.count == 1));
        let docs: Vec<serde_json::Value> = counts
            .container
            .query_items("SELECT * FROM c", FeedScope::full_container(), None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let receipts: Vec<&serde_json::Value> = docs.iter().filter(|d| d["kind"] == "receipt").collect();
        assert_eq!(receipts.len(), 4);
        assert!(receipts.iter().all(|d| d["ttl"] == 48 * 3600));
        let text = serde_json::to_string(&docs).unwrap().to_lowercase();
        assert!(identifiers.len() >= 8 && identifiers.contains(&"e81f3b5c-2d7a-4c90-9f14-6b3a8d2e5c71".to_string()));
        for id in &identifiers {
            assert!(!text.contains(id.as_str()), "Cosmos DB holds {id}");
        }
    }
}
