//! Tenant-scale benchmark: the release `handler serve` against the release `graph-sim`, each in its
//! own process, as the Functions host would run it. Prints one JSON line of figures per scenario.
//!
//! Run through `scripts/bench.sh` (it builds the release binaries first). Settings, by environment:
//! `TENANT_SCALE_USERS` (comma list, default `10000,100000,1000000`), `TENANT_SCALE_BASELINE_S`
//! (time box of each baseline, default 20), `TENANT_SCALE_BIN_DIR` (default `target/release`),
//! `TENANT_SCALE_LATENCY_MS` / `TENANT_SCALE_SPREAD_MS` (per-call latency 50 + 0..=100 ms).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use teams_presence::simulator::user_id;

/// Graph's documented presence limit, which the simulator enforces.
const THROTTLE_LIMIT: u64 = 1_500;
const THROTTLE_WINDOW: Duration = Duration::from_secs(30);
/// `MEMBERSHIP_INLINE_LIMIT_SECONDS`' default: slower paging is done in the background and a warm
/// run reuses the previous read (src/graph/reuse.rs).
const INLINE_LIMIT_S: f64 = 20.0;
/// Baseline clients: as many requests in flight as the handler's presence calls.
const BASELINE_CONCURRENCY: usize = 8;

#[path = "common/graph_bound.rs"]
mod graph_bound;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Settings {
    bin: PathBuf,
    latency: Duration,
    spread: Duration,
    baseline: Duration,
}

