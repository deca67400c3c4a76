//! `handler demo`: the main job run locally on a simulated tenant.
//!
//! Starts the Graph simulator in this process, starts the real `handler serve` as a child process
//! with the embedded store (exactly as the Functions host would start it), and POSTs timer
//! invocations like the host's at an accelerated cadence. Each invocation is one schedule slot,
//! five simulated minutes after the previous one; the simulated tenant's presence moves on between
//! runs. Ends with a summary read back through the store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::{Value, json};

use crate::handler::{INVOCATION_ID_HEADER, TIMER_FUNCTION};
use crate::model::GroupId;
use crate::privacy::Subjects;
use crate::simulator::{SimConfig, SimHandle, Simulator, standard_groups};
use crate::store::RightsStore;
use crate::store::sqlite::SqliteStore;

#[derive(Clone, Debug, clap::Args)]
pub struct DemoOptions {
    /// Users in the simulated tenant.
    #[arg(long, default_value_t = 3_000)]
    pub users: u32,
    /// Timer invocations to make.
    #[arg(long, default_value_t = 12)]
    pub runs: u32,
    /// Real milliseconds between invocations (each stands for five minutes).
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Share of users whose availability changes between runs.
    #[arg(long, default_value_t = 0.1)]
    pub change_rate: f64,
    /// Latency the simulated Graph adds to every call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// The embedded store's file; an existing one is replaced.
    #[arg(long, default_value = "demo/presence.db")]
    pub db: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Setup(String),
    #[error("demo run {run}: {message}")]
    Run { run: u32, message: String },
}

fn setup(context: &str) -> impl Fn(std::io::Error) -> DemoError + '_ {
    move |e| DemoError::Setup(format!("{context}: {e}"))
}

/// The groups the demo configures: three of the simulator's four (the fourth is nested in the
/// first, so its users are in scope through it).
fn configured_groups() -> Vec<GroupId> {
    standard_groups()[..3].to_vec()
}

pub async fn run(options: &DemoOptions) -> Result<(), DemoError> {
    prepare_db(&options.db)?;
    let config = SimConfig::standard(options.users)
        .latency(Duration::from_millis(options.latency_ms))
        .change_rate(options.change_rate);
    let sim = Simulator::start(config).await.map_err(setup("cannot start the Graph simulator"))?;
    let groups = configured_groups();
    let in_scope = sim.expected_users(&groups).len();
    println!(
        "Graph simulator on {}: {} users, {} configured groups (overlapping, one nested), {:.0}% change per run",
        sim.base_url(),
        options.users,
        groups.len(),
        options.change_rate * 100.0
    );

    let mut handler = HandlerChild::start(&sim, &groups, &options.db)?;
    println!("handler serve on {} with the embedded store at {}", handler.address, options.db.display());
    let outcome = invoke_runs(&sim, &handler, options).await;
    handler.stop();
    let totals = outcome?;

    summarise(options, in_scope, &sim, &groups, &totals).await
}

fn prepare_db(db: &std::path::Path) -> Result<(), DemoError> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(setup("cannot create the store's folder"))?;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DemoError::Setup(format!("cannot replace {}: {e}", PathBuf::from(path).display()))),
        }
    }
    Ok(())
}

/// `handler serve` as a child process, configured like a Function App pointed at the simulator.
struct HandlerChild {
    child: Child,
    address: SocketAddr,
}

