//! A split failing at each of its failpoints, and at the pageserver (an error answer, and an
//! answer slower than the controller's split timeout).
//!
//! For each failpoint of the split driver, on a fresh 2-shard `Attached(1)` tenant split to 4:
//! the failpoint returns an error on every replica, so the split answers a 5xx with a `msg`;
//! with the failpoint off again the tenant settles at one shard count on the controller and on
//! every simulator (no stray parent or child): rolled back to the parents when the failure came
//! before `CompleteSplit` committed, rolled forward to the children after. A retried split then
//! succeeds (or is a no-op answering the children) and settles.
//!
//! Then the simulator side: the parents' pageservers answer the split with an error (409,
//! rolled back), then answer it only after the controller's split timeout although they did
//! create the children (the call fails, the split rolls back, and the children are detached
//! again). With the pageservers healthy the retried split succeeds.
//!
//! Throughout, a bystander tenant keeps its attachments and generations; at the end the
//! simulators' histories are safe, consistency_check passes and nothing crashed.

use std::time::{Duration, Instant};

use cluster_tests::client::http_client;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::splits::{check_rolled_back, expect_settled, new_shards};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{Client, Cluster, ControllerOptions, RawResponse, Sims, StorageApi};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x5bf1;

/// The split driver's failpoints in the order it passes them, and whether a failure there
/// leaves the split standing (the commit happened before).
/// The third field: whether the pageserver split (step 5) happened before the failure.
const FAILPOINTS: &[(&str, bool, bool)] = &[
    ("split-after-validation", false, false),
    ("split-after-begin", false, false),
    ("split-after-pageserver-split", false, true),
    ("split-before-complete", false, true),
    ("split-after-complete", true, true),
    ("split-parent-detach", true, true),
];

/// A split request may take the controller's whole split timeout and more: the clients'
/// default 10 s is too short to see its answer.
const SPLIT_CALL_TIMEOUT: Duration = Duration::from_secs(90);

struct Row {
    case: String,
    failed_with: u16,
    outcome: &'static str,
    settled_after_failure: Duration,
    retry: Option<Duration>,
}

/// Configures failpoint `name` on every replica (failpoints are per replica).
async fn failpoint_everywhere(cluster: &Cluster, name: &str, action: &str) {
    for id in cluster.ids() {
        StorageApi::new(cluster.client(id))
            .set_failpoint(name, action)
            .await
            .unwrap_or_else(|e| panic!("set {name}={action} on replica {id}: {e}"));
    }
}

/// Hits of failpoint `name`, summed over the replicas.
async fn failpoint_hits(cluster: &Cluster, name: &str) -> u64 {
    let mut total = 0;
    for id in cluster.ids() {
        total += StorageApi::new(cluster.client(id))
            .failpoint_hits(name)
            .await
            .unwrap_or_else(|e| panic!("hits of {name} on replica {id}: {e}"));
    }
    total
}

async fn set_split_behaviour(sims: &Sims, node: u64, behaviour: Value) {
    let (status, body) = sims
        .request(
            node,
            Method::PUT,
            "/debug/sim/split_behaviour",
            Some(&behaviour),
        )
        .await
        .expect("split behaviour answered");
    assert_eq!(status, 200, "split behaviour on sim {node}: {body}");
}

/// Shards of `tenant` that some pageserver ever created by an accepted split.
fn split_events(sims: &Sims, tenant: &str) -> Vec<String> {
    sims.all_history()
        .expect("histories")
        .iter()
        .filter(|e| e.kind == "split" && e.accepted)
        .filter_map(|e| e.tenant_shard_id.clone())
        .filter(|id| id.starts_with(tenant))
        .collect()
}

async fn split(api: &StorageApi, tenant: &str, count: u8) -> (RawResponse, Duration) {
    let started = Instant::now();
    let r = api
        .split_tenant(tenant, count, None)
        .await
        .unwrap_or_else(|e| panic!("split {tenant} to {count} answered: {e}"));
    (r, started.elapsed())
}

/// A split that must fail: any error status, with a `msg`.
fn expect_failed(r: &RawResponse, what: &str) -> String {
    assert!(
        r.status >= 400,
        "{what}: the split was expected to fail: {r:?}"
    );
    r.msg()
        .unwrap_or_else(|| panic!("{what}: error without a msg: {r:?}"))
}

