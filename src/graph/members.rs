//! Transitive user members of the configured groups, paged through `@odata.nextLink`.

use std::borrow::Cow;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;

use super::client::GraphClient;
use super::request::Call;
use super::{GraphError, GroupProblem, Membership};
use crate::model::{GroupId, UserId};
use crate::run::{RunContext, RunMetrics};

const OPERATION: &str = "transitiveMembers";

/// Where paging sends each page's user ids as soon as it is read.
pub(super) type PageSink = tokio::sync::mpsc::UnboundedSender<Vec<UserId>>;
const USER_TYPE: &str = "#microsoft.graph.user";

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    value: Vec<Member<'a>>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// Only the type and id are read; nothing else about a member is kept (or asked for).
#[derive(Deserialize)]
struct Member<'a> {
    #[serde(rename = "@odata.type", borrow)]
    odata_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Cow<'a, str>,
}

impl GraphClient {
    /// The members of `groups`; with a `sink`, each page's users are also sent there as soon as
    /// the page is read, so presence can be fetched while later pages are still being paged.
    pub(super) async fn transitive_user_members(
        &self,
        groups: &[GroupId],
        run: &RunContext,
        sink: Option<PageSink>,
    ) -> Result<Membership, GraphError> {
        let started = tokio::time::Instant::now();
        let concurrency = self.settings.tuning.group_concurrency.max(1);
        let sink = sink.as_ref();
        let mut results = futures::stream::iter(groups.iter().copied())
            .map(|g| async move { (g, self.group_members(g, run, sink).await) })
            .buffer_unordered(concurrency);
        let mut per_group = Vec::new();
        let mut unreadable_groups = Vec::new();
        while let Some((group_id, result)) = results.next().await {
            match result {
                Ok(members) => per_group.push(members),
                // Without a token or time nothing else can be read either.
                Err(e @ (GraphError::Token(_) | GraphError::Deadline { .. })) => return Err(e),
                Err(e) => {
                    tracing::warn!(%group_id, error = %e, "group skipped this run: its members are unknown, not removed");
                    unreadable_groups.push(GroupProblem { group_id, reason: e.to_string() });
                }
            }
        }
        // One allocation of the exact size, each group's list freed as it is copied; sorting then
        // deduplicating needs no second copy, unlike a hash set. Both matter at a million members.
        let mut users = Vec::with_capacity(per_group.iter().map(Vec::len).sum());
        for members in per_group {
            users.extend(members);
        }
        users.sort_unstable();
        users.dedup();
        users.shrink_to_fit();
        unreadable_groups.sort_by_key(|p| p.group_id);
        Ok(Membership { users, unreadable_groups, read_in: started.elapsed(), age: Duration::ZERO })
    }

    /// Every user in one group, across all pages. A 404 on the first page is retried (a new group
    /// may not have replicated yet), then reported.
    async fn group_members(
        &self,
        group: GroupId,
        run: &RunContext,
        sink: Option<&PageSink>,
    ) -> Result<Vec<UserId>, GraphError> {
        let first = format!("{}/groups/{group}/transitiveMembers?$select=id&$top=999", self.base);
        let mut body = self.first_page(&first, run).await?;
        let mut users = Vec::new();
        // A nextLink back to a page already read would be followed until the run's deadline and
        // fail every group; it makes this group unreadable instead.
        let mut followed = std::collections::HashSet::from([first.clone()]);
        loop {
            let page: Page<'_> = serde_json::from_slice(&body).map_err(|e| GraphError::Malformed {
                operation: OPERATION.into(),
                detail: format!("group {group}: {e}"),
            })?;
            RunMetrics::add(&run.metrics.member_pages, 1);
            let page_start = users.len();
            for member in &page.value {
                if member.odata_type.as_deref() != Some(USER_TYPE) {
                    continue;
                }
                match member.id.parse::<UserId>() {
                    Ok(id) => users.push(id),
                    Err(_) => tracing::warn!(%group, "a user member has an id that is not a GUID; skipped"),
                }
            }
            if let Some(sink) = sink {
                // A closed receiver means presence gave up (token or deadline): paging goes on,
                // and the membership still comes back whole.
                let _ = sink.send(users[page_start..].to_vec());
            }
            let Some(next) = page.next_link else { break };
            self.check_same_origin(&next)?;
            if !followed.insert(next.clone()) {
                return Err(GraphError::Malformed {
                    operation: OPERATION.into(),
                    detail: format!("group {group}: @odata.nextLink {next:?} repeats a page already read"),
                });
            }
            let call = Call { operation: OPERATION, method: Method::GET, url: &next, body: None, limiter: None };
            body = self.sender.send(&call, run).await?;
        }
        Ok(users)
    }

    async fn first_page(&self, url: &str, run: &RunContext) -> Result<bytes::Bytes, GraphError> {
        let call = Call { operation: OPERATION, method: Method::GET, url, body: None, limiter: None };
        let attempts = self.settings.tuning.not_found_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.sender.send(&call, run).await {
                Err(e) if e.is_not_found() && attempt < attempts => {
                    let wait = self.sender.policy().backoff(attempt);
                    if tokio::time::Instant::now() + wait >= run.deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                    RunMetrics::add(&run.metrics.retries, 1);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A nextLink is followed whole, but only to the configured Graph host: the token must not
    /// be sent anywhere else.
    fn check_same_origin(&self, next: &str) -> Result<(), GraphError> {
        let same = url::Url::parse(next).is_ok_and(|u| u.origin() == self.settings.base_url.origin());
        if same {
            Ok(())
        } else {
            Err(GraphError::Malformed {
                operation: OPERATION.into(),
                detail: format!("@odata.nextLink {next:?} does not point at {}", self.base),
            })
        }
    }
}
