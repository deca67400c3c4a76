//! The real `handler` driven over HTTP as the Functions host drives it, on an embedded store,
//! against the Graph simulator: timer invocations, optionally killed with SIGKILL part-way, and
//! the check of the stored history against the simulator's truth (`super::oracle`).
//!
//! A run's records carry its observation time, which the handler does not report; each record is
//! matched to the invocation whose send-to-answer window holds that time (invocations never
//! overlap here). A killed invocation whose records are in the store committed: it counts as a run
//! that happened, with the view of everyone (nothing else is injected while killing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;
use teams_presence::model::{Slot, UserId};
use teams_presence::privacy::Subjects;
use teams_presence::run::RunContext;
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::store::{RightsStore, RunStore};

use super::handler_process::{HandlerProcess, tenant_env, timer_body};
use super::oracle::{CompletedRun, Figures, compare};

/// Where in a run the kill landed, read from what the handler had logged before it died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Before "run started": parsing the invocation.
    Accepting,
    /// Opening the store on the first run after a restart, reading members and presence.
    Graph,
    /// Graph was read and the changes planned; the run's transaction was being written.
    Store,
    /// The store logged the commit; the summary was not yet out.
    Committed,
    /// The summary was logged; the host never got the response.
    Responding,
    /// The host got the answer; the process died right after.
    Answered,
}

/// What the handler logs at the boundaries between phases (`LOG_LEVEL=teams_presence=debug`).
/// The state is read while Graph is, so the store phase starts when the cycle hands the plan over.
const STORE_MARKERS: [&str; 1] = ["recording the run"];

/// A log line's message and time, if the line belongs to the run of `invocation_id` (the reader
/// threads hand lines over a little late, so a buffer can still be receiving the run before).
fn message(line: &str, invocation_id: &str) -> Option<(String, Option<DateTime<Utc>>)> {
    let event: Value = serde_json::from_str(line).ok()?;
    if event["span"]["invocation_id"] != invocation_id {
        return None;
    }
    let message = event["message"].as_str()?.to_string();
    let at = event["timestamp"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc());
    Some((message, at))
}

