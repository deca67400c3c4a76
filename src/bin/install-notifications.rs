//! `install-notifications`: the publisher's install-notification receiver (publisher/), run by the
//! Functions host as a custom handler like `handler`. See `teams_presence::notifications`.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use teams_presence::functions_host::{listen_port, shutdown_signal};
use teams_presence::notifications::server::{self, Receiver};
use teams_presence::notifications::{ReceiverConfig, ReceiverSettings, sig_digest_hex};
use teams_presence::telemetry::{self, Console};

#[derive(Parser)]
#[command(
    name = "install-notifications",
    version,
    about = "Counts Managed Application install notifications by plan, version, event and day"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: ReceiverSettings,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Functions host on 127.0.0.1 (the default when no command is given).
    Serve {
        /// Port; otherwise FUNCTIONS_CUSTOMHANDLER_PORT, FUNCTIONS_HTTPWORKER_PORT, then 8080. 0 picks a
        /// free port.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Print the counts, one JSON object a line: plan, version, event, day, count.
    Counts,
    /// Read a sig token on stdin and print the NOTIFICATION_SIG_SHA256 value for it.
    SigDigest,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let console = match cli.command {
        None | Some(Command::Serve { .. }) => Console::Host,
        Some(_) => Console::Stderr,
    };
    let telemetry = telemetry::init(teams_presence::identity::credential, console);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = telemetry.clone();
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve { port: None }) {
            Command::Serve { port } => serve(port, &cli.settings, served).await,
            Command::Counts => counts(&cli.settings).await,
            Command::SigDigest => sig_digest(),
        }
    });
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(port: Option<u16>, settings: &ReceiverSettings, telemetry: telemetry::Telemetry) -> anyhow::Result<()> {
    // A receiver that cannot check the sig or store a count must not answer 200: it stops, and
    // the host's restarts and Azure's retries keep the notifications until it is fixed.
    let config = ReceiverConfig::parse(settings)?;
    let counts = config.open_counts().await?;
    let port = listen_port(port)?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, store = %counts.describe(), "listening");
    let receiver = Arc::new(Receiver::new(counts, config.sig_digest).with_telemetry(telemetry));
    axum::serve(listener, server::router(receiver)).with_graceful_shutdown(shutdown_signal()?).await?;
    tracing::info!("shut down");
    Ok(())
}

async fn counts(settings: &ReceiverSettings) -> anyhow::Result<()> {
    // Reading needs no sig: only the store settings.
    let mut settings = settings.clone();
    settings.sig_sha256.get_or_insert_with(|| sig_digest_hex("unused"));
    let config = ReceiverConfig::parse(&settings)?;
    for row in config.open_counts().await?.counts().await? {
        println!("{}", serde_json::to_string(&row)?);
    }
    Ok(())
}

fn sig_digest() -> anyhow::Result<()> {
    let mut token = String::new();
    std::io::stdin().read_to_string(&mut token)?;
    let token = token.trim();
    if token.len() < 32 {
        anyhow::bail!(
            "the sig token on stdin has {} characters: use at least 32 random ones (openssl rand -hex 24)",
            token.len()
        );
    }
    println!("{}", sig_digest_hex(token));
    Ok(())
}
