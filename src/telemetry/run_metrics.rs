//! Per-run figures as App Insights `customMetrics`: one row per figure per run.
//!
//! Metrics rather than one `customEvent` with measurements: the exporter writes events with string
//! properties only (no `customMeasurements`), while every metric row has a numeric `value` that
//! the workbook can chart and the alerts can threshold without parsing, and `customMetrics` keeps
//! each figure queryable by name. Each figure is a histogram recorded once per run and flushed at
//! the end of the run, so a row is `value` = the run's figure with `valueCount` = 1; if two runs
//! ever land in one export, the row still sums and counts them correctly.

use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use crate::run::{RunMetrics, RunSummary};

/// Counter of runs, with `outcome` (`success`/`failure`) and, for failures, `stage`.
pub const RUNS: &str = "presence.runs";
/// Prefix of the per-run histograms; the full names are in [`FIGURES`].
pub const FIGURE_PREFIX: &str = "presence.run.";

/// Where in an invocation a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedStage {
    /// The app settings are invalid; every run fails until they are fixed.
    Configuration,
    /// The Graph client, credential or store could not be built.
    Initialisation,
    /// The poll cycle itself returned an error.
    Cycle,
}

impl FailedStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configuration => "configuration",
            Self::Initialisation => "initialisation",
            Self::Cycle => "cycle",
        }
    }
}

/// One per-run figure: its metric name, unit and how to read it from a finished run.
pub struct Figure {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    /// The `RunSummary` field (as serialized) the figure comes from, checked by a test so that a
    /// new summary field cannot be forgotten here.
    pub summary_field: &'static str,
    pub from_summary: fn(&RunSummary) -> f64,
    /// Also known when the run failed part-way, from the counters the run had filled in.
    pub from_counters: Option<fn(&RunMetrics) -> f64>,
}

fn counter(c: &std::sync::atomic::AtomicU64) -> f64 {
    c.load(Ordering::Relaxed) as f64
}

pub const FIGURES: &[Figure] = &[
    Figure {
        name: "presence.run.duration",
        unit: "s",
        description: "Wall time of the poll cycle",
        summary_field: "durationMs",
        from_summary: |s| s.duration_ms as f64 / 1000.0,
        from_counters: None,
    },
    Figure {
        name: "presence.run.users_in_scope",
        unit: "{user}",
        description: "Distinct user members of the configured groups",
        summary_field: "usersInScope",
        from_summary: |s| s.users_in_scope as f64,
        from_counters: None,
    },
    Figure {
        name: "presence.run.observed",
        unit: "{user}",
        description: "Users whose availability Graph returned",
        summary_field: "observed",
        from_summary: |s| s.observed as f64,
        from_counters: None,
    },
    Figure {
        name: "presence.run.unobserved",
        unit: "{user}",
        description: "Users asked for but with no observation this run",
        summary_field: "unobserved",
        from_summary: |s| s.unobserved as f64,
        from_counters: None,
    },
    Figure {
        name: "presence.run.changes",
        unit: "{record}",
        description: "Availability changes written to the store",
        summary_field: "changes",
        from_summary: |s| s.changes as f64,
        from_counters: None,
    },
    Figure {
        name: "presence.run.already_recorded",
        unit: "{record}",
        description: "Records an earlier attempt at the same schedule slot had already written",
        summary_field: "alreadyRecorded",
        from_summary: |s| s.already_recorded as f64,
        from_counters: None,
    },
    Figure {
        name: "presence.run.departed",
        unit: "{user}",
        description: "Users no longer tracked: left the configured groups, or past retention unobserved",
        summary_field: "departed",
        from_summary: |s| s.departed as f64,
        from_counters: None,
    },
    Figure {
        name: "presence.run.unreadable_groups",
        unit: "{group}",
        description: "Configured groups whose members could not be read",
        summary_field: "unreadableGroups",
        from_summary: |s| s.unreadable_groups as f64,
        from_counters: None,
    },
    Figure {
        name: "presence.run.member_pages",
        unit: "{request}",
        description: "Graph member-list pages fetched",
        summary_field: "memberPages",
        from_summary: |s| s.member_pages as f64,
        from_counters: Some(|m| counter(&m.member_pages)),
    },
    Figure {
        name: "presence.run.presence_calls",
        unit: "{request}",
        description: "getPresencesByUserId calls made",
        summary_field: "presenceCalls",
        from_summary: |s| s.presence_calls as f64,
        from_counters: Some(|m| counter(&m.presence_calls)),
    },
    Figure {
        name: "presence.run.throttled",
        unit: "{response}",
        description: "HTTP 429 answers from Graph",
        summary_field: "throttled",
        from_summary: |s| s.throttled as f64,
        from_counters: Some(|m| counter(&m.throttled)),
    },
    Figure {
        name: "presence.run.throttle_wait",
        unit: "s",
        description: "Time spent waiting out Retry-After",
        summary_field: "throttleWaitMs",
        from_summary: |s| s.throttle_wait_ms as f64 / 1000.0,
        from_counters: Some(|m| counter(&m.throttle_wait_ms) / 1000.0),
    },
    Figure {
        name: "presence.run.retries",
        unit: "{request}",
        description: "Requests repeated after a transient failure",
        summary_field: "retries",
        from_summary: |s| s.retries as f64,
        from_counters: Some(|m| counter(&m.retries)),
    },
    Figure {
        name: "presence.run.store_request_units",
        unit: "{RU}",
        description: "Cosmos DB request units charged",
        summary_field: "storeRequestUnits",
        from_summary: |s| s.store_request_units,
        from_counters: Some(|m| counter(&m.store_request_milli_units) / 1000.0),
    },
];

