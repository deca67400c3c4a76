//! A request-unit budget for the Cosmos SDK's in-memory emulator: what a real account does when
//! a client asks for more request units per second than a container has.
//!
//! The emulator answers every request at once. This module puts a transport of its own between
//! the SDK's pipeline and the emulator (the driver's `test` module, feature `__internal_mocking`),
//! so everything above it (the SDK's retries, routing, diagnostics, the store) runs as in
//! production. Each data-plane request (a path with `/docs`) is admitted against the token
//! bucket of its container's physical partition, executed by the emulator, and then charged what
//! the emulator's response says it cost (`x-ms-request-charge`): a bucket may go into debt by one
//! request's charge, and is refilled at the partition's RU/s up to one second's worth. A request
//! that finds its partition's bucket spent gets what Cosmos DB answers, 429 with substatus 3200
//! and `x-ms-retry-after-ms`, and is not executed ("no changes were made"). Throttled requests are
//! charged nothing here; metadata requests (containers, partition key ranges) are not budgeted.
//!
//! Platform facts modelled (see docs/capacity.md for the sources):
//! - Provisioned throughput, manual or autoscale, is spread evenly over a container's physical
//!   partitions (learn.microsoft.com/azure/cosmos-db/nosql/distribute-throughput-across-partitions);
//!   a physical partition serves up to 10,000 RU/s (learn.microsoft.com/azure/cosmos-db/concepts-limits)
//!   and holds up to 50 GB (the serverless table below; learn.microsoft.com/azure/cosmos-db/partitioning-overview).
//! - Serverless: 5,000 RU/s per container up to 250 GB or five physical partitions, then
//!   1,000 RU/s more per partition (learn.microsoft.com/azure/cosmos-db/serverless-performance,
//!   page dated 2022-12-01, whose table also gives the per-partition share: 5,000 / partitions up
//!   to five, then 1,000). A later revision of the serverless pages says each physical partition
//!   handles up to 5,000 RU/s; both start a container at 5,000 RU/s, which is what the
//!   benchmarks use.
//! - Burst capacity (an account option, provisioned throughput only, partitions below
//!   3,000 RU/s): a partition accumulates up to 5 minutes of idle capacity and spends it at up
//!   to 3,000 RU/s (learn.microsoft.com/azure/cosmos-db/burst-capacity).
//! - The service documents `x-ms-retry-after-ms` only as the time to wait before retrying, not how
//!   it is computed. Here it is the time until the partition's bucket is out of debt.
//!
//! What the SDK does with a 429 (`azure_data_cosmos_driver` 1.0.0, `driver/pipeline/components.rs`
//! and `driver/transport/transport_pipeline.rs`): it waits `x-ms-retry-after-ms` (capped at 15 s
//! a retry for documents, 5 s for metadata) and retries, up to 18 times for documents with 270 s
//! of waits in all (metadata: 9 times, 30 s), plus one forced final retry when the wait budget
//! rather than the count ran out; then the 429 reaches the caller.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::{Request, StatusCode};
use azure_data_cosmos_driver::diagnostics::RequestSentStatus;
use azure_data_cosmos_driver::in_memory_emulator::InMemoryEmulatorHttpClient;
use azure_data_cosmos_driver::test::{
    ConnectionPoolOptions, HttpClientConfig, HttpClientFactory, HttpRequest, HttpResponse, TransportClient,
    TransportError,
};
use azure_data_cosmos_driver::{CosmosDriverRuntimeBuilder, CosmosError, CosmosStatus};
use teams_presence::store::cosmos::{CosmosStore, Tuning};
use tokio::time::Instant;

use super::cosmos_emulator::Emulator;

