//! Runs the Graph simulator as its own process, for local runs and benchmarks.
//!
//! Prints one JSON line `{"message":"listening","address":...}` (with the URLs and group ids to
//! configure) on stdout, then serves until interrupted (SIGINT or SIGTERM). `GET /_sim/counters`
//! reports what it saw; `POST /_sim/advance-epoch` moves the tenant's presence on.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use teams_presence::simulator::{SimConfig, Simulator, standard_groups};

#[derive(Parser)]
#[command(name = "graph-sim", about = "A loopback Microsoft Graph simulator for Teams Presence")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Users in the tenant, spread over overlapping and nested groups.
    #[arg(long, default_value_t = 1_000)]
    users: u32,
    /// Added to every Graph call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// A further uniformly random 0..=this many milliseconds per call (benchmarks: 100, so
    /// calls take 50-150 ms with --latency-ms 50).
    #[arg(long, default_value_t = 0)]
    latency_spread_ms: u64,
    /// Presence calls accepted per throttle window before 429s.
    #[arg(long, default_value_t = 1_500)]
    throttle_limit: u32,
    #[arg(long, default_value_t = 30_000)]
    throttle_window_ms: u64,
    /// Largest transitiveMembers page.
    #[arg(long, default_value_t = 999)]
    max_page_size: u32,
    #[arg(long, default_value_t = 3_600)]
    token_lifetime_s: u64,
    /// Share of users whose availability changes per epoch.
    #[arg(long, default_value_t = 0.1)]
    change_rate: f64,
    /// Advance the epoch every this many milliseconds (0: only POST /_sim/advance-epoch does).
    #[arg(long, default_value_t = 0)]
    epoch_ms: u64,
    #[arg(long, default_value = "sim-identity-header")]
    identity_header: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut config = SimConfig::standard(args.users)
            .latency(Duration::from_millis(args.latency_ms))
            .latency_spread(Duration::from_millis(args.latency_spread_ms))
            .throttle(args.throttle_limit, Duration::from_millis(args.throttle_window_ms))
            .max_page_size(args.max_page_size)
            .token_lifetime(Duration::from_secs(args.token_lifetime_s))
            .change_rate(args.change_rate);
        config.identity_header = args.identity_header;
        if args.epoch_ms > 0 {
            config = config.epoch_every(Duration::from_millis(args.epoch_ms));
        }
        let sim = match Simulator::start_on(config, args.port).await {
            Ok(sim) => sim,
            Err(e) => {
                eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", args.port);
                return ExitCode::FAILURE;
            }
        };
        let groups: Vec<String> = standard_groups()[..3].iter().map(|g| g.to_string()).collect();
        let line = serde_json::json!({
            "message": "listening",
            "address": sim.address().to_string(),
            "base_url": sim.base_url(),
            "identity_endpoint": sim.identity_endpoint(),
            "identity_header": sim.identity_header(),
            "groups": groups.join(","),
        });
        println!("{line}");
        wait_for_stop().await;
        sim.shutdown();
        ExitCode::SUCCESS
    })
}

/// SIGINT from a terminal, SIGTERM from a benchmark or a service manager.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