/// `RunSummary` fields that are not per-run figures. The phase times are in the run's log line
/// and the dependency spans already time each Graph and store call: three more metric items per
/// run would add cost (BENCHMARKS.md, telemetry) for what those answer already.
pub const NOT_FIGURES: &[&str] = &["slot", "observedAt", "graphMs", "storeReadMs", "recordMs", "membershipAgeMs"];

pub struct RunInstruments {
    runs: Counter<u64>,
    figures: Vec<Histogram<f64>>,
}

impl RunInstruments {
    pub fn new(meter: &Meter) -> Self {
        let runs = meter.u64_counter(RUNS).with_unit("{run}").with_description("Poll runs by outcome").build();
        let figures = FIGURES
            .iter()
            .map(|f| meter.f64_histogram(f.name).with_unit(f.unit).with_description(f.description).build())
            .collect();
        Self { runs, figures }
    }

    pub fn record_success(&self, summary: &RunSummary) {
        let outcome = [KeyValue::new("outcome", "success")];
        self.runs.add(1, &outcome);
        for (figure, histogram) in FIGURES.iter().zip(&self.figures) {
            histogram.record((figure.from_summary)(summary), &outcome);
        }
    }

    /// A failed run has no summary: its duration and whatever the Graph client and store counted
    /// before the failure are still worth seeing (a run that fails on throttling shows it here).
    pub fn record_failure(&self, stage: FailedStage, counters: Option<&RunMetrics>, elapsed: Duration) {
        let outcome = [KeyValue::new("outcome", "failure")];
        self.runs.add(1, &[KeyValue::new("outcome", "failure"), KeyValue::new("stage", stage.as_str())]);
        for (figure, histogram) in FIGURES.iter().zip(&self.figures) {
            if figure.name == "presence.run.duration" {
                histogram.record(elapsed.as_secs_f64(), &outcome);
            } else if let (Some(read), Some(counters)) = (figure.from_counters, counters) {
                histogram.record(read(counters), &outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::model::Slot;

    #[test]
    fn every_summary_field_is_a_figure_or_deliberately_not() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 10, 5, 0).unwrap();
        let summary = RunSummary {
            slot: Slot::new(at),
            observed_at: at,
            users_in_scope: 0,
            observed: 0,
            unobserved: 0,
            changes: 0,
            already_recorded: 0,
            departed: 0,
            unreadable_groups: 0,
            member_pages: 0,
            presence_calls: 0,
            throttled: 0,
            throttle_wait_ms: 0,
            retries: 0,
            store_request_units: 0.0,
            graph_ms: 0,
            store_read_ms: 0,
            record_ms: 0,
            membership_age_ms: 0,
            duration_ms: 0,
        };
        let serde_json::Value::Object(fields) = serde_json::to_value(&summary).unwrap() else {
            panic!("not an object")
        };
        let fields: BTreeSet<&str> = fields.keys().map(String::as_str).collect();
        let covered: BTreeSet<&str> =
            FIGURES.iter().map(|f| f.summary_field).chain(NOT_FIGURES.iter().copied()).collect();
        assert_eq!(fields, covered, "add a Figure (or a NOT_FIGURES entry) for each new RunSummary field");
    }

    #[test]
    fn figure_names_are_unique_and_prefixed() {
        let names: BTreeSet<&str> = FIGURES.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FIGURES.len());
        assert!(FIGURES.iter().all(|f| f.name.starts_with(FIGURE_PREFIX)));
    }
}