impl HandlerChild {
    fn start(sim: &SimHandle, groups: &[GroupId], db: &std::path::Path) -> Result<Self, DemoError> {
        let exe = std::env::current_exe().map_err(setup("cannot find the handler binary"))?;
        let group_ids: Vec<String> = groups.iter().map(GroupId::to_string).collect();
        let mut child = Command::new(exe)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
            .env("ENTRA_GROUP_IDS", group_ids.join(","))
            .env("GRAPH_BASE_URL", sim.base_url())
            .env("IDENTITY_ENDPOINT", sim.identity_endpoint())
            .env("IDENTITY_HEADER", sim.identity_header())
            .env("PRESENCE_DB", db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(setup("cannot start handler serve"))?;
        let stdout = child.stdout.take().ok_or_else(|| DemoError::Setup("handler serve has no stdout".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // The child's info lines are for Application Insights; the demo shows only its address
        // (and lets warnings and errors through on stderr).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if event["message"] == "listening"
                    && let Some(address) = event["address"].as_str().and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(address);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => Ok(Self { child, address }),
            Err(_) => {
                let _ = child.kill();
                Err(DemoError::Setup("handler serve did not start listening within 30 s".into()))
            }
        }
    }

    /// SIGTERM, as the platform stops an instance, then wait for the graceful shutdown.
    fn stop(&mut self) {
        let terminated =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for HandlerChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Default)]
struct Totals {
    runs: u32,
    changes: u64,
    observations: u64,
}

async fn invoke_runs(sim: &SimHandle, handler: &HandlerChild, options: &DemoOptions) -> Result<Totals, DemoError> {
    let client = reqwest::Client::new();
    let url = format!("http://{}/{TIMER_FUNCTION}", handler.address);
    let now = Utc::now();
    let first_slot = now.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now);
    let mut totals = Totals::default();
    for run in 1..=options.runs {
        let slot = first_slot + chrono::Duration::minutes(5 * i64::from(run - 1));
        let body = timer_payload(slot, slot - chrono::Duration::minutes(5));
        let started = std::time::Instant::now();
        let response = client
            .post(&url)
            .header(INVOCATION_ID_HEADER, uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| DemoError::Run { run, message: format!("handler did not answer: {e}") })?;
        let status = response.status();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(DemoError::Run { run, message: format!("handler answered {status}: {reply}") });
        }
        let line = reply["Logs"][0].as_str().unwrap_or_default();
        let field = |name: &str| summary_field(line, name).unwrap_or(0);
        totals.runs = run;
        totals.changes += field("changes");
        totals.observations += field("observed");
        println!(
            "run {run:>2}/{}  slot {}  users {:>6}  observed {:>6}  changes {:>5}  presence calls {:>3}  {:>5} ms",
            options.runs,
            slot.format("%H:%M"),
            field("users"),
            field("observed"),
            field("changes"),
            field("presence_calls"),
            started.elapsed().as_millis()
        );
        sim.advance_epoch();
        if run < options.runs {
            tokio::time::sleep(Duration::from_millis(options.interval_ms)).await;
        }
    }
    Ok(totals)
}

/// The body the Functions host POSTs for a timer occurrence (`ScheduleStatus.Next` = `slot`).
fn timer_payload(slot: DateTime<Utc>, last: DateTime<Utc>) -> Value {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    json!({
        "Data": {"timer": {
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {"Last": ts(last), "Next": ts(slot), "LastUpdated": ts(last)},
            "IsPastDue": false
        }},
        "Metadata": {"sys": {"MethodName": TIMER_FUNCTION, "UtcNow": ts(Utc::now()), "RandGuid": uuid::Uuid::new_v4()}}
    })
}

/// Reads `name=value` from the run summary line in the response's `Logs`.
fn summary_field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

async fn summarise(
    options: &DemoOptions,
    in_scope: usize,
    sim: &SimHandle,
    groups: &[GroupId],
    totals: &Totals,
) -> Result<(), DemoError> {
    let store = SqliteStore::open(&options.db, None).await.map_err(|e| DemoError::Setup(e.to_string()))?;
    let mut by_availability: BTreeMap<String, u64> = BTreeMap::new();
    let mut records = 0u64;
    let mut example = None;
    for user in sim.expected_users(groups) {
        let history = store
            .export_subject(Subjects::plain().stored_id(user))
            .await
            .map_err(|e| DemoError::Setup(e.to_string()))?;
        if example.is_none() && history.len() > 2 {
            example = Some(user);
        }
        for record in history {
            records += 1;
            *by_availability.entry(record.availability.to_string()).or_default() += 1;
        }
    }
    println!();
    println!("Summary");
    println!("  users in scope     {in_scope}");
    println!("  runs               {}", totals.runs);
    println!("  observations       {}", totals.observations);
    println!(
        "  records written    {records} (first sightings and availability changes; {} reported by runs)",
        totals.changes
    );
    let mut sorted: Vec<_> = by_availability.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (availability, count) in sorted {
        println!("    {availability:<16} {count}");
    }
    println!(
        "  data               {} (SQLite: user id, availability, timestamp and the run's schedule slot only)",
        options.db.display()
    );
    if let Some(user) = example {
        println!(
            "  export a user      PRESENCE_DB={} {} export --user {} [--format csv]",
            options.db.display(),
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "handler".into()),
            // A simulated user, printed for the person running the demo to try an export with.
            user.expose_object_id()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_fields_are_read_by_name() {
        let line = "run slot=2026-11-22T10:05:00Z users=3000 observed=2990 unobserved=10 changes=301";
        assert_eq!(summary_field(line, "users"), Some(3000));
        assert_eq!(summary_field(line, "observed"), Some(2990));
        assert_eq!(summary_field(line, "unobserved"), Some(10));
        assert_eq!(summary_field(line, "changes"), Some(301));
        assert_eq!(summary_field(line, "retries"), None);
    }
}