impl Settings {
    fn mean_latency(&self) -> f64 {
        self.latency.as_secs_f64() + self.spread.as_secs_f64() / 2.0
    }
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here indexes 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/<pid>/status` figure in KiB (VmHWM: peak resident set).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

struct Sim {
    proc: Proc,
    origin: String,
    base_url: String,
    identity_endpoint: String,
    identity_header: String,
    groups: String,
}

fn start_sim(settings: &Settings, users: u64) -> Sim {
    let mut child = Command::new(settings.bin.join("graph-sim"))
        .args(["--users", &users.to_string()])
        .args(["--latency-ms", &settings.latency.as_millis().to_string()])
        .args(["--latency-spread-ms", &settings.spread.as_millis().to_string()])
        .args(["--throttle-limit", &THROTTLE_LIMIT.to_string()])
        .args(["--throttle-window-ms", &THROTTLE_WINDOW.as_millis().to_string()])
        .args(["--change-rate", "0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start graph-sim (run scripts/bench.sh, which builds the release binaries)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("graph-sim stdout")).read_line(&mut line).expect("graph-sim line");
    let v: Value = serde_json::from_str(&line).expect("graph-sim listening line");
    let s = |k: &str| v[k].as_str().expect(k).to_string();
    Sim {
        origin: format!("http://{}", s("address")),
        base_url: s("base_url"),
        identity_endpoint: s("identity_endpoint"),
        identity_header: s("identity_header"),
        groups: s("groups"),
        proc: Proc(child),
    }
}

struct Handler {
    proc: Proc,
    address: SocketAddr,
    listen_ms: f64,
}

fn start_handler(settings: &Settings, sim: &Sim, dir: &Path) -> Handler {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
    let started = Instant::now();
    let child = Command::new(settings.bin.join("handler"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("ENTRA_GROUP_IDS", &sim.groups)
        .env("GRAPH_BASE_URL", &sim.base_url)
        .env("IDENTITY_ENDPOINT", &sim.identity_endpoint)
        .env("IDENTITY_HEADER", &sim.identity_header)
        .env("PRESENCE_DB", dir.join("presence.db"))
        .stdin(Stdio::null())
        .stdout(log("handler.stdout"))
        .stderr(log("handler.stderr"))
        .spawn()
        .expect("start handler serve");
    let proc = Proc(child);
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(50)).is_ok() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "handler did not listen on {address} within 30 s");
        std::thread::sleep(Duration::from_micros(200));
    }
    Handler { proc, address, listen_ms: started.elapsed().as_secs_f64() * 1000.0 }
}

async fn sim_counters(client: &reqwest::Client, sim: &Sim) -> Value {
    client.get(format!("{}/_sim/counters", sim.origin)).send().await.unwrap().json().await.unwrap()
}

fn delta(after: &Value, before: &Value, key: &str) -> u64 {
    after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0)
}

fn summary_field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

struct RunFigures {
    wall_s: f64,
    users: u64,
    changes: u64,
    presence_calls: u64,
    member_pages: u64,
    throttled: u64,
    handler_cpu_s: f64,
    sim_cpu_s: f64,
    /// The handler's own phase times (its run summary line).
    graph_ms: u64,
    store_read_ms: u64,
    record_ms: u64,
    /// Zero when the run read membership; the age of the reused read otherwise.
    membership_age_ms: u64,
}

/// One timer invocation, as the host POSTs it, timed from request to response.
async fn invoke(client: &reqwest::Client, sim: &Sim, handler: &Handler, slot: u32) -> RunFigures {
    let before = sim_counters(client, sim).await;
    let cpu_before = cpu_seconds(handler.proc.pid());
    let sim_cpu_before = cpu_seconds(sim.proc.pid());
    let next = format!("2026-12-01T{:02}:{:02}:00.000Z", slot / 12, (slot % 12) * 5);
    let body = json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true},
                 "ScheduleStatus": {"Last": next, "Next": next, "LastUpdated": next}, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "function-timer", "UtcNow": next}}
    });
    let started = Instant::now();
    let response = client
        .post(format!("http://{}/function-timer", handler.address))
        .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .expect("handler answered");
    let status = response.status();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    let wall_s = started.elapsed().as_secs_f64();
    assert!(status.is_success(), "run failed: {status} {reply}");
    let after = sim_counters(client, sim).await;
    let line = reply["Logs"][0].as_str().unwrap_or_default().to_string();
    let field = |n: &str| summary_field(&line, n).unwrap_or(0);
    RunFigures {
        wall_s,
        users: field("users"),
        changes: field("changes"),
        presence_calls: delta(&after, &before, "presence_calls"),
        member_pages: delta(&after, &before, "member_calls"),
        throttled: delta(&after, &before, "throttled"),
        handler_cpu_s: cpu_seconds(handler.proc.pid()) - cpu_before,
        sim_cpu_s: cpu_seconds(sim.proc.pid()) - sim_cpu_before,
        graph_ms: field("graph_ms"),
        store_read_ms: field("store_read_ms"),
        record_ms: field("record_ms"),
        membership_age_ms: field("membership_age_ms"),
    }
}

/// The membership read a reusing run started in the background: waits for the handler's log line
/// and returns the member pages it read (simulator counters since `before`) and its duration.
async fn background_read(client: &reqwest::Client, sim: &Sim, dir: &Path, before: &Value) -> Value {
    let log = dir.join("handler.stdout");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| {
            v["fields"]["message"].as_str().or(v["message"].as_str()).is_some_and(|m| m.starts_with("membership read"))
        });
        if let Some(line) = line {
            let after = sim_counters(client, sim).await;
            let field = |k: &str| line["fields"][k].clone().as_u64().or(line[k].as_u64()).unwrap_or(0);
            return json!({
                "member_pages": delta(&after, before, "member_calls"),
                "read_s": field("read_ms") as f64 / 1000.0,
                "users": field("users"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    json!({ "error": "no background membership read logged within 300 s" })
}

async fn token(client: &reqwest::Client, sim: &Sim) -> String {
    let v: Value = client
        .get(&sim.identity_endpoint)
        .query(&[("api-version", "2019-08-01"), ("resource", sim.origin.as_str())])
        .header("X-IDENTITY-HEADER", &sim.identity_header)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().expect("token").to_string()
}

fn retry_after(value: Option<&str>) -> Duration {
    Duration::from_secs_f64(value.and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(1.0).clamp(0.0, 60.0))
}

/// What every worker of a baseline shares.
struct Baseline {
    client: reqwest::Client,
    bearer: String,
    base_url: String,
    /// The next user index to read.
    next: AtomicU64,
    users: u64,
    throttled: AtomicU64,
    /// End of the time box.
    end: Instant,
}

impl Baseline {
    fn left(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }
}

/// Runs `worker` on `BASELINE_CONCURRENCY` tasks for at most `time_box` after the token is
/// fetched; each returns the users it read. Returns (users read, seconds, 429s).
async fn run_baseline<W, F>(
    client: &reqwest::Client,
    sim: &Sim,
    users: u64,
    time_box: Duration,
    worker: W,
) -> (u64, f64, u64)
where
    W: Fn(Arc<Baseline>) -> F,
    F: Future<Output = u64> + Send + 'static,
{
    let bearer = format!("Bearer {}", token(client, sim).await);
    let started = Instant::now();
    let shared = Arc::new(Baseline {
        client: client.clone(),
        bearer,
        base_url: sim.base_url.clone(),
        next: AtomicU64::new(0),
        users,
        throttled: AtomicU64::new(0),
        end: started + time_box,
    });
    let workers: Vec<_> = (0..BASELINE_CONCURRENCY).map(|_| tokio::spawn(worker(shared.clone()))).collect();
    let mut done = 0;
    for w in workers {
        done += w.await.unwrap();
    }
    (done, started.elapsed().as_secs_f64(), shared.throttled.load(Ordering::Relaxed))
}

/// Presence one user at a time (`GET /users/{id}/presence`), honouring 429's Retry-After as a
/// careful script does, for at most `time_box`. Returns (users read, seconds, 429s).
async fn baseline_single(client: &reqwest::Client, sim: &Sim, users: u64, time_box: Duration) -> (u64, f64, u64) {
    run_baseline(client, sim, users, time_box, |b| async move {
        let mut done = 0u64;
        'users: loop {
            let i = b.next.fetch_add(1, Ordering::Relaxed);
            if i >= b.users {
                break;
            }
            loop {
                if Instant::now() >= b.end {
                    break 'users;
                }
                let url = format!("{}/users/{}/presence", b.base_url, user_id(i as u32).expose_object_id());
                let Ok(r) = b.client.get(&url).header("Authorization", &b.bearer).send().await else { continue };
                if r.status() == 429 {
                    b.throttled.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_after(r.headers().get("retry-after").and_then(|v| v.to_str().ok()));
                    tokio::time::sleep(wait.min(b.left())).await;
                    continue;
                }
                let _ = r.bytes().await;
                done += 1;
                break;
            }
        }
        done
    })
    .await
}

/// JSON `$batch` of 20 `GET /users/{id}/presence`; throttled items are retried together after the
/// longest `Retry-After`, as Graph's guidance says. Returns (users read, seconds, 429 items).
async fn baseline_batch(client: &reqwest::Client, sim: &Sim, users: u64, time_box: Duration) -> (u64, f64, u64) {
    run_baseline(client, sim, users, time_box, |b| async move {
        let url = format!("{}/$batch", b.base_url);
        let mut done = 0u64;
        'batches: loop {
            let first = b.next.fetch_add(20, Ordering::Relaxed);
            if first >= b.users {
                break;
            }
            let mut pending: Vec<u64> = (first..(first + 20).min(b.users)).collect();
            while !pending.is_empty() {
                if Instant::now() >= b.end {
                    break 'batches;
                }
                let requests: Vec<Value> = pending
                    .iter()
                    .map(|i| json!({"id": i.to_string(), "method": "GET", "url": format!("/users/{}/presence", user_id(*i as u32).expose_object_id())}))
                    .collect();
                let Ok(r) =
                    b.client.post(&url).header("Authorization", &b.bearer).json(&json!({ "requests": requests })).send().await
                else {
                    continue;
                };
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let mut again = Vec::new();
                let mut wait = Duration::ZERO;
                for item in v["responses"].as_array().into_iter().flatten() {
                    let id: u64 = item["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
                    if item["status"] == 429 {
                        b.throttled.fetch_add(1, Ordering::Relaxed);
                        wait = wait.max(retry_after(item["headers"]["Retry-After"].as_str()));
                        again.push(id);
                    } else {
                        done += 1;
                    }
                }
                pending = again;
                if !pending.is_empty() {
                    tokio::time::sleep(wait.min(b.left())).await;
                }
            }
        }
        done
    })
    .await
}

fn baseline_json(users: u64, (done, secs, throttled): (u64, f64, u64)) -> Value {
    json!({
        "users_read": done, "seconds": secs, "throttled": throttled,
        "projected_full_run_s": if done > 0 { secs * users as f64 / done as f64 } else { f64::INFINITY },
    })
}

async fn scenario(settings: &Settings, users: u64) -> Value {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = start_sim(settings, users);
    let handler = start_handler(settings, &sim, dir.path());
    let cold = invoke(&client, &sim, &handler, 0).await;
    client.post(format!("{}/_sim/advance-epoch", sim.origin)).send().await.unwrap();
    // Production runs are five minutes apart: the next one finds the throttle window empty.
    if cold.presence_calls * 2 > THROTTLE_LIMIT {
        tokio::time::sleep(THROTTLE_WINDOW + Duration::from_secs(1)).await;
    }
    let before_warm = sim_counters(&client, &sim).await;
    let warm = invoke(&client, &sim, &handler, 1).await;
    let background = if warm.membership_age_ms > 0 {
        background_read(&client, &sim, dir.path(), &before_warm).await
    } else {
        Value::Null
    };
    let peak_rss_kib = status_kib(handler.proc.pid(), "VmHWM");
    let rss_after_kib = status_kib(handler.proc.pid(), "VmRSS");
    let sim_peak_rss_kib = status_kib(sim.proc.pid(), "VmHWM");
    drop(handler);

    // The baselines share the simulator, and with it the presence limit: start each on an empty
    // window, as the handler's runs did.
    tokio::time::sleep(THROTTLE_WINDOW + Duration::from_secs(1)).await;
    let single = baseline_single(&client, &sim, users, settings.baseline).await;
    tokio::time::sleep(THROTTLE_WINDOW + Duration::from_secs(1)).await;
    let batch = baseline_batch(&client, &sim, users, settings.baseline).await;

    let b = graph_bound::bounds(users, settings.mean_latency(), THROTTLE_LIMIT, THROTTLE_WINDOW.as_secs_f64());
    // A run that reuses membership waits for presence only; one that reads it, for both.
    let run = |r: &RunFigures| {
        let bound = if r.membership_age_ms > 0 { b.presence_s } else { b.run_s };
        json!({
            "wall_s": r.wall_s, "users": r.users, "changes": r.changes,
            "presence_calls": r.presence_calls, "member_pages": r.member_pages, "throttled_429": r.throttled,
            "handler_cpu_s": r.handler_cpu_s, "sim_cpu_s": r.sim_cpu_s,
            "graph_ms": r.graph_ms, "store_read_ms": r.store_read_ms, "record_ms": r.record_ms,
            "membership": if r.membership_age_ms > 0 { "reused" } else { "read" },
            "lower_bound_s": bound,
            "ratio_to_lower_bound": r.wall_s / bound,
            "ratio_to_throttle_bound": r.wall_s / b.throttle_s,
        })
    };
    let binary = |name: &str| std::fs::metadata(settings.bin.join(name)).map(|m| m.len()).unwrap_or(0);
    json!({
        "scenario": "tenant_scale",
        "users": users,
        "latency_ms": format!("{}..{}", settings.latency.as_millis(), (settings.latency + settings.spread).as_millis()),
        "throttle": format!("{THROTTLE_LIMIT}/{}s", THROTTLE_WINDOW.as_secs()),
        "change_rate": 0.1,
        "cold": run(&cold),
        "warm": run(&warm),
        "warm_background_membership_read": background,
        "membership_inline_limit_s": INLINE_LIMIT_S,
        "lower_bound_s": b.run_s,
        "member_paging_bound_s": b.members_s,
        "presence_bound_s": b.presence_s,
        "throttle_bound_s": b.throttle_s,
        "handler_peak_rss_mib": peak_rss_kib as f64 / 1024.0,
        "handler_rss_after_runs_mib": rss_after_kib as f64 / 1024.0,
        "sim_peak_rss_mib": sim_peak_rss_kib as f64 / 1024.0,
        "listener_ms": handler_listen_ms(&sim, settings, dir.path()),
        "release_binary_bytes": binary("handler"),
        "baseline_single_user": baseline_json(users, single),
        "baseline_batch_20": baseline_json(users, batch),
        "store_ru": "SQLite store in this process; Cosmos RU per run: benches/store_ru.rs",
    })
}

/// Spawn-to-accept time, median of five fresh starts (the first start above is one of many).
fn handler_listen_ms(sim: &Sim, settings: &Settings, dir: &Path) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|n| {
            let sub = dir.join(format!("listen-{n}"));
            std::fs::create_dir_all(&sub).expect("dir");
            start_handler(settings, sim, &sub).listen_ms
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[tokio::main]
async fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let settings = Settings {
        bin: std::env::var_os("TENANT_SCALE_BIN_DIR").map(PathBuf::from).unwrap_or(manifest.join("target/release")),
        latency: Duration::from_millis(env_or("TENANT_SCALE_LATENCY_MS", 50)),
        spread: Duration::from_millis(env_or("TENANT_SCALE_SPREAD_MS", 100)),
        baseline: Duration::from_secs(env_or("TENANT_SCALE_BASELINE_S", 20)),
    };
    let users: Vec<u64> = std::env::var("TENANT_SCALE_USERS")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|u| u.trim().parse().ok())
        .collect();
    for n in users {
        println!("{}", scenario(&settings, n).await);
    }
}
