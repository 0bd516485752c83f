//! Live migration with warm-up (issue 11, item 1), end to end on simulated pageservers that
//! download at a set rate and take a while to catch up after an attach:
//!
//! - `prewarmed_migration_in_order`: a shard with a timeline is migrated to a node that held
//!   nothing of it. The pageservers' histories show, in this order: the destination made a
//!   secondary, its warm-up downloads, the origin `AttachedStale`, the destination
//!   `AttachedMulti` in a higher generation, its catch-up (`wait_lsn`), the destination
//!   `AttachedSingle`, and only then the origin demoted. The shard is attached somewhere at
//!   every moment of the history; compute is notified once more, naming the destination; the
//!   timeline is on the destination; the generation checker passes.
//! - `migrate_refusals`: bad and refused requests change nothing (400 unknown node or bad
//!   body, 404 unknown shard, 412 origin mismatch, and 412 for a node outside the preferred AZ
//!   unless overridden); a migration to where the shard is already is a no-op; an immediate
//!   (`prewarm: false`) migration with `override_scheduler` cuts over at once, live, warming
//!   nothing up.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::put;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history::{self, Event};
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x3199;
const TL: &str = "11112222333344445555666677778888";

type Received = Arc<Mutex<Vec<Value>>>;

/// A control-plane hook on 127.0.0.1 that records every `notify-attach` body.
async fn start_hook() -> (String, Received, tokio::task::JoinHandle<()>) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/notify-attach",
            put(|State(r): State<Received>, body: Bytes| async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    r.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                }
                "{}"
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("hook listener");
    let url = format!("http://{}", listener.local_addr().expect("hook address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received, task)
}

/// Every accepted event of `shard` from every simulator, by time.
fn shard_events(sims: &Sims, shard: &str) -> Vec<Event> {
    let mut events: Vec<Event> = sims
        .all_history()
        .expect("histories")
        .into_iter()
        .filter(|e| e.accepted && e.tenant_shard_id.as_deref() == Some(shard))
        .collect();
    events.sort_by(|a, b| a.ts.cmp(&b.ts));
    events
}

/// Index of the first event after `from` that `pred` accepts.
fn first_after(events: &[Event], from: usize, what: &str, pred: impl Fn(&Event) -> bool) -> usize {
    events
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| pred(e))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no {what} after event {from}: {events:#?}"))
}

fn location(e: &Event, node: u64, mode: &str) -> bool {
    e.kind == "location_config" && e.node_id == node && e.mode.as_deref() == Some(mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prewarmed_migration_in_order() {
    let (hook_url, received, hook) = start_hook().await;
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-a")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        ControllerOptions {
            compute_hook_url: Some(hook_url),
            ..ControllerOptions::test_defaults()
        },
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenant = tenant_id(TAG, 1);
    let shard = shard_ids(&tenant, 1)[0].clone();
    api.create_tenant(&tenant_create_body(&tenant, 1, 1))
        .await
        .expect("tenant created");
    let before = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("placed")[&shard];
    let (got, answer) = api
        .call(
            Method::POST,
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(&json!({"new_timeline_id": TL, "pg_version": 16})),
        )
        .await;
    assert_eq!(got, 201, "{answer}");
    let described = api.describe_tenant(&tenant).await.expect("described");
    let origin = before.node;
    let secondary = described.shards[0].node_secondary.clone();
    let destination = (1..=3)
        .find(|n| *n != origin && !secondary.contains(n))
        .expect("a node holding nothing of the shard");
    wait_until(
        "compute told of the first attachment",
        SETTLE_DEADLINE,
        async || {
            anyhow::ensure!(!received.lock().expect("hook").is_empty(), "not yet");
            Ok(())
        },
    )
    .await
    .expect("first notification");
    let notified_before = received.lock().expect("hook").len();

    // 10 layers at 150 ms: a warm-up of 1.5 s; a catch-up of 800 ms after the attach.
    sims.set_behaviour(&json!({"download_ms_per_layer": 150, "catch_up_ms": 800}))
        .await
        .expect("rates set");
    let (got, answer) = api
        .call(
            Method::PUT,
            &format!("/control/v1/tenant/{shard}/migrate"),
            Some(&json!({"node_id": destination, "origin_node_id": origin})),
        )
        .await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(answer, json!({}));

    wait_until(
        "the shard attached on the destination",
        SETTLE_DEADLINE,
        async || {
            let described = api.describe_tenant(&tenant).await?;
            anyhow::ensure!(
                described.shards[0].node_attached == Some(destination),
                "attached on {:?}",
                described.shards[0].node_attached
            );
            Ok(())
        },
    )
    .await
    .expect("cut over");
    let after = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("settled")[&shard];
    assert_eq!(after.node, destination);
    assert!(
        after.generation > before.generation,
        "{after:?} after {before:?}"
    );

    // The order, from the pageservers' own records.
    let events = shard_events(&sims, &shard);
    let start = first_after(&events, 0, "the destination's secondary", |e| {
        location(e, destination, "Secondary")
    });
    let warm = first_after(&events, start, "a warm-up download", |e| {
        e.kind == "secondary_download" && e.node_id == destination
    });
    let warmed = first_after(&events, warm, "a complete download", |e| {
        e.kind == "secondary_download"
            && e.node_id == destination
            && e.reason.as_deref() == Some("10 of 10 layers")
    });
    let stale = first_after(&events, warmed, "the origin stale", |e| {
        location(e, origin, "AttachedStale")
    });
    let multi = first_after(&events, stale, "the destination multi", |e| {
        location(e, destination, "AttachedMulti")
    });
    assert_eq!(
        events[multi].generation,
        Some(after.generation),
        "{:?}",
        events[multi]
    );
    let caught_up = first_after(&events, multi, "the catch-up", |e| {
        e.kind == "wait_lsn"
            && e.node_id == destination
            && e.reason.as_deref() == Some("1 timelines")
    });
    let single = first_after(&events, caught_up, "the destination single", |e| {
        location(e, destination, "AttachedSingle")
    });
    assert_eq!(events[single].generation, Some(after.generation));
    let demoted = first_after(&events, single, "the origin demoted", |e| {
        e.kind == "location_config"
            && e.node_id == origin
            && matches!(e.mode.as_deref(), Some("Secondary" | "Detached"))
    });
    assert!(demoted > single);
    // The catch-up really waited for the destination (800 ms after its attach).
    let at =
        |i: usize| chrono::DateTime::parse_from_rfc3339(&events[i].ts).expect("RFC 3339 timestamp");
    let waited = at(caught_up) - at(multi);
    assert!(
        waited >= chrono::Duration::milliseconds(700),
        "caught up {waited:?} after the attach"
    );
    // Attached somewhere at every moment: no event left the shard without an attached mode.
    let mut attached: std::collections::BTreeSet<u64> = Default::default();
    let mut ever = false;
    for e in events.iter().filter(|e| e.kind == "location_config") {
        if e.mode.as_deref().is_some_and(|m| m.starts_with("Attached")) {
            attached.insert(e.node_id);
            ever = true;
        } else {
            attached.remove(&e.node_id);
        }
        assert!(
            !ever || !attached.is_empty(),
            "no attached location after {e:?}"
        );
    }

    // The timeline moved with the shard; compute heard once more, of the destination.
    let (status, body) = sims
        .request(
            destination,
            Method::GET,
            &format!("/v1/tenant/{shard}/timeline/{TL}"),
            None,
        )
        .await
        .expect("sim answered");
    assert_eq!(status, 200, "{body}");
    wait_until(
        "compute told of the destination",
        SETTLE_DEADLINE,
        async || {
            anyhow::ensure!(
                received.lock().expect("hook").len() > notified_before,
                "not yet"
            );
            Ok(())
        },
    )
    .await
    .expect("notified");
    let sent = received.lock().expect("hook").clone();
    let new: Vec<&Value> = sent[notified_before..].iter().collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        new[0]["shards"],
        json!([{"node_id": destination, "shard_number": 0}])
    );

    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    api.consistency_check().await.expect("consistent");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
    hook.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refusals() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b"), (4, "az-b")],
        SETTLE_DEADLINE,
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenant = tenant_id(TAG, 2);
    let shard = shard_ids(&tenant, 1)[0].clone();
    api.create_tenant(&tenant_create_body(&tenant, 1, 0))
        .await
        .expect("tenant created");
    let before = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("placed")[&shard];
    let origin = before.node;
    let home = api
        .describe_tenant(&tenant)
        .await
        .expect("described")
        .shards[0]
        .preferred_az_id
        .clone()
        .expect("a preferred AZ");
    assert_eq!(sims.az(origin), home, "placed in its preferred AZ");
    let same_az = sims
        .ids()
        .into_iter()
        .find(|n| *n != origin && sims.az(*n) == home)
        .expect("a peer in the AZ");
    let other_az = sims
        .ids()
        .into_iter()
        .find(|n| sims.az(*n) != home)
        .expect("a node elsewhere");
    let path = format!("/control/v1/tenant/{shard}/migrate");
    let unknown = format!(
        "/control/v1/tenant/{}/migrate",
        shard_ids(&tenant_id(TAG, 99), 1)[0]
    );
    for (path, req, status) in [
        (&path, json!({"node_id": 42}), 400),
        (&path, json!({"node_id": "two"}), 400),
        (&path, json!({}), 400),
        (&unknown, json!({"node_id": same_az}), 404),
        (
            &path,
            json!({"node_id": same_az, "origin_node_id": same_az}),
            412,
        ),
        (&path, json!({"node_id": other_az}), 412),
        (
            &path,
            json!({"node_id": same_az, "migration_config": {"secondary_warmup_timeout": "soon"}}),
            400,
        ),
    ] {
        let (got, answer) = api.call(Method::PUT, path, Some(&req)).await;
        assert_eq!(got, status, "{req}: {answer}");
        assert!(answer["msg"].is_string(), "{answer}");
    }
    let unchanged = api.describe_tenant(&tenant).await.expect("described");
    assert_eq!(unchanged.shards[0].node_attached, Some(origin));
    assert!(
        unchanged.shards[0].node_secondary.is_empty(),
        "{unchanged:?}"
    );

    // Where it already is: nothing happens.
    let (got, answer) = api
        .call(Method::PUT, &path, Some(&json!({"node_id": origin})))
        .await;
    assert_eq!((got, &answer), (200, &json!({})), "{answer}");

    // Overridden, immediate: into the other AZ, cut over at once, live.
    let (got, answer) = api
        .call(
            Method::PUT,
            &path,
            Some(&json!({"node_id": other_az,
                     "migration_config": {"prewarm": false, "override_scheduler": true}})),
        )
        .await;
    assert_eq!(got, 200, "{answer}");
    let after = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("settled")[&shard];
    assert_eq!(after.node, other_az);
    assert!(after.generation > before.generation);
    let events = shard_events(&sims, &shard);
    assert!(
        !events.iter().any(|e| e.kind == "secondary_download"),
        "an immediate migration warms nothing up: {events:#?}"
    );
    let stale = first_after(&events, 0, "the origin stale", |e| {
        location(e, origin, "AttachedStale")
    });
    first_after(&events, stale, "the destination multi", |e| {
        location(e, other_az, "AttachedMulti")
    });
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
