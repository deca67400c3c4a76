//! The simulator's single-user presence and `$batch` endpoints, which the tenant-scale benchmark's
//! baselines call: same presence limit as `getPresencesByUserId`, batch items throttled one by one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, user_id};

async fn bearer(sim: &SimHandle, http: &reqwest::Client) -> String {
    let body: Value = http
        .get(sim.identity_endpoint())
        .query(&[("api-version", "2019-08-01"), ("resource", sim.origin())])
        .header("X-IDENTITY-HEADER", sim.identity_header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!("Bearer {}", body["access_token"].as_str().unwrap())
}

#[tokio::test]
async fn single_user_presence_shares_the_presence_limit() {
    let sim = Simulator::start(SimConfig::new(10).throttle(3, Duration::from_secs(30))).await.unwrap();
    let http = reqwest::Client::new();
    let url = |i: u32| format!("{}/users/{}/presence", sim.base_url(), user_id(i).expose_object_id());
    assert_eq!(http.get(url(1)).send().await.unwrap().status(), 401, "a token is required");
    let auth = bearer(&sim, &http).await;
    let one: Value = http.get(url(1)).header("Authorization", &auth).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["id"], user_id(1).expose_object_id().to_string());
    assert!(one["availability"].is_string());
    let unknown = http.get(url(99)).header("Authorization", &auth).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    // Two accepted calls so far; one getPresencesByUserId call fills the limit of three.
    let batch = http
        .post(format!("{}/communications/getPresencesByUserId", sim.base_url()))
        .header("Authorization", &auth)
        .json(&json!({"ids": [user_id(2).expose_object_id().to_string()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    let throttled = http.get(url(3)).header("Authorization", &auth).send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    let wait: f64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 29.0 && wait <= 30.0, "{wait}");
    let counters = sim.counters();
    assert_eq!((counters.user_presence_calls, counters.throttled), (3, 1));
}

#[tokio::test]
async fn batch_items_are_throttled_one_by_one_and_at_most_20_are_accepted() {
    let sim =
        Simulator::start(SimConfig::new(100).throttle(5, Duration::from_secs(30)).latency(Duration::from_millis(20)))
            .await
            .unwrap();
    let http = reqwest::Client::new();
    let auth = bearer(&sim, &http).await;
    let item = |i: u32| json!({"id": i.to_string(), "method": "GET", "url": format!("/users/{}/presence", user_id(i).expose_object_id())});
    let too_many: Vec<Value> = (0..21).map(item).collect();
    let refused = http
        .post(format!("{}/$batch", sim.base_url()))
        .header("Authorization", &auth)
        .json(&json!({ "requests": too_many }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let started = Instant::now();
    let answer: Value = http
        .post(format!("{}/$batch", sim.base_url()))
        .header("Authorization", &auth)
        .json(&json!({"requests": (0..8).map(item).collect::<Vec<_>>()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(20), "one call latency per batch");
    let responses = answer["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 8);
    let ok: Vec<&Value> = responses.iter().filter(|r| r["status"] == 200).collect();
    let throttled: Vec<&Value> = responses.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!((ok.len(), throttled.len()), (5, 3), "each item counts against the limit of five");
    for r in ok {
        assert_eq!(r["body"]["id"], user_id(r["id"].as_str().unwrap().parse().unwrap()).expose_object_id().to_string());
    }
    for r in throttled {
        let wait: f64 = r["headers"]["Retry-After"].as_str().unwrap().parse().unwrap();
        assert!(wait > 29.0 && wait <= 30.0, "{wait}");
    }
    let counters = sim.counters();
    assert_eq!((counters.batch_calls, counters.user_presence_calls, counters.throttled), (1, 8, 3));
}

#[tokio::test]
async fn per_call_latency_spreads_within_the_configured_range() {
    let sim = Simulator::start(
        SimConfig::new(10).latency(Duration::from_millis(30)).latency_spread(Duration::from_millis(60)),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let auth = bearer(&sim, &http).await;
    let mut times = Vec::new();
    for i in 0..8 {
        let started = Instant::now();
        let r = http
            .get(format!("{}/users/{}/presence", sim.base_url(), user_id(i).expose_object_id()))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        times.push(started.elapsed());
    }
    assert!(times.iter().all(|t| *t >= Duration::from_millis(30)), "{times:?}");
    assert!(times.iter().all(|t| *t < Duration::from_millis(500)), "{times:?}");
}
