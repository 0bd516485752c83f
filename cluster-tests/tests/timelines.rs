//! Timelines through the controller, end to end on simulated pageservers (issue 10, item 1-2):
//!
//! - `timeline_on_four_shards`: a 4-shard tenant with a secondary each. The create reaches all
//!   four shards' attached locations, shard zero first; a repeat is 201 with the same timeline;
//!   the wildcard GET lists it; describe shows it per shard; archival config and a GC block
//!   reach every shard; the delete removes it everywhere with shard zero last, and a GET of it
//!   then relays the pageserver's 404. Bad input is 400/404 and reaches no pageserver.
//! - `timeline_create_racing_a_migration`: the create is held (failpoint) after it read the
//!   attachments; shard zero's pageserver is configured Offline, so the shard fails over to its
//!   secondary in a new generation; released, the create ends with the timeline on the new
//!   attached location.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster_tests::StorageApi;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history::Event;
use cluster_tests::placement::{Attachment, SETTLE_DEADLINE, wait_settled};
use cluster_tests::sims::Sims;
use cluster_tests::storage_api::{expect_keys, fields, shard_ids, tenant_create_body, tenant_id};
use cluster_tests::wait::wait_until;
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x7173;
const TL: &str = "de200bd42b49cc1814412c7e592dd6e9";

/// Accepted timeline events of `kind` for `timeline`, from every simulator, by shard.
fn timeline_events(sims: &Sims, kind: &str, timeline: &str) -> Vec<Event> {
    let mut events: Vec<Event> = sims
        .all_history()
        .expect("histories")
        .into_iter()
        .filter(|e| e.kind == kind && e.accepted && e.timeline_id.as_deref() == Some(timeline))
        .collect();
    events.sort_by(|a, b| a.ts.cmp(&b.ts));
    events
}

