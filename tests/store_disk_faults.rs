//! The embedded store on a full or read-only disk, under the real `handler` driven as the
//! Functions host drives it (`common::host_runs`).
//!
//! Each case shows: the run fails with an error that names the store's path and what is wrong, in
//! the host response and in the log; nothing already stored is lost or corrupted (every earlier
//! record is still there, SQLite's integrity check passes); and once the disk is writable again
//! the next run (same process, no restart) records what the failed runs missed (the oracle).
//!
//! - Full disk, everywhere: a file-size limit (`RLIMIT_FSIZE`, set on the running handler with
//!   `prlimit`, SIGXFSZ ignored) makes SQLite's writes fail part-way through a transaction.
//! - Full disk, where a tmpfs can be mounted (root): a real `ENOSPC` on a 2 MB tmpfs filled up.
//! - Read-only, everywhere: the database's file and directory not writable by the handler's user
//!   (as root, the handler runs as `nobody` through `setpriv`, since permissions do not stop root).
//! - Read-only, where a tmpfs can be mounted: the volume remounted read-only.
//!
//! A case whose tool is missing (no `prlimit`, `setpriv`, or no permission to mount: not root)
//! fails under CI (`CI=true`), where `scripts/test.sh` installs util-linux and runs as root; on a
//! developer's machine it prints a loud SKIPPED and why (`common::environment::cannot_run`).

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use common::environment::{available, cannot_run, is_root};
use common::host_runs::{HostBench, Outcome};
use serde_json::Value;
use teams_presence::model::UserId;
use teams_presence::simulator::SimConfig;

type History = HashMap<UserId, Vec<(String, DateTime<Utc>)>>;

fn config() -> SimConfig {
    SimConfig::standard(300).change_rate(0.3)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// `slot` answered with a run summary.
async fn runs_ok(bench: &mut HostBench, slot: i64) {
    let attempt = bench.attempt(slot, false, None).await;
    assert!(matches!(attempt.outcome, Outcome::Completed { complete: true, .. }), "slot {slot}: {:?}", attempt.outcome);
}

/// `slot` failed; returns the error the host got.
async fn runs_failing(bench: &mut HostBench, slot: i64) -> String {
    let attempt = bench.attempt(slot, false, None).await;
    match &attempt.outcome {
        Outcome::Failed(error) => error.clone(),
        other => panic!("slot {slot} should fail: {other:?}"),
    }
}

/// The error the host response carried names the store's file and says what is wrong; the
/// handler logged the same at error level (stderr, which the host forwards as an Error trace).
fn assert_clear_error(bench: &HostBench, error: &str, problem: &str) {
    let db = bench.db.display().to_string();
    assert!(error.starts_with("HTTP 500"), "{error}");
    let body: Value = serde_json::from_str(error.trim_start_matches("HTTP 500: ")).unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains(&format!("SQLite store {db}")), "names the store's file: {message}");
    assert!(message.contains(problem), "says what is wrong ({problem:?}): {message}");
    let handler = bench.handler.as_ref().expect("the handler is running");
    let logged = handler.wait_for_stderr(message);
    let line = logged.iter().find(|l| l.contains(message)).unwrap_or_else(|| panic!("logged: {logged:?}"));
    let event: Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["level"], "ERROR", "{line}");
    println!("  host response: {message}\n  logged: {} ({})", event["message"], event["level"]);
}

/// Everything stored before the fault is still there, unchanged, at the start of each history.
fn assert_kept(before: &History, after: &History) {
    for (user, records) in before {
        assert_eq!(
            &after[user][..records.len()],
            &records[..],
            "{}: records stored before the fault",
            user.expose_object_id()
        );
    }
}

