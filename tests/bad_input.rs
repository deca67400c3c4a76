//! Bad input never panics and always gets an error that names it: property tests (proptest)
//! over the host's invocation payload, the configuration, and Graph's presence responses.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use chrono::Utc;
use common::graph_sim::FixedToken;
use proptest::prelude::*;
use teams_presence::config::{Config, RawSettings, parse_groups};
use teams_presence::cycle::RunContext;
use teams_presence::graph::Tenant;
use teams_presence::graph::client::GraphClient;
use teams_presence::handler::invocation::{TimerInvocation, parse_timestamp};
use teams_presence::model::Slot;
use teams_presence::simulator::user_id;

const VALID: &str = r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-11-22T10:00:00Z","Next":"2026-11-22T10:05:00Z","LastUpdated":"2026-11-22T10:00:00Z"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"function-timer","UtcNow":"2026-11-22T10:05:00.0123Z"}}}"#;

/// Arbitrary JSON values, nested a few levels, with keys the parser looks for among the random ones.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("Data".to_string()),
        Just("timer".to_string()),
        Just("ScheduleStatus".to_string()),
        Just("Next".to_string()),
        Just("Metadata".to_string()),
        Just("sys".to_string()),
        Just("UtcNow".to_string()),
        "[a-zA-Z]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,30}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2026-11-22T10:05:00Z")),
        Just(serde_json::Value::from("0001-01-01T00:00:00")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_an_invocation_parse_or_fail_clearly(body in prop::collection::vec(any::<u8>(), 0..300)) {
        match TimerInvocation::parse(&body) {
            Ok(invocation) => { let _ = invocation.slot(); let _ = invocation.describe(); }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_json_as_an_invocation_parses_or_fails_clearly(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        match TimerInvocation::parse(&body) {
            Ok(invocation) => match invocation.slot() {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            },
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn a_valid_invocation_cut_anywhere_fails_without_panicking(cut in 0..VALID.len()) {
        prop_assert!(TimerInvocation::parse(&VALID.as_bytes()[..cut]).is_err());
    }

    #[test]
    fn a_bad_timestamp_is_named_in_the_error(text in "\\PC{0,40}") {
        if let Err(e) = parse_timestamp("ScheduleStatus.Next", &text) {
            let message = e.to_string();
            prop_assert!(message.contains("ScheduleStatus.Next"), "{}", message);
            prop_assert!(message.contains(&format!("{text:?}")), "{}", message);
        }
    }

    #[test]
    fn group_ids_parse_without_duplicates_or_name_each_bad_entry(
        entries in prop::collection::vec(prop_oneof![
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            any::<u128>().prop_map(|n| format!("{{{}}}", uuid::Uuid::from_u128(n))),
            "[0-9a-fA-F-]{0,40}",
            // Entries never hold a separator themselves, so each error can be matched to one.
            "[^,;\\s]{0,12}",
        ], 0..6),
        separators in prop::collection::vec(prop_oneof![Just(","), Just(";"), Just(" "), Just("\n"), Just(", ")], 6),
    ) {
        let mut text = String::new();
        for (entry, sep) in entries.iter().zip(separators.iter().cycle()) {
            text.push_str(entry);
            text.push_str(sep);
        }
        match parse_groups(Some(&text)) {
            Ok(groups) => {
                prop_assert!(!groups.is_empty());
                let mut distinct = groups.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), groups.len(), "duplicates dropped");
            }
            Err(errors) => {
                for e in &errors {
                    let message = e.to_string();
                    prop_assert!(message.contains("ENTRA_GROUP_IDS"), "{}", message);
                    let names_an_entry = entries.iter().any(|entry| message.contains(&format!("{entry:?}")));
                    prop_assert!(names_an_entry || message.contains("no group ids"), "{}", message);
                }
                prop_assert!(!errors.is_empty());
            }
        }
    }

    #[test]
    fn any_settings_parse_or_name_every_bad_one(
        values in prop::collection::vec(prop::option::of(prop_oneof![
            "\\PC{0,20}",
            "[0-9]{0,6}",
            Just("-1".to_string()),
            Just("0".to_string()),
            Just("https://graph.microsoft.com/v1.0".to_string()),
            Just("6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c".to_string()),
        ]), 13),
        // Secrets drawn apart, so that finding one in a message means it was echoed.
        cosmos_key in prop::option::of("s3cr3t-[A-Za-z0-9+/=]{2,40}"),
        pseudonym_key in prop::option::of("s3cr3t-[A-Za-z0-9+/=]{2,60}"),
    ) {
        let v = |i: usize| values[i].clone();
        let raw = RawSettings {
            entra_group_ids: v(0),
            graph_base_url: v(1),
            cosmos_endpoint: v(2),
            cosmos_database: v(3),
            cosmos_container: v(4),
            cosmos_state_container: v(5),
            cosmos_key: cosmos_key.clone(),
            presence_db: v(6),
            poll_schedule: v(7),
            run_deadline_seconds: v(8),
            presence_concurrency: v(9),
            presence_calls_per_30s: v(10),
            retention_days: v(11),
            membership_inline_limit_seconds: v(12),
            user_id_pseudonym_key: pseudonym_key.clone(),
        };
        if let Err(e) = Config::parse(&raw) {
            let message = e.to_string();
            prop_assert!(!message.is_empty());
            // The pseudonym key and the Cosmos key are secrets: never echoed.
            for secret in [&raw.user_id_pseudonym_key, &raw.cosmos_key].into_iter().flatten() {
                prop_assert!(!message.contains(secret.as_str()), "{}", message);
            }
        }
    }
}

/// A Graph endpoint that answers every presence call with the body under test.
async fn presence_server(body: Arc<Vec<u8>>) -> String {
    async fn answer(State(body): State<Arc<Vec<u8>>>) -> impl IntoResponse {
        ([("content-type", "application/json")], body.as_ref().clone())
    }
    let app = Router::new().route("/v1.0/communications/getPresencesByUserId", post(answer)).with_state(body);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1.0", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Presence bodies: random JSON, and near-misses of the real shape.
fn presence_body() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![(0u32..3).prop_map(|u| serde_json::Value::from(user_id(u).to_string())), json_value(),];
    let entry = (id, json_value(), any::<bool>()).prop_map(|(id, availability, extra)| {
        let mut o = serde_json::json!({"id": id, "availability": availability});
        if extra {
            o["activity"] = serde_json::json!("InACall");
            o["statusMessage"] = serde_json::json!({"message": {"content": "x"}});
        }
        o
    });
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(entry, 0..5)
            .prop_map(|value| serde_json::to_vec(&serde_json::json!({"value": value})).unwrap()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_presence_response_gives_observations_or_a_clear_failed_batch(body in presence_body()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let base = presence_server(Arc::new(body)).await;
            let settings = teams_presence::config::GraphSettings {
                base_url: base.parse().unwrap(),
                presence_concurrency: 1,
                presence_calls_per_30s: 1_500,
                tuning: teams_presence::config::GraphTuning::default(),
            };
            let graph = GraphClient::new(&settings, Arc::new(FixedToken)).unwrap();
            let users: Vec<_> = (0..3).map(user_id).collect();
            let run = RunContext::new("bad-input", Slot::new(Utc::now()), Duration::from_secs(10));
            let snapshot = graph.presence(&users, &run).await.unwrap();
            // Every id asked for is either observed once or unobserved, never invented.
            prop_assert_eq!(snapshot.observations.len() + snapshot.unobserved.len(), 3);
            for o in &snapshot.observations {
                prop_assert!(users.contains(&o.user_id));
            }
            for failure in &snapshot.failed_batches {
                prop_assert!(failure.reason.contains("getPresencesByUserId"), "{}", failure.reason);
            }
            Ok(())
        })?;
    }
}
