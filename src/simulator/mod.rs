//! The Graph simulator: a loopback stand-in for Microsoft Graph and the token endpoints, shared by
//! tests, the local run and the benchmarks.
//!
//! It serves the App Service managed-identity endpoint, the client-credentials token endpoint,
//! `transitiveMembers` (paged, with non-user members, nesting and overlap) and
//! `getPresencesByUserId` (650-id cap, full presence objects), enforces tokens and the documented
//! presence throttle, injects faults on request, counts what it saw, and knows the true
//! availability of every user at every epoch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::model::{GroupId, UserId};

mod counters;
mod directory;
mod faults;
mod presence_model;
mod routes;

pub use counters::CounterSnapshot;
pub use directory::{GroupSpec, user_id, user_index};
pub use faults::{Endpoint, Fault, RetryAfter};
pub use presence_model::AVAILABILITIES;

/// Everything about a simulated tenant and how its Graph behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub users: u32,
    pub groups: Vec<GroupSpec>,
    /// The secret the managed-identity endpoint expects in `X-IDENTITY-HEADER`.
    pub identity_header: String,
    /// Lifetime of issued tokens; Graph calls with an older token get 401.
    pub token_lifetime: Duration,
    /// Presence calls accepted per `throttle_window` before 429s (Graph: 1,500 per 30 s).
    pub throttle_limit: u32,
    pub throttle_window: Duration,
    /// Added to every Graph call.
    pub latency: Duration,
    /// A further uniformly random delay in `0..=latency_spread` per call, so calls of one run do
    /// not all take the same time (benchmarks use 50 ms + up to 100 ms).
    pub latency_spread: Duration,
    /// Largest page `transitiveMembers` returns (Graph: 999); lower it to force many pages.
    pub max_page_size: u32,
    /// Share of users whose availability changes at each epoch.
    pub change_rate: f64,
    /// Advance the epoch on this clock; `None`: only `SimHandle::advance_epoch` does.
    pub epoch_interval: Option<Duration>,
    /// Users Graph never returns presence for.
    pub missing_users: Vec<u32>,
    /// Users whose id makes Graph refuse the whole presence batch with 400.
    pub rejected_users: Vec<u32>,
    /// The client id and secret the client-credentials endpoint accepts.
    pub client_credentials: Option<(String, String)>,
    pub seed: u64,
}

impl SimConfig {
    pub fn new(users: u32) -> Self {
        Self {
            users,
            groups: Vec::new(),
            identity_header: "sim-identity-header".into(),
            token_lifetime: Duration::from_secs(3600),
            throttle_limit: 1_500,
            throttle_window: Duration::from_secs(30),
            latency: Duration::ZERO,
            latency_spread: Duration::ZERO,
            max_page_size: 999,
            change_rate: 0.1,
            epoch_interval: None,
            missing_users: Vec::new(),
            rejected_users: Vec::new(),
            client_credentials: None,
            seed: 0x7ea5,
        }
    }

    /// A tenant shaped like a customer's: four groups over `users` users that overlap, one nested
    /// in another, with devices, service principals and contacts mixed in. Returns the group ids
    /// to configure (the nested child is reached through its parent).
    pub fn standard(users: u32) -> Self {
        let [a, b, c, d] = standard_groups();
        let pct = |p: u32| ((u64::from(users) * u64::from(p)) / 100) as u32;
        Self::new(users)
            .group(GroupSpec::new(a).users(0..pct(40)).nested(d).others(25))
            .group(GroupSpec::new(b).users(pct(30)..pct(75)).others(10))
            .group(GroupSpec::new(c).users(pct(70)..users).others(5))
            .group(GroupSpec::new(d).users(pct(35)..pct(55)).others(3))
    }

    pub fn group(mut self, spec: GroupSpec) -> Self {
        self.groups.push(spec);
        self
    }

