//! `handler`: the Teams Presence binary. The Functions host starts it with no arguments (`serve`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Timelike, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use teams_presence::app;
use teams_presence::config::{Config, RawSettings, StoreConfig};
use teams_presence::functions_host::{listen_port, shutdown_signal};
use teams_presence::handler::{self, AppState};
use teams_presence::identity;
use teams_presence::model::{self, Slot, UserId};
use teams_presence::rights;
use teams_presence::run::RunContext;
use teams_presence::telemetry::{self, Console, Telemetry};

#[derive(Parser)]
#[command(
    name = "handler",
    version,
    about = "Teams presence history for Entra ID groups (Azure Functions custom handler)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: RawSettings,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Functions host on 127.0.0.1 (the default when no command is given).
    Serve {
        /// Port to listen on; otherwise FUNCTIONS_CUSTOMHANDLER_PORT, FUNCTIONS_HTTPWORKER_PORT,
        /// then 8080. 0 picks a free port.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Validate the configuration and print what would be used (never a secret).
    Check,
    /// Run one poll cycle now, with the same configuration as the served function.
    PollOnce,
    /// Run the main job locally: the Graph simulator, `handler serve` with the embedded store, and
    /// timer invocations at an accelerated cadence.
    Demo(teams_presence::demo::DemoOptions),
    /// Print one user's history, oldest first (a data-subject access request; audited).
    Export {
        /// The user's Entra object id.
        #[arg(long)]
        user: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
    /// Delete every record and all state of one user (a data-subject erasure request; audited).
    Erase {
        /// The user's Entra object id.
        #[arg(long)]
        user: String,
    },
    /// Print the audit trail of exports and erasures, oldest first.
    Audit {
        /// Only the entries about this user (matched by their audit reference, not stored in clear).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let console = match cli.command {
        None | Some(Command::Serve { .. }) | Some(Command::PollOnce) | Some(Command::Demo(_)) => Console::Host,
        Some(Command::Check)
        | Some(Command::Export { .. })
        | Some(Command::Erase { .. })
        | Some(Command::Audit { .. }) => Console::Stderr,
    };
    let telemetry = telemetry::init(identity::credential, console);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served_telemetry = telemetry.clone();
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve { port: None }) {
            Command::Serve { port } => serve(port, &cli.settings, served_telemetry).await,
            Command::Check => check(&cli.settings),
            Command::PollOnce => poll_once(&cli.settings).await,
            Command::Export { user, format } => export(&cli.settings, &user, format).await,
            Command::Erase { user } => erase(&cli.settings, &user).await,
            Command::Audit { user } => audit(&cli.settings, user.as_deref()).await,
            Command::Demo(options) => teams_presence::demo::run(&options).await.map_err(Into::into),
        }
    });
    // Outside the runtime: shutdown blocks while the exporters send what is left.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(port: Option<u16>, settings: &RawSettings, telemetry: Telemetry) -> anyhow::Result<()> {
    // Bind first: the host gives up on a handler that does not answer `GET /` within 30 s.
    let port = listen_port(port)?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = listener.local_addr()?;
    let state = AppState::new(settings).with_telemetry(telemetry);
    if let Some(e) = state.config_error() {
        tracing::error!(error = %e, "configuration is invalid: every run will fail until it is fixed");
    }
    let shutdown = shutdown_signal()?;
    tracing::info!(%address, "listening");
    handler::serve(listener, Arc::new(state), shutdown).await?;
    tracing::info!("shut down");
    Ok(())
}

fn check(settings: &RawSettings) -> anyhow::Result<()> {
    let config = Config::parse(settings)?;
    println!("{}", config.describe());
    Ok(())
}

async fn poll_once(settings: &RawSettings) -> anyhow::Result<()> {
    let config = Config::parse(settings)?;
    let cycle = app::build_cycle(&config).await?;
    let now = Utc::now();
    let slot = Slot::new(now.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now));
    let run = RunContext::new(cli_invocation_id(), slot, config.run_deadline.max(Duration::from_secs(1)));
    let summary = cycle.run(&run).await?;
    println!("{}", summary.line());
    Ok(())
}

fn cli_user(user: &str) -> anyhow::Result<UserId> {
    model::parse_user_id(user).map_err(|e| anyhow::anyhow!("--user {e}"))
}

/// An invocation id for a command-line run or request (logs, the audit trail).
fn cli_invocation_id() -> String {
    format!("cli-{}", uuid::Uuid::new_v4())
}

async fn export(settings: &RawSettings, user: &str, format: ExportFormat) -> anyhow::Result<()> {
    let user = cli_user(user)?;
    let rights = app::open_rights(&StoreConfig::parse(settings)?).await?;
    let records = rights.export(user, &cli_invocation_id()).await?;
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?,
        ExportFormat::Csv => write!(out, "{}", rights::records_csv(&records))?,
    }
    Ok(())
}

async fn erase(settings: &RawSettings, user: &str) -> anyhow::Result<()> {
    let user = cli_user(user)?;
    let rights = app::open_rights(&StoreConfig::parse(settings)?).await?;
    let erased = rights.erase(user, &cli_invocation_id()).await?;
    // The admin's answer on stdout, about the id they typed: not a log line.
    println!(
        "erased user {}: {} history records and {} state entries removed (audit reference {})",
        user.expose_object_id(),
        erased.history_records,
        erased.state_entries,
        rights.audit_reference(user)
    );
    Ok(())
}

async fn audit(settings: &RawSettings, user: Option<&str>) -> anyhow::Result<()> {
    let reference = user.map(cli_user).transpose()?;
    let rights = app::open_rights(&StoreConfig::parse(settings)?).await?;
    let reference = reference.map(|u| rights.audit_reference(u));
    let entries: Vec<_> = rights
        .audit_trail()
        .await?
        .into_iter()
        .filter(|e| reference.as_ref().is_none_or(|r| &e.subject == r))
        .collect();
    println!("{}", serde_json::to_string_pretty(&entries)?);
    Ok(())
}
