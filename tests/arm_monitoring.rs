//! The monitoring the template deploys (action group, log alert rules, the operations workbook)
//! against what the handler and the host emit and what docs/operations.md says.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::arm::{Evaluator, evaluated, key_of, linked_evaluator, one_of, resources_of, template};
use serde_json::{Value, json};
use teams_presence::spans::COSMOS_DB_SYSTEM;
use teams_presence::telemetry::SERVICE_NAME;
use teams_presence::telemetry::run_metrics::{FIGURE_PREFIX, FIGURES, FailedStage, RUNS};

/// What an alert rule's query watches.
enum Watches {
    /// The host's `requests` rows of the timer function, successful or failed.
    Runs { success: bool },
    /// One of the handler's per-run figures (`customMetrics`).
    Figure(&'static str),
}

struct Alert {
    name: &'static str,
    severity: i64,
    every: &'static str,
    window: &'static str,
    aggregation: &'static str,
    operator: &'static str,
    threshold: i64,
    watches: Watches,
}

/// The alert rules the template must deploy; docs/operations.md explains each.
const ALERTS: &[Alert] = &[
    Alert {
        name: "Teams Presence: no successful run for 15 minutes",
        severity: 1,
        every: "PT5M",
        window: "PT15M",
        aggregation: "Total",
        operator: "LessThan",
        threshold: 1,
        watches: Watches::Runs { success: true },
    },
    Alert {
        name: "Teams Presence: failed runs",
        severity: 2,
        every: "PT5M",
        window: "PT30M",
        aggregation: "Count",
        operator: "GreaterThanOrEqual",
        threshold: 2,
        watches: Watches::Runs { success: false },
    },
    Alert {
        name: "Teams Presence: sustained Graph throttling",
        severity: 2,
        every: "PT15M",
        window: "PT1H",
        aggregation: "Count",
        operator: "GreaterThanOrEqual",
        threshold: 6,
        watches: Watches::Figure("presence.run.throttled"),
    },
    Alert {
        name: "Teams Presence: groups that could not be read",
        severity: 2,
        every: "PT15M",
        window: "PT30M",
        aggregation: "Count",
        operator: "GreaterThan",
        threshold: 0,
        watches: Watches::Figure("presence.run.unreadable_groups"),
    },
];

/// The alert rules, evaluated, by display name.
fn alert_rules(eval: &Evaluator, template: &Value) -> BTreeMap<String, Value> {
    resources_of(template, "Microsoft.Insights/scheduledQueryRules")
        .into_iter()
        .map(|r| {
            let rule = evaluated(eval, r, "alert rule");
            (rule["properties"]["displayName"].as_str().expect("displayName").to_string(), rule)
        })
        .collect()
}

/// The workbook content as deployed: the evaluated `serializedData`, parsed.
fn workbook_content(eval: &Evaluator, template: &Value) -> Value {
    let workbook = evaluated(eval, one_of(template, "Microsoft.Insights/workbooks"), "workbook");
    let data = workbook["properties"]["serializedData"].as_str().expect("serializedData is a string");
    serde_json::from_str(data).unwrap_or_else(|e| panic!("serializedData is not JSON: {e}"))
}

/// The workbook's query tiles: name -> query.
fn workbook_queries(content: &Value) -> BTreeMap<String, String> {
    content["items"]
        .as_array()
        .expect("workbook items")
        .iter()
        .filter(|item| item["type"] == 3)
        .map(|item| {
            let name = item["name"].as_str().expect("tile name").to_string();
            let query = item["content"]["query"].as_str().unwrap_or_else(|| panic!("tile {name} has no query"));
            (name, query.to_string())
        })
        .collect()
}

/// Every query of the alert rules and the workbook: (where, query).
fn monitoring_queries(eval: &Evaluator, template: &Value) -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = alert_rules(eval, template)
        .into_iter()
        .map(|(name, rule)| (name, rule["properties"]["criteria"]["allOf"][0]["query"].as_str().unwrap().to_string()))
        .collect();
    let tiles = workbook_queries(&workbook_content(eval, template));
    queries.extend(tiles.into_iter().map(|(name, query)| (format!("workbook tile {name}"), query)));
    queries
}

