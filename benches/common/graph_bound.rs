//! The Graph lower bound of a run against the simulator's standard tenant (`SimConfig::standard`):
//! the critical path with the simulator's latencies and limits and the handler's defaults, shared
//! by the benchmarks that compare a run's wall time with it.

/// The handler's defaults (src/config.rs).
pub const PRESENCE_CONCURRENCY: u64 = 8;
pub const GROUP_CONCURRENCY: u64 = 4;
pub const IDS_PER_CALL: u64 = 650;
pub const PAGE: u64 = 999;

/// The standard tenant's three configured groups, as transitiveMembers lists them: users
/// (the nested group's included) plus non-user members (SimConfig::standard).
pub fn group_sizes(users: u64) -> [u64; 3] {
    let pct = |p: u64| users * p / 100;
    [pct(40).max(pct(55)) + 25 + 1 + 3, pct(75) - pct(30) + 10, users - pct(70) + 5]
}

pub struct Bounds {
    pub members_s: f64,
    pub presence_s: f64,
    /// Nothing can finish before the last member page is read and its users' presence fetched,
    /// nor before the presence calls fit through the throttle.
    pub run_s: f64,
    /// What the presence throttle alone allows (issue 8's "about 31 s" at a million users).
    pub throttle_s: f64,
}

/// `mean_latency_s`: of one Graph call; `throttle`: presence calls allowed per window (Graph:
/// 1,500 per 30 s).
pub fn bounds(users: u64, mean_latency_s: f64, throttle_limit: u64, throttle_window_s: f64) -> Bounds {
    let lat = mean_latency_s;
    let pages: Vec<u64> = group_sizes(users).iter().map(|m| m.div_ceil(PAGE)).collect();
    // Groups are paged in parallel (3 groups <= GROUP_CONCURRENCY), each page after the last.
    assert!(pages.len() as u64 <= GROUP_CONCURRENCY);
    let members_s = *pages.iter().max().unwrap_or(&0) as f64 * lat;
    let calls = users.div_ceil(IDS_PER_CALL);
    let by_concurrency = calls.div_ceil(PRESENCE_CONCURRENCY) as f64 * lat;
    let throttle_s = ((calls.saturating_sub(1)) / throttle_limit) as f64 * throttle_window_s + lat;
    let presence_s = by_concurrency.max(throttle_s);
    Bounds { members_s, presence_s, run_s: (members_s + lat).max(presence_s), throttle_s }
}
