//! Availability of many users through `getPresencesByUserId`: batches of at most 650 ids, in
//! parallel under a bound and the presence rate limit; only `id` and `availability` are read.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::StreamExt;
use futures::future::BoxFuture;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::client::GraphClient;
use super::phases;
use super::request::Call;
use super::{BatchFailure, GraphError, Membership, PresenceSnapshot};
use crate::model::{Availability, GroupId, Observation, UserId};
use crate::run::{RunContext, RunMetrics};

const OPERATION: &str = "getPresencesByUserId";

#[derive(Serialize)]
struct Request<'a> {
    ids: &'a [UserId],
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    value: Vec<Item<'a>>,
}

/// Activity, status message, out-of-office and every other field are skipped by the parser:
/// they are never held in memory, let alone stored.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    availability: Option<Cow<'a, str>>,
}

/// One copy of each availability string per run instead of one per user: a million
/// observations share a handful of allocations.
#[derive(Default)]
struct Interner(Mutex<HashMap<Box<str>, Availability>>);

impl Interner {
    fn get(&self, value: &str) -> Availability {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(a) = map.get(value) {
            return a.clone();
        }
        let a = Availability::new(value);
        map.insert(value.into(), a.clone());
        a
    }
}

#[derive(Default)]
struct Outcome {
    observations: Vec<Observation>,
    unobserved: Vec<UserId>,
    failures: Vec<BatchFailure>,
}

impl Outcome {
    fn failed(ids: &[UserId], error: &GraphError) -> Self {
        Self {
            observations: Vec::new(),
            unobserved: ids.to_vec(),
            failures: vec![BatchFailure {
                ids: ids.len(),
                single_user: None,
                reason: error.to_string(),
                deadline: matches!(error, GraphError::Deadline { .. }),
            }],
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.observations.extend(other.observations);
        self.unobserved.extend(other.unobserved);
        self.failures.extend(other.failures);
    }
}

impl GraphClient {
    pub(super) async fn availability_of(
        &self,
        users: &[UserId],
        run: &RunContext,
    ) -> Result<PresenceSnapshot, GraphError> {
        let url = format!("{}/communications/getPresencesByUserId", self.base);
        let interner = Interner::default();
        let concurrency = self.settings.presence_concurrency.max(1);
        let size = self.presence_batch_size();
        // Batches by index rather than `chunks()`: the closure then borrows nothing per item,
        // which the `Send` future of the trait method needs.
        let mut batches = futures::stream::iter((0..users.len()).step_by(size))
            .map(|start| self.batch(&url, &users[start..(start + size).min(users.len())], run, &interner))
            .buffer_unordered(concurrency);
        let mut total = Outcome { observations: Vec::with_capacity(users.len()), ..Outcome::default() };
        while let Some(outcome) = batches.next().await {
            total.merge(outcome?);
        }
        warn_failures(&total.failures);
        Ok(PresenceSnapshot {
            observations: total.observations,
            unobserved: total.unobserved,
            failed_batches: total.failures,
        })
    }

    /// Membership and presence overlapped: member pages stream into presence batches of up to
    /// 650 new (de-duplicated) ids, which go out under the same concurrency bound and rate limit
    /// while paging continues. The run then takes about as long as the longer of the two instead
    /// of their sum.
    pub(super) async fn members_with_presence(
        &self,
        groups: &[GroupId],
        run: &RunContext,
    ) -> Result<(Membership, PresenceSnapshot), GraphError> {
        let (sink, pages) = tokio::sync::mpsc::unbounded_channel::<Vec<UserId>>();
        let url = format!("{}/communications/getPresencesByUserId", self.base);
        let interner = Interner::default();
        let concurrency = self.settings.presence_concurrency.max(1);
        let size = self.presence_batch_size();
        // Two phase spans side by side (they overlap in time), as a run that reads them one after
        // the other would have them.
        let (members_span, presence_span) = (phases::members_span(groups.len()), phases::presence_span());
        let members = async {
            let result = self.transitive_user_members(groups, run, Some(sink)).await;
            phases::record_members(&members_span, &result);
            result
        }
        .instrument(members_span.clone());
        let batches = futures::stream::unfold(
            (pages, HashSet::<UserId>::new(), Vec::<UserId>::with_capacity(size), false),
            move |(mut pages, mut seen, mut pending, mut closed)| async move {
                loop {
                    if pending.len() >= size || (closed && !pending.is_empty()) {
                        let rest = pending.split_off(size.min(pending.len()));
                        let batch = std::mem::replace(&mut pending, rest);
                        return Some((batch, (pages, seen, pending, closed)));
                    }
                    if closed {
                        return None;
                    }
                    match pages.recv().await {
                        Some(page) => pending.extend(page.into_iter().filter(|u| seen.insert(*u))),
                        None => closed = true,
                    }
                }
            },
        );
        let (url, interner) = (&url, &interner);
        let presence = async move {
            let mut outcomes = std::pin::pin!(
                batches
                    .map(|ids| async move { self.batch(url, &ids, run, interner).await })
                    .buffer_unordered(concurrency)
            );
            let mut total = Outcome::default();
            while let Some(outcome) = outcomes.next().await {
                total.merge(outcome?);
            }
            Ok::<_, GraphError>(total)
        }
        .instrument(presence_span.clone());
        let (membership, total) = futures::join!(members, presence);
        let membership = membership?;
        let snapshot = total.map(|total| in_scope_snapshot(total, &membership));
        phases::record_presence(&presence_span, &snapshot);
        Ok((membership, snapshot?))
    }