/// The quoted strings right after `pattern`, such as the `x` of `name == "x"`.
fn quoted_after<'q>(query: &'q str, pattern: &str) -> Vec<&'q str> {
    query
        .match_indices(pattern)
        .filter_map(|(i, _)| {
            let rest = query[i + pattern.len()..].trim_start().strip_prefix('"')?;
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

/// The quoted items of the list after `pattern`, such as `type in ("a", "b")`.
fn list_after<'q>(query: &'q str, pattern: &str) -> Vec<&'q str> {
    query
        .match_indices(pattern)
        .flat_map(|(i, _)| {
            let rest = &query[i + pattern.len()..];
            rest[..rest.find(')').unwrap()].split(',').map(|item| item.trim().trim_matches('"'))
        })
        .collect()
}

/// Every quoted `presence.` name in a query.
fn metric_names(query: &str) -> Vec<&str> {
    query
        .match_indices("\"presence.")
        .map(|(i, _)| {
            let rest = &query[i + 1..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// The `function-*` folders, one per function of the app.
fn function_folders() -> BTreeSet<String> {
    std::fs::read_dir(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("function-"))
        .collect()
}

#[test]
fn the_four_alerts_mail_the_alert_email_through_the_action_group() {
    let template = template();
    let eval = linked_evaluator(&template);
    let group = one_of(&template, "Microsoft.Insights/actionGroups");
    let receivers = group["properties"]["emailReceivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 1, "{receivers:?}");
    assert_eq!(receivers[0]["emailAddress"], "[parameters('alertEmail')]");
    assert_eq!(group["properties"]["enabled"], true);
    let group_key = common::arm::key("Microsoft.Insights/actionGroups", &eval.eval_value(&group["name"], "g").render());

    let rules = alert_rules(&eval, &template);
    let names: BTreeSet<&str> = rules.keys().map(String::as_str).collect();
    assert_eq!(names, ALERTS.iter().map(|a| a.name).collect::<BTreeSet<_>>());
    let timer = eval.variable("timerFunctionName").render();
    assert!(function_folders().contains(&timer), "no folder {timer} in {:?}", function_folders());

    for alert in ALERTS {
        let name = alert.name;
        let rule = &rules[name];
        assert_eq!(rule["kind"], "LogAlert", "{name}");
        let p = &rule["properties"];
        assert_eq!((&p["enabled"], &p["autoMitigate"]), (&json!(true), &json!(true)), "{name}");
        let scopes = p["scopes"].as_array().unwrap();
        assert_eq!(scopes.len(), 1, "{name}");
        assert!(key_of(scopes[0].as_str().unwrap()).starts_with("microsoft.insights/components|"), "{name}");
        let groups = p["actions"]["actionGroups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{name}: {groups:?}");
        assert_eq!(key_of(groups[0].as_str().unwrap()), group_key, "{name} must mail alertEmail");

        let conditions = p["criteria"]["allOf"].as_array().unwrap();
        assert_eq!(conditions.len(), 1, "{name}");
        let c = &conditions[0];
        assert_eq!(
            [&p["severity"], &p["evaluationFrequency"], &p["windowSize"]],
            [&json!(alert.severity), &json!(alert.every), &json!(alert.window)],
            "{name}: severity, evaluation frequency, window"
        );
        assert_eq!(
            [&c["timeAggregation"], &c["operator"], &c["threshold"]],
            [&json!(alert.aggregation), &json!(alert.operator), &json!(alert.threshold)],
            "{name}: aggregation, operator, threshold"
        );
        let query = c["query"].as_str().unwrap();
        match alert.aggregation {
            // The service counts the rows itself; a count in the query would always be 1 row.
            "Count" => {
                assert!(c.get("metricMeasureColumn").is_none(), "{name}");
                assert!(!query.contains("summarize"), "{name}: {query}");
            }
            _ => {
                let column = c["metricMeasureColumn"].as_str().unwrap_or_else(|| panic!("{name}: no measure column"));
                assert!(query.contains(&format!("summarize {column} =")), "{name}: {query} does not make {column}");
            }
        }
        match alert.watches {
            Watches::Runs { success } => {
                assert!(query.starts_with("requests |"), "{name}: {query}");
                assert_eq!(quoted_after(query, "name =="), [timer.as_str()], "{name}: {query}");
                assert!(query.contains(&format!("success == {success}")), "{name}: {query}");
            }
            Watches::Figure(metric) => {
                assert!(query.starts_with("customMetrics |"), "{name}: {query}");
                assert_eq!(metric_names(query), [metric], "{name}: {query}");
                assert!(FIGURES.iter().any(|f| f.name == metric), "{name}: {metric} is not a figure the handler emits");
            }
        }
        let depends: Vec<String> =
            rule["dependsOn"].as_array().unwrap().iter().map(|d| key_of(d.as_str().unwrap())).collect();
        assert!(depends.contains(&group_key), "{name} must be created after its action group: {depends:?}");
    }
}

#[test]
fn the_ops_workbook_charts_duration_users_changes_throttling_and_failures_over_time() {
    let template = template();
    let eval = linked_evaluator(&template);
    let resource = evaluated(&eval, one_of(&template, "Microsoft.Insights/workbooks"), "workbook");
    uuid::Uuid::parse_str(resource["name"].as_str().unwrap()).expect("a workbook's name is a GUID");
    assert_eq!(resource["kind"], "shared");
    let p = &resource["properties"];
    assert_eq!(p["displayName"], "Teams Presence operations");
    assert_eq!(p["category"], "workbook");
    let source = p["sourceId"].as_str().unwrap();
    assert!(key_of(source).starts_with("microsoft.insights/components|"), "{source}");

    let content = workbook_content(&eval, &template);
    assert_eq!(content["version"], p["version"]);
    assert_eq!(content["version"], "Notebook/1.0");
    assert_eq!(content["fallbackResourceIds"], json!([source]));
    for item in content["items"].as_array().unwrap().iter().filter(|i| i["type"] == 3) {
        assert_eq!(item["content"]["timeContextFromParameter"], "TimeRange", "{}", item["name"]);
    }

    let tiles = workbook_queries(&content);
    // The tile, and the table or metric it must chart over time.
    let charts = [
        ("runs", "requests"),
        ("duration", "presence.run.duration"),
        ("users", "presence.run.users_in_scope"),
        ("changes", "presence.run.changes"),
        ("throttling", "presence.run.throttled"),
        ("failures", RUNS),
        ("unreadable", "presence.run.unreadable_groups"),
    ];
    for (tile, what) in charts {
        let query = tiles.get(tile).unwrap_or_else(|| panic!("no tile {tile} in {:?}", tiles.keys()));
        assert!(query.starts_with(what) || metric_names(query).contains(&what), "{tile}: {query}");
        assert!(query.contains("bin(timestamp, {TimeRange:grain})"), "{tile} is not over time: {query}");
    }
    assert!(quoted_after(&tiles["failures"], "tostring(customDimensions.outcome) ==") == ["failure"]);
    assert!(tiles["failures"].contains("customDimensions.stage"));
}

#[test]
fn monitoring_queries_use_only_names_the_handler_and_the_host_emit() {
    let template = template();
    let eval = linked_evaluator(&template);
    let queries = monitoring_queries(&eval, &template);
    assert!(queries.len() >= ALERTS.len() + 7, "{queries:?}");
    let figures: BTreeSet<&str> = FIGURES.iter().map(|f| f.name).collect();
    let run_metrics =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry/run_metrics.rs")).unwrap();
    let timer = eval.variable("timerFunctionName").render();

    for (at, query) in &queries {
        for name in metric_names(query) {
            assert!(
                name == RUNS || name == FIGURE_PREFIX || figures.contains(name),
                "{at}: {name} is not a metric the handler emits (telemetry::run_metrics::RUNS, FIGURES)"
            );
        }
        if query.starts_with("customMetrics") {
            assert!(!metric_names(query).is_empty(), "{at}: a customMetrics query must name its metrics");
            // A histogram row's `value` is the sum of the export's recordings (= valueSum) and
            // valueCount their number: averaging `value` goes wrong once two runs share a row.
            let bare_value = query.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == "value");
            assert!(!bare_value, "{at}: use valueSum / valueCount / valueMax, not value: {query}");
        }
        for outcome in quoted_after(query, "tostring(customDimensions.outcome) ==") {
            assert!(
                run_metrics.contains(&format!("KeyValue::new(\"outcome\", \"{outcome}\")")),
                "{at}: the handler records no outcome {outcome:?}"
            );
        }
        for role in quoted_after(query, "cloud_RoleName ==") {
            assert_eq!(role, SERVICE_NAME, "{at}: the handler's rows carry its service name as cloud_RoleName");
        }
        if query.starts_with("dependencies") {
            let types = list_after(query, "type in (");
            assert!(types.contains(&COSMOS_DB_SYSTEM) && types.contains(&"HTTP"), "{at}: {types:?}");
            assert!(types.iter().all(|t| *t == COSMOS_DB_SYSTEM || *t == "HTTP"), "{at}: {types:?}");
        }
        if query.starts_with("requests") {
            assert_eq!(quoted_after(query, "name =="), [timer.as_str()], "{at}: the host names requests by function");
        }
    }
}

/// Durations as docs/operations.md writes them: `PT5M` is `5 min`, `PT1H` is `1 h`.
fn human_duration(iso: &str) -> String {
    let d = iso.strip_prefix("PT").unwrap_or_else(|| panic!("{iso}"));
    match d.split_at(d.len() - 1) {
        (n, "M") => format!("{n} min"),
        (n, "H") => format!("{n} h"),
        _ => panic!("{iso}"),
    }
}

#[test]
fn the_operations_doc_shows_the_deployed_queries_and_alert_conditions() {
    let template = template();
    let eval = linked_evaluator(&template);
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md")).unwrap();
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat_doc = flat(&doc);
    for (at, query) in monitoring_queries(&eval, &template) {
        let block = flat(&format!("```kusto\n{query}\n```"));
        assert!(flat_doc.contains(&block), "docs/operations.md does not show the query of {at}:\n{query}");
    }

    for (name, rule) in alert_rules(&eval, &template) {
        let p = &rule["properties"];
        let c = &p["criteria"]["allOf"][0];
        let short = name.strip_prefix("Teams Presence: ").unwrap_or_else(|| panic!("{name}"));
        let short = format!("{}{}", short[..1].to_uppercase(), &short[1..]);
        let operator = match c["operator"].as_str().unwrap() {
            "LessThan" => "<",
            "LessThanOrEqual" => "≤",
            "GreaterThan" => ">",
            "GreaterThanOrEqual" => "≥",
            other => panic!("{name}: operator {other}"),
        };
        let condition = match c["timeAggregation"].as_str().unwrap() {
            "Count" => format!("rows {operator} {}", c["threshold"]),
            "Total" => {
                format!("total of `{}` {operator} {}", c["metricMeasureColumn"].as_str().unwrap(), c["threshold"])
            }
            other => panic!("{name}: aggregation {other} has no wording in the doc yet"),
        };
        let row = format!(
            "| {short} | {} | {} | {} | {condition} |",
            p["severity"],
            human_duration(p["evaluationFrequency"].as_str().unwrap()),
            human_duration(p["windowSize"].as_str().unwrap()),
        );
        assert!(doc.contains(&row), "docs/operations.md has no alert table row {row}");
        assert!(doc.contains(&format!("\n### {short}\n")), "docs/operations.md has no section ### {short}");
    }
    for stage in [FailedStage::Configuration, FailedStage::Initialisation, FailedStage::Cycle] {
        assert!(doc.contains(&format!("`{}`", stage.as_str())), "the doc does not explain the stage {stage:?}");
    }
}
