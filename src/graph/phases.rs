//! The `graph.members` and `graph.presence` phase spans (App Insights `dependencies` of type
//! `InProc`, children of the run): opened by the Graph client itself when it overlaps the two
//! phases, and by `telemetry::instrumented` around a tenant that reads them one after the other.
//! Counts go on the spans; ids never do.

use tracing::Span;
use tracing::field::Empty;

use super::{GraphError, Membership, PresenceSnapshot};
use crate::spans::{DEPENDENCY_TARGET, record_outcome};

/// The `graph.members` phase span; [`record_members`] fills in its counts.
pub fn members_span(groups: usize) -> Span {
    tracing::info_span!(target: DEPENDENCY_TARGET, "graph.members",
        groups, users = Empty, unreadable_groups = Empty,
        otel.status_code = Empty, otel.status_description = Empty)
}

pub fn record_members(span: &Span, result: &Result<Membership, GraphError>) {
    if let Ok(membership) = result {
        span.record("users", membership.users.len());
        span.record("unreadable_groups", membership.unreadable_groups.len());
    }
    record_outcome(span, result);
}

/// The `graph.presence` phase span; `users` is recorded by [`record_presence`] when the ids
/// arrive while membership is still being read.
pub fn presence_span() -> Span {
    tracing::info_span!(target: DEPENDENCY_TARGET, "graph.presence",
        users = Empty, observed = Empty, unobserved = Empty,
        otel.status_code = Empty, otel.status_description = Empty)
}

pub fn record_presence(span: &Span, result: &Result<PresenceSnapshot, GraphError>) {
    if let Ok(snapshot) = result {
        span.record("users", snapshot.observations.len() + snapshot.unobserved.len());
        span.record("observed", snapshot.observations.len());
        span.record("unobserved", snapshot.unobserved.len());
    }
    record_outcome(span, result);
}