    /// One batch; a 400 is bisected down to the id Graph refuses, so one bad id costs only itself.
    fn batch<'a>(
        &'a self,
        url: &'a str,
        ids: &'a [UserId],
        run: &'a RunContext,
        interner: &'a Interner,
    ) -> BoxFuture<'a, Result<Outcome, GraphError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&Request { ids })
                .map_err(|e| GraphError::Call { operation: OPERATION.into(), message: e.to_string() })?;
            let call = Call {
                operation: OPERATION,
                method: Method::POST,
                url,
                body: Some(body.into()),
                limiter: Some(&self.presence_limiter),
            };
            RunMetrics::add(&run.metrics.presence_calls, 1);
            match self.sender.send(&call, run).await {
                Ok(body) => Ok(read_response(ids, &body, interner).unwrap_or_else(|e| Outcome::failed(ids, &e))),
                Err(e @ GraphError::Token(_)) => Err(e),
                Err(e @ GraphError::Status { status: 400, .. }) if ids.len() > 1 => {
                    tracing::warn!(ids = ids.len(), error = %e, "presence batch refused; bisecting to find the id Graph rejects");
                    let (left, right) = ids.split_at(ids.len() / 2);
                    let mut outcome = self.batch(url, left, run, interner).await?;
                    outcome.merge(self.batch(url, right, run, interner).await?);
                    Ok(outcome)
                }
                Err(e) => {
                    let mut outcome = Outcome::failed(ids, &e);
                    if let ([user], [failure]) = (ids, outcome.failures.as_mut_slice()) {
                        failure.single_user = Some(*user);
                    }
                    Ok(outcome)
                }
            }
        })
    }
}

/// One line for the calls the deadline cut (work left for the next run), one for those Graph
/// failed, each with the number of users without an observation.
fn warn_failures(failures: &[BatchFailure]) {
    let (cut, failed): (Vec<&BatchFailure>, Vec<&BatchFailure>) = failures.iter().partition(|f| f.deadline);
    if !cut.is_empty() {
        let ids: usize = cut.iter().map(|f| f.ids).sum();
        tracing::warn!(
            calls = cut.len(),
            ids,
            "run deadline reached with presence calls left; the next run reads them"
        );
    }
    if let Some(first) = failed.first() {
        let ids: usize = failed.iter().map(|f| f.ids).sum();
        tracing::warn!(failed_calls = failed.len(), ids, first_reason = %first.reason, "some presence calls failed; their users have no observation this run");
    }
}

/// Presence read while paging, cut to the users membership ended with: pages of a group that
/// failed half-way were asked about, but they are not in scope.
fn in_scope_snapshot(mut total: Outcome, membership: &Membership) -> PresenceSnapshot {
    let in_scope = |u: &UserId| membership.users.binary_search(u).is_ok();
    total.observations.retain(|o| in_scope(&o.user_id));
    total.unobserved.retain(in_scope);
    warn_failures(&total.failures);
    PresenceSnapshot { observations: total.observations, unobserved: total.unobserved, failed_batches: total.failures }
}

/// Matches a response to the ids asked for. Ids Graph left out are unobserved; ids it was not
/// asked for are ignored.
fn read_response(ids: &[UserId], body: &[u8], interner: &Interner) -> Result<Outcome, GraphError> {
    let response: Response<'_> = serde_json::from_slice(body)
        .map_err(|e| GraphError::Malformed { operation: OPERATION.into(), detail: e.to_string() })?;
    let mut asked = ids.to_vec();
    asked.sort_unstable();
    let mut seen = vec![false; asked.len()];
    let mut observations = Vec::with_capacity(ids.len());
    for item in &response.value {
        let (Ok(user_id), Some(availability)) = (item.id.parse::<UserId>(), item.availability.as_deref()) else {
            continue;
        };
        if let Ok(i) = asked.binary_search(&user_id)
            && !seen[i]
        {
            seen[i] = true;
            observations.push(Observation { user_id, availability: interner.get(availability) });
        }
    }
    let unobserved: Vec<UserId> = asked.iter().zip(&seen).filter(|(_, s)| !**s).map(|(id, _)| *id).collect();
    Ok(Outcome { observations, unobserved, failures: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> UserId {
        UserId::from_u128(n)
    }

    #[test]
    fn only_id_and_availability_are_read_and_missing_ids_are_unobserved() {
        let body = format!(
            r#"{{"value":[
                {{"id":"{}","availability":"Busy","activity":"InAMeeting","statusMessage":{{"message":{{"content":"secret plans"}}}},"outOfOfficeSettings":{{"isOutOfOffice":false}},"sequenceNumber":"C123"}},
                {{"id":"{}","availability":"PresenceUnknown","activity":"PresenceUnknown"}},
                {{"id":"{}","availability":"Away"}},
                {{"id":"not-a-guid","availability":"Away"}}
            ]}}"#,
            id(1).expose_object_id(),
            id(2).expose_object_id(),
            id(99).expose_object_id()
        );
        let interner = Interner::default();
        let outcome = read_response(&[id(1), id(2), id(3)], body.as_bytes(), &interner).unwrap();
        let got: Vec<(UserId, &str)> =
            outcome.observations.iter().map(|o| (o.user_id, o.availability.as_str())).collect();
        assert_eq!(got, [(id(1), "Busy"), (id(2), "PresenceUnknown")]);
        assert_eq!(outcome.unobserved, [id(3)]);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let interner = Interner::default();
        for body in [&b"{\"value\":[{\"id\":"[..], b"<html>", b"", b"{\"value\":{}}"] {
            let err = read_response(&[id(1)], body, &interner).err().expect("error");
            assert!(err.to_string().contains("not the expected JSON"), "{err}");
        }
    }
}