/// Serverless: 5,000 RU/s per container up to five physical partitions (250 GB).
pub const SERVERLESS_BASE_RU_PER_S: f64 = 5_000.0;
/// Serverless: what each physical partition beyond the fifth adds.
pub const SERVERLESS_RU_PER_EXTRA_PARTITION: f64 = 1_000.0;
/// Storage of one physical partition (both modes).
pub const PARTITION_STORAGE_GB: f64 = 50.0;
/// Provisioned throughput one physical partition serves at most.
pub const PARTITION_MAX_RU_PER_S: f64 = 10_000.0;
/// Burst capacity: partitions at or above this RU/s get none; bursts are spent at up to this rate.
pub const BURST_MAX_RU_PER_S: f64 = 3_000.0;
/// Burst capacity: idle capacity accumulates for up to this long.
pub const BURST_ACCUMULATION: Duration = Duration::from_secs(300);

const SUBSTATUS: HeaderName = HeaderName::from_static("x-ms-substatus");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
const REQUEST_CHARGE: HeaderName = HeaderName::from_static("x-ms-request-charge");
const PARTITION_KEY: HeaderName = HeaderName::from_static("x-ms-documentdb-partitionkey");
const PARTITION_KEY_RANGE: HeaderName = HeaderName::from_static("x-ms-documentdb-partitionkeyrangeid");
const ACTIVITY_ID: HeaderName = HeaderName::from_static("x-ms-activity-id");
/// Cosmos DB's substatus of a 429 for exhausted request units (RequestRateTooLarge).
pub const SUBSTATUS_RU_EXHAUSTED: u32 = 3200;

/// The throughput of one container and how it is divided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    /// What the container serves per second, all partitions together.
    pub ru_per_s: f64,
    pub partitions: u32,
    /// What each physical partition serves per second.
    pub per_partition: f64,
    /// Serverless: no burst capacity.
    pub serverless: bool,
    /// Burst capacity applies (provisioned, enabled on the account, partitions < 3,000 RU/s).
    pub burst: bool,
}

impl Throughput {
    /// Provisioned throughput (manual, or autoscale at its maximum) over `partitions` physical
    /// partitions, evenly.
    pub fn provisioned(ru_per_s: f64, partitions: u32) -> Self {
        let partitions = partitions.max(1);
        Self { ru_per_s, partitions, per_partition: ru_per_s / f64::from(partitions), serverless: false, burst: false }
    }

    /// Provisioned throughput with as many physical partitions as `storage_gb` and `ru_per_s`
    /// need (50 GB and 10,000 RU/s each, at least one).
    pub fn provisioned_for_storage(ru_per_s: f64, storage_gb: f64) -> Self {
        let by_storage = (storage_gb / PARTITION_STORAGE_GB).ceil();
        let by_throughput = (ru_per_s / PARTITION_MAX_RU_PER_S).ceil();
        Self::provisioned(ru_per_s, by_storage.max(by_throughput).max(1.0) as u32)
    }

    /// A serverless container holding `storage_gb`: 5,000 RU/s over up to five partitions, then
    /// 1,000 RU/s per partition.
    pub fn serverless(storage_gb: f64) -> Self {
        let partitions = (storage_gb / PARTITION_STORAGE_GB).ceil().max(1.0) as u32;
        let extra = f64::from(partitions.saturating_sub(5));
        let ru_per_s = SERVERLESS_BASE_RU_PER_S + extra * SERVERLESS_RU_PER_EXTRA_PARTITION;
        Self { ru_per_s, partitions, per_partition: ru_per_s / f64::from(partitions), serverless: true, burst: false }
    }

    /// With the account's burst capacity (provisioned throughput below 3,000 RU/s per partition).
    pub fn with_burst_capacity(self) -> Self {
        Self { burst: !self.serverless && self.per_partition < BURST_MAX_RU_PER_S, ..self }
    }
}

/// What a budgeted container served.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerFigures {
    /// Request units charged by admitted requests (burst included).
    pub ru: f64,
    /// Of `ru`, what burst capacity served.
    pub burst_ru: f64,
    /// Requests admitted and executed.
    pub requests: u64,
    /// Of `requests`, those that created a document (201).
    pub created: u64,
    /// Requests answered 429 / 3200 (each SDK retry of a request counts again).
    pub throttled: u64,
    /// The longest `x-ms-retry-after-ms` given.
    pub max_retry_after_ms: u64,
    /// `ru` by physical partition.
    pub ru_by_partition: Vec<f64>,
}

