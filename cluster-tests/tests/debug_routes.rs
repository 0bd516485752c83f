//! Upstream's debug routes end to end, through a follower, with the background pass out of the
//! way (one an hour) so that only the calls of the test change anything:
//!
//! - `GET /debug/v1/tenant`, `GET /debug/v1/tenant/:id/locate` and `GET /debug/v1/scheduler`
//!   have the documented shapes, field by field, and agree with describe, the node list and what
//!   the simulators hold; locate answers 400 for a tenant that is not attached, 404 unknown;
//! - a tenant drop is one log entry, makes the tenant 404 everywhere, and no simulator hears of
//!   it: its history has no event for the tenant and the simulators keep its locations, even
//!   after reconcile_all;
//! - a node drop is one log entry after which no shard names the node (intent, generation
//!   holder, observed), nothing is placed instead, and the node is unregistered;
//! - reconcile_all after the drop answers N > 0 and has waited: right after its answer every
//!   shard is where its (re-placed) intent says on the simulators; called until it answers 0,
//!   the cluster is quiescent and consistent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster_tests::client::http_client;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, check_tenant, wait_settled};
use cluster_tests::sims::SimLocation;
use cluster_tests::storage_api::{
    TenantDescribeResponse, expect_keys, fields, shard_ids, tenant_create_body, tenant_id,
};
use cluster_tests::{Client, ClusterOptions, ControllerOptions, StorageApi};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0xdeb6;
/// reconcile_all waits up to 30 s; the client must outwait it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
/// "Call until 0" is bounded: each call waits for what it started.
const MAX_RECONCILE_ALL_CALLS: usize = 10;

