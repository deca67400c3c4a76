//! Runs a repository script with the fake `az` (tests/fixtures/fake-az/az) first on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub struct FakeAz {
    pub dir: tempfile::TempDir,
    pub graph_sp: PathBuf,
    pub fail_on: Option<String>,
    /// Assignments per page of the listing (the fake's default is Graph's 100).
    pub page_size: Option<usize>,
}

pub struct ScriptRun {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl FakeAz {
    pub fn new() -> FakeAz {
        FakeAz {
            dir: tempfile::tempdir().unwrap(),
            graph_sp: fixture("graph-service-principal.json"),
            fail_on: None,
            page_size: None,
        }
    }

    /// Existing app role assignments, as Graph lists them.
    pub fn seed_assignments(&self, assignments: Value) {
        std::fs::write(self.dir.path().join("assignments.json"), assignments.to_string()).unwrap();
    }

    /// Function Apps `az functionapp identity show` knows: "group/name" -> principal id.
    pub fn seed_function_apps(&self, apps: Value) {
        std::fs::write(self.dir.path().join("functionapps.json"), apps.to_string()).unwrap();
    }

    pub fn assignments(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.dir.path().join("assignments.json")) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => Vec::new(),
        }
    }

    /// Every az call so far, as its argument list.
    pub fn calls(&self) -> Vec<Vec<String>> {
        match std::fs::read_to_string(self.dir.path().join("calls.jsonl")) {
            Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn posts(&self) -> Vec<Value> {
        self.calls()
            .iter()
            .filter(|c| c.windows(2).any(|w| w[0] == "--method" && w[1] == "POST"))
            .map(|c| {
                let body = c.iter().position(|a| a == "--body").map(|i| c[i + 1].clone()).unwrap();
                serde_json::from_str(&body).unwrap()
            })
            .collect()
    }

    /// Every Resource Manager PUT so far: (url, body).
    pub fn arm_puts(&self) -> Vec<(String, Value)> {
        match std::fs::read_to_string(self.dir.path().join("arm-puts.jsonl")) {
            Ok(text) => text
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    (v["url"].as_str().unwrap().to_string(), v["body"].clone())
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn run(&self, script: &str, args: &[&str]) -> ScriptRun {
        self.run_with(script, args, &[])
    }

    /// Runs with extra environment variables (the script sees no others of its own).
    pub fn run_with(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> ScriptRun {
        let fake_bin = fixture("fake-az");
        let path = format!("{}:{}", fake_bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(repo().join(script));
        command
            .args(args)
            .env("PATH", path)
            .env("FAKE_AZ_DIR", self.dir.path())
            .env("FAKE_AZ_GRAPH_SP", &self.graph_sp)
            .env_remove("GRAPH_URL")
            .env_remove("FAKE_AZ_FAIL")
            .env_remove("FAKE_AZ_PAGE_SIZE")
            .env_remove("NOTIFICATION_SIG")
            .env_remove("ARM_URL")
            .env_remove("ACCESS_MODEL");
        for (k, v) in env {
            command.env(k, v);
        }
        if let Some(size) = self.page_size {
            command.env("FAKE_AZ_PAGE_SIZE", size.to_string());
        }
        if let Some(fail) = &self.fail_on {
            command.env("FAKE_AZ_FAIL", fail);
        }
        let output = command.output().unwrap();
        ScriptRun {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}
