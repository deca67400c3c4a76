//! The simulator's own contract, checked over plain HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, user_id};

async fn mi_token(sim: &SimHandle, http: &reqwest::Client) -> String {
    let response = http
        .get(sim.identity_endpoint())
        .query(&[("api-version", "2019-08-01"), ("resource", sim.origin())])
        .header("X-IDENTITY-HEADER", sim.identity_header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["expires_on"].as_str().unwrap().parse::<u64>().is_ok(), "expires_on is epoch seconds as a string");
    body["access_token"].as_str().unwrap().to_string()
}

fn presence_url(sim: &SimHandle) -> String {
    format!("{}/communications/getPresencesByUserId", sim.base_url())
}

#[tokio::test]
async fn identity_endpoint_checks_the_header_and_the_resource() {
    let sim = Simulator::start(SimConfig::new(1)).await.unwrap();
    let http = reqwest::Client::new();
    let wrong_header = http
        .get(sim.identity_endpoint())
        .query(&[("api-version", "2019-08-01"), ("resource", sim.origin())])
        .header("X-IDENTITY-HEADER", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_header.status(), 401);
    let wrong_resource = http
        .get(sim.identity_endpoint())
        .query(&[("api-version", "2019-08-01"), ("resource", "https://graph.microsoft.com")])
        .header("X-IDENTITY-HEADER", sim.identity_header())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_resource.status(), 400);
    mi_token(&sim, &http).await;
    assert_eq!(sim.counters().tokens_issued, 1);
}

#[tokio::test]
async fn client_credentials_endpoint_issues_tokens_for_the_configured_secret() {
    let sim = Simulator::start(SimConfig::new(1).client_credentials("app", "s3cret")).await.unwrap();
    let http = reqwest::Client::new();
    let scope = format!("{}/.default", sim.origin());
    let ask = |secret: &'static str| {
        http.post(sim.token_url("tenant"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", secret),
                ("scope", &scope),
            ])
            .send()
    };
    assert_eq!(ask("wrong").await.unwrap().status(), 401);
    let body: Value = ask("s3cret").await.unwrap().json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
}

#[tokio::test]
async fn presence_needs_a_valid_token_and_at_most_650_ids() {
    let sim = Simulator::start(SimConfig::new(1_000).token_lifetime(Duration::from_secs(1))).await.unwrap();
    let http = reqwest::Client::new();
    let ids = |n: u32| json!({"ids": (0..n).map(|i| user_id(i).expose_object_id().to_string()).collect::<Vec<_>>()});
    let no_token = http.post(presence_url(&sim)).json(&ids(1)).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let token = mi_token(&sim, &http).await;
    let too_many = http.post(presence_url(&sim)).bearer_auth(&token).json(&ids(651)).send().await.unwrap();
    assert_eq!(too_many.status(), 400);
    let ok = http.post(presence_url(&sim)).bearer_auth(&token).json(&ids(650)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    let first = &body["value"][0];
    for field in ["availability", "activity", "statusMessage", "outOfOfficeSettings", "sequenceNumber"] {
        assert!(!first[field].is_null(), "full presence objects carry {field}: {first}");
    }
    assert_eq!(sim.counters().max_ids_per_call, 651);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let expired = http.post(presence_url(&sim)).bearer_auth(&token).json(&ids(1)).send().await.unwrap();
    assert_eq!(expired.status(), 401);
}

#[tokio::test]
async fn presence_is_throttled_past_the_limit_with_a_fractional_retry_after() {
    let sim = Simulator::start(SimConfig::new(10).throttle(3, Duration::from_secs(2))).await.unwrap();
    let http = reqwest::Client::new();
    let token = mi_token(&sim, &http).await;
    let body = json!({"ids": [user_id(1).expose_object_id().to_string()]});
    for _ in 0..3 {
        let r = http.post(presence_url(&sim)).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let throttled = http.post(presence_url(&sim)).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    let retry_after: f64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 1.5 && retry_after <= 2.0, "{retry_after}");
    let counters = sim.counters();
    assert_eq!((counters.throttled, counters.max_presence_calls_in_window), (1, 4));
}

#[tokio::test]
async fn a_forged_skiptoken_is_refused() {
    let sim = Simulator::start(SimConfig::standard(100)).await.unwrap();
    let http = reqwest::Client::new();
    let token = mi_token(&sim, &http).await;
    let group = teams_presence::simulator::standard_groups()[0];
    let url = format!("{}/groups/{group}/transitiveMembers?$select=id&$top=999&$skiptoken=zz", sim.base_url());
    let r = http.get(url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 400);
}
