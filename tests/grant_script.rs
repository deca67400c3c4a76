//! scripts/grant-graph-permissions.sh against a fake `az` that records its calls and answers
//! from fixture JSON (tests/fixtures/fake-az/az, tests/fixtures/graph-service-principal.json).

mod common;

use common::fake_az::FakeAz;
use serde_json::{Value, json};

const SCRIPT: &str = "scripts/grant-graph-permissions.sh";
const PRINCIPAL: &str = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
const GRAPH_SP: &str = "9f0e1d2c-3b4a-4596-8877-665544332211";
// The fixture's role ids are made up, so only a lookup by value can find them.
const PRESENCE_ROLE: &str = "5b1f3c2a-0000-4000-8000-00000000aa03";
const GROUP_MEMBER_ROLE: &str = "5b1f3c2a-0000-4000-8000-00000000aa04";

fn grant(principal: &str, role: &str) -> Value {
    json!({ "principalId": principal, "resourceId": GRAPH_SP, "appRoleId": role })
}

#[test]
fn the_first_run_grants_both_roles_resolved_by_value() {
    let az = FakeAz::new();
    let run = az.run(SCRIPT, &["--principal-id", PRINCIPAL]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(az.posts(), [grant(PRINCIPAL, PRESENCE_ROLE), grant(PRINCIPAL, GROUP_MEMBER_ROLE)]);
    assert!(run.stdout.contains(&format!("Presence.Read.All (app role {PRESENCE_ROLE}) granted")), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("GroupMember.Read.All (app role {GROUP_MEMBER_ROLE}) granted")));
    assert!(run.stdout.contains("done: 2 granted, 0 already in place"), "{}", run.stdout);
    // Every POST went to the identity's own assignments.
    for call in az.calls().iter().filter(|c| c.contains(&"POST".to_string())) {
        assert!(
            call.contains(&format!(
                "https://graph.microsoft.com/v1.0/servicePrincipals/{PRINCIPAL}/appRoleAssignments"
            ))
        );
    }
}

