//! The Cosmos DB SDK's in-memory emulator, provisioned like a deployment: a database with the
//! history container (partitioned by `/userId`) and the state container (by `/id`).
//!
//! Stores are built with key auth on a real `CosmosClient`, so every call goes through the SDK's
//! production pipeline (retries, routing, fault injection) down to the emulator's transport.

use std::sync::Arc;

use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::fault_injection::FaultInjectionRule;
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosClientBuilder, CosmosRuntimeBuilder, FeedScope,
    RoutingStrategy,
};
use azure_data_cosmos_driver::CosmosDriverRuntimeBuilder;
use azure_data_cosmos_driver::in_memory_emulator::{
    ContainerConfig, InMemoryEmulatorHttpClient, VirtualAccountConfig, VirtualRegion,
};
use futures::TryStreamExt;
use teams_presence::config::{
    CosmosSettings, DEFAULT_COSMOS_CONTAINER, DEFAULT_COSMOS_DATABASE, DEFAULT_COSMOS_STATE_CONTAINER,
};
use teams_presence::store::cosmos::{CosmosStore, Tuning};

pub const ENDPOINT: &str = "https://eastus.emulator.local";
pub const KEY: &str = "dGVzdGtleQ==";

pub struct Emulator {
    pub client: Arc<InMemoryEmulatorHttpClient>,
    pub settings: CosmosSettings,
}

impl Emulator {
    pub fn new() -> Self {
        Self::build(None)
    }

    /// With `partitions` physical partitions per container instead of the emulator's default
    /// four. The emulator counts a partition's documents on every point request (its
    /// `x-ms-resource-usage` header), so a benchmark holding 100,000s of documents spreads them
    /// over many partitions to keep each request cheap.
    pub fn with_partitions(partitions: u32) -> Self {
        Self::build(Some(partitions))
    }

    fn build(partitions: Option<u32>) -> Self {
        let config = VirtualAccountConfig::new(vec![VirtualRegion::new(
            "East US",
            azure_core::http::Url::parse(ENDPOINT).unwrap(),
        )])
        .unwrap();
        let client = Arc::new(InMemoryEmulatorHttpClient::new(config));
        let store = client.store();
        store.create_database(DEFAULT_COSMOS_DATABASE);
        let partitioned_by = |path: &str| {
            serde_json::from_value(serde_json::json!({"paths": [path], "kind": "Hash", "version": 2})).unwrap()
        };
        let create = |name: &str, key: &str| match partitions {
            None => store.create_container(DEFAULT_COSMOS_DATABASE, name, partitioned_by(key)),
            Some(n) => {
                let config = ContainerConfig::new().with_partition_count(n).build().unwrap();
                store.create_container_with_config(DEFAULT_COSMOS_DATABASE, name, partitioned_by(key), config)
            }
        };
        create(DEFAULT_COSMOS_CONTAINER, "/userId");
        create(DEFAULT_COSMOS_STATE_CONTAINER, "/id");
        let settings = CosmosSettings {
            endpoint: url::Url::parse(ENDPOINT).unwrap(),
            database: DEFAULT_COSMOS_DATABASE.into(),
            container: DEFAULT_COSMOS_CONTAINER.into(),
            state_container: DEFAULT_COSMOS_STATE_CONTAINER.into(),
            key: None,
        };
        Self { client, settings }
    }

    /// A fresh SDK client, as a new process would build one.
    pub async fn sdk_client(&self, faults: Vec<Arc<FaultInjectionRule>>) -> CosmosClient {
        self.sdk_client_on(self.client.runtime_builder(), faults).await
    }

    /// A fresh SDK client whose requests take `transport` to this emulator (e.g. through the
    /// request-unit budget of `ru_budget.rs`).
    pub async fn sdk_client_on(
        &self,
        transport: CosmosDriverRuntimeBuilder,
        faults: Vec<Arc<FaultInjectionRule>>,
    ) -> CosmosClient {
        let runtime = CosmosRuntimeBuilder::from(transport).build().await.unwrap();
        let mut builder = CosmosClientBuilder::new().with_runtime(runtime);
        if !faults.is_empty() {
            builder = builder.with_fault_injection_rules(faults).unwrap();
        }
        let account = AccountReference::with_authentication_key(
            ENDPOINT.parse::<AccountEndpoint>().unwrap(),
            azure_core::credentials::Secret::new(KEY),
        );
        builder.build(account, RoutingStrategy::ProximityTo(Region::EAST_US)).await.unwrap()
    }

    /// The history container, its requests through `client`.
    pub async fn history_container(&self, client: &CosmosClient) -> ContainerClient {
        client
            .database_client(self.settings.database.as_str())
            .container_client(self.settings.container.as_str(), None)
            .await
            .unwrap()
    }

    /// A store instance as a new (cold) process would open it.
    pub async fn store(&self, tuning: Tuning, faults: Vec<Arc<FaultInjectionRule>>) -> CosmosStore {
        CosmosStore::from_client(self.sdk_client(faults).await, &self.settings, tuning).await.unwrap()
    }

    /// Every document of a container, system properties (`_rid`, `_ts`, ...) removed.
    pub async fn documents(&self, container: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let client = self.sdk_client(Vec::new()).await;
        let container =
            client.database_client(self.settings.database.as_str()).container_client(container, None).await.unwrap();
        let docs: Vec<serde_json::Map<String, serde_json::Value>> = container
            .query_items("SELECT * FROM c", FeedScope::full_container(), None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        docs.into_iter()
            .map(|mut doc| {
                doc.retain(|key, _| !key.starts_with('_'));
                doc
            })
            .collect()
    }

    pub async fn history_documents(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.documents(&self.settings.container.clone()).await
    }
}