/// One physical partition's token bucket.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    /// RU available now; negative while a request's charge is being paid off.
    tokens: f64,
    last: Instant,
    burst: Option<Burst>,
}

#[derive(Debug)]
struct Burst {
    /// Idle capacity accumulated, up to 5 minutes' worth of `rate`.
    stored: f64,
    /// Paces spending: refilled at 3,000 RU/s less the provisioned rate, one second's worth.
    pace: f64,
    pace_rate: f64,
}

/// Floating-point slack when a bucket refills to exactly zero.
const EPSILON_RU: f64 = 1e-9;

/// Which bucket admitted a request, so that its charge is taken from there.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Admitted {
    Provisioned,
    Burst,
}

impl Bucket {
    fn new(throughput: &Throughput, now: Instant) -> Self {
        let rate = throughput.per_partition;
        let burst = throughput.burst.then_some(Burst { stored: 0.0, pace: 0.0, pace_rate: BURST_MAX_RU_PER_S - rate });
        // An idle container can serve a full second's worth at once.
        Self { rate, tokens: rate, last: now, burst }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let gained = self.rate * elapsed;
        let room = (self.rate - self.tokens).max(0.0);
        let kept = gained.min(room);
        self.tokens += kept;
        if let Some(burst) = &mut self.burst {
            // What the partition could have served but did not: idle capacity.
            let limit = self.rate * BURST_ACCUMULATION.as_secs_f64();
            burst.stored = (burst.stored + gained - kept).min(limit);
            burst.pace = (burst.pace + burst.pace_rate * elapsed).min(burst.pace_rate);
        }
    }

    /// Admits a request, or says how long to wait.
    fn admit(&mut self, now: Instant) -> Result<Admitted, Duration> {
        self.refill(now);
        // Out of debt (a retry-after is rounded up to whole ms, so waiting it out gets here).
        if self.tokens >= -EPSILON_RU {
            return Ok(Admitted::Provisioned);
        }
        let mut wait = -self.tokens / self.rate;
        if let Some(burst) = &self.burst
            && burst.stored > EPSILON_RU
        {
            if burst.pace >= -EPSILON_RU {
                return Ok(Admitted::Burst);
            }
            wait = wait.min(-burst.pace / burst.pace_rate);
        }
        Err(Duration::from_secs_f64(wait))
    }

