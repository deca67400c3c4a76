//! What a test needs from the machine (a tool, root, a mount), and what happens when it is not
//! there: under CI (`CI=true`, as `.ci/run` is run) the test fails, since CI runs as root and
//! `scripts/test.sh` installs the tools (`scripts/install-test-deps.sh`); elsewhere it prints a
//! loud skip and returns, so a developer without root still runs the rest.

use std::process::Command;

/// Whether this run is CI's: `CI` set to anything but empty, `0` or `false` (CI services set
/// `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// Whether `tool --version` runs and succeeds.
pub fn available(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The case `case` cannot run here because of `why`: a failure under CI, a loud skip elsewhere.
/// The caller returns right after.
pub fn cannot_run(case: &str, why: &str) {
    assert!(
        !in_ci(),
        "{case}: the test environment is missing something: {why}. Under CI (CI=true) this is a failure, \
         not a skip: scripts/test.sh installs util-linux and the other tools (scripts/install-test-deps.sh), \
         and the tmpfs cases need root (CAP_SYS_ADMIN to mount)"
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED {case}: {why}.\n!!!!!!!! This case did not run; under CI=true it would fail. \
         Run scripts/install-test-deps.sh (and as root for the tmpfs cases) to run it.\n"
    );
}