#[test]
fn a_second_run_creates_nothing() {
    let az = FakeAz::new();
    assert_eq!(az.run(SCRIPT, &["--principal-id", PRINCIPAL]).status, 0);
    let posts_after_first = az.posts().len();
    let run = az.run(SCRIPT, &["--principal-id", PRINCIPAL]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(az.posts().len(), posts_after_first, "the second run posted again");
    assert_eq!(az.assignments().len(), 2);
    assert!(run.stdout.contains("Presence.Read.All (app role 5b1f3c2a-0000-4000-8000-00000000aa03) already granted"));
    assert!(run.stdout.contains("done: 0 granted, 2 already in place"), "{}", run.stdout);
}

#[test]
fn only_the_missing_role_is_granted() {
    let az = FakeAz::new();
    az.seed_assignments(json!([
        dict(grant(PRINCIPAL, GROUP_MEMBER_ROLE)),
        // Same role id for another identity, and another resource's role for this one: neither counts.
        dict(grant("11111111-2222-4333-8444-555555555555", PRESENCE_ROLE)),
        dict(json!({ "principalId": PRINCIPAL, "resourceId": "00000000-0000-4000-8000-0000000000ff", "appRoleId": PRESENCE_ROLE })),
    ]));
    let run = az.run(SCRIPT, &["--principal-id", PRINCIPAL]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(az.posts(), [grant(PRINCIPAL, PRESENCE_ROLE)]);
    assert!(run.stdout.contains("done: 1 granted, 1 already in place"), "{}", run.stdout);
}

#[test]
fn a_role_granted_on_a_later_page_of_the_listing_is_found() {
    let az = FakeAz::new();
    // 250 assignments to other resources first, so the Presence grant is on the third page of 100.
    let mut seeded: Vec<Value> = (0..250)
        .map(|i| {
            dict(json!({
                "principalId": PRINCIPAL,
                "resourceId": format!("00000000-0000-4000-8000-{i:012}"),
                "appRoleId": PRESENCE_ROLE,
            }))
        })
        .collect();
    seeded.push(dict(grant(PRINCIPAL, PRESENCE_ROLE)));
    az.seed_assignments(Value::Array(seeded));
    let run = az.run(SCRIPT, &["--principal-id", PRINCIPAL]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(az.posts(), [grant(PRINCIPAL, GROUP_MEMBER_ROLE)], "Presence.Read.All was already there");
    let listings = az
        .calls()
        .iter()
        .filter(|c| c.iter().any(|a| a.ends_with("/appRoleAssignments") || a.contains("/appRoleAssignments?")))
        .filter(|c| c.contains(&"GET".to_string()))
        .count();
    assert_eq!(listings, 3, "three pages read");
    assert!(run.stdout.contains("done: 1 granted, 1 already in place"), "{}", run.stdout);
}

fn dict(mut v: Value) -> Value {
    v["id"] = json!("existing-assignment");
    v
}

#[test]
fn the_identity_is_found_from_the_function_app_name() {
    let az = FakeAz::new();
    az.seed_function_apps(json!({ "mrg-presence/presence-abc": PRINCIPAL }));
    let run = az.run(SCRIPT, &["--function-app", "presence-abc", "--resource-group", "mrg-presence"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&format!("managed identity (service principal) {PRINCIPAL}")));
    assert_eq!(az.posts().len(), 2);

    let run = az.run(SCRIPT, &["--function-app", "nope", "--resource-group", "mrg-presence"]);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("reading the identity of Function App nope in mrg-presence failed"), "{}", run.stderr);
    assert!(run.stderr.contains("ResourceNotFound"), "az's own message is passed on: {}", run.stderr);
}

#[test]
fn a_refused_grant_stops_with_the_role_the_reason_and_what_is_needed() {
    let mut az = FakeAz::new();
    az.fail_on = Some("--method POST".into());
    let run = az.run(SCRIPT, &["--principal-id", PRINCIPAL]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("granting Presence.Read.All"), "{}", run.stderr);
    assert!(run.stderr.contains("Authorization_RequestDenied"), "{}", run.stderr);
    assert!(run.stderr.contains("AppRoleAssignment.ReadWrite.All"), "{}", run.stderr);
    assert!(az.assignments().is_empty());
    assert!(!run.stdout.contains("done:"));
}

#[test]
fn a_signed_out_az_is_reported_before_anything_else() {
    let mut az = FakeAz::new();
    az.fail_on = Some("account show".into());
    let run = az.run(SCRIPT, &["--principal-id", PRINCIPAL]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("az login"), "{}", run.stderr);
    assert_eq!(az.calls().len(), 1, "nothing after the failed sign-in check");
}

#[test]
fn a_tenant_without_the_role_is_an_error_and_nothing_is_granted() {
    let mut az = FakeAz::new();
    let mut sp: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fake_az::fixture("graph-service-principal.json")).unwrap(),
    )
    .unwrap();
    sp["appRoles"].as_array_mut().unwrap().retain(|r| r["value"] != "GroupMember.Read.All");
    let path = az.dir.path().join("sp-without-groupmember.json");
    std::fs::write(&path, sp.to_string()).unwrap();
    az.graph_sp = path;
    let run = az.run(SCRIPT, &["--principal-id", PRINCIPAL]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("no application role GroupMember.Read.All"), "{}", run.stderr);
    assert!(az.posts().is_empty(), "no partial grant: {:?}", az.posts());
}

#[test]
fn bad_arguments_are_rejected_before_calling_az() {
    let az = FakeAz::new();
    for (args, expected) in [
        (vec!["--principal-id", "not-a-guid"], "'not-a-guid' is not an object id"),
        (vec![], "give --principal-id"),
        (vec!["--function-app", "x"], "give --principal-id"),
        (vec!["--principal-id", PRINCIPAL, "--function-app", "x", "--resource-group", "g"], "not both"),
    ] {
        let run = az.run(SCRIPT, &args);
        assert_ne!(run.status, 0, "{args:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    assert!(az.calls().is_empty(), "{:?}", az.calls());
}
