//! The one place that calls the Cosmos DB SDK: every call goes through [`Sdk::call`], which
//! emits its dependency span, charges its request units to the run or request it is part of,
//! and maps the statuses the store expects (404: absent; 409 and 412: another writer got there
//! first) to values and every other failure to a [`StoreError`] naming what the store was doing.
//!
//! The SDK already retries 429 (honouring `x-ms-retry-after-ms`) and 503/408/410 with its own
//! budgets; nothing here adds a second retry loop. The store makes retries safe instead.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use azure_core::http::{Etag, StatusCode};
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::diagnostics::DiagnosticsContext;
use azure_data_cosmos::feed::QueryFeedPage;
use azure_data_cosmos::models::ItemResponse;
use azure_data_cosmos::{CosmosError, FeedScope, Query};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use crate::config::CosmosSettings;
use crate::run::RunMetrics;
use crate::spans;
use crate::store::StoreError;

/// Which container a call is on.
#[derive(Clone, Copy)]
pub(super) enum On {
    History,
    State,
}

/// One SDK call as the store describes it.
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    on: On,
    /// The SDK method, as the dependency span names it.
    method: &'static str,
    /// What the store was doing, as an error names it.
    doing: &'static str,
    /// The request units (thousandths) of the run or data-subject request this call is part of.
    units: Option<&'a AtomicU64>,
    traced: bool,
}

impl<'a> Call<'a> {
    /// A call with a dependency span and its request units charged to `units`.
    pub fn new(on: On, method: &'static str, doing: &'static str, units: &'a AtomicU64) -> Self {
        Self { on, method, doing, units: Some(units), traced: true }
    }

    /// Without a dependency span: per-record history calls, which at 100,000 changes a run would
    /// be as many exported rows (see docs/operations.md; the `store.record` phase span counts
    /// them), and the audit trail's calls.
    pub fn untraced(self) -> Self {
        Self { traced: false, ..self }
    }

    /// Charged to nothing: the calls of the audit trail, the export and the erasure's listing,
    /// whose cost no figure reports.
    pub fn uncharged(on: On, method: &'static str, doing: &'static str) -> Self {
        Self { on, method, doing, units: None, traced: false }
    }
}

/// An SDK result whose diagnostics hold the request units it cost.
pub(super) trait Charged {
    fn diagnostics(&self) -> Option<Arc<DiagnosticsContext>>;
}

impl Charged for ItemResponse {
    fn diagnostics(&self) -> Option<Arc<DiagnosticsContext>> {
        Some(ItemResponse::diagnostics(self))
    }
}

/// A page of a query, or the end of it.
impl<T> Charged for Option<QueryFeedPage<T>> {
    fn diagnostics(&self) -> Option<Arc<DiagnosticsContext>> {
        self.as_ref().map(QueryFeedPage::diagnostics)
    }
}

/// The two containers and what the dependency spans name: account endpoint, database and
/// container names.
pub(super) struct Sdk {
    history: ContainerClient,
    state: ContainerClient,
    endpoint: Url,
    database: String,
    history_name: String,
    state_name: String,
}

/// What an SDK call returned, for the caller to say which refusals it expects.
#[must_use]
pub(super) struct Answer<R> {
    result: Result<R, CosmosError>,
    doing: &'static str,
}

impl<R> Answer<R> {
    /// Any failure is an error.
    pub fn required(self) -> Result<R, StoreError> {
        self.result.map_err(|e| cosmos_error(self.doing, e))
    }

    /// `None` when the document is not there (404).
    pub fn if_present(self) -> Result<Option<R>, StoreError> {
        match self.result {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.status().status_code() == StatusCode::NotFound => Ok(None),
            Err(e) => Err(cosmos_error(self.doing, e)),
        }
    }

    /// `None` when another writer got there first: the id exists (409) or the `If-Match`
    /// precondition failed (412).
    pub fn unless_conflict(self) -> Result<Option<R>, StoreError> {
        match self.result {
            Ok(r) => Ok(Some(r)),
            Err(e) if matches!(e.status().status_code(), StatusCode::Conflict | StatusCode::PreconditionFailed) => {
                Ok(None)
            }
            Err(e) => Err(cosmos_error(self.doing, e)),
        }
    }
}

impl Answer<ItemResponse> {
    /// The document and its ETag, for an `If-Match` replace; `None` when it is not there.
    pub fn document_and_etag<T: DeserializeOwned>(self, what: &str) -> Result<Option<(T, Etag)>, StoreError> {
        let doing = self.doing;
        let Some(response) = self.if_present()? else { return Ok(None) };
        let etag = response
            .headers()
            .etag()
            .cloned()
            .ok_or_else(|| StoreError::Cosmos { operation: doing, message: "no ETag".into() })?;
        let doc = response.into_model().map_err(|e| corrupt(what, e))?;
        Ok(Some((doc, etag)))
    }
}

impl Sdk {
    pub fn new(history: ContainerClient, state: ContainerClient, settings: &CosmosSettings) -> Self {
        Self {
            history,
            state,
            endpoint: settings.endpoint.clone(),
            database: settings.database.clone(),
            history_name: settings.container.clone(),
            state_name: settings.state_container.clone(),
        }
    }