/// The retried split: 200 with the children.
async fn retry_split(api: &StorageApi, tenant: &str, count: u8) -> Duration {
    let (r, took) = split(api, tenant, count).await;
    assert_eq!(r.status, 200, "retried split of {tenant}: {r:?}");
    assert_eq!(new_shards(&r.body), shard_ids(tenant, count));
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_failpoints() {
    let split_timeout = Duration::from_millis(
        ControllerOptions::test_defaults()
            .split_request_timeout_ms
            .expect("set in the test defaults"),
    );
    let fx = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(fx.cluster.client(fx.follower));
    // Splits go through a follower too, with a client that waits long enough for the answer.
    let split_api = StorageApi::new(Client::new(
        http_client(SPLIT_CALL_TIMEOUT),
        fx.cluster.url(fx.follower),
    ));

    let bystanders = vec![tenant_id(TAG, 1)];
    api.create_tenant(&tenant_create_body(&bystanders[0], 4, 1))
        .await
        .expect("create the bystander");
    let before = wait_settled(&api, &fx.sims, &bystanders, SETTLE_DEADLINE)
        .await
        .expect("bystander settled");

    let mut rows = Vec::new();
    for (i, (failpoint, rolls_forward, pageserver_split)) in FAILPOINTS.iter().enumerate() {
        let tenant = tenant_id(TAG, 10 + i as u32);
        let parents = shard_ids(&tenant, 2);
        let children = shard_ids(&tenant, 4);
        api.create_tenant(&tenant_create_body(&tenant, 2, 1))
            .await
            .expect("create");
        let tenant_before = wait_settled(
            &api,
            &fx.sims,
            std::slice::from_ref(&tenant),
            SETTLE_DEADLINE,
        )
        .await
        .expect("tenant settled before its split");

        failpoint_everywhere(&fx.cluster, failpoint, "return").await;
        let hits = failpoint_hits(&fx.cluster, failpoint).await;
        let (r, _) = split(&split_api, &tenant, 4).await;
        let msg = expect_failed(&r, failpoint);
        assert!(
            (500..600).contains(&r.status),
            "{failpoint}: expected a 5xx: {r:?}"
        );
        assert!(
            msg.contains(failpoint),
            "{failpoint}: msg names the failpoint: {msg:?}"
        );
        assert!(
            failpoint_hits(&fx.cluster, failpoint).await > hits,
            "{failpoint} was reached"
        );
        failpoint_everywhere(&fx.cluster, failpoint, "off").await;
        // Children were created on a pageserver exactly when the failure came after step 5.
        let created = split_events(&fx.sims, &tenant);
        assert_eq!(
            !created.is_empty(),
            *pageserver_split,
            "{failpoint}: children created on the pageservers: {created:?}"
        );

        let expected = if *rolls_forward { &children } else { &parents };
        let (settled, settled_after_failure) = expect_settled(
            &api,
            &fx.sims,
            &tenant,
            expected,
            &bystanders,
            &[&before],
            &format!("{failpoint}: settles after the failed split"),
        )
        .await;
        if !*rolls_forward {
            let removed = check_rolled_back(&fx.sims, &tenant, &tenant_before, &settled, failpoint);
            assert_eq!(!removed.is_empty(), *pageserver_split, "{failpoint}");
        }

        let retry = retry_split(&split_api, &tenant, 4).await;
        expect_settled(
            &api,
            &fx.sims,
            &tenant,
            &children,
            &bystanders,
            &[&before],
            &format!("{failpoint}: settles after the retried split"),
        )
        .await;
        api.consistency_check()
            .await
            .unwrap_or_else(|e| panic!("{failpoint}: consistency: {e}"));
        rows.push(Row {
            case: failpoint.to_string(),
            failed_with: r.status,
            outcome: if *rolls_forward {
                "rolled forward"
            } else {
                "rolled back"
            },
            settled_after_failure,
            retry: Some(retry),
        });
    }

    // The pageservers fail the split: first with an error answer, then too slowly.
    let tenant = tenant_id(TAG, 50);
    let parents = shard_ids(&tenant, 2);
    let children = shard_ids(&tenant, 4);
    api.create_tenant(&tenant_create_body(&tenant, 2, 1))
        .await
        .expect("create");
    let tenant_before = wait_settled(
        &api,
        &fx.sims,
        std::slice::from_ref(&tenant),
        SETTLE_DEADLINE,
    )
    .await
    .expect("tenant settled before its split");
    let described = api.describe_tenant(&tenant).await.expect("describe");
    let mut parent_nodes: Vec<u64> = described
        .shards
        .iter()
        .map(|s| s.node_attached.expect("attached"))
        .collect();
    parent_nodes.sort_unstable();
    parent_nodes.dedup();

    for node in &parent_nodes {
        set_split_behaviour(&fx.sims, *node, json!({"fail": true})).await;
    }
    let (r, _) = split(&split_api, &tenant, 4).await;
    let msg = expect_failed(&r, "pageserver fails the split");
    assert_eq!(r.status, 409, "pageserver fails the split: {r:?}");
    assert!(msg.contains("Failed to split"), "{msg:?}");
    let (_, fail_settle) = expect_settled(
        &api,
        &fx.sims,
        &tenant,
        &parents,
        &bystanders,
        &[&before, &tenant_before],
        "sim fail: settles rolled back",
    )
    .await;

    assert_eq!(
        split_events(&fx.sims, &tenant),
        Vec::<String>::new(),
        "a failing pageserver creates no children"
    );
    let stall_ms = split_timeout.as_millis() as u64 + 5_000;
    for node in &parent_nodes {
        set_split_behaviour(
            &fx.sims,
            *node,
            json!({"fail": false, "stall_ms": stall_ms}),
        )
        .await;
    }
    let (r, took) = split(&split_api, &tenant, 4).await;
    let msg = expect_failed(&r, "pageserver answers the split too late");
    assert_eq!(r.status, 409, "pageserver answers too late: {r:?}");
    assert!(msg.contains("Failed to split"), "{msg:?}");
    assert!(
        took >= split_timeout - Duration::from_millis(500),
        "the split failed after {took:?}, before the split timeout {split_timeout:?}"
    );
    // The pageserver did split before it stalled.
    let created = split_events(&fx.sims, &tenant);
    assert!(
        !created.is_empty() && created.iter().all(|c| children.contains(c)),
        "the stalled pageserver created children before answering: {created:?}"
    );
    let (settled_after_stall, stall_settle) = expect_settled(
        &api,
        &fx.sims,
        &tenant,
        &parents,
        &bystanders,
        &[&before],
        "sim stall: settles rolled back, children detached",
    )
    .await;
    let what = "sim stall: settles rolled back";
    let removed = check_rolled_back(
        &fx.sims,
        &tenant,
        &tenant_before,
        &settled_after_stall,
        what,
    );
    assert!(!removed.is_empty(), "{what}: the stalled pageservers split");

    for node in &parent_nodes {
        set_split_behaviour(&fx.sims, *node, json!({"fail": false, "stall_ms": 0})).await;
    }
    let retry = retry_split(&split_api, &tenant, 4).await;
    expect_settled(
        &api,
        &fx.sims,
        &tenant,
        &children,
        &bystanders,
        &[&before],
        "sim faults: settles after the retried split",
    )
    .await;
    rows.push(Row {
        case: format!("sim fail (nodes {parent_nodes:?})"),
        failed_with: 409,
        outcome: "rolled back",
        settled_after_failure: fail_settle,
        retry: None,
    });
    rows.push(Row {
        case: format!("sim stall {stall_ms} ms (answered in {took:.1?})"),
        failed_with: 409,
        outcome: "rolled back",
        settled_after_failure: stall_settle,
        retry: Some(retry),
    });

    let after = wait_settled(&api, &fx.sims, &bystanders, SETTLE_DEADLINE)
        .await
        .expect("bystander settled at the end");
    assert_eq!(after, before, "the bystander did not move");
    history::ensure_safe(&fx.sims.all_history().expect("histories")).expect("history safe");
    api.consistency_check().await.expect("consistency");
    fx.cluster.check_no_crashes().expect("no replica crashed");
    fx.sims.check_no_crashes().expect("no simulator crashed");

    eprintln!(
        "{:<48} {:>6} {:<15} {:>12} {:>12}",
        "failure", "status", "outcome", "settled in", "retry took"
    );
    for row in &rows {
        eprintln!(
            "{:<48} {:>6} {:<15} {:>12} {:>12}",
            row.case,
            row.failed_with,
            row.outcome,
            format!("{:.1?}", row.settled_after_failure),
            row.retry.map_or("-".to_string(), |d| format!("{d:.1?}"))
        );
    }
}