async fn call(api: &StorageApi, method: Method, path: &str) -> (u16, Value) {
    let raw = api
        .send(method.clone(), path, None)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let body = serde_json::from_str(&raw.body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", raw.body));
    (raw.status, body)
}

async fn get_ok(api: &StorageApi, path: &str) -> Value {
    let (status, body) = call(api, Method::GET, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn expect_error(status: u16, body: &Value, want: u16, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    expect_keys(body, fields::ERROR).unwrap_or_else(|e| panic!("{what}: {e}"));
}

async fn last_applied(cluster: &cluster_tests::Cluster, leader: u64) -> u64 {
    cluster
        .status_of(leader)
        .await
        .expect("leader status")
        .last_applied
        .expect("an applied index")
}

/// Calls reconcile_all until it answers 0; returns every answer.
async fn reconcile_until_idle(api: &StorageApi) -> Vec<usize> {
    let mut answers = Vec::new();
    for _ in 0..MAX_RECONCILE_ALL_CALLS {
        let n = api.reconcile_all().await.expect("reconcile_all");
        answers.push(n);
        if n == 0 {
            return answers;
        }
    }
    panic!("reconcile_all never answered 0: {answers:?}");
}

/// Every event any simulator recorded for a shard of `tenant`.
fn events_of(sims: &cluster_tests::Sims, tenant: &str) -> Vec<history::Event> {
    sims.all_history()
        .expect("histories")
        .into_iter()
        .filter(|e| {
            e.tenant_shard_id
                .as_deref()
                .is_some_and(|s| s.starts_with(tenant))
        })
        .collect()
}

/// What the simulators hold of `tenant`: shard -> node -> location.
async fn held_of(
    sims: &cluster_tests::Sims,
    tenant: &str,
) -> BTreeMap<String, BTreeMap<u64, SimLocation>> {
    sims.view()
        .await
        .expect("sim view")
        .into_iter()
        .filter(|(s, _)| s.starts_with(tenant))
        .collect()
}

/// Checks one dump element field by field against describe (`shard` of `described`) and what
/// the simulators hold (`held`: node -> location).
fn check_dump_entry(
    entry: &Value,
    described: &TenantDescribeResponse,
    index: usize,
    held: &BTreeMap<u64, SimLocation>,
) {
    let shard = &described.shards[index];
    let id = &shard.tenant_shard_id;
    expect_keys(entry, fields::TENANT_SHARD_DUMP).expect("TenantShard dump shape");
    assert_eq!(entry["tenant_shard_id"], json!(id));
    expect_keys(&entry["shard"], fields::SHARD_IDENTITY).expect("shard identity shape");
    // The shard id's suffix is number and count in hex; an unsharded id has none (count 0).
    let wire_count = id.split_once('-').map_or(0, |(_, suffix)| {
        u8::from_str_radix(&suffix[2..], 16).expect("hex count")
    });
    assert_eq!(
        entry["shard"],
        json!({"number": index, "count": wire_count, "stripe_size": described.stripe_size, "layout": 1}),
        "{id}"
    );
    assert_eq!(entry["policy"], described.policy, "{id}");
    assert_eq!(entry["config"], described.config, "{id}");
    expect_keys(&entry["intent"], fields::INTENT_STATE).expect("intent shape");
    assert_eq!(
        entry["intent"],
        json!({
            "attached": shard.node_attached,
            "secondary": shard.node_secondary,
            "preferred_az_id": shard.preferred_az_id,
        }),
        "{id}"
    );
    assert_eq!(entry["splitting"], json!("Idle"), "{id}");
    assert_eq!(
        entry["scheduling_policy"],
        json!(shard.scheduling_policy),
        "{id}"
    );
    assert_eq!(entry["pending_compute_notification"], json!(false), "{id}");
    assert_eq!(entry["last_error"], json!(""), "{id}");
    expect_keys(&entry["observed"], fields::OBSERVED_STATE).expect("observed shape");
    let locations = entry["observed"]["locations"]
        .as_object()
        .unwrap_or_else(|| panic!("{id}: observed.locations is an object"));
    let observed_nodes: BTreeSet<u64> = locations
        .keys()
        .map(|k| k.parse().expect("node ids as keys"))
        .collect();
    assert_eq!(
        observed_nodes,
        held.keys().copied().collect::<BTreeSet<u64>>(),
        "{id}: observed on exactly the nodes that hold it"
    );
    for (node, loc) in held {
        let observed = &locations[&node.to_string()];
        expect_keys(observed, fields::OBSERVED_STATE_LOCATION).expect("observed location");
        let conf = &observed["conf"];
        assert_eq!(conf["mode"], json!(loc.mode), "{id} on {node}");
        assert_eq!(conf["generation"], json!(loc.generation), "{id} on {node}");
        assert_eq!(
            conf["shard_count"],
            json!(loc.shard_count),
            "{id} on {node}"
        );
    }
    match shard.node_attached {
        Some(node) => {
            assert_eq!(entry["generation_pageserver"], json!(node), "{id}");
            assert_eq!(
                entry["generation"],
                json!(held[&node].generation),
                "{id}: the generation the attached simulator holds"
            );
        }
        None => assert_eq!(entry["generation_pageserver"], Value::Null, "{id}"),
    }
}

/// Three simulators (two AZs), the background pass out of the way (one an hour) and the
/// optimiser off: the tests check exact intents after drops, and reconcile_all would also run
/// optimiser passes.
async fn start() -> ControllerFixture {
    let controller = ControllerOptions {
        background_reconcile_ms: Some(3_600_000),
        ..ControllerOptions::without_optimiser()
    };
    ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        controller,
    )
    .await
    .expect("a formed cluster with Active simulators")
}

fn api_of(cluster: &cluster_tests::Cluster, replica: u64) -> StorageApi {
    StorageApi::new(Client::new(
        http_client(CLIENT_TIMEOUT),
        cluster.url(replica),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_routes() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = start().await;
    let api = api_of(&cluster, follower);

    let (kept, dropped, detached) = (tenant_id(TAG, 1), tenant_id(TAG, 2), tenant_id(TAG, 3));
    api.create_tenant(&tenant_create_body(&kept, 4, 1))
        .await
        .expect("create the kept tenant");
    api.create_tenant(&tenant_create_body(&dropped, 2, 1))
        .await
        .expect("create the tenant to drop");
    let mut detached_body = tenant_create_body(&detached, 0, 0);
    detached_body["placement_policy"] = json!("Detached");
    api.create_tenant(&detached_body)
        .await
        .expect("create a detached tenant");
    let attached_tenants = [kept.clone(), dropped.clone()];
    wait_settled(&api, &sims, &attached_tenants, SETTLE_DEADLINE)
        .await
        .expect("the tenants settle");
    assert_eq!(reconcile_until_idle(&api).await.last(), Some(&0));

    // GET /debug/v1/tenant: every shard, in shard order, field by field.
    let dump = get_ok(&api, "/debug/v1/tenant").await;
    let entries = dump.as_array().expect("the dump is an array");
    let mut expected_ids = Vec::new();
    for (t, count) in [(&kept, 4), (&dropped, 2), (&detached, 0)] {
        expected_ids.extend(shard_ids(t, count));
    }
    expected_ids.sort();
    let dumped_ids: Vec<&str> = entries
        .iter()
        .map(|e| e["tenant_shard_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(dumped_ids, expected_ids, "every shard, in shard order");
    let view = sims.view().await.expect("sim view");
    let empty = BTreeMap::new();
    for tenant in [&kept, &dropped, &detached] {
        let described = api.describe_tenant(tenant).await.expect("describe");
        for (index, shard) in described.shards.iter().enumerate() {
            let entry = entries
                .iter()
                .find(|e| e["tenant_shard_id"] == json!(shard.tenant_shard_id))
                .expect("in the dump");
            let held = view.get(&shard.tenant_shard_id).unwrap_or(&empty);
            check_dump_entry(entry, &described, index, held);
        }
    }

    // GET /debug/v1/tenant/:id/locate: upstream's TenantLocateResponse.
    let nodes = api.nodes().await.expect("node list");
    let located = get_ok(&api, &format!("/debug/v1/tenant/{kept}/locate")).await;
    expect_keys(&located, fields::TENANT_LOCATE_RESPONSE).expect("locate shape");
    expect_keys(&located["shard_params"], fields::SHARD_PARAMETERS).expect("shard_params");
    assert_eq!(
        located["shard_params"],
        json!({"count": 4, "stripe_size": 2048})
    );
    let described = api.describe_tenant(&kept).await.expect("describe");
    let shards = located["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 4);
    for (shard, want) in shards.iter().zip(&described.shards) {
        expect_keys(shard, fields::TENANT_LOCATE_RESPONSE_SHARD).expect("located shard shape");
        let node_id = want.node_attached.expect("attached");
        let node = nodes.iter().find(|n| n.id == node_id).expect("listed node");
        assert_eq!(
            shard,
            &json!({
                "shard_id": want.tenant_shard_id,
                "node_id": node_id,
                "listen_pg_addr": node.listen_pg_addr,
                "listen_pg_port": node.listen_pg_port,
                "listen_grpc_addr": node.listen_grpc_addr,
                "listen_grpc_port": node.listen_grpc_port,
                "listen_http_addr": node.listen_http_addr,
                "listen_http_port": node.listen_http_port,
                "listen_https_port": node.listen_https_port,
            })
        );
    }
    let (status, body) = call(
        &api,
        Method::GET,
        &format!("/debug/v1/tenant/{detached}/locate"),
    )
    .await;
    expect_error(status, &body, 400, "locate a detached tenant");
    assert!(
        body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("not attached")),
        "{body}"
    );
    let unknown = tenant_id(TAG, 99);
    let (status, body) = call(
        &api,
        Method::GET,
        &format!("/debug/v1/tenant/{unknown}/locate"),
    )
    .await;
    expect_error(status, &body, 404, "locate an unknown tenant");
    let (status, body) = call(&api, Method::GET, "/debug/v1/tenant/nonsense/locate").await;
    expect_error(status, &body, 400, "locate a malformed id");

    // GET /debug/v1/scheduler: per node, counted from the intents.
    let scheduler = get_ok(&api, "/debug/v1/scheduler").await;
    expect_keys(&scheduler, fields::SCHEDULER_DUMP).expect("scheduler shape");
    let mut want: BTreeMap<u64, [usize; 4]> =
        sims.ids().into_iter().map(|id| (id, [0; 4])).collect();
    for tenant in [&kept, &dropped] {
        for s in api.describe_tenant(tenant).await.expect("describe").shards {
            let home = |node: u64| s.preferred_az_id.as_deref() == Some(sims.az(node));
            for (node, attached) in s
                .node_attached
                .iter()
                .map(|n| (*n, true))
                .chain(s.node_secondary.iter().map(|n| (*n, false)))
            {
                let w = want.get_mut(&node).expect("a known node");
                w[0] += 1;
                w[if attached { 1 } else { 2 }] += 1;
                w[3] += usize::from(home(node));
            }
        }
    }
    let by_node = scheduler["nodes"].as_object().expect("nodes object");
    assert_eq!(by_node.len(), 3, "{scheduler}");
    for (id, [total, attached, secondary, home]) in &want {
        let n = &by_node[&id.to_string()];
        expect_keys(n, fields::SCHEDULER_NODE).expect("scheduler node shape");
        assert_eq!(n["shard_count"], json!(total), "node {id}: {n}");
        assert_eq!(n["attached_shard_count"], json!(attached), "node {id}: {n}");
        assert_eq!(
            n["secondary_shard_count"],
            json!(secondary),
            "node {id}: {n}"
        );
        assert_eq!(n["home_shard_count"], json!(home), "node {id}: {n}");
        assert_eq!(n["az"], json!(sims.az(*id)), "node {id}");
        assert_eq!(n["available"], json!(true), "node {id}");
        let yes = &n["may_schedule"]["Yes"];
        expect_keys(yes, &["utilization_score"]).expect("may_schedule Yes");
        assert!(yes["utilization_score"].is_u64(), "{n}");
    }

    // Tenant drop: one log entry, 404 afterwards, no simulator hears of it.
    let dropped_events = events_of(&sims, &dropped);
    let dropped_held = held_of(&sims, &dropped).await;
    assert_eq!(dropped_held.len(), 2, "both shards are on the simulators");
    let before = last_applied(&cluster, leader).await;
    let (status, body) = call(
        &api,
        Method::POST,
        &format!("/debug/v1/tenant/{dropped}/drop"),
    )
    .await;
    assert_eq!((status, &body), (200, &Value::Null), "tenant drop");
    assert_eq!(
        last_applied(&cluster, leader).await,
        before + 1,
        "the drop is one log entry"
    );
    let (status, body) = call(&api, Method::GET, &format!("/control/v1/tenant/{dropped}")).await;
    expect_error(status, &body, 404, "describe a dropped tenant");
    let (status, body) = call(
        &api,
        Method::GET,
        &format!("/debug/v1/tenant/{dropped}/locate"),
    )
    .await;
    expect_error(status, &body, 404, "locate a dropped tenant");
    let (status, body) = call(
        &api,
        Method::POST,
        &format!("/debug/v1/tenant/{dropped}/drop"),
    )
    .await;
    expect_error(status, &body, 404, "drop it again");
    let dump = get_ok(&api, "/debug/v1/tenant").await;
    assert!(
        !dump
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e["tenant_shard_id"]
                .as_str()
                .is_some_and(|s| s.starts_with(&dropped))),
        "{dump}"
    );

    // Node drop: one log entry; afterwards no shard names the node anywhere.
    let victim = described.shards[0].node_attached.expect("attached");
    let before_dump = get_ok(&api, "/debug/v1/tenant").await;
    let lost_attachment: BTreeSet<String> = before_dump
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["intent"]["attached"] == json!(victim))
        .map(|e| e["tenant_shard_id"].as_str().expect("id").to_owned())
        .collect();
    assert!(!lost_attachment.is_empty());
    let before = last_applied(&cluster, leader).await;
    let (status, body) = call(&api, Method::POST, &format!("/debug/v1/node/{victim}/drop")).await;
    assert_eq!((status, &body), (200, &Value::Null), "node drop");
    assert_eq!(
        last_applied(&cluster, leader).await,
        before + 1,
        "the drop is one log entry"
    );
    let dump = get_ok(&api, "/debug/v1/tenant").await;
    for e in dump.as_array().expect("array") {
        let id = e["tenant_shard_id"].as_str().expect("id");
        assert_ne!(e["intent"]["attached"], json!(victim), "{e}");
        assert!(
            !e["intent"]["secondary"]
                .as_array()
                .expect("secondaries")
                .contains(&json!(victim)),
            "{e}"
        );
        assert_ne!(e["generation_pageserver"], json!(victim), "{e}");
        assert!(
            e["observed"]["locations"].get(victim.to_string()).is_none(),
            "{e}"
        );
        if lost_attachment.contains(id) {
            // Nothing placed instead: the drop does not reschedule.
            assert_eq!(e["intent"]["attached"], Value::Null, "{e}");
        }
    }
    let (status, body) = call(&api, Method::GET, &format!("/control/v1/node/{victim}")).await;
    expect_error(status, &body, 404, "describe a dropped node");
    assert!(
        !api.nodes()
            .await
            .expect("nodes")
            .iter()
            .any(|n| n.id == victim),
        "no longer listed"
    );
    let scheduler = get_ok(&api, "/debug/v1/scheduler").await;
    assert!(
        scheduler["nodes"].get(victim.to_string()).is_none(),
        "{scheduler}"
    );
    let (status, body) = call(&api, Method::POST, &format!("/debug/v1/node/{victim}/drop")).await;
    expect_error(status, &body, 404, "drop the node again");

    // reconcile_all places what the drop left and waits for it: right after its answer, the
    // simulators (the dropped one aside) hold what every intent says.
    let live: Vec<u64> = sims.ids().into_iter().filter(|n| *n != victim).collect();
    let first = api.reconcile_all().await.expect("reconcile_all");
    assert!(
        first > 0,
        "reconcile_all after the node drop answered {first}"
    );
    let check_now = async || {
        let mut view = sims.view().await.expect("sim view");
        for held in view.values_mut() {
            held.remove(&victim);
        }
        let described = api.describe_tenant(&kept).await.expect("describe");
        check_tenant(&described, &view, &live).expect("reconciled when reconcile_all answered");
        for shard in &described.shards {
            assert!(
                shard.node_attached.is_some_and(|n| n != victim),
                "{shard:?}"
            );
        }
    };
    check_now().await;
    let answers = reconcile_until_idle(&api).await;
    eprintln!("reconcile_all answers: {first} then {answers:?}");
    check_now().await;
    api.consistency_check().await.expect("consistent");

    // The dropped tenant was never detached nor otherwise touched on any simulator.
    assert_eq!(
        events_of(&sims, &dropped),
        dropped_events,
        "no call for the dropped tenant"
    );
    assert_eq!(
        held_of(&sims, &dropped).await,
        dropped_held,
        "its locations stay"
    );

    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}

/// A node dropped while a heartbeat round has polled it but not yet taken the answers (the
/// round paused at `heartbeat-after-poll`): the answer does not bring the node back. Before the
/// fix the round re-inserted it, activated it, recorded its locations as observed and left
/// reconcile_all answering the same non-zero count forever (CI, stop 18).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_drop_racing_a_heartbeat_round() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower: _,
    } = start().await;
    let api = api_of(&cluster, leader);
    let kept = tenant_id(TAG, 11);
    api.create_tenant(&tenant_create_body(&kept, 4, 1))
        .await
        .expect("create");
    wait_settled(&api, &sims, std::slice::from_ref(&kept), SETTLE_DEADLINE)
        .await
        .expect("settled");
    assert_eq!(reconcile_until_idle(&api).await.last(), Some(&0));
    let described = api.describe_tenant(&kept).await.expect("describe");
    let victim = described.shards[0].node_attached.expect("attached");

    const FP: &str = "heartbeat-after-poll";
    let hits = api.failpoint_hits(FP).await.expect("hits");
    api.set_failpoint(FP, "pause").await.expect("pause");
    cluster_tests::wait::wait_until("a heartbeat round paused", SETTLE_DEADLINE, async || {
        let now = api.failpoint_hits(FP).await?;
        anyhow::ensure!(now > hits, "hits {now}");
        Ok(())
    })
    .await
    .expect("paused");
    let (status, body) = call(&api, Method::POST, &format!("/debug/v1/node/{victim}/drop")).await;
    assert_eq!((status, &body), (200, &Value::Null), "node drop");
    let victim_events = sims.history(victim).expect("history").len();
    let paused_at = api.failpoint_hits(FP).await.expect("hits");
    api.set_failpoint(FP, "off").await.expect("release");
    // Two more rounds: the paused one has taken its answers and a whole later one ran.
    cluster_tests::wait::wait_until("two more heartbeat rounds", SETTLE_DEADLINE, async || {
        let now = api.failpoint_hits(FP).await?;
        anyhow::ensure!(now >= paused_at + 2, "hits {now}");
        Ok(())
    })
    .await
    .expect("rounds ran");

    assert!(
        !api.nodes()
            .await
            .expect("nodes")
            .iter()
            .any(|n| n.id == victim),
        "the dropped node is not listed again"
    );
    let answers = reconcile_until_idle(&api).await;
    assert_eq!(answers.last(), Some(&0), "{answers:?}");
    let dump = get_ok(&api, "/debug/v1/tenant").await;
    for e in dump.as_array().expect("array") {
        assert!(
            e["observed"]["locations"].get(victim.to_string()).is_none(),
            "nothing observed on the dropped node: {e}"
        );
    }
    assert_eq!(
        sims.history(victim).expect("history").len(),
        victim_events,
        "the dropped node got no call after the drop"
    );
    api.consistency_check().await.expect("consistent");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
