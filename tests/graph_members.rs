//! transitiveMembers through the production client against the simulator.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::graph_sim::{client, run, settings};
use teams_presence::graph::Tenant;
use teams_presence::model::GroupId;
use teams_presence::simulator::{Endpoint, Fault, GroupSpec, SimConfig, Simulator, standard_groups, user_id};

#[tokio::test]
async fn pages_are_followed_and_only_distinct_users_are_kept() {
    // Small pages force many nextLinks; groups overlap, one is nested, and all hold devices,
    // service principals and contacts.
    let sim = Simulator::start(SimConfig::standard(5_000).max_page_size(97)).await.unwrap();
    let groups = &standard_groups()[..3];
    let graph = client(&sim, &settings(&sim));
    let run = run(Duration::from_secs(60));

    let membership = graph.members(groups, &run).await.unwrap();

    let expected = sim.expected_users(groups);
    assert_eq!(membership.users.len(), 5_000, "overlapping groups cover every user exactly once");
    assert!(membership.users == expected, "the users are exactly the simulated members");
    assert!(membership.unreadable_groups.is_empty());
    let pages = run.metrics.member_pages.load(Ordering::Relaxed);
    assert!(pages >= 5_000 / 97, "{pages} pages");
    assert_eq!(sim.counters().member_calls, pages);
}

#[tokio::test]
async fn non_user_members_and_nested_groups_are_skipped_but_their_users_kept() {
    let [a, b, ..] = standard_groups();
    let config = SimConfig::new(100)
        .group(GroupSpec::new(a).users(0..10).nested(b).others(30))
        .group(GroupSpec::new(b).users(5..20).nested(a).others(30));
    let sim = Simulator::start(config).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    let membership = graph.members(&[a], &run(Duration::from_secs(30))).await.unwrap();
    let expected: Vec<_> = (0..20).map(user_id).collect();
    assert_eq!(membership.users, expected);
}

#[tokio::test]
async fn a_missing_group_is_retried_then_reported_while_the_others_go_on() {
    let [a, ..] = standard_groups();
    let missing = GroupId::from_u128(0xdead);
    let sim = Simulator::start(SimConfig::new(50).group(GroupSpec::new(a).users(0..50))).await.unwrap();
    let graph = client(&sim, &settings(&sim));

    let membership = graph.members(&[missing, a], &run(Duration::from_secs(30))).await.unwrap();

    assert_eq!(membership.users.len(), 50);
    assert_eq!(membership.unreadable_groups.len(), 1);
    let problem = &membership.unreadable_groups[0];
    assert_eq!(problem.group_id, missing);
    assert!(
        problem.reason.contains("404") && problem.reason.contains("Request_ResourceNotFound"),
        "{}",
        problem.reason
    );
    assert_eq!(sim.counters().not_found, 3, "retried a few times before giving up");
}

#[tokio::test]
async fn a_malformed_page_fails_that_group_with_a_clear_reason() {
    let [a, b, ..] = standard_groups();
    let config = SimConfig::new(20).group(GroupSpec::new(a).users(0..10)).group(GroupSpec::new(b).users(10..20));
    let sim = Simulator::start(config).await.unwrap();
    sim.inject(Endpoint::Members, Fault::Truncated, 1);
    let mut settings = settings(&sim);
    settings.tuning.group_concurrency = 1;
    let graph = client(&sim, &settings);
    let membership = graph.members(&[a, b], &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(membership.users.len(), 10);
    assert_eq!(membership.unreadable_groups.len(), 1);
    assert!(
        membership.unreadable_groups[0].reason.contains("not the expected JSON"),
        "{:?}",
        membership.unreadable_groups
    );
}