fn phase_reached(lines: &[String], invocation_id: &str) -> Phase {
    let messages: Vec<String> = lines.iter().filter_map(|l| message(l, invocation_id)).map(|(m, _)| m).collect();
    let seen = |wanted: &[&str]| messages.iter().any(|m| wanted.contains(&m.as_str()));
    if seen(&["run finished"]) {
        Phase::Responding
    } else if seen(&["recorded"]) {
        Phase::Committed
    } else if seen(&STORE_MARKERS) {
        Phase::Store
    } else if seen(&["run started"]) {
        Phase::Graph
    } else {
        Phase::Accepting
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Kill {
    /// SIGKILL this long after the POST went out.
    After(Duration),
    /// SIGKILL this long after the handler logged that it began recording the run: inside the
    /// store phase, whose few milliseconds a uniform delay rarely hits.
    InStore(Duration),
    /// SIGKILL as soon as the handler logged the commit: the run is stored, the host never hears.
    AfterCommit,
}

#[derive(Debug)]
pub enum Outcome {
    /// HTTP 200: the summary's view was complete (nobody unobserved, every group read).
    Completed {
        complete: bool,
        already_recorded: u64,
    },
    Killed(Phase),
    Failed(String),
}

pub struct Attempt {
    pub slot: i64,
    pub epoch: u64,
    /// The run's observation time lies in `from..=to` (both on this machine's clock).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub outcome: Outcome,
    /// The handler was killed during (or, with [`Kill::AfterCommit`], right after) this run.
    pub killed: bool,
    /// Each user's true availability during the run, in the order of `HostBench::users` (the
    /// simulator keeps only recent epochs).
    truth: Vec<&'static str>,
    /// What a killed handler logged during this run, to explain a failed check.
    killed_log: Vec<String>,
}

/// The stored history checked against the truth, with what else a recovery must get right.
pub struct Verdict {
    pub figures: Figures,
    /// Killed invocations by where the kill landed and whether the run's records were stored.
    pub killed: BTreeMap<(Phase, bool), usize>,
    /// Attempts at a slot some earlier attempt had already written records in.
    pub repeats_of_recorded_slots: usize,
    /// `already_recorded` summed over the answered runs.
    pub already_recorded: u64,
    /// Users whose last-known state is not their last record (and state entries without history).
    pub state_mismatches: usize,
    /// `PRAGMA integrity_check`.
    pub integrity: String,
    /// Invocations answered with an error, with the error.
    pub failed: Vec<String>,
    /// Killed after the handler logged its commit, yet nothing of the run is in the store.
    pub commits_lost: usize,
}

impl Verdict {
    pub fn killed_after_commit(&self) -> usize {
        self.killed.iter().filter(|((_, wrote), _)| *wrote).map(|(_, n)| n).sum()
    }

    pub fn killed_in(&self, phase: Phase) -> usize {
        self.killed.iter().filter(|((p, _), _)| *p == phase).map(|(_, n)| n).sum()
    }

    /// One line for the test output.
    pub fn describe(&self) -> String {
        let killed: Vec<String> = self
            .killed
            .iter()
            .map(|((p, wrote), n)| format!("{p:?}{}={n}", if *wrote { "+stored" } else { "" }))
            .collect();
        format!(
            "killed runs by phase [{}] commits lost={} repeats of a recorded slot={} already_recorded={} failed={} state mismatches={} integrity={}",
            killed.join(" "),
            self.commits_lost,
            self.repeats_of_recorded_slots,
            self.already_recorded,
            self.failed.len(),
            self.state_mismatches,
            self.integrity
        )
    }
}

pub struct HostBench {
    pub sim: SimHandle,
    pub users: Vec<UserId>,
    pub env: HashMap<String, String>,
    pub db: PathBuf,
    /// Prefix of the command that starts the handler (see `HandlerProcess::start_wrapped`).
    pub wrapper: Vec<String>,
    pub handler: Option<HandlerProcess>,
    http: reqwest::Client,
    pub attempts: Vec<Attempt>,
    pub kills: usize,
    pub starts: usize,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn first_slot() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().to_utc()
}

fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{name}="))?.parse().ok())
}

impl HostBench {
    /// A simulator from `config` and the handler's settings for its first three groups with the
    /// store at `db`; the handler starts on the first invocation.
    pub async fn new(config: SimConfig, db: PathBuf) -> Self {
        let sim = Simulator::start(config).await.unwrap();
        let groups = standard_groups()[..3].to_vec();
        let users = sim.expected_users(&groups);
        // The phase markers are debug lines; user ids are not logged at this level unless
        // someone leaves scope, which nobody does in these scenarios.
        let env = tenant_env(&sim, &groups, &db, &[("LOG_LEVEL", "info,teams_presence=debug")]);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        Self {
            sim,
            users,
            env,
            db,
            wrapper: Vec::new(),
            handler: None,
            http,
            attempts: Vec::new(),
            kills: 0,
            starts: 0,
        }
    }

    pub fn handler(&mut self) -> &HandlerProcess {
        if self.handler.is_none() {
            let wrapper: Vec<&str> = self.wrapper.iter().map(String::as_str).collect();
            self.handler = Some(HandlerProcess::start_wrapped(&self.env, &wrapper, &[]));
            self.starts += 1;
        }
        self.handler.as_ref().unwrap()
    }

    /// Stops the handler (SIGKILL: nothing is flushed or closed first).
    pub fn stop(&mut self) {
        self.handler = None;
    }

    /// One invocation of `slot` (restarting the handler first if the last one was killed), killed
    /// as `kill` says. Presence moves on afterwards, whatever happened.
    pub async fn attempt(&mut self, slot: i64, past_due: bool, kill: Option<Kill>) -> &Attempt {
        self.handler();
        let handler = self.handler.as_mut().unwrap();
        let stdout = handler.stdout.clone();
        let lines_before = stdout.lock().unwrap().len();
        let at = first_slot() + TimeDelta::minutes(5 * slot);
        let body = timer_body(&ts(at), &ts(at - TimeDelta::minutes(5)), past_due, &ts(Utc::now()));
        let epoch = self.sim.current_epoch();
        // Stored times are cut to the millisecond: a gap keeps a run's time out of the window of
        // the run before.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let from = Utc::now();
        let invocation_id = format!("host-run-{}", self.attempts.len());
        let request = self
            .http
            .post(handler.url("/function-timer"))
            .header("X-Azure-Functions-InvocationId", &invocation_id)
            .body(body)
            .send();
        let response = async move {
            let response = request.await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        };
        let mut response = std::pin::pin!(response);
        let mut killed = false;
        let mut killed_log = Vec::new();
        let outcome = match kill {
            None => outcome_of(response.await),
            Some(kill) => {
                let trigger = kill_trigger(stdout.clone(), lines_before, &invocation_id, kill);
                let mut trigger = std::pin::pin!(trigger);
                let early = tokio::select! {
                    answered = &mut response => Some(answered),
                    () = &mut trigger => None,
                };
                match early {
                    // The run ended before the kill was due: nothing is killed, except that the
                    // kill after the commit still comes (the host may have heard, but dies with it).
                    Some(answered) if !matches!(kill, Kill::AfterCommit) => outcome_of(answered),
                    early => {
                        if early.is_some() {
                            trigger.await;
                        }
                        handler.child.kill().unwrap();
                        handler.child.wait().unwrap();
                        killed = true;
                        self.kills += 1;
                        let answered = match early {
                            Some(answered) => answered,
                            None => response.await,
                        };
                        let lines = drained(&stdout);
                        if std::env::var("HOST_RUNS_DEBUG").is_ok() {
                            for line in &lines[lines_before.min(lines.len())..] {
                                println!("  killed handler logged: {line}");
                            }
                        }
                        self.handler = None;
                        match answered {
                            // The response was in before the process died.
                            Ok((200, body)) => outcome_of(Ok((200, body))),
                            _ => {
                                let logged = &lines[lines_before.min(lines.len())..];
                                killed_log = logged.to_vec();
                                Outcome::Killed(phase_reached(logged, &invocation_id))
                            }
                        }
                    }
                }
            }
        };
        let to = Utc::now();
        let truth = self.users.iter().map(|u| self.sim.truth(u, epoch).unwrap()).collect();
        self.sim.advance_epoch();
        self.attempts.push(Attempt { slot, epoch, from, to, outcome, killed, truth, killed_log });
        self.attempts.last().unwrap()
    }

    /// How long the store phase of the latest run took, by the handler's own clock (5 ms when
    /// its lines do not come).
    pub fn store_phase(&self) -> Duration {
        let Some(handler) = &self.handler else { return Duration::from_millis(5) };
        let invocation_id = format!("host-run-{}", self.attempts.len().saturating_sub(1));
        let give_up = Instant::now() + Duration::from_secs(2);
        loop {
            let lines = handler.stdout_lines();
            let events: Vec<(String, Option<DateTime<Utc>>)> =
                lines.iter().filter_map(|l| message(l, &invocation_id)).collect();
            let start = events.iter().find(|(m, _)| STORE_MARKERS.contains(&m.as_str())).and_then(|(_, t)| *t);
            let end = events.iter().find(|(m, _)| m == "recorded").and_then(|(_, t)| *t);
            match (start, end) {
                (Some(start), Some(end)) if end > start => return (end - start).to_std().unwrap_or_default(),
                _ if Instant::now() > give_up => return Duration::from_millis(5),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Every user's stored records, oldest first, as `(availability, timestamp)`.
    pub async fn recorded(&self) -> HashMap<UserId, Vec<(String, DateTime<Utc>)>> {
        // SQLite lets this second connection read alongside an idle handler.
        let store = SqliteStore::open(&self.db, None).await.unwrap();
        let mut recorded = HashMap::new();
        for user in &self.users {
            let records = store.export_subject(Subjects::plain().stored_id(*user)).await.unwrap();
            recorded.insert(*user, records.into_iter().map(|r| (r.availability.to_string(), r.timestamp)).collect());
        }
        recorded
    }

    /// The stored history against the truth of every run that happened.
    pub async fn verdict(&self) -> Verdict {
        let recorded = self.recorded().await;

        // Which attempt wrote each record: the one whose window holds its observation time.
        let window_of = |at: DateTime<Utc>| {
            self.attempts.iter().position(|a| a.from - TimeDelta::milliseconds(1) < at && at <= a.to)
        };
        let mut stamps: Vec<BTreeMap<DateTime<Utc>, usize>> = vec![BTreeMap::new(); self.attempts.len()];
        for records in recorded.values() {
            for (_, at) in records {
                if let Some(i) = window_of(*at) {
                    *stamps[i].entry(*at).or_default() += 1;
                }
            }
        }

        if std::env::var("HOST_RUNS_DEBUG").is_ok() {
            for (i, a) in self.attempts.iter().enumerate() {
                println!(
                    "attempt {i}: slot {} epoch {} {}..{} {:?} {:?}",
                    a.slot, a.epoch, a.from, a.to, a.outcome, stamps[i]
                );
            }
        }
        let mut runs = Vec::new();
        let mut slots_with_records = HashSet::new();
        let mut phases: BTreeMap<(Phase, bool), usize> = BTreeMap::new();
        let mut failed = Vec::new();
        let mut repeats_of_recorded_slots = 0;
        let mut commits_lost = 0;
        let mut already_recorded = 0;
        for (i, attempt) in self.attempts.iter().enumerate() {
            // A run writes one observation time; any other time in its window is left for the
            // oracle to count as wrong.
            let observed_at = stamps[i].iter().max_by_key(|(_, n)| **n).map(|(at, _)| *at);
            let wrote = observed_at.is_some();
            let complete = match &attempt.outcome {
                Outcome::Completed { complete, already_recorded: a } => {
                    already_recorded += a;
                    if attempt.killed {
                        *phases.entry((Phase::Answered, wrote)).or_default() += 1;
                    }
                    *complete
                }
                Outcome::Killed(phase) => {
                    *phases.entry((*phase, wrote)).or_default() += 1;
                    // A third of the users change at every epoch here: every run has records.
                    if *phase >= Phase::Committed && !wrote {
                        commits_lost += 1;
                        println!(
                            "commit lost? attempt {i} slot {} {}..{}; the handler logged:\n{}",
                            attempt.slot,
                            attempt.from,
                            attempt.to,
                            attempt.killed_log.join("\n")
                        );
                    }
                    if !wrote {
                        continue;
                    }
                    // Nothing but the kill is injected: a run that got as far as writing saw
                    // everyone (every completed run's summary below confirms such views).
                    true
                }
                Outcome::Failed(error) => {
                    failed.push(error.clone());
                    continue;
                }
            };
            // A repeated slot keeps the records an earlier attempt wrote in it, and their
            // users' newer changes wait for a later slot: a correct poller may leave them.
            let repeat = slots_with_records.contains(&attempt.slot);
            repeats_of_recorded_slots += usize::from(repeat);
            if wrote {
                slots_with_records.insert(attempt.slot);
            }
            let truth = self.users.iter().copied().zip(attempt.truth.iter().copied()).collect();
            runs.push(CompletedRun {
                observed_at: observed_at.unwrap_or(attempt.from),
                complete: complete && !repeat,
                truth,
            });
        }
        let compared = compare(&self.users, &runs, &recorded);

        // Two records of one user in one slot, from two attempts at it: record ids are per
        // (user, slot), so this would mean a retry wrote its own copy.
        let mut same_slot = 0;
        for records in recorded.values() {
            let mut slots: HashMap<i64, HashSet<DateTime<Utc>>> = HashMap::new();
            for (_, at) in records {
                if let Some(i) = window_of(*at) {
                    slots.entry(self.attempts[i].slot).or_default().insert(*at);
                }
            }
            same_slot += slots.values().map(|times| times.len() - 1).sum::<usize>();
        }

        // The last-known state a restarted handler starts from must be each user's last record.
        let store = SqliteStore::open(&self.db, None).await.unwrap();
        let run = RunContext::new("history-check", Slot::new(Utc::now()), Duration::from_secs(30));
        let state = store.last_known(&run).await.unwrap();
        let with_history = recorded.values().filter(|r| !r.is_empty()).count();
        let mismatched = self
            .users
            .iter()
            .filter(|u| {
                let last = recorded[u].last().map(|(a, at)| (a.as_str(), *at));
                let known = state.get(&Subjects::plain().stored_id(**u));
                known.as_ref().map(|k| (k.availability.as_str(), k.at)) != last
            })
            .count()
            + state.len().abs_diff(with_history);
        let integrity: String = rusqlite::Connection::open(&self.db)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();

        let figures = Figures {
            faults_injected: self.kills,
            runs: self.attempts.len(),
            duplicated: compared.duplicated + same_slot,
            ..compared
        };
        Verdict {
            figures,
            killed: phases,
            repeats_of_recorded_slots,
            already_recorded,
            state_mismatches: mismatched,
            integrity,
            failed,
            commits_lost,
        }
    }
}

fn outcome_of(answered: Result<(u16, String), reqwest::Error>) -> Outcome {
    match answered {
        Ok((200, body)) => {
            let reply: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let line = reply["Logs"][0].as_str().unwrap_or_default();
            let unobserved = field(line, "unobserved");
            let unreadable = field(line, "unreadable_groups");
            match (unobserved, unreadable) {
                (Some(unobserved), Some(unreadable)) => Outcome::Completed {
                    complete: unobserved == 0 && unreadable == 0,
                    already_recorded: field(line, "already_recorded").unwrap_or(0),
                },
                _ => Outcome::Failed(format!("200 without a run summary: {body}")),
            }
        }
        Ok((status, body)) => Outcome::Failed(format!("HTTP {status}: {body}")),
        Err(e) => Outcome::Failed(format!("no answer: {e}")),
    }
}

async fn kill_trigger(stdout: Arc<Mutex<Vec<String>>>, from: usize, invocation_id: &str, kill: Kill) {
    let (markers, delay): (&[&str], Duration) = match kill {
        Kill::After(delay) => return tokio::time::sleep(delay).await,
        Kill::InStore(delay) => (&STORE_MARKERS, delay),
        Kill::AfterCommit => (&["recorded"], Duration::ZERO),
    };
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let reached = {
            let lines = stdout.lock().unwrap();
            lines[from.min(lines.len())..]
                .iter()
                .filter_map(|l| message(l, invocation_id))
                .any(|(m, _)| markers.contains(&m.as_str()))
        };
        if reached || Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(delay).await;
}

/// Everything the killed process wrote: its reader threads finish once the pipe is drained.
fn drained(stdout: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    let mut last = usize::MAX;
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        std::thread::sleep(Duration::from_millis(25));
        let lines = stdout.lock().unwrap().clone();
        if lines.len() == last || Instant::now() > give_up {
            return lines;
        }
        last = lines.len();
    }
}
