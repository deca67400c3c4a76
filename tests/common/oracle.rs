//! The reliability oracle: the history a correct poller writes, computed from the simulator's
//! true availability at each completed run, compared record for record with what was stored.
//!
//! A run that failed as a whole counts as a run that did not happen. A run that completed with
//! part of its view missing (ids absent from a response, a failed presence batch, an unreadable
//! group) may leave a change for a later run, but whatever it did record must be the truth; a run
//! with its whole view must record every change.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use teams_presence::model::UserId;

/// One completed run: when it observed, whether it saw everyone, and the truth at that moment.
pub struct CompletedRun {
    pub observed_at: DateTime<Utc>,
    pub complete: bool,
    pub truth: HashMap<UserId, &'static str>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub faults_injected: usize,
    pub runs: usize,
    pub runs_completed: usize,
    pub changes_expected: usize,
    pub recorded: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Records that are not the truth of a completed run (a wrong value, or from a failed run).
    pub wrong: usize,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "faults_injected={} runs={} runs_completed={} changes_expected={} recorded={} lost={} duplicated={} wrong={}",
            self.faults_injected,
            self.runs,
            self.runs_completed,
            self.changes_expected,
            self.recorded,
            self.lost,
            self.duplicated,
            self.wrong
        )
    }
}

/// Compares `recorded` (each user's records, oldest first, as `(availability, timestamp)`) with
/// the runs that completed, in order. Users never leave scope in these scenarios, so two equal
/// consecutive records of a user are a duplicate.
pub fn compare(
    users: &[UserId],
    runs: &[CompletedRun],
    recorded: &HashMap<UserId, Vec<(String, DateTime<Utc>)>>,
) -> Figures {
    let mut figures = Figures { runs_completed: runs.len(), ..Figures::default() };
    let empty = Vec::new();
    for user in users {
        let records = recorded.get(user).unwrap_or(&empty);
        figures.recorded += records.len();
        let mut by_time: HashMap<DateTime<Utc>, Vec<&str>> = HashMap::new();
        for (availability, at) in records {
            by_time.entry(*at).or_default().push(availability);
        }
        let mut last: Option<&str> = None;
        for run in runs {
            let truth = run.truth[user];
            let here = by_time.remove(&run.observed_at).unwrap_or_default();
            figures.duplicated += here.len().saturating_sub(1);
            match here.first() {
                Some(&got) => {
                    if got != truth {
                        figures.wrong += 1;
                    } else if last == Some(got) {
                        figures.duplicated += 1;
                    } else {
                        figures.changes_expected += 1;
                    }
                    last = Some(got);
                }
                None if run.complete && last != Some(truth) => {
                    figures.changes_expected += 1;
                    figures.lost += 1;
                    // What a correct poller would now hold; later runs are judged from there.
                    last = Some(truth);
                }
                None => {}
            }
        }
        // Records at a time no completed run observed at: a failed run wrote them.
        figures.wrong += by_time.values().map(Vec::len).sum::<usize>();
    }
    figures
}

/// A run that failed as a whole: it started at `from`, ended at `to`, and `truth` held meanwhile.
pub struct FailedRun {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub truth: HashMap<UserId, &'static str>,
}

/// [`compare`] for a store that has no transaction across users (Cosmos DB: one partition per
/// user), where a run that fails part-way keeps the records it wrote and the next run completes
/// the rest. Such records carry the failed run's observation time, found as the one record time
/// inside the run's `from..=to` that no completed run observed at; they are judged as the partial
/// view of that run (each must be its truth, none may repeat the one before). A failed run that
/// left records at two different times, or records outside every run, still counts them wrong.
/// Runs' spans must not share a millisecond (a time inside two spans is judged by neither).
/// Returns the figures (`runs_completed` counts completed runs only) and how many failed runs
/// left records.
pub fn compare_with_failed_runs(
    users: &[UserId],
    runs: &[CompletedRun],
    failed: &[FailedRun],
    recorded: &HashMap<UserId, Vec<(String, DateTime<Utc>)>>,
) -> (Figures, usize) {
    let completed: std::collections::HashSet<DateTime<Utc>> = runs.iter().map(|r| r.observed_at).collect();
    let mut times: Vec<DateTime<Utc>> =
        recorded.values().flatten().map(|(_, at)| *at).filter(|at| !completed.contains(at)).collect();
    times.sort_unstable();
    times.dedup();
    let mut all: Vec<CompletedRun> = runs
        .iter()
        .map(|r| CompletedRun { observed_at: r.observed_at, complete: r.complete, truth: r.truth.clone() })
        .collect();
    let mut left_records = 0;
    let spans = |at: &DateTime<Utc>| failed.iter().filter(|r| (r.from..=r.to).contains(at)).count();
    for run in failed {
        let inside: Vec<&DateTime<Utc>> =
            times.iter().filter(|t| (run.from..=run.to).contains(*t) && spans(t) == 1).collect();
        if let [at] = inside[..] {
            left_records += 1;
            all.push(CompletedRun { observed_at: *at, complete: false, truth: run.truth.clone() });
        }
    }
    all.sort_by_key(|r| r.observed_at);
    let figures = compare(users, &all, recorded);
    (Figures { runs_completed: runs.len(), ..figures }, left_records)
}
