//! scripts/package.sh, given already-built binaries (HANDLER_BINARY, RECEIVER_BINARY) so the test
//! does not run a release build: the zips' layout and modes, the code package inside app.zip where
//! the template looks for it, the glibc baseline check, the documented fallback URL.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A small dynamically linked executable standing in for the handler where its size only slows
/// the test down (the debug handler is over 100 MB).
const SMALL_ELF: &str = "/usr/bin/true";

fn package(dist: &Path, env: &[(&str, &str)]) -> Output {
    package_binary(SMALL_ELF, dist, env)
}

fn package_binary(binary: &str, dist: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(repo().join("scripts/package.sh"));
    command
        .env("HANDLER_BINARY", binary)
        .env("RECEIVER_BINARY", binary)
        .env("DIST_DIR", dist)
        .env_remove("FUNCTION_PACKAGE_URI")
        .env_remove("GLIBC_BASELINE");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// The entries of a zip: name, Unix mode bits and SHA-256 of the contents (Python's zipfile).
fn entries(zip: &Path) -> Vec<(String, u32, String)> {
    let script = "import hashlib, json, sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  print(json.dumps([[i.filename, i.external_attr >> 16, hashlib.sha256(z.read(i)).hexdigest()]\n\
                                    for i in z.infolist()]))";
    let output = Command::new("python3").args(["-c", script]).arg(zip).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// One zip entry's contents, for the files small enough to inspect.
fn read_entry(zip: &Path, name: &str) -> Vec<u8> {
    let script = "import sys, zipfile\nsys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))";
    let output = Command::new("python3").args(["-c", script]).arg(zip).arg(name).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn sha256(path: &Path) -> String {
    let script = "import hashlib, sys\nprint(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())";
    let output = Command::new("python3").args(["-c", script]).arg(path).output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn highest_glibc(binary: &str) -> String {
    let out = Command::new("objdump").args(["-T", binary]).output().expect("objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut versions: Vec<Vec<u32>> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .map(|v| v.split('.').filter_map(|p| p.parse().ok()).collect())
        .collect();
    versions.sort();
    versions.last().map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")).unwrap_or_default()
}

#[test]
fn the_packages_hold_exactly_the_deployable_files_with_the_handler_executable() {
    let dist = tempfile::tempdir().unwrap();
    // The test binary is built for this machine's glibc, so allow it; the real build targets 2.17.
    let out = package_binary(env!("CARGO_BIN_EXE_handler"), dist.path(), &[("GLIBC_BASELINE", "99.0")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("function-package.zip:") && log.contains("highest glibc symbol GLIBC_"), "{log}");

    let function = entries(&dist.path().join("function-package.zip"));
    let names: Vec<&str> = function.iter().map(|(n, _, _)| n.as_str()).collect();
    // The script's glob lists function folders in name order; the directory listing may not.
    let mut functions: Vec<String> = std::fs::read_dir(repo())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("function-"))
        .map(|name| format!("{name}/function.json"))
        .collect();
    functions.sort();
    let mut expected = vec!["handler".to_string(), "host.json".to_string()];
    expected.extend(functions);
    assert!(expected.contains(&"function-timer/function.json".to_string()));
    assert_eq!(names, expected.iter().map(String::as_str).collect::<Vec<_>>());
    for (name, mode, content) in &function {
        let expected_mode = if name == "handler" { 0o100755 } else { 0o100644 };
        assert_eq!(*mode, expected_mode, "{name} has mode {mode:o}");
        let source =
            if name == "handler" { Path::new(env!("CARGO_BIN_EXE_handler")).to_path_buf() } else { repo().join(name) };
        assert_eq!(content, &sha256(&source), "{name} differs from {}", source.display());
    }

    let app = entries(&dist.path().join("app.zip"));
    let names: Vec<&str> = app.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["mainTemplate.json", "createUiDefinition.json", "viewDefinition.json", "function-package.zip"],
        "all at the root"
    );
    for (name, _, content) in &app {
        let source =
            if name == "function-package.zip" { dist.path().join(name) } else { repo().join("arm").join(name) };
        assert_eq!(content, &sha256(&source), "{name}");
    }

    // The receiver's package: its binary, its own host.json and function folder.
    let receiver = entries(&dist.path().join("install-notifications.zip"));
    let names: Vec<(&str, u32)> = receiver.iter().map(|(n, m, _)| (n.as_str(), *m)).collect();
    assert_eq!(
        names,
        [
            ("install-notifications", 0o100755),
            ("host.json", 0o100644),
            ("function-notifications/function.json", 0o100644)
        ]
    );
    assert_eq!(receiver[1].2, sha256(&repo().join("publisher/host.json")));

    // The post-install script is published beside the code package, where the overview points.
    let script = dist.path().join("grant-graph-permissions.sh");
    assert_eq!(sha256(&script), sha256(&repo().join("scripts/grant-graph-permissions.sh")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dist in [&a, &b] {
        assert!(package(dist.path(), &[("GLIBC_BASELINE", "99.0")]).status.success());
    }
    for zip in ["function-package.zip", "app.zip", "install-notifications.zip"] {
        assert_eq!(std::fs::read(a.path().join(zip)).unwrap(), std::fs::read(b.path().join(zip)).unwrap(), "{zip}");
    }
}

#[test]
fn a_binary_needing_a_newer_glibc_than_the_baseline_is_refused() {
    let needed = highest_glibc(SMALL_ELF);
    assert!(!needed.is_empty(), "the test binary links glibc dynamically");
    let dist = tempfile::tempdir().unwrap();
    let out = package(dist.path(), &[("GLIBC_BASELINE", "2.2")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("needs GLIBC_{needed}, newer than the baseline GLIBC_2.2")), "{err}");
    assert!(!dist.path().join("function-package.zip").exists(), "nothing is written on refusal");
}

/// ARM deploys the template from where app.zip was staged, so the template's package URL,
/// evaluated from that `templateLink`, must name a file of app.zip: the code package, with the
/// handler and host.json in it.
#[test]
fn the_templates_package_url_from_its_template_link_names_the_code_package_inside_app_zip() {
    let dist = tempfile::tempdir().unwrap();
    let out = package(dist.path(), &[("GLIBC_BASELINE", "99.0")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app = dist.path().join("app.zip");
    let template: Value = serde_json::from_slice(&read_entry(&app, "mainTemplate.json")).unwrap();
    let staged = "https://stage.contoso.example/applicationDefinitions/0001/mainTemplate.json";
    let eval = common::arm::Evaluator::new(&template, common::arm::sample_parameters()).with_template_link(staged);
    let onedeploy = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Web/sites/extensions")
        .unwrap();
    let url = eval.eval_value(&onedeploy["properties"]["packageUri"], "packageUri").render();
    assert_eq!(eval.errors(), Vec::<String>::new());
    let relative = url
        .strip_prefix("https://stage.contoso.example/applicationDefinitions/0001/")
        .unwrap_or_else(|| panic!("{url}"));
    let inner = read_entry(&app, relative);
    let unpacked = dist.path().join("from-app.zip");
    std::fs::write(&unpacked, inner).unwrap();
    let names: Vec<String> = entries(&unpacked).into_iter().map(|(n, _, _)| n).collect();
    assert!(names.contains(&"handler".to_string()) && names.contains(&"host.json".to_string()), "{names:?}");
}

#[test]
fn the_fallback_package_url_becomes_the_templates_default_and_a_sas_is_refused() {
    let dist = tempfile::tempdir().unwrap();
    let uri = "https://releases.contoso.example/v1/function-package.zip";
    let out = package(dist.path(), &[("GLIBC_BASELINE", "99.0"), ("FUNCTION_PACKAGE_URI", uri)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let template: Value =
        serde_json::from_slice(&read_entry(&dist.path().join("app.zip"), "mainTemplate.json")).unwrap();
    assert_eq!(template["parameters"]["packageUriOverride"]["defaultValue"], uri);

    for bad in ["http://insecure.example/p.zip", "https://x.blob.core.windows.net/p.zip?sv=2024&sig=abc"] {
        let out = package(dist.path(), &[("GLIBC_BASELINE", "99.0"), ("FUNCTION_PACKAGE_URI", bad)]);
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not an https:// URL without spaces or query string"));
    }
}
