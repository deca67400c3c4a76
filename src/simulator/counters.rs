//! What the simulator saw, for tests and benchmarks to assert on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

#[derive(Default)]
pub struct Counters {
    pub member_calls: AtomicU64,
    pub presence_calls: AtomicU64,
    /// Single-user presence reads, direct or as `$batch` items (each counts against the limit).
    pub user_presence_calls: AtomicU64,
    pub batch_calls: AtomicU64,
    pub max_ids_per_call: AtomicU64,
    pub throttled: AtomicU64,
    pub tokens_issued: AtomicU64,
    pub unauthorized: AtomicU64,
    pub not_found: AtomicU64,
    /// Arrival time and peer address of every presence call (throttled ones included).
    pub presence_arrivals: Mutex<Vec<(Instant, SocketAddr)>>,
    /// Epoch served → number of presence responses that served it.
    pub served_epochs: Mutex<BTreeMap<u64, u64>>,
    /// `client_id` of each managed-identity token request (None: system-assigned).
    pub identity_client_ids: Mutex<Vec<Option<String>>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub member_calls: u64,
    pub presence_calls: u64,
    pub user_presence_calls: u64,
    pub batch_calls: u64,
    pub max_ids_per_call: u64,
    /// Most presence calls that arrived within any one throttle window.
    pub max_presence_calls_in_window: u64,
    pub throttled: u64,
    pub tokens_issued: u64,
    pub unauthorized: u64,
    pub not_found: u64,
    pub served_epochs: BTreeMap<u64, u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record_presence(&self, at: Instant, peer: SocketAddr, ids: usize) {
        Self::add(&self.presence_calls, 1);
        self.max_ids_per_call.fetch_max(ids as u64, Ordering::Relaxed);
        lock(&self.presence_arrivals).push((at, peer));
    }

    pub fn record_epoch(&self, epoch: u64) {
        *lock(&self.served_epochs).entry(epoch).or_default() += 1;
    }

    pub fn peers(&self) -> Vec<SocketAddr> {
        lock(&self.presence_arrivals).iter().map(|(_, p)| *p).collect()
    }

    pub fn snapshot(&self, window: Duration) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut times: Vec<Instant> = lock(&self.presence_arrivals).iter().map(|(t, _)| *t).collect();
        times.sort_unstable();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        CounterSnapshot {
            member_calls: get(&self.member_calls),
            presence_calls: get(&self.presence_calls),
            user_presence_calls: get(&self.user_presence_calls),
            batch_calls: get(&self.batch_calls),
            max_ids_per_call: get(&self.max_ids_per_call),
            max_presence_calls_in_window: best as u64,
            throttled: get(&self.throttled),
            tokens_issued: get(&self.tokens_issued),
            unauthorized: get(&self.unauthorized),
            not_found: get(&self.not_found),
            served_epochs: lock(&self.served_epochs).clone(),
        }
    }
}
