//! A stalled, not dead, pageserver (SIGSTOP): heartbeats time out, it goes Offline and its
//! attachments fail over to their secondaries in newer generations while it still believes it
//! holds them. Requests queued while it was stopped run first when it continues: a timeline
//! deletion on a shard it lost asks the controller to validate its superseded generation, and
//! the controller must say `valid: false` (so the data is retained); then the controller turns
//! its stale attachments into secondaries. A deletion on a current attachment validates `true`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history::{self, CheckOptions};
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{ClusterOptions, ControllerOptions, StorageApi};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TAG: u32 = 0x5109;
const TIMELINE: &str = "0123456789abcdef0123456789abcdef";

/// Writes a whole HTTP request to `addr` and returns the connection without reading: the
/// kernel accepts it even while the server is stopped, so the request is queued before
/// anything sent after this returns.
async fn queue_request(addr: SocketAddr, method: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    stream
}

/// Reads the answer of a [`queue_request`] connection: its status code.
async fn status_of(mut stream: TcpStream) -> u16 {
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("answered in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

fn retained_for(state: &Value, shard: &str) -> Vec<Value> {
    state["retained"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["tenant_shard_id"] == shard)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_node() {
    let ControllerFixture {
        sims,
        cluster,
        leader: _,
        follower,
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        // It checks that nothing moves once the node is back; the optimiser would rebalance
        // onto it (tests/optimiser.rs covers that).
        ControllerOptions::without_optimiser(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenant = tenant_id(TAG, 1);
    api.create_tenant(&tenant_create_body(&tenant, 4, 1))
        .await
        .expect("create");
    let tenants = [tenant.clone()];
    let before = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settles");
    let victim = *sims
        .ids()
        .iter()
        .max_by_key(|n| before.values().filter(|a| a.node == **n).count())
        .expect("sims");
    let lost: BTreeMap<String, u32> = before
        .iter()
        .filter(|(_, a)| a.node == victim)
        .map(|(s, a)| (s.clone(), a.generation))
        .collect();
    assert!(!lost.is_empty());
    // Data to delete later: a timeline on every attachment the victim will lose.
    for shard in lost.keys() {
        let (status, body) = sims
            .request(
                victim,
                Method::POST,
                &format!("/v1/tenant/{shard}/timeline"),
                Some(&json!({"new_timeline_id": TIMELINE})),
            )
            .await
            .expect("timeline create");
        assert_eq!(status, 201, "{shard}: {body}");
    }

    // Stall it: the controller fails its attachments over.
    sims.pause(victim).expect("SIGSTOP");
    let after = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("failover away from the stalled node");
    for (shard, old_generation) in &lost {
        assert_ne!(after[shard].node, victim);
        assert!(after[shard].generation > *old_generation, "{shard}");
    }
    let availability = api
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .find(|n| n.id == victim)
        .map(|n| n.availability);
    assert_eq!(availability.as_deref(), Some("Offline"));

    // Queue the deletions while it is stopped, then let it continue.
    let retained_before = {
        // The simulator cannot answer while stopped, so read its snapshot from disk. Newer
        // changes may sit in its journal, but none retains data: only the deletions below do.
        let text = std::fs::read_to_string(sims.data_dir(victim).join("locations.json"))
            .expect("locations.json");
        serde_json::from_str::<Value>(&text).expect("state JSON")
    };
    let mut queued = Vec::new();
    for shard in lost.keys() {
        let path = format!("/v1/tenant/{shard}/timeline/{TIMELINE}");
        queued.push(queue_request(sims.addr(victim), "DELETE", &path).await);
    }
    sims.resume(victim).expect("SIGCONT");
    for (shard, stream) in lost.keys().zip(queued) {
        assert_eq!(
            status_of(stream).await,
            202,
            "{shard}: the deletion completes"
        );
    }

    // The controller refused to validate the superseded generations: the data is retained.
    let victim_history = sims.history(victim).expect("victim history");
    for (shard, old_generation) in &lost {
        let answers: Vec<(Option<u32>, Option<bool>)> = victim_history
            .iter()
            .filter(|e| e.kind == "validate" && e.tenant_shard_id.as_deref() == Some(shard))
            .map(|e| (e.generation, e.valid))
            .collect();
        assert_eq!(
            answers,
            vec![(Some(*old_generation), Some(false))],
            "{shard}: the stale deletion was validated once and refused"
        );
    }
    let state = sims.state(victim).await.expect("victim state");
    for (shard, old_generation) in &lost {
        assert!(retained_for(&retained_before, shard).is_empty());
        let retained = retained_for(&state, shard);
        assert_eq!(retained.len(), 1, "{shard}: {state}");
        assert_eq!(retained[0]["generation"], json!(old_generation));
    }

    // Back in service: the stale attachments become secondaries, nothing else moves.
    sims.wait_active(&api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("the stalled node is Active again");
    let settled = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settles with the node back");
    assert_eq!(settled, after);
    let held = sims.locations(victim).await.expect("victim locations");
    for shard in lost.keys() {
        assert_eq!(
            held.get(shard).map(|l| l.mode.as_str()),
            Some("Secondary"),
            "{shard}"
        );
    }

    // A deletion on a current attachment validates.
    let (shard, current) = settled.iter().next().expect("a shard");
    let timelines = format!("/v1/tenant/{shard}/timeline");
    let (status, body) = sims
        .request(
            current.node,
            Method::POST,
            &timelines,
            Some(&json!({"new_timeline_id": TIMELINE})),
        )
        .await
        .expect("timeline create");
    assert_eq!(status, 201, "{body}");
    let (status, body) = sims
        .request(
            current.node,
            Method::DELETE,
            &format!("{timelines}/{TIMELINE}"),
            None,
        )
        .await
        .expect("timeline delete");
    assert_eq!(status, 202, "{body}");
    let last = sims
        .history(current.node)
        .expect("history")
        .into_iter()
        .rfind(|e| e.kind == "validate")
        .expect("a validate answer");
    assert_eq!(
        (last.tenant_shard_id.as_deref(), last.generation, last.valid),
        (Some(shard.as_str()), Some(current.generation), Some(true))
    );
    let state = sims.state(current.node).await.expect("state");
    assert!(retained_for(&state, shard).is_empty(), "{state}");

    // Every validate in this test was requested after the generations it could be stale
    // against were accepted, so the history check needs no clock slack here.
    let events = sims.all_history().expect("histories");
    let strict = CheckOptions {
        validate_slack: Duration::ZERO,
    };
    assert_eq!(history::check_with(&events, strict), vec![]);
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
