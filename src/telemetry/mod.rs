//! Logging and Application Insights telemetry.
//!
//! **Console** (always): one JSON line per event, carrying the run span's `invocation_id`. The
//! Functions host turns each stdout line into an Information trace and each stderr line into an
//! Error (or Warning, when the line contains "warn"), so warnings and errors go to stderr and
//! everything else to stdout. `LOG_LEVEL` takes an `EnvFilter` directive.
//!
//! **Export** (when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set): through
//! `opentelemetry-application-insights`, with an Entra token when
//! `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` says `Authorization=AAD`:
//! - the run span and the spans of [`crate::spans`], [`crate::graph::phases`] and [`instrumented`] as
//!   `dependencies` rows
//!   (all spans of this crate at info or above, whatever `LOG_LEVEL` says);
//! - warnings and errors inside a run as `traces` rows, correlated with the run (the console
//!   copies the host forwards have no correlation); info and debug lines are not exported, the
//!   console already reaches App Insights and ops pay per line;
//! - per-run figures as `customMetrics` ([`run_metrics`]).
//!
//! The handler wraps each invocation in [`Telemetry::invocation`], which flushes before the
//! response goes back, and calls [`Telemetry::shutdown`] once when the server stops.

pub mod instrumented;
pub mod run_metrics;
pub mod settings;
mod transport;

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Instrument, Level, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

use crate::run::{RunContext, RunSummary};
pub use crate::spans::DEPENDENCY_TARGET;
pub use run_metrics::FailedStage;
use run_metrics::RunInstruments;
pub use settings::{Authentication, ExportSettings, SettingsError};
use transport::{EntraToken, IngestionClient, TransportError, UPLOAD_LOG_TARGET, UploadRuntime};

/// Default console filter: run summaries and problems, not per-call chatter (ops pay per
/// ingested line). `LOG_LEVEL` takes an `EnvFilter` directive such as `debug` or
/// `teams_presence=debug`.
pub const DEFAULT_FILTER: &str = "info,azure_core=warn,azure_identity=warn,azure_data_cosmos=warn,hyper=warn,reqwest=warn,\
     opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_application_insights=warn";

/// Target of the run span, which every console line inside a run shows.
pub const RUN_TARGET: &str = "teams_presence::run";

/// Cloud role name of every exported item (`cloud_RoleName` in App Insights).
pub const SERVICE_NAME: &str = "teams-presence";

/// Periodic metric export is only a safety net: each run flushes its own figures.
const METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the exporter refused the connection string: {0}")]
    Exporter(String),
    #[error("Entra authentication is requested but no credential is available: {0}")]
    Credential(String),
}

/// Handle on the exporters; cheap to clone. A disabled handle (no connection string) does
/// nothing, so callers never branch on whether export is on.
#[derive(Clone, Default)]
pub struct Telemetry {
    export: Option<Arc<Export>>,
}

struct Export {
    tracers: SdkTracerProvider,
    meters: SdkMeterProvider,
    instruments: RunInstruments,
    /// Last, so that it outlives the providers that upload through it.
    _uploads: UploadRuntime,
}

