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
