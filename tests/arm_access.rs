//! The offer's access model (arm/publishing/access-model.json) against the privacy policy and the
//! operating model, and scripts/publish-definition.sh applying it, against the fake `az`
//! (tests/fixtures/fake-az/az).

mod common;

use common::arm::read_json;
use common::fake_az::FakeAz;
use serde_json::{Value, json};

const SCRIPT: &str = "scripts/publish-definition.sh";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const SUPPORT_GROUP: &str = "5d3c1b2a-0f9e-4d8c-b7a6-958473625140";
const SIG: &str = "Kq7vR2mW9xZ4pL8nT3bY6cF1hJ5dG0sAeUiOo-_x";

fn model() -> Value {
    read_json("arm/publishing/access-model.json")
}

fn actions(model: &Value, list: &str) -> Vec<String> {
    model["lockingPolicy"][list].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap().to_string()).collect()
}

/// Whether an allowed action (possibly with `*`) would permit `action`.
fn permits(allowed: &str, action: &str) -> bool {
    let (allowed, action) = (allowed.to_lowercase(), action.to_lowercase());
    match allowed.split_once('*') {
        Some((prefix, suffix)) => action.starts_with(prefix) && action.ends_with(suffix),
        None => allowed == action,
    }
}

#[test]
fn the_publisher_holds_reader_only_and_anything_more_is_just_in_time() {
    let m = model();
    let permanent: Vec<&Value> =
        m["publisherAuthorizations"].as_array().unwrap().iter().filter(|a| a["access"] == "permanent").collect();
    assert_eq!(permanent.len(), 1, "{permanent:?}");
    assert_eq!((&permanent[0]["role"], &permanent[0]["roleDefinitionId"]), (&json!("Reader"), &json!(READER)));
    assert_eq!(m["publisherAuthorizations"].as_array().unwrap().len(), 1, "no other authorization at all");
    assert_eq!(m["lockLevel"], "ReadOnly");
    let jit = &m["justInTime"];
    assert_ne!(jit["eligibleRole"]["roleDefinitionId"], READER, "JIT is for what goes beyond Reader");
    assert_eq!(jit["recommendedApprovalMode"], "ManualApprove");
    // The form offers it: the step the JIT test of arm_ui checks.
    let ui = read_json("arm/createUiDefinition.json");
    assert!(ui.to_string().contains("Microsoft.Solutions.JitConfigurator"));
}

