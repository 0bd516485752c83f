//! Typed tenant config end to end (issue 10, item 5), on the leader:
//!
//! - a tenant created with fields of several types (durations, integers, booleans, enums,
//!   nested objects) holds exactly their canonical form on every simulator location (a duration
//!   is written as humantime writes it: `"90m"` reaches the pageserver as `"1h 30m"`), and
//!   `GET /v1/tenant/:id/config` and the describe report the same;
//! - a table of bad values (wrong type, unknown key, bad duration, bad enum, a zero where
//!   upstream wants a nonzero integer, an unknown key inside a nested object) through create,
//!   `PUT` and `PATCH /v1/tenant/config`, `location_config` and the attach-hook: each is 400 with a
//!   `msg` naming the field, nothing is committed, no tenant is created, and the existing
//!   tenant's config reads back unchanged;
//! - `PATCH` with `null` removes a field (absent fields stay), `PUT` replaces the whole config,
//!   and each result reaches the simulators exactly;
//! - the same onboarding `location_config` twice answers the same (its `tenant_conf` is
//!   required, so a repeat is not refused).

use cluster_tests::checks::{assert_no_failures, judge_error};
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::placement::SETTLE_DEADLINE;
use cluster_tests::storage_api::{ha_aware, tenant_create_body, tenant_id};
use cluster_tests::{Cluster, ClusterStatus, Sims, StorageApi, deadline, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x7c9e;

/// Fields of several types, as sent.
fn good_config() -> Value {
    json!({
        "gc_period": "1h",
        "pitr_interval": "90m",
        "checkpoint_distance": 268435456,
        "image_layer_creation_check_threshold": 2,
        "max_lsn_wal_lag": 1073741824,
        "lazy_slru_download": true,
        "compaction_algorithm": {"kind": "tiered"},
        "eviction_policy": {"kind": "LayerAccessThreshold", "period": "10m", "threshold": "1day"},
        "timeline_get_throttle": {
            "task_kinds": ["PageRequestHandler"], "initial": 0, "refill_interval": "50ms",
            "refill_amount": 1000, "max": 40000
        },
        "sampling_ratio": {"numerator": 1, "denominator": 10},
    })
}

/// [`good_config`] as the controller stores and sends it: only the duration written
/// differently.
fn good_canonical() -> Value {
    let mut c = good_config();
    c["pitr_interval"] = json!("1h 30m");
    c
}

/// Bad values: (what, field, value). Each must be refused naming `field`.
fn bad_values() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "a string for an integer",
            "checkpoint_distance",
            json!("abc"),
        ),
        ("an integer for a duration", "gc_period", json!(3600)),
        ("a bad duration", "pitr_interval", json!("soon")),
        ("an unknown key", "bogus_key", json!(1)),
        (
            "a bad enum",
            "compaction_algorithm",
            json!({"kind": "fast"}),
        ),
        ("a bad tag", "eviction_policy", json!({"kind": "Sometimes"})),
        ("zero for a nonzero integer", "max_lsn_wal_lag", json!(0)),
        ("a string for a boolean", "lazy_slru_download", json!("yes")),
        (
            "an unknown nested key",
            "eviction_policy",
            json!({"kind": "NoEviction", "period": "1m"}),
        ),
    ]
}