    fn charge(&mut self, from: Admitted, ru: f64) {
        match (from, &mut self.burst) {
            (Admitted::Burst, Some(burst)) => {
                burst.stored -= ru;
                burst.pace -= ru;
            }
            _ => self.tokens -= ru,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<(String, u32), Bucket>,
    figures: BTreeMap<String, ContainerFigures>,
}

#[derive(Debug)]
struct Inner {
    emulator: Arc<InMemoryEmulatorHttpClient>,
    containers: HashMap<String, Throughput>,
    state: Mutex<State>,
    /// Requests pass unbudgeted and uncounted (a benchmark's setup).
    suspended: AtomicBool,
}

/// The budget of an emulated account: shared by every SDK client built from it, as an account's
/// throughput is shared by every process that uses it.
#[derive(Clone, Debug)]
pub struct RuBudget {
    inner: Arc<Inner>,
}

impl RuBudget {
    /// A budget for `emulator`'s containers named in `containers`; the others are unlimited.
    pub fn new(emulator: &Emulator, containers: impl IntoIterator<Item = (String, Throughput)>) -> Self {
        Self::for_client(emulator.client.clone(), containers)
    }

    pub fn for_client(
        emulator: Arc<InMemoryEmulatorHttpClient>,
        containers: impl IntoIterator<Item = (String, Throughput)>,
    ) -> Self {
        let containers: HashMap<String, Throughput> = containers.into_iter().collect();
        let mut state = State::default();
        // The account exists from now on: idle time before the first request counts for burst.
        let now = Instant::now();
        for (name, throughput) in &containers {
            let figures = ContainerFigures {
                ru_by_partition: vec![0.0; throughput.partitions as usize],
                ..ContainerFigures::default()
            };
            state.figures.insert(name.clone(), figures);
            for partition in 0..throughput.partitions {
                state.buckets.insert((name.clone(), partition), Bucket::new(throughput, now));
            }
        }
        Self {
            inner: Arc::new(Inner {
                emulator,
                containers,
                state: Mutex::new(state),
                suspended: AtomicBool::new(false),
            }),
        }
    }

    /// The history and state containers of `emulator`, each with `throughput` (serverless and
    /// dedicated provisioned throughput are both per container).
    pub fn history_and_state(emulator: &Emulator, throughput: Throughput) -> Self {
        let settings = &emulator.settings;
        Self::new(emulator, [(settings.container.clone(), throughput), (settings.state_container.clone(), throughput)])
    }

    /// Until [`RuBudget::resume`], requests are neither budgeted nor counted (e.g. while a
    /// benchmark writes the data it starts from).
    pub fn suspend(&self) {
        self.inner.suspended.store(true, Ordering::SeqCst);
    }

    /// Budgets again, every partition starting from a full second's worth.
    pub fn resume(&self) {
        let now = Instant::now();
        let mut state = self.inner.state.lock().unwrap();
        for ((container, _), bucket) in state.buckets.iter_mut() {
            *bucket = Bucket::new(&self.inner.containers[container], now);
        }
        self.inner.suspended.store(false, Ordering::SeqCst);
    }

    /// A driver runtime whose transport is this budget in front of the emulator.
    pub fn runtime_builder(&self) -> CosmosDriverRuntimeBuilder {
        CosmosDriverRuntimeBuilder::new().with_mock_http_client_factory(Arc::new(Factory(self.inner.clone())))
    }

    /// A store instance as a new process would open it, its requests on this budget.
    pub async fn store(&self, emulator: &Emulator, tuning: Tuning) -> CosmosStore {
        let client = emulator.sdk_client_on(self.runtime_builder(), Vec::new()).await;
        CosmosStore::from_client(client, &emulator.settings, tuning).await.unwrap()
    }

    /// What each budgeted container served so far.
    pub fn figures(&self) -> BTreeMap<String, ContainerFigures> {
        self.inner.state.lock().unwrap().figures.clone()
    }

    pub fn container(&self, name: &str) -> ContainerFigures {
        self.figures().get(name).cloned().unwrap_or_default()
    }

    /// 429s answered, all containers.
    pub fn throttled(&self) -> u64 {
        self.figures().values().map(|f| f.throttled).sum()
    }

    /// Request units served, all budgeted containers.
    pub fn ru(&self) -> f64 {
        self.figures().values().map(|f| f.ru).sum()
    }

    /// The container and physical partition a request is charged to, or `None` when it is not
    /// a budgeted data-plane request.
    fn target(&self, request: &HttpRequest) -> Option<(String, u32)> {
        if self.inner.suspended.load(Ordering::SeqCst) {
            return None;
        }
        let segments: Vec<&str> = request.url.path().trim_matches('/').split('/').collect();
        let ["dbs", _, "colls", container, "docs", ..] = segments[..] else { return None };
        let throughput = self.inner.containers.get(container)?;
        let partition = match (
            request.headers.get_optional_str(&PARTITION_KEY),
            request.headers.get_optional_str(&PARTITION_KEY_RANGE),
        ) {
            // Logical partitions are hashed onto physical ones; any uniform hash spreads them as
            // Cosmos DB's ranges of the partition key's hash do.
            (Some(key), _) => {
                let mut hasher = std::hash::DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % u64::from(throughput.partitions)) as u32
            }
            (None, Some(range)) => range.parse::<u32>().unwrap_or(0) % throughput.partitions,
            (None, None) => 0,
        };
        Some((container.to_string(), partition))
    }

    fn admit(&self, target: &(String, u32)) -> Result<Admitted, Duration> {
        let now = Instant::now();
        let mut state = self.inner.state.lock().unwrap();
        let throughput = self.inner.containers[&target.0];
        let bucket = state.buckets.entry(target.clone()).or_insert_with(|| Bucket::new(&throughput, now));
        let decision = bucket.admit(now);
        if let Err(wait) = decision {
            let figures = state.figures.entry(target.0.clone()).or_default();
            figures.throttled += 1;
            figures.max_retry_after_ms = figures.max_retry_after_ms.max(retry_after_ms(wait));
        }
        decision
    }

    fn charge(&self, target: &(String, u32), from: Admitted, ru: f64, status: u16) {
        let mut state = self.inner.state.lock().unwrap();
        if let Some(bucket) = state.buckets.get_mut(target) {
            bucket.charge(from, ru);
        }
        let figures = state.figures.entry(target.0.clone()).or_default();
        figures.ru += ru;
        figures.requests += 1;
        figures.created += u64::from(status == 201);
        if from == Admitted::Burst {
            figures.burst_ru += ru;
        }
        if let Some(slot) = figures.ru_by_partition.get_mut(target.1 as usize) {
            *slot += ru;
        }
    }
}

/// Whole milliseconds, rounded up, at least one: the header's unit.
fn retry_after_ms(wait: Duration) -> u64 {
    (wait.as_secs_f64() * 1000.0).ceil().max(1.0) as u64
}

/// The answer Cosmos DB gives a request beyond the partition's request units.
fn throttled_response(request: &HttpRequest, wait: Duration) -> HttpResponse {
    let mut headers = Headers::new();
    headers.insert(SUBSTATUS, SUBSTATUS_RU_EXHAUSTED.to_string());
    headers.insert(RETRY_AFTER_MS, retry_after_ms(wait).to_string());
    headers.insert(REQUEST_CHARGE, "0");
    headers.insert("content-type", "application/json");
    if let Some(activity) = request.headers.get_optional_str(&ACTIVITY_ID) {
        headers.insert(ACTIVITY_ID, activity.to_string());
    }
    let body = serde_json::json!({
        "code": "TooManyRequests",
        "message": "Request rate is large. More Request Units may be needed, so no changes were made. \
                    Please retry this request later.",
    });
    HttpResponse { status: 429, headers, body: body.to_string().into_bytes() }
}

#[derive(Debug)]
struct Factory(Arc<Inner>);

impl HttpClientFactory for Factory {
    fn build(
        &self,
        _: &ConnectionPoolOptions,
        _: HttpClientConfig,
    ) -> azure_data_cosmos_driver::Result<Arc<dyn TransportClient>> {
        Ok(Arc::new(Transport(RuBudget { inner: self.0.clone() })))
    }
}

#[derive(Debug)]
struct Transport(RuBudget);

#[async_trait]
impl TransportClient for Transport {
    async fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let budget = &self.0;
        let target = budget.target(request);
        let admitted = match &target {
            Some(target) => match budget.admit(target) {
                Ok(admitted) => Some(admitted),
                Err(wait) => return Ok(throttled_response(request, wait)),
            },
            None => None,
        };
        let response = execute(&budget.inner.emulator, request).await?;
        if let (Some(target), Some(admitted)) = (&target, admitted) {
            let ru = response.headers.get_optional_str(&REQUEST_CHARGE).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            budget.charge(target, admitted, ru, response.status);
        }
        Ok(response)
    }
}

/// What the emulator's own transport does: the request as an `azure_core` request, the response
/// buffered.
async fn execute(emulator: &InMemoryEmulatorHttpClient, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
    let mut core = Request::new(request.url.clone(), request.method);
    for (name, value) in request.headers.iter() {
        core.headers_mut().insert(name.clone(), value.clone());
    }
    if let Some(body) = &request.body {
        core.set_body(body.to_vec());
    }
    let response =
        emulator.execute_request(&core).await.map_err(|e| TransportError::new(e, RequestSentStatus::Unknown))?;
    let raw = response.try_into_raw_response().await.map_err(|e| {
        let error = CosmosError::builder()
            .with_status(CosmosStatus::new(StatusCode::InternalServerError))
            .with_message(format!("reading the emulator's response: {e}"))
            .build();
        TransportError::new(error, RequestSentStatus::Sent)
    })?;
    Ok(HttpResponse { status: u16::from(raw.status()), headers: raw.headers().clone(), body: raw.body().to_vec() })
}