    pub fn throttle(mut self, limit: u32, window: Duration) -> Self {
        self.throttle_limit = limit;
        self.throttle_window = window;
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Each call waits `latency` plus a uniform random share of `spread`.
    pub fn latency_spread(mut self, spread: Duration) -> Self {
        self.latency_spread = spread;
        self
    }

    pub fn max_page_size(mut self, size: u32) -> Self {
        self.max_page_size = size.max(1);
        self
    }

    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    pub fn change_rate(mut self, rate: f64) -> Self {
        self.change_rate = rate;
        self
    }

    pub fn epoch_every(mut self, interval: Duration) -> Self {
        self.epoch_interval = Some(interval);
        self
    }

    pub fn missing_users(mut self, users: impl IntoIterator<Item = u32>) -> Self {
        self.missing_users.extend(users);
        self
    }

    pub fn rejected_users(mut self, users: impl IntoIterator<Item = u32>) -> Self {
        self.rejected_users.extend(users);
        self
    }

    pub fn client_credentials(mut self, client_id: &str, secret: &str) -> Self {
        self.client_credentials = Some((client_id.into(), secret.into()));
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// The ids of `SimConfig::standard`'s groups; the first three are the ones to configure.
pub fn standard_groups() -> [GroupId; 4] {
    [1, 2, 3, 4].map(|n| GroupId::from_u128(0x6000_0000_0000_4000_8000_0000_0000_0000 | n))
}

/// State shared by the request handlers.
pub(crate) struct Shared {
    config: SimConfig,
    origin: String,
    directory: directory::Directory,
    model: RwLock<presence_model::PresenceModel>,
    /// Issued tokens and when each stops being accepted.
    tokens: Mutex<HashMap<String, Instant>>,
    /// Accepted presence calls in the current throttle window, oldest first.
    throttle: Mutex<VecDeque<Instant>>,
    faults: faults::FaultQueue,
    counters: counters::Counters,
    missing: HashSet<u32>,
    rejected: HashSet<u32>,
    shutdown: Notify,
}

pub struct Simulator;

impl Simulator {
    /// Binds 127.0.0.1 on a free port and serves until `SimHandle::shutdown` (or drop).
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        Self::start_on(config, 0).await
    }

    pub async fn start_on(config: SimConfig, port: u16) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            origin: format!("http://{address}"),
            directory: directory::Directory::new(&config.groups, config.users),
            model: RwLock::new(presence_model::PresenceModel::new(config.users, config.change_rate, config.seed)),
            tokens: Mutex::default(),
            throttle: Mutex::default(),
            faults: faults::FaultQueue::default(),
            counters: counters::Counters::default(),
            missing: config.missing_users.iter().copied().collect(),
            rejected: config.rejected_users.iter().copied().collect(),
            shutdown: Notify::new(),
            config,
        });
        let app = routes::router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "graph simulator stopped");
            }
        })];
        if let Some(interval) = shared.config.epoch_interval {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
                loop {
                    tick.tick().await;
                    shared.advance_epoch();
                }
            }));
        }
        Ok(SimHandle { address, shared, tasks })
    }
}

impl Shared {
    fn advance_epoch(&self) -> u64 {
        self.model.write().unwrap_or_else(std::sync::PoisonError::into_inner).advance()
    }

    /// The service time of one Graph call.
    fn call_latency(&self) -> Duration {
        let spread = self.config.latency_spread.as_micros().min(u128::from(u64::MAX)) as u64;
        let extra = if spread == 0 { 0 } else { rand::random_range(0..=spread) };
        self.config.latency + Duration::from_micros(extra)
    }
}

pub struct SimHandle {
    address: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`: the origin, also the managed-identity `resource`.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// What `GRAPH_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("{}/v1.0", self.shared.origin)
    }

    /// What `IDENTITY_ENDPOINT` should be.
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.shared.origin)
    }

    /// What `IDENTITY_HEADER` should be.
    pub fn identity_header(&self) -> &str {
        &self.shared.config.identity_header
    }

    /// The client-credentials token URL for `tenant`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.origin)
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The true availability of `user` at `epoch` (recent epochs only).
    pub fn truth(&self, user: &UserId, epoch: u64) -> Option<&'static str> {
        let index = user_index(user)?;
        self.shared.model.read().unwrap_or_else(std::sync::PoisonError::into_inner).truth(index, epoch)
    }

    pub fn current_epoch(&self) -> u64 {
        self.shared.model.read().unwrap_or_else(std::sync::PoisonError::into_inner).current().0
    }

    pub fn advance_epoch(&self) -> u64 {
        self.shared.advance_epoch()
    }

    /// The distinct users of `groups` as the simulator defines them, sorted.
    pub fn expected_users(&self, groups: &[GroupId]) -> Vec<UserId> {
        let mut users: Vec<UserId> = groups
            .iter()
            .filter_map(|g| self.shared.directory.group(g))
            .flat_map(|g| g.user_indexes().map(user_id).collect::<Vec<_>>())
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot(self.shared.config.throttle_window)
    }

    /// The peer address of every presence call, in arrival order.
    pub fn presence_peers(&self) -> Vec<SocketAddr> {
        self.shared.counters.peers()
    }

    /// The `client_id` each managed-identity token request named (None: system-assigned).
    pub fn identity_client_ids(&self) -> Vec<Option<String>> {
        self.shared.counters.identity_client_ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Every token issued so far, so a test can search logs for them.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect()
    }

    /// Makes every issued token invalid, as a revocation or an early expiry would.
    pub fn revoke_tokens(&self) {
        let mut tokens = self.shared.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        tokens.values_mut().for_each(|expiry| *expiry = now);
    }

    /// The next `times` calls to `endpoint` get `fault`.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: usize) {
        self.shared.faults.push(endpoint, fault, times);
    }

    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.shutdown.notify_waiters();
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}
