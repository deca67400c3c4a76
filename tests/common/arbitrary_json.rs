//! Arbitrary JSON for the property tests of bad input (`tests/bad_input.rs`,
//! `tests/bad_invocation.rs`), which include this file by path; it is not part of `common/mod.rs`.

use proptest::prelude::*;

/// Arbitrary JSON values, nested a few levels, with keys the parser looks for among the random ones.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
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