/// The whole history against the truth: the failed runs count as runs that did not happen, the
/// first run after the fault must record every change they missed.
async fn assert_history_true(bench: &HostBench, name: &str, failed: usize) {
    let verdict = bench.verdict().await;
    let figures = verdict.figures;
    println!("{name}: {figures}");
    println!("{name}: {}", verdict.describe());
    assert_eq!(verdict.failed.len(), failed, "{name}: {:?}", verdict.failed);
    assert_eq!((figures.lost, figures.duplicated, figures.wrong), (0, 0, 0), "{name}: {figures}");
    assert_eq!(verdict.state_mismatches, 0, "{name}: the last-known state differs from the history");
    assert_eq!(verdict.integrity, "ok", "{name}");
    assert!(figures.changes_expected > bench.users.len() * 3 / 2, "{name}: presence barely changed: {figures}");
}

fn wal(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_size_limit_fails_runs_clearly_and_the_next_run_records_what_they_missed() {
    if !available("prlimit") {
        return cannot_run(
            "file-size limit",
            "prlimit (util-linux) is not installed, so no file-size limit can be set on the handler",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut bench = HostBench::new(config(), dir.path().join("presence.db")).await;
    // Over its file-size limit a process gets SIGXFSZ, which kills it unless ignored; ignored
    // (inherited through exec), the write fails with EFBIG, as a full disk fails it with ENOSPC.
    bench.wrapper = ["sh", "-c", "trap '' XFSZ; exec \"$0\""].map(String::from).to_vec();
    for slot in 0..3 {
        runs_ok(&mut bench, slot).await;
    }
    let before = bench.recorded().await;
    let pid = bench.handler().child.id().to_string();
    // Room for one more WAL frame: the next transaction fails part-way, after writing some.
    let committed = std::fs::metadata(wal(&bench.db)).unwrap().len();
    let limit = committed + 8 * 1024;
    run("prlimit", &["--pid", &pid, &format!("--fsize={limit}:")]).unwrap();
    for slot in 3..6 {
        let error = runs_failing(&mut bench, slot).await;
        assert_clear_error(&bench, &error, "could not write");
    }
    let reached = std::fs::metadata(wal(&bench.db)).unwrap().len();
    println!(
        "file-size limit: the WAL held {committed} bytes of commits; the failed runs wrote up to {reached} (limit {limit})"
    );
    assert!(reached > committed, "the failed transactions were cut part-way, not refused before writing");
    assert_kept(&before, &bench.recorded().await);
    run("prlimit", &["--pid", &pid, "--fsize=unlimited:"]).unwrap();
    for slot in 6..8 {
        runs_ok(&mut bench, slot).await;
    }
    assert_eq!(bench.starts, 1, "the same handler process recovered");
    assert_kept(&before, &bench.recorded().await);
    assert_history_true(&bench, "file-size limit", 3).await;
}

/// A tmpfs mounted for one test, unmounted (lazily, so a test failure cannot leave it busy) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let at_text = at.display().to_string();
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs", &at_text])?;
        Ok(Self(at.to_path_buf()))
    }

    fn remount(&self, mode: &str) {
        run("mount", &["-o", &format!("remount,{mode}"), &self.0.display().to_string()]).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.0.display().to_string()]);
    }
}

