//! `handler`: the Teams Presence binary. The Functions host starts it with no arguments (`serve`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Timelike, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use teams_presence::app;
use teams_presence::config::{Config, DEFAULT_LOCAL_PORT, RawSettings, StoreConfig};
use teams_presence::cycle::RunContext;
use teams_presence::handler::{self, AppState};
use teams_presence::identity;
use teams_presence::model::{ChangeRecord, Slot};
use teams_presence::telemetry::{self, Telemetry};

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
    /// Print one user's history, oldest first.
    Export {
        /// The user's Entra object id.
        #[arg(long)]
        user: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = telemetry::init(identity::credential);
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

fn listen_port(flag: Option<u16>) -> anyhow::Result<u16> {
    if let Some(port) = flag {
        return Ok(port);
    }
    for name in ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"] {
        if let Some(value) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
            return value
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{name} is {value:?}: expected a TCP port number (0-65535)"));
        }
    }
    Ok(DEFAULT_LOCAL_PORT)
}

async fn serve(port: Option<u16>, settings: &RawSettings, telemetry: Telemetry) -> anyhow::Result<()> {
    // Bind first: the host gives up on a handler that does not answer `GET /` within 30 s.
    let port = listen_port(port)?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = listener.local_addr()?;
    let config = Config::parse(settings);
    if let Err(e) = &config {
        tracing::error!(error = %e, "configuration is invalid: every run will fail until it is fixed");
    }
    let shutdown = shutdown_signal()?;
    tracing::info!(%address, "listening");
    handler::serve(listener, Arc::new(AppState::new(config).with_telemetry(telemetry)), shutdown).await?;
    tracing::info!("shut down");
    Ok(())
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when it
/// is first polled, so a signal that arrives right after "listening" is not lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
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
    let run =
        RunContext::new(format!("cli-{}", uuid::Uuid::new_v4()), slot, config.run_deadline.max(Duration::from_secs(1)));
    let summary = cycle.run(&run).await?;
    println!("{}", summary.line());
    Ok(())
}

async fn export(settings: &RawSettings, user: &str, format: ExportFormat) -> anyhow::Result<()> {
    let user_id = teams_presence::config::parse_guid(user.trim()).ok_or_else(|| {
        anyhow::anyhow!(
            "--user {user:?} is not a user object id: expected a GUID such as 6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c"
        )
    })?;
    let config = StoreConfig::parse(settings)?;
    let store = app::open_store(&config).await?;
    let records = store.export_user(user_id).await?;
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?,
        ExportFormat::Csv => write_csv(&mut out, &records)?,
    }
    Ok(())
}

fn write_csv(out: &mut impl Write, records: &[ChangeRecord]) -> std::io::Result<()> {
    writeln!(out, "userId,availability,timestamp")?;
    for r in records {
        let availability = r.availability.as_str();
        // Graph values are plain words, but an unexpected one must not break the columns.
        let availability = if availability.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", availability.replace('"', "\"\""))
        } else {
            availability.to_string()
        };
        writeln!(
            out,
            "{},{},{}",
            r.user_id,
            availability,
            r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )?;
    }
    Ok(())
}
