//! Membership streamed into presence: the production client's `members_and_presence` against the
//! simulator.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::graph_sim::{client, run, settings};
use teams_presence::app;
use teams_presence::graph::Tenant;
use teams_presence::simulator::{Endpoint, Fault, SimConfig, SimHandle, Simulator, standard_groups};

/// Watches the simulator while `graph` reads the standard groups: presence must start before the
/// last member page, and everyone must be asked about exactly once.
async fn assert_presence_overlaps_paging(build: impl FnOnce(&SimHandle) -> Arc<dyn Tenant>) {
    // 20 ms a call and 100-member pages: the largest group (2,750 users + 29 others) needs 28
    // pages one after another.
    let sim = Simulator::start(SimConfig::standard(5_000).max_page_size(100).latency(Duration::from_millis(20)))
        .await
        .unwrap();
    let graph = build(&sim);
    let groups = &standard_groups()[..3];
    let run = run(Duration::from_secs(60));
    let task = {
        let graph = graph.clone();
        let groups = groups.to_vec();
        tokio::spawn(async move { graph.members_and_presence(&groups, &run).await })
    };
    let mut presence_during_paging = false;
    while !task.is_finished() {
        let c = sim.counters();
        presence_during_paging |= c.presence_calls > 0 && c.member_calls < 28;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (membership, snapshot) = task.await.unwrap().unwrap();
    assert!(presence_during_paging, "presence calls began while member pages were still being read");

    assert!(membership.users == sim.expected_users(groups));
    let observed: HashSet<_> = snapshot.observations.iter().map(|o| o.user_id).collect();
    assert_eq!(observed.len(), 5_000, "every member observed");
    assert_eq!(snapshot.observations.len(), 5_000, "and asked about once, overlap notwithstanding");
    assert!(snapshot.unobserved.is_empty());
    let counters = sim.counters();
    assert!(counters.max_ids_per_call <= 650);
    // Batches are filled from pages as they come, only the last one partly.
    assert_eq!(counters.presence_calls, 5_000u64.div_ceil(650), "{} calls", counters.presence_calls);
}

#[tokio::test]
async fn presence_overlaps_paging_and_asks_for_each_member_once() {
    assert_presence_overlaps_paging(|sim| Arc::new(client(sim, &settings(sim)))).await;
}

/// The composition the handler runs (`app::tenant`: spans and membership reuse around the
/// client) must not fall back to the trait's read-all-then-fetch default.
#[tokio::test]
async fn the_handlers_tenant_overlaps_as_well() {
    assert_presence_overlaps_paging(|sim| app::tenant(client(sim, &settings(sim)), Duration::from_secs(20))).await;
}

#[tokio::test]
async fn an_unreadable_group_leaves_no_out_of_scope_observation() {
    let sim = Simulator::start(SimConfig::standard(3_000).max_page_size(200)).await.unwrap();
    let groups = &standard_groups()[..3];
    // The first members call is refused: that group is unreadable, the others stream on.
    sim.inject(Endpoint::Members, Fault::Status { status: 403, retry_after: None }, 1);
    let graph = client(&sim, &settings(&sim));
    let run = run(Duration::from_secs(60));
    let (membership, snapshot) = graph.members_and_presence(groups, &run).await.unwrap();
    assert_eq!(membership.unreadable_groups.len(), 1);
    let in_scope: HashSet<_> = membership.users.iter().copied().collect();
    assert!(snapshot.observations.iter().all(|o| in_scope.contains(&o.user_id)));
    assert!(snapshot.unobserved.iter().all(|u| in_scope.contains(u)));
    assert_eq!(snapshot.observations.len() + snapshot.unobserved.len(), membership.users.len());
}