fn shard_of(e: &Event) -> &str {
    e.tenant_shard_id.as_deref().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_on_four_shards() {
    let ControllerFixture {
        sims,
        cluster,
        follower,
        ..
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenant = tenant_id(TAG, 1);
    let shards = shard_ids(&tenant, 4);
    api.create_tenant(&tenant_create_body(&tenant, 4, 1))
        .await
        .expect("tenant created");
    let placed = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("placed");

    // Bad input is refused before any pageserver sees it.
    let create_path = format!("/v1/tenant/{tenant}/timeline");
    for (body, status) in [
        (json!({"new_timeline_id": "short"}), 400),
        (
            json!({"new_timeline_id": TL, "ancestor_timeline_id": "nope"}),
            400,
        ),
        (
            json!({"new_timeline_id": TL, "ancestor_start_lsn": "0/10"}),
            400,
        ),
        (json!({"new_timeline_id": TL, "pg_version": "sixteen"}), 400),
    ] {
        let (got, answer) = api.call(Method::POST, &create_path, Some(&body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["msg"].is_string(), "{body}: {answer}");
    }
    let unknown = tenant_id(TAG, 99);
    let (got, answer) = api
        .call(
            Method::POST,
            &format!("/v1/tenant/{unknown}/timeline"),
            Some(&json!({"new_timeline_id": TL})),
        )
        .await;
    assert_eq!(got, 404, "{answer}");
    assert!(
        timeline_events(&sims, "timeline_create", TL).is_empty(),
        "a refused request reached a pageserver"
    );

    // Create: 201 with shard zero's TimelineInfo and `safekeepers`.
    let request = json!({"new_timeline_id": TL, "pg_version": 16});
    let (got, created) = api.call(Method::POST, &create_path, Some(&request)).await;
    assert_eq!(got, 201, "{created}");
    assert_eq!(created["timeline_id"], TL, "{created}");
    assert_eq!(created["tenant_id"], shards[0], "{created}");
    assert!(created["last_record_lsn"].is_string(), "{created}");
    assert_eq!(created["safekeepers"], Value::Null, "{created}");
    for key in fields::TIMELINE_INFO_READ.iter().chain(&["safekeepers"]) {
        assert!(created.get(key).is_some(), "{key} missing: {created}");
    }

    // Every shard got it, at its attached location, shard zero before any other.
    let events = timeline_events(&sims, "timeline_create", TL);
    for shard in &shards {
        let on = events
            .iter()
            .filter(|e| shard_of(e) == shard)
            .collect::<Vec<_>>();
        assert_eq!(on.len(), 1, "{shard}: {events:?}");
        assert_eq!(
            on[0].node_id, placed[shard].node,
            "{shard} not created where attached"
        );
        assert_eq!(on[0].generation, Some(placed[shard].generation), "{shard}");
    }
    let first_other = events
        .iter()
        .filter(|e| shard_of(e) != shards[0])
        .map(|e| e.ts.clone())
        .min()
        .expect("other shards");
    let zero = events
        .iter()
        .find(|e| shard_of(e) == shards[0])
        .expect("shard zero");
    assert!(
        zero.ts <= first_other,
        "shard zero after another: {events:?}"
    );

    // The same request again: 201, the same timeline, no second timeline anywhere.
    let (got, again) = api.call(Method::POST, &create_path, Some(&request)).await;
    assert_eq!(got, 201, "{again}");
    assert_eq!(again["timeline_id"], TL, "{again}");

    // Listed through the wildcard GET, which goes to shard zero's pageserver.
    let (got, listed) = api.call(Method::GET, &create_path, None).await;
    assert_eq!(got, 200, "{listed}");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["timeline_id"], TL);
    assert_eq!(listed[0]["tenant_id"], shards[0]);

    // Describe: the timeline on every shard.
    let (got, described) = api
        .call(
            Method::GET,
            &format!("/control/v1/tenant/{tenant}/timeline/{TL}"),
            None,
        )
        .await;
    assert_eq!(got, 200, "{described}");
    expect_keys(&described, fields::TIMELINE_DESCRIBE).expect("describe shape");
    let per_shard = described["shards"].as_array().expect("shards");
    assert_eq!(per_shard.len(), 4, "{described}");
    for (info, shard) in per_shard.iter().zip(&shards) {
        assert_eq!(info["timeline_id"], TL);
        assert_eq!(&info["tenant_id"], shard);
    }
    assert!(
        described.get("image_consistent_lsn").is_some(),
        "{described}"
    );

    let timeline_path = format!("/v1/tenant/{tenant}/timeline/{TL}");
    passthroughs(&api, &sims, &tenant, &shards, &placed).await;
    secondary_download(&api, &sims, &tenant, &shards, &placed).await;

    // Delete: 200, gone everywhere, shard zero last.
    let (got, answer) = api.call(Method::DELETE, &timeline_path, None).await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(answer, Value::Null);
    let deletes = timeline_events(&sims, "timeline_delete", TL);
    for shard in &shards {
        assert!(
            deletes.iter().any(|e| shard_of(e) == shard),
            "{shard} not deleted: {deletes:?}"
        );
    }
    let zero_delete = deletes
        .iter()
        .filter(|e| shard_of(e) == shards[0])
        .map(|e| e.ts.clone())
        .min()
        .expect("shard zero deleted");
    let last_other = deletes
        .iter()
        .filter(|e| shard_of(e) != shards[0])
        .map(|e| e.ts.clone())
        .max()
        .expect("others deleted");
    assert!(
        zero_delete >= last_other,
        "shard zero before another: {deletes:?}"
    );
    for shard in &shards {
        let (status, body) = sims
            .request(
                placed[shard].node,
                Method::GET,
                &format!("/v1/tenant/{shard}/timeline/{TL}"),
                None,
            )
            .await
            .expect("sim answered");
        assert_eq!(status, 404, "{shard} still has it: {body}");
    }
    // Not moving, so the pageserver's 404 is relayed as it is.
    let (got, answer) = api.call(Method::GET, &timeline_path, None).await;
    assert_eq!(got, 404, "{answer}");
    // Deleting what is gone is done, as upstream's 404-means-deleted.
    let (got, answer) = api.call(Method::DELETE, &timeline_path, None).await;
    assert_eq!(got, 200, "{answer}");

    api.consistency_check().await.expect("consistent");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}

/// The timeline passthroughs on the 4-shard tenant, each checked on the pageservers' side: the
/// shards it reached (every one, or shard zero) at their attached locations, and what changed.
async fn passthroughs(
    api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    shards: &[String],
    placed: &BTreeMap<String, Attachment>,
) {
    let timeline_path = format!("/v1/tenant/{tenant}/timeline/{TL}");
    let reached = |kind: &str| -> Vec<String> {
        let mut on: Vec<String> = timeline_events(sims, kind, TL)
            .iter()
            .inspect(|e| {
                let shard = shard_of(e);
                assert_eq!(
                    e.node_id, placed[shard].node,
                    "{kind} of {shard} off its attachment"
                );
            })
            .map(|e| shard_of(e).to_owned())
            .collect();
        on.sort();
        on
    };

    // Archival: every shard, and what the pageserver reports afterwards.
    let archival = format!("{timeline_path}/archival_config");
    for bad in [
        json!({"state": "Frozen"}),
        json!({"state": "Archived", "x": 1}),
        json!([]),
    ] {
        let (got, answer) = api.call(Method::PUT, &archival, Some(&bad)).await;
        assert_eq!(got, 400, "{bad}: {answer}");
        assert!(answer["msg"].is_string(), "{answer}");
    }
    let (got, answer) = api
        .call(Method::PUT, &archival, Some(&json!({"state": "Archived"})))
        .await;
    assert_eq!((got, &answer), (200, &Value::Null), "{answer}");
    assert_eq!(reached("archival_config"), shards);
    let reasons: Vec<_> = timeline_events(sims, "archival_config", TL)
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, vec![Some("Archived".to_owned()); 4]);
    let (got, info) = api.call(Method::GET, &timeline_path, None).await;
    assert_eq!(got, 200, "{info}");
    assert_eq!(info["is_archived"], true, "{info}");

    // A GC block: every shard; shard zero's TenantInfo shows it, until unblocked.
    let tenant_path = format!("/v1/tenant/{tenant}");
    let (got, answer) = api
        .call(Method::POST, &format!("{timeline_path}/block_gc"), None)
        .await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(reached("block_gc"), shards);
    let (got, info) = api.call(Method::GET, &tenant_path, None).await;
    assert_eq!(got, 200, "{info}");
    expect_keys(&info, fields::TENANT_INFO).expect("TenantInfo shape");
    assert_eq!(info["id"], shards[0], "{info}");
    assert_eq!(info["generation"], placed[&shards[0]].generation, "{info}");
    assert_eq!(info["attachment_status"]["slug"], "attached", "{info}");
    assert_eq!(info["state"]["slug"], "Active", "{info}");
    assert!(info["gc_blocking"].is_string(), "{info}");
    // The named shard's TenantInfo comes from that shard's pageserver.
    let (got, info) = api
        .call(Method::GET, &format!("/v1/tenant/{}", shards[3]), None)
        .await;
    assert_eq!(got, 200, "{info}");
    assert_eq!(info["id"], shards[3], "{info}");
    let (got, answer) = api
        .call(Method::POST, &format!("{timeline_path}/unblock_gc"), None)
        .await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(reached("unblock_gc"), shards);
    let (_, info) = api.call(Method::GET, &tenant_path, None).await;
    assert_eq!(info["gc_blocking"], Value::Null, "{info}");

    // A lease: every shard; the answer is a valid-until in the future.
    let lease_path = format!("{timeline_path}/lsn_lease");
    let (got, answer) = api
        .call(Method::POST, &lease_path, Some(&json!({"lsn": "zz"})))
        .await;
    assert_eq!(got, 400, "{answer}");
    let (got, lease) = api
        .call(
            Method::POST,
            &lease_path,
            Some(&json!({"lsn": "0/16B5A50"})),
        )
        .await;
    assert_eq!(got, 200, "{lease}");
    expect_keys(&lease, fields::LSN_LEASE).expect("lease shape");
    let until = lease["valid_until"].as_str().expect("valid_until");
    let until = chrono::DateTime::parse_from_rfc3339(until).expect("RFC 3339");
    assert!(until > chrono::Utc::now(), "{lease}");
    assert_eq!(reached("lsn_lease"), shards);

    // Visibility: shard zero only. Ancestor detach: every shard, the same answer.
    let (got, answer) = api
        .call(
            Method::PUT,
            &format!("{timeline_path}/mark_invisible"),
            None,
        )
        .await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(reached("mark_invisible"), shards[..1]);
    let detach =
        format!("{timeline_path}/detach_ancestor?detach_behavior=multi_level_and_no_reparent");
    let (got, answer) = api.call(Method::PUT, &detach, None).await;
    assert_eq!(got, 200, "{answer}");
    expect_keys(&answer, fields::ANCESTOR_DETACHED).expect("detach shape");
    assert_eq!(answer, json!({"reparented_timelines": []}));
    assert_eq!(reached("detach_ancestor"), shards);
    let bad = format!("{timeline_path}/detach_ancestor?detach_behavior=sideways");
    let (got, answer) = api.call(Method::PUT, &bad, None).await;
    assert_eq!(got, 400, "{answer}");

    // Heatmap layers of one named shard.
    let one = format!(
        "/v1/tenant/{}/timeline/{TL}/download_heatmap_layers?concurrency=4",
        shards[2]
    );
    let (got, answer) = api.call(Method::POST, &one, None).await;
    assert!((200..300).contains(&got), "{got}: {answer}");
    assert_eq!(reached("download_heatmap_layers"), shards[2..3]);
}

/// The tenant has a secondary per shard, so the controller sent its attached locations a
/// heatmap period; the secondaries download the uploaded heatmaps at the simulators' rate:
/// 202 with progress while they do, 200 when done.
async fn secondary_download(
    api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    shards: &[String],
    placed: &BTreeMap<String, Attachment>,
) {
    for shard in shards {
        let held = sims.locations(placed[shard].node).await.expect("listed");
        let conf = &held[shard].tenant_conf;
        assert_eq!(conf["heatmap_period"], "1m", "{shard}: {conf}");
    }
    // 10 layers a shard at 300 ms each: 3 s, far longer than a call with no wait.
    sims.set_behaviour(&json!({"download_ms_per_layer": 300}))
        .await
        .expect("rate set");
    let path = format!("/v1/tenant/{tenant}/secondary/download");
    let (got, first) = api
        .call(Method::POST, &format!("{path}?wait_ms=0"), None)
        .await;
    assert_eq!(got, 202, "{first}");
    expect_keys(&first, fields::SECONDARY_PROGRESS).expect("progress shape");
    assert_eq!(first["layers_total"], 40, "{first}");
    assert_eq!(first["bytes_total"], 40 << 20, "{first}");
    assert!(first["layers_downloaded"].as_u64() < Some(40), "{first}");
    assert!(first["heatmap_mtime"].is_string(), "{first}");
    let (got, done) = api
        .call(Method::POST, &format!("{path}?wait_ms=30000"), None)
        .await;
    assert_eq!(got, 200, "{done}");
    expect_keys(&done, fields::SECONDARY_PROGRESS).expect("progress shape");
    assert_eq!(done["layers_downloaded"], 40, "{done}");
    assert_eq!(done["bytes_downloaded"], done["bytes_total"], "{done}");
    // Every secondary downloaded, on the node the intent names.
    let downloads: BTreeSet<(String, u64)> = sims
        .all_history()
        .expect("histories")
        .into_iter()
        .filter(|e| e.kind == "secondary_download" && e.accepted)
        .map(|e| (shard_of(&e).to_owned(), e.node_id))
        .collect();
    let described = api.describe_tenant(tenant).await.expect("described");
    assert_eq!(described.shards.len(), 4);
    for shard in &described.shards {
        let id = shard.tenant_shard_id.to_string();
        assert_eq!(shard.node_secondary.len(), 1, "{id}");
        let node = shard.node_secondary[0];
        assert!(
            downloads.contains(&(id.clone(), node)),
            "{id} on {node}: {downloads:?}"
        );
    }
    // One shard by name: its secondary only, complete already.
    let (got, one) = api
        .call(
            Method::POST,
            &format!("/v1/tenant/{}/secondary/download", shards[1]),
            None,
        )
        .await;
    assert_eq!(got, 200, "{one}");
    assert_eq!(one["layers_total"], 10, "{one}");
    sims.set_behaviour(&json!({})).await.expect("rate reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_create_racing_a_migration() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let on_leader = StorageApi::new(cluster.client(leader));
    let tenant = tenant_id(TAG, 2);
    let shard = shard_ids(&tenant, 1)[0].clone();
    api.create_tenant(&tenant_create_body(&tenant, 1, 1))
        .await
        .expect("tenant created");
    let before = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("placed")[&shard];

    on_leader
        .set_failpoint("timeline-create-before-calls", "pause")
        .await
        .expect("failpoint set");
    let create = {
        let api = api.clone();
        let path = format!("/v1/tenant/{tenant}/timeline");
        tokio::spawn(async move {
            api.send(Method::POST, &path, Some(&json!({"new_timeline_id": TL})))
                .await
        })
    };
    wait_until(
        "the create to reach its failpoint",
        Duration::from_secs(30),
        async || {
            let hits = on_leader
                .failpoint_hits("timeline-create-before-calls")
                .await?;
            anyhow::ensure!(hits >= 1, "not yet");
            Ok(())
        },
    )
    .await
    .expect("create held");

    // The attached pageserver goes Offline: the shard fails over to its secondary.
    api.configure_node(
        before.node,
        &json!({"node_id": before.node, "availability": "Offline"}),
    )
    .await
    .expect("node configured");
    let other = if before.node == 1 { 2 } else { 1 };
    wait_until(
        "the shard attached on the other node",
        SETTLE_DEADLINE,
        async || {
            let held = sims.locations(other).await?;
            let loc = held
                .get(&shard)
                .ok_or_else(|| anyhow::anyhow!("not held"))?;
            anyhow::ensure!(
                loc.mode == "AttachedSingle" && loc.generation > Some(before.generation),
                "{loc:?}"
            );
            Ok(())
        },
    )
    .await
    .expect("failed over");
    let new_generation = sims.locations(other).await.expect("held")[&shard].generation;

    on_leader
        .set_failpoint("timeline-create-before-calls", "off")
        .await
        .expect("failpoint released");
    let answer = create.await.expect("create task").expect("create answered");
    assert_eq!(answer.status, 201, "{}", answer.body);

    // The timeline is on the new attached location, in its generation.
    let (status, body) = sims
        .request(
            other,
            Method::GET,
            &format!("/v1/tenant/{shard}/timeline/{TL}"),
            None,
        )
        .await
        .expect("sim answered");
    assert_eq!(status, 200, "timeline missing on the new location: {body}");
    let events = timeline_events(&sims, "timeline_create", TL);
    assert!(
        events
            .iter()
            .any(|e| e.node_id == other && e.generation == new_generation),
        "no create on node {other} in generation {new_generation:?}: {events:?}"
    );
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
