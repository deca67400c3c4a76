//! Starts the real `handler` binary as the Functions host would, on a random loopback port.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The settings the host gives a handler polling `groups` on the Graph simulator `sim` (through
/// its managed-identity endpoint) into the embedded store at `db`, plus `extra`.
pub fn tenant_env(
    sim: &teams_presence::simulator::SimHandle,
    groups: &[teams_presence::model::GroupId],
    db: &std::path::Path,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let ids: Vec<String> = groups.iter().map(ToString::to_string).collect();
    [
        ("ENTRA_GROUP_IDS", ids.join(";")),
        ("GRAPH_BASE_URL", sim.base_url()),
        ("IDENTITY_ENDPOINT", sim.identity_endpoint()),
        ("IDENTITY_HEADER", sim.identity_header().to_string()),
        ("PRESENCE_DB", db.display().to_string()),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A running `handler serve`, killed on drop, with everything it printed kept for assertions.
pub struct HandlerProcess {
    pub child: Child,
    pub address: SocketAddr,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl HandlerProcess {
    /// Starts `handler serve` with exactly `env` (plus PATH) and waits until it listens.
    pub fn start(env: &HashMap<String, String>) -> HandlerProcess {
        Self::start_with_args(env, &[])
    }

    pub fn start_with_args(env: &HashMap<String, String>, args: &[&str]) -> HandlerProcess {
        Self::start_wrapped(env, &[], args)
    }

    /// Starts the handler through `wrapper` (a command and its arguments, to which the handler's
    /// path and `args` are appended), e.g. to run it as another user or with a signal ignored.
    pub fn start_wrapped(env: &HashMap<String, String>, wrapper: &[&str], args: &[&str]) -> HandlerProcess {
        Self::start_program(env!("CARGO_BIN_EXE_handler"), env, wrapper, args)
    }

    /// Starts another custom handler of this crate (such as `install-notifications`) the same way.
    pub fn start_program(
        handler: &str,
        env: &HashMap<String, String>,
        wrapper: &[&str],
        args: &[&str],
    ) -> HandlerProcess {
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(handler);
                command
            }
            None => Command::new(handler),
        };
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start handler");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_reader(child.stdout.take().expect("stdout"), stdout.clone(), Some(tx));
        spawn_reader(child.stderr.take().expect("stderr"), stderr.clone(), None);
        let address = rx.recv_timeout(Duration::from_secs(30)).expect("handler printed its listening address");
        HandlerProcess { child, address, stdout, stderr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// POSTs `body` to `path` as the host invokes a function: the status and the body's text.
    pub async fn invoke(&self, path: &str, invocation_id: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(self.url(path))
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("handler answers");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until some line of stderr contains `needle` (lines arrive asynchronously).
    pub fn wait_for_stderr(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.stderr_lines();
            if lines.iter().any(|l| l.contains(needle)) || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_reader(
    stream: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    address: Option<std::sync::mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(tx) = &address
                && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["message"] == "listening"
                && let Some(addr) = event["address"].as_str().and_then(|a| a.parse().ok())
            {
                let _ = tx.send(addr);
            }
            lines.lock().unwrap().push(line);
        }
    });
}

/// The host's timer invocation body, as recorded from a real host (see docs/functions-protocol).
pub fn timer_body(next: &str, last: &str, past_due: bool, utc_now: &str) -> String {
    format!(
        r#"{{"Data":{{"timer":{{"Schedule":{{"AdjustForDST":true}},"ScheduleStatus":{{"Last":"{last}","Next":"{next}","LastUpdated":"{last}"}},"IsPastDue":{past_due}}}}},"Metadata":{{"timer":"{{}}","sys":{{"MethodName":"function-timer","UtcNow":"{utc_now}","RandGuid":"0f8fad5b-d9cb-469f-a165-70867728950e"}}}}}}"#
    )
}