impl Telemetry {
    /// Starts export to App Insights. `credential` is called only for Entra authentication
    /// without a `ClientId` (with one, a managed-identity credential for that client id is built
    /// here, because that is what the setting names).
    pub fn start<E: Display>(
        settings: &ExportSettings,
        credential: impl FnOnce() -> Result<Arc<dyn TokenCredential>, E>,
    ) -> Result<Self, TelemetryError> {
        let token = match &settings.authentication {
            Authentication::InstrumentationKey => None,
            Authentication::Entra { client_id, scope } => {
                let credential = match client_id {
                    Some(id) => user_assigned_identity(id)?,
                    None => credential().map_err(|e| TelemetryError::Credential(e.to_string()))?,
                };
                Some(EntraToken { credential, scope: scope.clone() })
            }
        };
        let uploads = UploadRuntime::start()?;
        let client = IngestionClient::new(&uploads, settings.track_url.clone(), token)?;
        let exporter = || {
            opentelemetry_application_insights::Exporter::new_from_connection_string(
                &settings.connection_string,
                client.clone(),
            )
            .map_err(|e| TelemetryError::Exporter(e.to_string()))
        };
        let resource = Resource::builder_empty()
            .with_service_name(SERVICE_NAME)
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let tracers =
            SdkTracerProvider::builder().with_batch_exporter(exporter()?).with_resource(resource.clone()).build();
        let reader = PeriodicReader::builder(exporter()?).with_interval(METRIC_EXPORT_INTERVAL).build();
        let meters = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        let instruments = RunInstruments::new(&meters.meter("teams-presence"));
        Ok(Self { export: Some(Arc::new(Export { tracers, meters, instruments, _uploads: uploads })) })
    }

    /// Console only.
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn is_exporting(&self) -> bool {
        self.export.is_some()
    }

    /// The subscriber: the JSON console layer (filtered by `console_filter`, written to
    /// `console`) and, when exporting, the OpenTelemetry layer (fixed filter, see module docs).
    pub fn subscriber<W>(&self, console_filter: EnvFilter, console: W) -> impl Subscriber + Send + Sync + 'static
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        // Spans of calls and phases are for export only: printed, they would replace the run
        // span (and its invocation id) as the "current span" of the lines logged inside them.
        let console_filter =
            console_filter.and(filter_fn(|meta| !(meta.is_span() && meta.target() == DEPENDENCY_TARGET)));
        let console_layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .with_writer(console)
            .with_filter(console_filter);
        let otel_layer = self.export.as_ref().map(|export| {
            tracing_opentelemetry::layer()
                .with_tracer(export.tracers.tracer("teams-presence"))
                // Each of these adds properties to every exported item, which ops pay for.
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(filter_fn(exported))
        });
        Registry::default().with(console_layer).with(otel_layer)
    }

    /// Runs one invocation inside the run span (whose `invocation_id` every console line and
    /// exported item of the run carries), then flushes, so the run's telemetry has been sent by
    /// the time the host sees the response.
    pub async fn invocation<F: Future>(&self, invocation_id: &str, work: F) -> F::Output {
        let span = tracing::info_span!(target: RUN_TARGET, "run", invocation_id = %invocation_id);
        // The span closes when this statement ends, which ends (and queues) the OTel span.
        let output = work.instrument(span).await;
        self.flush().await;
        output
    }

    /// Per-run figures of a successful run.
    pub fn record_run(&self, summary: &RunSummary) {
        if let Some(export) = &self.export {
            export.instruments.record_success(summary);
        }
    }

    /// A failed run: counted by stage, with its duration and the counters it had filled in; the
    /// current span (the run) is marked failed with `error` as its description.
    pub fn record_failed_run(
        &self,
        stage: FailedStage,
        run: Option<&RunContext>,
        elapsed: Duration,
        error: &dyn Display,
    ) {
        if let Some(export) = &self.export {
            export.instruments.record_failure(stage, run.map(|r| r.metrics.as_ref()), elapsed);
            tracing::Span::current().set_status(Status::error(error.to_string()));
        }
    }

    /// Sends everything recorded so far. Bounded: the SDK gives each flush 5 s, after which the
    /// run goes on and the data follows in the background (or is lost if ingestion stays down).
    pub async fn flush(&self) {
        let Some(export) = self.export.clone() else { return };
        let (tracers, meters) = (export.tracers.clone(), export.meters.clone());
        // Blocking calls that wait for the exporter threads: kept off the async workers.
        let traces = tokio::task::spawn_blocking(move || tracers.force_flush());
        let metrics = tokio::task::spawn_blocking(move || meters.force_flush());
        let (traces, metrics) = tokio::join!(traces, metrics);
        for (what, result) in [("traces", traces), ("metrics", metrics)] {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target: UPLOAD_LOG_TARGET, error = %e, "telemetry flush of {what} incomplete")
                }
                Err(e) => tracing::warn!(target: UPLOAD_LOG_TARGET, error = %e, "telemetry flush of {what} stopped"),
            }
        }
    }

    /// Flushes and stops the exporters; later telemetry is dropped. Blocking (up to about 5 s
    /// per exporter): call it after the server has stopped, outside async code or through
    /// `spawn_blocking`.
    pub fn shutdown(&self) {
        if let Some(export) = &self.export {
            for (what, result) in [("traces", export.tracers.shutdown()), ("metrics", export.meters.shutdown())] {
                if let Err(e) = result {
                    tracing::warn!(target: UPLOAD_LOG_TARGET, error = %e, "telemetry shutdown of {what} incomplete");
                }
            }
        }
    }
}

