//! Crash consistency: the real `handler` process with the embedded store, driven over HTTP as the
//! Functions host drives it, against the Graph simulator, killed with SIGKILL at random points of
//! its runs (while Graph calls are in flight, while the run's transaction is open, after it
//! committed but before the host got the answer) and restarted on the same database file. The
//! host then retries the occurrence (sometimes as past due) or moves on to the next one.
//!
//! After recovery the stored history must equal the simulator's truth (`common::oracle`), allowing
//! only runs that did not happen: a killed run either recorded everything it planned (it then
//! counts as a run that happened, at the observation time its records carry) or nothing. The
//! last-known state must equal the last record of every user, and SQLite's integrity check must
//! pass (`common::host_runs`).
//!
//! Quick profile by default (CI). Long profile, whose figures are in docs/reliability.md:
//! `RELIABILITY_PROFILE=long cargo nextest run --test crash_consistency --no-capture`.
//! `RELIABILITY_SEED=<n>` replays a seed's choices (kill delays, slots); every test prints it.

mod common;

use std::time::Duration;

use common::host_runs::{HostBench, Kill, Outcome, Phase};
use common::seeded::{Rng, long_profile, seed};
use teams_presence::simulator::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_doubles_nothing() {
    let seed = seed();
    let (attempts, users) = if long_profile() { (300, 5_000) } else { (36, 2_000) };
    println!("crash: seed={seed} attempts={attempts} users={users} (replay with RELIABILITY_SEED={seed})");
    let mut rng = Rng(seed);
    // Every Graph call takes 20-60 ms and member pages hold 100 ids, so a run spends a few hundred
    // milliseconds in Graph calls; a third of the users change at every epoch, so each run's
    // transaction writes hundreds of rows.
    let config = SimConfig::standard(users)
        .max_page_size(100)
        .latency(Duration::from_millis(20))
        .latency_spread(Duration::from_millis(40))
        .change_rate(0.3)
        .seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut bench = HostBench::new(config, dir.path().join("presence.db")).await;

    // Two clean runs: the first sightings, then a typical run to size the kill delays by.
    bench.attempt(0, false, None).await;
    let typical = bench.attempt(1, false, None).await;
    assert!(matches!(typical.outcome, Outcome::Completed { complete: true, .. }), "{:?}", typical.outcome);
    let run_ms = (typical.to - typical.from).num_milliseconds().max(1) as u64;
    let store_ms = bench.store_phase().as_millis().max(1) as u64;
    println!(
        "crash: a typical run takes {run_ms} ms, of which {store_ms} ms between handing the plan to the store and the commit"
    );

    let mut slot = 2;
    for index in 0..attempts {
        // A kill at a uniform delay mostly lands in Graph calls, which take most of a run; the
        // store phase and the moment after the commit are aimed at by the handler's log lines.
        // The first three attempts take one kind each, so every kind is in every profile.
        let kind = if index < 3 { [4, 12, 17][index] } else { rng.below(20) as usize };
        let kill = match kind {
            0..=3 => None,
            4..=11 => Some(Kill::After(Duration::from_millis(rng.below(run_ms * 11 / 10)))),
            12..=16 => Some(Kill::InStore(Duration::from_micros(rng.below(store_ms * 1_500)))),
            _ => Some(Kill::AfterCommit),
        };
        let killed = bench.attempt(slot, false, kill).await.killed;
        // The host retries a failed occurrence (or runs it as past due after a restart) about
        // half the time; otherwise the next occurrence comes. A host that went down with the
        // handler after the commit had not saved the occurrence as done: it runs it again.
        if killed && (matches!(kill, Some(Kill::AfterCommit)) || rng.chance(50)) {
            let past_due = rng.chance(50);
            let kill = rng.chance(30).then(|| Kill::After(Duration::from_millis(rng.below(run_ms))));
            bench.attempt(slot, past_due, kill).await;
        }
        slot += 1;
    }
    // Two clean runs close: whatever a killed or repeated run left is recorded by them.
    bench.attempt(slot, false, None).await;
    bench.attempt(slot + 1, false, None).await;

    let verdict = bench.verdict().await;
    let figures = verdict.figures;
    println!("crash: kills={} {figures}", bench.kills);
    println!("crash: handler starts={} {}", bench.starts, verdict.describe());
    assert!(verdict.failed.is_empty(), "runs failed with nothing but kills injected: {:?}", verdict.failed);
    assert_eq!((figures.lost, figures.duplicated, figures.wrong), (0, 0, 0), "{figures}");
    assert_eq!(verdict.state_mismatches, 0, "the last-known state differs from the history");
    assert_eq!(verdict.integrity, "ok", "SQLite integrity check");
    assert!(figures.changes_expected > bench.users.len() * 3 / 2, "presence barely changed: {figures}");
    assert_eq!(verdict.commits_lost, 0, "a run killed after its commit must be in the store");
    assert!(bench.kills >= attempts / 3, "too few kills landed: {}", bench.kills);
    assert!(verdict.killed_in(Phase::Store) > 0, "no kill landed in the store phase: {}", verdict.describe());
    assert!(verdict.killed_after_commit() > 0, "no kill landed after a commit: {}", verdict.describe());
}
