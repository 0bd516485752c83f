//! Onboarding through the pageserver's own API: the control plane hands an unsharded tenant to
//! the controller with `PUT /v1/tenant/<id>/location_config` in generation 7. The controller
//! creates it as `Attached(1)` (three pageservers registered), continues the control plane's
//! generation sequence (the first attach is generation 8, which `/debug/v1/inspect` and the
//! simulator holding it agree on; 7 no longer validates), and places one secondary. Mode
//! `Secondary` then leaves exactly one secondary location and no attachment anywhere; mode
//! `Detached` leaves nothing on any simulator. A sharded id and an attached mode without a
//! generation are refused with 400 and create nothing.

use std::collections::BTreeMap;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::sims::SimLocation;
use cluster_tests::storage_api::{expect_keys, fields, tenant_id};
use cluster_tests::{Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x0b0a;

/// A `location_config` body for an unsharded tenant with an empty tenant config.
fn location_body(mode: &str, generation: Option<u32>, secondary_conf: Value) -> Value {
    json!({
        "mode": mode,
        "generation": generation,
        "secondary_conf": secondary_conf,
        "shard_number": 0,
        "shard_count": 0,
        "shard_stripe_size": 0,
        "tenant_conf": {},
    })
}

/// `PUT /v1/tenant/<id>/location_config`: status and body.
async fn put_location(api: &StorageApi, id: &str, body: &Value) -> (u16, String) {
    let path = format!("/v1/tenant/{id}/location_config");
    let raw = api
        .send(Method::PUT, &path, Some(body))
        .await
        .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
    (raw.status, raw.body)
}

/// A 200 `location_config` answer: `{"shards":[{"shard_id","node_id"}],"stripe_size"}`.
fn expect_location_answer(status: u16, body: &str) -> Value {
    assert_eq!(status, 200, "location_config: {body}");
    let value: Value = serde_json::from_str(body).expect("location_config answers JSON");
    expect_keys(&value, &["shards", "stripe_size"]).expect("answer shape");
    assert_eq!(value["stripe_size"], Value::Null, "unsharded: {value}");
    for shard in value["shards"].as_array().expect("shards array") {
        expect_keys(shard, &["shard_id", "node_id"]).expect("answer shard shape");
    }
    value
}

/// A 400 with a non-empty `msg`.
fn expect_bad_request(what: &str, status: u16, body: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    expect_keys(&value, fields::ERROR).expect("error shape");
    assert!(
        value["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {value}"
    );
}

/// Where the running simulators hold `shard`: node -> location.
async fn holders(sims: &Sims, shard: &str) -> anyhow::Result<BTreeMap<u64, SimLocation>> {
    Ok(sims.view().await?.remove(shard).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower: _,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-b"), (3, "az-c")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(leader));

    // Refused: a sharded id, and an attached mode without a generation. Neither creates anything.
    let sharded = tenant_id(TAG, 2);
    let (status, body) = put_location(
        &api,
        &format!("{sharded}-0104"),
        &location_body("AttachedSingle", Some(7), Value::Null),
    )
    .await;
    expect_bad_request("sharded id", status, &body);
    let no_generation = tenant_id(TAG, 3);
    for mode in ["AttachedSingle", "AttachedMulti", "AttachedStale"] {
        let (status, body) = put_location(
            &api,
            &no_generation,
            &location_body(mode, None, Value::Null),
        )
        .await;
        expect_bad_request(&format!("{mode} without a generation"), status, &body);
    }
    for refused in [&sharded, &no_generation] {
        let err = api
            .describe_tenant(refused)
            .await
            .expect_err("a refused onboarding creates no tenant");
        assert_eq!(err.status(), Some(404), "{refused}: {err}");
    }

    // Onboard in the control plane's generation 7.
    let tenant = tenant_id(TAG, 1);
    let (status, body) = put_location(
        &api,
        &tenant,
        &location_body("AttachedSingle", Some(7), Value::Null),
    )
    .await;
    let answer = expect_location_answer(status, &body);
    let answered = answer["shards"].as_array().expect("shards");
    assert_eq!(answered.len(), 1, "one attached shard: {answer}");
    assert_eq!(answered[0]["shard_id"], json!(tenant), "{answer}");
    let answered_node = answered[0]["node_id"].as_u64().expect("node id");

    let settled = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("the onboarded tenant settles");
    let attachment = settled[&tenant];
    assert_eq!(
        attachment.generation, 8,
        "the first attach continues the control plane's generation 7"
    );
    assert_eq!(
        attachment.node, answered_node,
        "attached where the answer said"
    );

    // `/debug/v1/inspect` names the same generation and node.
    let raw = api
        .send(
            Method::POST,
            "/debug/v1/inspect",
            Some(&json!({"tenant_shard_id": tenant})),
        )
        .await
        .expect("inspect answered");
    assert_eq!(raw.status, 200, "inspect: {}", raw.body);
    let inspected: Value = serde_json::from_str(&raw.body).expect("inspect JSON");
    assert_eq!(inspected, json!({"attachment": [8, attachment.node]}));

    // That simulator holds it AttachedSingle in generation 8; nobody ever held an older one.
    let held = sims
        .locations(attachment.node)
        .await
        .expect("locations of the attached node");
    let location = held
        .get(&tenant)
        .expect("the inspected node holds the tenant");
    assert_eq!(location.mode, "AttachedSingle");
    assert_eq!(location.generation, Some(8));
    assert_eq!((location.shard_number, location.shard_count), (0, 0));
    let generations = history::attach_generations(&sims.all_history().expect("histories"));
    let issued: Vec<u32> = generations
        .get(&tenant)
        .map(|g| g.keys().copied().collect())
        .unwrap_or_default();
    assert_eq!(issued, vec![8], "accepted attach generations of {tenant}");

    // Three pageservers: Attached(1), the secondary elsewhere.
    let described = api.describe_tenant(&tenant).await.expect("describe");
    assert_eq!(described.policy, json!({"Attached": 1}));
    assert_eq!(described.shards.len(), 1);
    let shard = &described.shards[0];
    assert_eq!(shard.tenant_shard_id, tenant);
    assert_eq!(shard.node_attached, Some(attachment.node));
    assert_eq!(shard.node_secondary.len(), 1, "{shard:?}");
    assert_ne!(shard.node_secondary[0], attachment.node);

    // Only the controller's generation validates, not the control plane's old one.
    let valid = api
        .validate(&[(tenant.clone(), 7)])
        .await
        .expect("validate 7");
    assert_eq!(valid.get(&tenant), Some(&false), "generation 7 is stale");
    let valid = api
        .validate(&[(tenant.clone(), 8)])
        .await
        .expect("validate 8");
    assert_eq!(valid.get(&tenant), Some(&true), "generation 8 is current");

    // Secondary: no attachment anywhere, exactly one secondary location.
    let (status, body) = put_location(
        &api,
        &tenant,
        &location_body("Secondary", None, json!({"warm": true})),
    )
    .await;
    let answer = expect_location_answer(status, &body);
    assert_eq!(answer["shards"], json!([]), "nothing attached: {answer}");
    let secondary_node = wait_until(
        "exactly one secondary and no attachment",
        SETTLE_DEADLINE,
        async || {
            let held = holders(&sims, &tenant).await?;
            let modes: BTreeMap<u64, &str> =
                held.iter().map(|(n, l)| (*n, l.mode.as_str())).collect();
            anyhow::ensure!(
                modes.len() == 1 && modes.values().all(|m| *m == "Secondary"),
                "held: {modes:?}"
            );
            let node = *modes.keys().next().expect("one holder");
            let described = api.describe_tenant(&tenant).await?;
            let shard = &described.shards[0];
            anyhow::ensure!(
                described.policy == json!("Secondary")
                    && shard.node_attached.is_none()
                    && shard.node_secondary == vec![node]
                    && !shard.is_reconciling
                    && shard.last_error.is_empty(),
                "describe: {described:?}, held on {node}"
            );
            api.consistency_check().await?;
            Ok(node)
        },
    )
    .await
    .expect("the tenant becomes a single secondary");
    let held = holders(&sims, &tenant).await.expect("holders");
    assert_eq!(held[&secondary_node].generation, None, "{held:?}");

    // Detached: nothing on any simulator.
    let (status, body) =
        put_location(&api, &tenant, &location_body("Detached", None, Value::Null)).await;
    let answer = expect_location_answer(status, &body);
    assert_eq!(answer["shards"], json!([]), "nothing attached: {answer}");
    wait_until(
        "no simulator to hold the tenant",
        SETTLE_DEADLINE,
        async || {
            let held = holders(&sims, &tenant).await?;
            anyhow::ensure!(held.is_empty(), "still held: {held:?}");
            let described = api.describe_tenant(&tenant).await?;
            let shard = &described.shards[0];
            anyhow::ensure!(
                described.policy == json!("Detached")
                    && shard.node_attached.is_none()
                    && shard.node_secondary.is_empty()
                    && !shard.is_reconciling
                    && shard.last_error.is_empty(),
                "describe: {described:?}"
            );
            api.consistency_check().await?;
            Ok(())
        },
    )
    .await
    .expect("the tenant is detached everywhere");

    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