fn object(pairs: &[(&str, Value)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// `GET /v1/tenant/:id/config`: the overrides, which must equal the effective config.
async fn read_config(cluster: &Cluster, via: u64, tenant: &str) -> Value {
    let path = format!("/v1/tenant/{tenant}/config");
    let resp = cluster.request(via, Method::GET, &path, None, &[]).await;
    assert_eq!(resp.status, 200, "GET {path}: {}", resp.body);
    let body: Value = serde_json::from_str(&resp.body).expect("JSON config");
    assert_eq!(
        body["tenant_specific_overrides"], body["effective_config"],
        "{body}"
    );
    body["tenant_specific_overrides"].clone()
}

/// Waits until every location of the unsharded `tenant` (`locations` of them) holds `want`.
async fn wait_on_sims(sims: &Sims, tenant: &str, locations: usize, want: &Value) {
    wait_until(
        &format!("every location of {tenant} to hold {want}"),
        SETTLE_DEADLINE,
        async || {
            let view = sims.view().await?;
            let held = view
                .get(tenant)
                .ok_or_else(|| anyhow::anyhow!("{tenant}: held nowhere"))?;
            anyhow::ensure!(
                held.len() == locations,
                "{tenant}: {} locations",
                held.len()
            );
            for (node, location) in held {
                anyhow::ensure!(
                    location.tenant_conf == ha_aware(want),
                    "{tenant} on node {node} ({}): tenant_conf {}",
                    location.mode,
                    location.tenant_conf
                );
            }
            Ok(())
        },
    )
    .await
    .expect("the config reaches the simulators exactly");
}

async fn config_write(cluster: &Cluster, via: u64, method: Method, body: Value) {
    let resp = cluster
        .request(
            via,
            method.clone(),
            "/v1/tenant/config",
            Some(body.to_string()),
            &[],
        )
        .await;
    assert_eq!(
        resp.status, 200,
        "{method} /v1/tenant/config {body}: {}",
        resp.body
    );
}

async fn statuses(cluster: &Cluster) -> Vec<ClusterStatus> {
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    cluster.all_statuses().await.expect("every replica answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_config() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        ..
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(leader));

    // Good values of several types reach every location exactly, in canonical form.
    let tenant = tenant_id(TAG, 1);
    let mut create = tenant_create_body(&tenant, 0, 1);
    for (k, v) in good_config().as_object().expect("object") {
        create[k] = v.clone();
    }
    api.create_tenant(&create).await.expect("create");
    wait_on_sims(&sims, &tenant, 2, &good_canonical()).await;
    assert_eq!(
        read_config(&cluster, leader, &tenant).await,
        good_canonical()
    );
    let described = api.describe_tenant(&tenant).await.expect("describe");
    assert_eq!(described.config, good_canonical());

    // Bad values on every route: 400 naming the field, nothing committed or created.
    let before = statuses(&cluster).await;
    let mut failures = Vec::new();
    for (i, (what, field, value)) in bad_values().into_iter().enumerate() {
        let fresh = tenant_id(TAG, 100 + u32::try_from(i).expect("small"));
        let bad = object(&[(field, value.clone())]);
        let mut create_new = tenant_create_body(&fresh, 0, 1);
        create_new[field] = value.clone();
        let mut create_existing = create.clone();
        create_existing[field] = value.clone();
        let mut put = object(&[("tenant_id", json!(tenant))]);
        put[field] = value.clone();
        let location = |id: &str| {
            (
                format!("/v1/tenant/{id}/location_config"),
                json!({"mode": "AttachedSingle", "generation": 9, "tenant_conf": bad}),
            )
        };
        let (loc_new_path, loc_new) = location(&fresh);
        let (loc_existing_path, loc_existing) = location(&tenant);
        let hook = json!({"tenant_shard_id": fresh, "node_id": 1, "config": bad});
        for (route, method, path, body) in [
            (
                "create (new)",
                Method::POST,
                "/v1/tenant".to_owned(),
                create_new,
            ),
            (
                "create (existing)",
                Method::POST,
                "/v1/tenant".to_owned(),
                create_existing,
            ),
            (
                "PUT config",
                Method::PUT,
                "/v1/tenant/config".to_owned(),
                put.clone(),
            ),
            (
                "PATCH config",
                Method::PATCH,
                "/v1/tenant/config".to_owned(),
                put,
            ),
            ("location_config (new)", Method::PUT, loc_new_path, loc_new),
            (
                "location_config (existing)",
                Method::PUT,
                loc_existing_path,
                loc_existing,
            ),
            (
                "attach-hook",
                Method::POST,
                "/debug/v1/attach-hook".to_owned(),
                hook,
            ),
        ] {
            let label = format!("{route} with {what} ({field}: {value})");
            let resp = cluster
                .request(leader, method, &path, Some(body.to_string()), &[])
                .await;
            if let Some(problem) = judge_error(&resp, 400) {
                failures.push(format!("{label}: {problem}; body {}", resp.body));
                continue;
            }
            let msg: Value = serde_json::from_str(&resp.body).expect("JSON error");
            let msg = msg["msg"].as_str().unwrap_or_default();
            if !msg.contains(&format!("`{field}`")) {
                failures.push(format!("{label}: the msg does not name the field: {msg}"));
            }
        }
        let resp = cluster
            .request(
                leader,
                Method::GET,
                &format!("/v1/tenant/{fresh}/config"),
                None,
                &[],
            )
            .await;
        if resp.status != 404 {
            failures.push(format!("{what}: {fresh} was created: HTTP {}", resp.status));
        }
    }
    // An unknown key beside a location's fields, not inside `tenant_conf`.
    let resp = cluster
        .request(
            leader,
            Method::PUT,
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"mode": "Detached", "tenant_conf": {}, "bogus_key": 1}).to_string()),
            &[],
        )
        .await;
    match judge_error(&resp, 400) {
        Some(problem) => failures.push(format!("location_config bogus_key: {problem}")),
        None if !resp.body.contains("`bogus_key`") => {
            failures.push(format!("location_config bogus_key: {}", resp.body))
        }
        None => {}
    }
    assert_no_failures(&failures, "bad config values answered wrongly");
    let after = statuses(&cluster).await;
    for (b, a) in before.iter().zip(&after) {
        if a.term == b.term {
            assert_eq!(
                a.last_applied, b.last_applied,
                "replica {}: a refused config appended entries",
                a.node_id
            );
        }
    }
    assert_eq!(
        read_config(&cluster, leader, &tenant).await,
        good_canonical(),
        "refused writes left the stored config unchanged"
    );
    let described = api.describe_tenant(&tenant).await.expect("describe");
    assert_eq!(described.policy, json!({"Attached": 1}), "policy unchanged");

    // PATCH: null removes, a value sets, absent keeps.
    config_write(
        &cluster,
        leader,
        Method::PATCH,
        json!({"tenant_id": tenant, "gc_period": null, "eviction_policy": null,
               "gc_horizon": 4096, "compaction_algorithm": {"kind": "legacy"}}),
    )
    .await;
    let mut patched = good_canonical();
    let map = patched.as_object_mut().expect("object");
    map.remove("gc_period");
    map.remove("eviction_policy");
    map.insert("gc_horizon".into(), json!(4096));
    map.insert("compaction_algorithm".into(), json!({"kind": "legacy"}));
    assert_eq!(read_config(&cluster, leader, &tenant).await, patched);
    wait_on_sims(&sims, &tenant, 2, &patched).await;

    // PUT replaces the whole config.
    let replaced = json!({"compaction_period": "20s", "compaction_threshold": 10,
                          "basebackup_cache_enabled": false});
    let mut put = replaced.clone();
    put["tenant_id"] = json!(tenant);
    config_write(&cluster, leader, Method::PUT, put).await;
    assert_eq!(read_config(&cluster, leader, &tenant).await, replaced);
    wait_on_sims(&sims, &tenant, 2, &replaced).await;

    // The same onboarding request twice: both 200, the same answer, the config sent typed.
    let onboarded = tenant_id(TAG, 2);
    let path = format!("/v1/tenant/{onboarded}/location_config");
    let body =
        json!({"mode": "AttachedSingle", "generation": 7, "tenant_conf": {"gc_period": "2h"}});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = cluster
            .request(leader, Method::PUT, &path, Some(body.to_string()), &[])
            .await;
        assert_eq!(resp.status, 200, "PUT {path}: {}", resp.body);
        answers.push(serde_json::from_str::<Value>(&resp.body).expect("JSON answer"));
    }
    assert_eq!(
        answers[0], answers[1],
        "a repeated onboarding answers the same"
    );
    wait_on_sims(&sims, &onboarded, 2, &json!({"gc_period": "2h"})).await;
    assert_eq!(
        read_config(&cluster, leader, &onboarded).await,
        json!({"gc_period": "2h"})
    );

    api.consistency_check()
        .await
        .expect("consistency_check 200");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