#[test]
fn the_customer_may_change_settings_restart_list_keys_and_read_cosmos_but_never_replace_the_code() {
    let m = model();
    let allowed = actions(&m, "allowedActions");
    for needed in [
        "Microsoft.Web/sites/config/write",
        "Microsoft.Web/sites/config/list/action",
        "Microsoft.Web/sites/restart/action",
        "Microsoft.Web/sites/host/listkeys/action",
        "Microsoft.Web/sites/functions/listkeys/action",
        "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write",
    ] {
        assert!(allowed.iter().any(|a| permits(a, needed)), "the customer cannot {needed}");
    }
    let never: Vec<String> =
        m["neverAllowed"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert!(never.len() >= 10, "{never:?}");
    for forbidden in &never {
        for a in allowed.iter().chain(&actions(&m, "allowedDataActions")) {
            assert!(!permits(a, forbidden), "{a} would allow {forbidden}");
        }
    }
    for a in &allowed {
        assert!(!a.contains('*'), "no wildcard in allowed actions: {a}");
    }
    // Every action says who needs it and why.
    for list in ["allowedActions", "allowedDataActions"] {
        for entry in m["lockingPolicy"][list].as_array().unwrap() {
            assert!(entry["why"].as_str().is_some_and(|w| w.len() > 15), "{entry}");
            assert!(["customer", "app identity"].contains(&entry["for"].as_str().unwrap()), "{entry}");
        }
    }
}

/// The lock's data actions exist for the app's own identity (the host's blob storage, telemetry),
/// which the lock would otherwise block; they must match the roles the template grants it, and the
/// residual risk they open is written down where the publisher reads it.
#[test]
fn the_allowed_data_actions_are_those_of_the_apps_own_roles_and_their_risk_is_documented() {
    let m = model();
    let data = actions(&m, "allowedDataActions");
    assert!(m["lockingPolicy"]["allowedDataActions"].as_array().unwrap().iter().all(|a| a["for"] == "app identity"));
    let template = common::arm::template().to_string();
    // Storage Blob Data Owner and Monitoring Metrics Publisher are what the template assigns.
    for (role_variable, prefix) in [
        ("storageBlobDataOwner", "Microsoft.Storage/storageAccounts/blobServices/"),
        ("monitoringMetricsPublisher", "Microsoft.Insights/"),
    ] {
        assert!(template.contains(&format!("roles').{role_variable}")), "{role_variable}");
        assert!(data.iter().any(|a| a.starts_with(prefix)), "no data action for {role_variable}");
    }
    let risk = m["lockingPolicy"]["residualRisk"].as_str().unwrap();
    let doc =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deployment.md")).unwrap();
    assert!(doc.contains("overwrite the deployed package blob"), "docs/deployment.md must state: {risk}");
    for a in actions(&m, "allowedActions").iter().chain(&data) {
        assert!(doc.contains(&format!("`{a}`")), "docs/deployment.md does not list {a}");
    }
}

fn publish(az: &FakeAz, extra: &[&str], env: &[(&str, &str)]) -> common::fake_az::ScriptRun {
    let mut args = vec![
        "--resource-group",
        "rg-publisher",
        "--name",
        "teams-presence",
        "--location",
        "westeurope",
        "--package-uri",
        "https://releases.contoso.example/v1/app.zip",
        "--publisher-principal-id",
        SUPPORT_GROUP,
    ];
    args.extend_from_slice(extra);
    az.run_with(SCRIPT, &args, env)
}

#[test]
fn the_publishing_script_puts_one_definition_with_reader_the_lock_policy_and_the_notification_endpoint() {
    let az = FakeAz::new();
    let run = publish(
        &az,
        &["--notification-uri", "https://installs.contoso.example/api/notifications"],
        &[("NOTIFICATION_SIG", SIG)],
    );
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let puts = az.arm_puts();
    assert_eq!(puts.len(), 1, "one PUT, so no definition ever exists without its locking policy");
    let (url, body) = &puts[0];
    assert_eq!(
        url,
        "https://management.azure.com/subscriptions/bbbbbbbb-0000-4000-8000-000000000002/resourceGroups/rg-publisher/providers/Microsoft.Solutions/applicationDefinitions/teams-presence?api-version=2021-07-01"
    );
    let p = &body["properties"];
    assert_eq!(p["lockLevel"], "ReadOnly");
    assert_eq!(p["authorizations"], json!([{ "principalId": SUPPORT_GROUP, "roleDefinitionId": READER }]));
    assert_eq!(p["packageFileUri"], "https://releases.contoso.example/v1/app.zip");
    let m = model();
    assert_eq!(p["lockingPolicy"]["allowedActions"], json!(actions(&m, "allowedActions")));
    assert_eq!(p["lockingPolicy"]["allowedDataActions"], json!(actions(&m, "allowedDataActions")));
    assert_eq!(
        p["notificationPolicy"]["notificationEndpoints"],
        json!([{ "uri": format!("https://installs.contoso.example/api/notifications?sig={SIG}&version={}", env!("CARGO_PKG_VERSION")) }])
    );
    assert_eq!(body["location"], "westeurope");
    // The token went in a file, never on az's command line, and is not printed.
    for call in az.calls() {
        assert!(!call.join(" ").contains(SIG), "the token is in an az argument: {call:?}");
    }
    assert!(!run.stdout.contains(SIG) && !run.stderr.contains(SIG));
    assert!(run.stdout.contains("Reader only") && run.stdout.contains("?sig=<NOTIFICATION_SIG>"), "{}", run.stdout);
}

#[test]
fn the_publishing_script_refuses_bad_input_naming_each_problem_and_calls_nothing() {
    let az = FakeAz::new();
    let run = az.run_with(
        SCRIPT,
        &[
            "--name",
            "bad name!",
            "--package-uri",
            "http://x.example/app.zip",
            "--publisher-principal-id",
            "not-a-guid",
            "--notification-uri",
            "https://installs.example/api/notifications?sig=inline",
        ],
        &[("NOTIFICATION_SIG", "short")],
    );
    assert_eq!(run.status, 2, "{}{}", run.stdout, run.stderr);
    for expected in [
        "--resource-group is missing",
        "--name 'bad name!' is not a definition name",
        "--location is missing",
        "--package-uri 'http://x.example/app.zip' is not an https:// URL of app.zip",
        "--publisher-principal-id 'not-a-guid' is not an object id",
        "is not an https:// URL without query",
        "NOTIFICATION_SIG must hold the receiver's token",
    ] {
        assert!(run.stderr.contains(expected), "missing {expected:?} in:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("short"), "the token's value is not echoed");
    assert!(az.calls().is_empty(), "nothing was sent");
}

#[test]
fn an_access_model_granting_more_than_reader_is_not_published() {
    let az = FakeAz::new();
    let mut m = model();
    m["publisherAuthorizations"][0]["roleDefinitionId"] = json!("b24988ac-6180-42a0-ab88-20f7382dd24c");
    let file = az.dir.path().join("contributor-model.json");
    std::fs::write(&file, m.to_string()).unwrap();
    let run = publish(&az, &[], &[("ACCESS_MODEL", file.to_str().unwrap())]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("must be Reader"), "{}", run.stderr);
    assert!(az.arm_puts().is_empty());
}

#[test]
fn without_an_endpoint_the_definition_has_no_notification_policy_and_an_az_failure_is_passed_on() {
    let az = FakeAz::new();
    let run = publish(&az, &[], &[]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(az.arm_puts()[0].1["properties"].get("notificationPolicy").is_none());
    assert!(run.stdout.contains("installs are not counted"));

    let mut failing = FakeAz::new();
    failing.fail_on = Some("applicationDefinitions".into());
    let run = publish(&failing, &[], &[]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("creating the definition teams-presence failed (az exited 1)"), "{}", run.stderr);
    assert!(run.stderr.contains("Insufficient privileges"), "{}", run.stderr);
}