/// Fills the file system holding `path` until a write fails with "no space left".
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filling stopped on {e}, not ENOSPC");
                break;
            }
        }
    }
    let _ = file.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tmpfs_fails_runs_clearly_and_the_next_run_after_space_returns_records_what_they_missed() {
    let dir = tempfile::tempdir().unwrap();
    let mount = match Tmpfs::mount(&dir.path().join("small"), "2m") {
        Ok(mount) => mount,
        Err(e) => {
            return cannot_run("full tmpfs", &format!("cannot mount a tmpfs here ({e}; mounting needs root)"));
        }
    };
    let mut bench = HostBench::new(config(), mount.0.join("presence.db")).await;
    for slot in 0..3 {
        runs_ok(&mut bench, slot).await;
    }
    let before = bench.recorded().await;
    let filler = mount.0.join("filler");
    let filled = fill(&filler);
    println!("full tmpfs: {filled} bytes of filler fill the 2 MB volume");
    for slot in 3..5 {
        let error = runs_failing(&mut bench, slot).await;
        assert_clear_error(&bench, &error, "disk is full");
    }
    // A restart while the disk is full: the new process reports the same, never a corrupt file.
    bench.stop();
    let error = runs_failing(&mut bench, 5).await;
    assert_clear_error(&bench, &error, "disk is full");
    assert_kept(&before, &bench.recorded().await);
    std::fs::remove_file(&filler).unwrap();
    for slot in 6..8 {
        runs_ok(&mut bench, slot).await;
    }
    assert_kept(&before, &bench.recorded().await);
    assert_history_true(&bench, "full tmpfs", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_volume_fails_runs_clearly_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mount = match Tmpfs::mount(&dir.path().join("volume"), "8m") {
        Ok(mount) => mount,
        Err(e) => {
            return cannot_run("read-only volume", &format!("cannot mount a tmpfs here ({e}; mounting needs root)"));
        }
    };
    let mut bench = HostBench::new(config(), mount.0.join("presence.db")).await;
    for slot in 0..3 {
        runs_ok(&mut bench, slot).await;
    }
    let before = bench.recorded().await;
    // A volume with a file open for writing cannot be remounted read-only: the handler stops
    // first (killed, as the platform would on a redeploy), and starts on the read-only volume.
    bench.stop();
    mount.remount("ro");
    let error = runs_failing(&mut bench, 3).await;
    assert_clear_error(&bench, &error, "read-only");
    let error = runs_failing(&mut bench, 4).await;
    assert_clear_error(&bench, &error, "read-only");
    mount.remount("rw");
    for slot in 5..7 {
        runs_ok(&mut bench, slot).await;
    }
    assert_eq!(bench.starts, 2, "the handler started on the read-only volume recovered without a restart");
    assert_kept(&before, &bench.recorded().await);
    assert_history_true(&bench, "read-only volume", 2).await;
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The database directory and every file in it owned by `owner` (as root) and set to `file_mode`
/// (files) and `dir_mode` (the directory).
fn set_access(dir: &Path, owner: Option<&str>, dir_mode: u32, file_mode: u32) {
    if let Some(owner) = owner {
        run("chown", &["-R", owner, &dir.display().to_string()]).unwrap();
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        chmod(&entry.unwrap().path(), file_mode);
    }
    chmod(dir, dir_mode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_the_handler_may_not_write_fails_runs_clearly_and_nothing_is_lost() {
    let root = is_root();
    if root && !available("setpriv") {
        return cannot_run(
            "read-only permissions",
            "running as root without setpriv (util-linux): permissions would not stop the handler",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // As root the handler runs as nobody: the test's directory must be reachable for it.
    chmod(dir.path(), 0o755);
    let db_dir = dir.path().join("store");
    std::fs::create_dir(&db_dir).unwrap();
    let mut bench = HostBench::new(config(), db_dir.join("presence.db")).await;
    let (writer, reader) = if root {
        bench.wrapper = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"].map(String::from).to_vec();
        (Some("65534:65534"), Some("0:0"))
    } else {
        (None, None)
    };
    set_access(&db_dir, writer, 0o755, 0o644);
    for slot in 0..3 {
        runs_ok(&mut bench, slot).await;
    }
    let before = bench.recorded().await;

    // The files read-only, the directory writable: SQLite would open the file read-only.
    bench.stop();
    set_access(&db_dir, reader, 0o777, 0o444);
    let error = runs_failing(&mut bench, 3).await;
    assert_clear_error(&bench, &error, "read-only");
    // The directory read-only too.
    set_access(&db_dir, reader, 0o555, 0o444);
    let error = runs_failing(&mut bench, 4).await;
    assert_clear_error(&bench, &error, "read-only");

    set_access(&db_dir, writer, 0o755, 0o644);
    for slot in 5..7 {
        runs_ok(&mut bench, slot).await;
    }
    assert_eq!(bench.starts, 2, "the handler started on a read-only store recovered without a restart");
    assert_kept(&before, &bench.recorded().await);
    assert_history_true(&bench, "read-only permissions", 2).await;
}