/// What the OpenTelemetry layer sees: this crate's spans at info and above (runs, phases,
/// calls) and warnings and errors from anywhere inside them. Never the exporter's own logs.
fn exported(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    if target.starts_with("opentelemetry") || target == UPLOAD_LOG_TARGET {
        return false;
    }
    if meta.is_span() {
        target.starts_with("teams_presence") && *meta.level() <= Level::INFO
    } else {
        *meta.level() <= Level::WARN
    }
}

fn user_assigned_identity(client_id: &str) -> Result<Arc<dyn TokenCredential>, TelemetryError> {
    let options = azure_identity::ManagedIdentityCredentialOptions {
        user_assigned_id: Some(azure_identity::UserAssignedId::ClientId(client_id.to_string())),
        ..Default::default()
    };
    let credential = azure_identity::ManagedIdentityCredential::new(Some(options))
        .map_err(|e| TelemetryError::Credential(format!("managed identity with client id {client_id}: {e}")))?;
    Ok(credential)
}

/// The console filter from `LOG_LEVEL`, or [`DEFAULT_FILTER`]; a bad value is reported, not fatal.
pub fn console_filter() -> (EnvFilter, Option<String>) {
    match std::env::var("LOG_LEVEL") {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!(
                    "LOG_LEVEL {value:?} is not a filter ({e}): expected e.g. `debug` or `teams_presence=debug`; using the default"
                )),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    }
}

/// Sets up logging for the process (warnings and errors to stderr, the rest to stdout) and, when
/// the App Insights settings ask for it, export. Problems with those settings are logged as
/// errors and leave the console logging working: telemetry must never stop the poller.
/// Where console log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Under the Functions host: warnings and errors to stderr, the rest to stdout.
    Host,
    /// A command whose stdout is its result (an export, the audit trail): every line to stderr.
    Stderr,
}

pub fn init<E: Display>(
    credential: impl FnOnce() -> Result<Arc<dyn TokenCredential>, E>,
    console: Console,
) -> Telemetry {
    let (filter, filter_problem) = console_filter();
    let (telemetry, export_problem) = match ExportSettings::from_env() {
        Ok(None) => (Telemetry::disabled(), None),
        Ok(Some(settings)) => match Telemetry::start(&settings, credential) {
            Ok(telemetry) => (telemetry, None),
            Err(e) => (Telemetry::disabled(), Some(e)),
        },
        Err(e) => (Telemetry::disabled(), Some(e.into())),
    };
    let info_to = match console {
        Console::Host => BoxMakeWriter::new(std::io::stdout),
        Console::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let writer = std::io::stderr.with_max_level(Level::WARN).or_else(info_to);
    let _ = tracing::subscriber::set_global_default(telemetry.subscriber(filter, writer));
    if let Some(problem) = filter_problem {
        tracing::warn!("{problem}");
    }
    if let Some(e) = export_problem {
        tracing::error!(error = %e, "Application Insights export is off; console logging only");
    }
    telemetry
}