    fn container(&self, on: On) -> (&ContainerClient, &str) {
        match on {
            On::History => (&self.history, &self.history_name),
            On::State => (&self.state, &self.state_name),
        }
    }

    /// Runs `work` on the container `call` names (in a dependency span if `call` is traced) and
    /// charges what it cost, whether it succeeded or not: a refused request is charged too. The
    /// [`Answer`] says which refusals the caller expects.
    pub async fn call<'s, R: Charged, F>(
        &'s self,
        call: Call<'_>,
        work: impl FnOnce(&'s ContainerClient) -> F,
    ) -> Answer<R>
    where
        F: Future<Output = Result<R, CosmosError>>,
    {
        let (container, container_name) = self.container(call.on);
        let result = if call.traced {
            self.traced(call.method, container_name, work(container)).await
        } else {
            work(container).await
        };
        if let Some(units) = call.units {
            let found = match &result {
                Ok(r) => r.diagnostics(),
                Err(e) => e.diagnostics(),
            };
            if let Some(diagnostics) = found {
                charge(units, &diagnostics);
            }
        }
        Answer { result, doing: call.doing }
    }

    /// Every row a query returns, page by page, each page a call of its own.
    pub async fn query<T: DeserializeOwned + Send + 'static>(
        &self,
        call: Call<'_>,
        query: Query,
        scope: FeedScope,
        mut each: impl FnMut(T) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut pages = self
            .container(call.on)
            .0
            .query_items::<T>(query, scope, None)
            .await
            .map_err(|e| cosmos_error(call.doing, e))?
            .into_pages();
        while let Some(page) = self.call(call, |_| pages.try_next()).await.required()? {
            for row in page.into_items() {
                each(row)?;
            }
        }
        Ok(())
    }

    /// All rows of a query, collected.
    pub async fn query_all<T: DeserializeOwned + Send + 'static>(
        &self,
        call: Call<'_>,
        query: Query,
        scope: FeedScope,
    ) -> Result<Vec<T>, StoreError> {
        let mut rows = Vec::new();
        self.query(call, query, scope, |row| {
            rows.push(row);
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// Runs one SDK operation (its own retries included) inside a `cosmos` dependency span that
    /// records the final status and the request units charged.
    async fn traced<R: Charged>(
        &self,
        method: &'static str,
        container: &str,
        work: impl Future<Output = Result<R, CosmosError>>,
    ) -> Result<R, CosmosError> {
        let span = spans::cosmos_call(method, &self.database, container, &self.endpoint);
        let result = work.instrument(span.clone()).await;
        if !span.is_disabled() {
            let (status, found) = match &result {
                Ok(r) => (None, r.diagnostics()),
                Err(e) => (Some(u16::from(e.status().status_code())), e.diagnostics()),
            };
            let charge = found.as_ref().map_or(0.0, |d| f64::from(d.total_request_charge()));
            let status = status
                .or_else(|| found.as_ref().and_then(|d| d.status().map(|s| u16::from(s.status_code()))))
                .unwrap_or(200);
            spans::record_cosmos_status(&span, status, charge);
        }
        result
    }
}

/// Adds what an operation cost, retries included, to the request units of the run or the
/// data-subject request it is part of (in thousandths).
fn charge(units: &AtomicU64, diagnostics: &DiagnosticsContext) {
    let charged = f64::from(diagnostics.total_request_charge());
    if charged.is_finite() && charged > 0.0 {
        RunMetrics::add(units, (charged * 1000.0).round() as u64);
    }
}

pub(super) fn cosmos_error(operation: &'static str, e: CosmosError) -> StoreError {
    StoreError::Cosmos { operation, message: e.to_string() }
}

/// A document that is there but does not read as the store wrote it.
pub(super) fn corrupt(what: &str, e: CosmosError) -> StoreError {
    StoreError::Corrupt { what: what.to_string(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use azure_data_cosmos::CosmosStatus;

    use super::*;

    fn refused(status: StatusCode) -> Answer<()> {
        let error = CosmosError::builder().with_status(CosmosStatus::new(status)).with_message("refused").build();
        Answer { result: Err(error), doing: "write a thing" }
    }

    #[test]
    fn a_404_is_absent_a_409_or_412_a_conflict_and_anything_else_an_error_naming_the_work() {
        assert_eq!(refused(StatusCode::NotFound).if_present().unwrap(), None);
        assert_eq!(refused(StatusCode::Conflict).unless_conflict().unwrap(), None);
        assert_eq!(refused(StatusCode::PreconditionFailed).unless_conflict().unwrap(), None);
        let wrong = [
            refused(StatusCode::NotFound).required(),
            refused(StatusCode::NotFound).unless_conflict().map(|_| ()),
            refused(StatusCode::Conflict).if_present().map(|_| ()),
            refused(StatusCode::TooManyRequests).if_present().map(|_| ()),
            refused(StatusCode::InternalServerError).unless_conflict().map(|_| ()),
        ];
        for result in wrong {
            let message = result.unwrap_err().to_string();
            assert!(message.starts_with("Cosmos DB write a thing failed: "), "{message}");
        }
        assert_eq!(Answer { result: Ok(7), doing: "read" }.if_present().unwrap(), Some(7));
    }
}
