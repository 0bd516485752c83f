//! Tenant config end to end, through a follower: a 2-shard `Attached(1)` tenant created with a
//! top-level config field carries it on every simulator location; `PATCH /v1/tenant/config`
//! removes a key (`null`) and sets another, `PUT` replaces the whole config, and after each
//! change `GET /v1/tenant/:id/config` and the describe report it, every location (attached and
//! secondary) holds it, and no shard was attached in a new generation (a config change reuses
//! the current one). Durations are kept as the typed config writes them (`"1d"` is `"1day"`,
//! as upstream stores it). Unknown tenants answer 404, malformed requests 400, neither changes
//! anything; consistency_check passes at the end.

use std::collections::BTreeMap;

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{Attachment, SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{
    expect_keys, fields, ha_aware, shard_ids, tenant_create_body, tenant_id,
};
use cluster_tests::{Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x7c0f;

/// One request with a raw body (`None`: no body); status and body text.
async fn send_text(
    api: &StorageApi,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let raw = api
        .client()
        .raw(
            method.clone(),
            path,
            body.map(|b| ("application/json", b.to_owned())),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (raw.status, raw.body)
}

/// A config write (`PUT` or `PATCH /v1/tenant/config`) that must answer 200 `null`.
async fn write_config(api: &StorageApi, method: Method, body: &Value) {
    let (status, text) = send_text(
        api,
        method.clone(),
        "/v1/tenant/config",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{method} /v1/tenant/config {body}: {text}");
    let answer: Value = serde_json::from_str(&text).expect("JSON answer");
    assert_eq!(answer, Value::Null, "{method} answers null");
}

/// Fails unless the answer has `status` and a `{"msg"}` body with a non-empty message.
fn expect_error(what: &str, (status, text): (u16, String), want: u16) {
    assert_eq!(status, want, "{what}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    expect_keys(&body, fields::ERROR).expect("error shape");
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

/// `GET /v1/tenant/:id/config`, which must answer 200 with the documented shape.
async fn get_config(api: &StorageApi, tenant: &str) -> Value {
    let path = format!("/v1/tenant/{tenant}/config");
    let (status, text) = send_text(api, Method::GET, &path, None).await;
    assert_eq!(status, 200, "GET {path}: {text}");
    let body: Value = serde_json::from_str(&text).expect("JSON config");
    expect_keys(&body, &["tenant_specific_overrides", "effective_config"])
        .expect("config answer shape");
    body
}

/// Waits until every location of every shard of `tenant` on the running simulators carries
/// `want` as its tenant config, with one attached and one secondary location per shard.
async fn wait_config_everywhere(sims: &Sims, tenant: &str, want: &Value) {
    let shards = shard_ids(tenant, 2);
    wait_until(
        &format!("every location of {tenant} to carry {want}"),
        SETTLE_DEADLINE,
        async || {
            let view = sims.view().await?;
            for shard in &shards {
                let held = view
                    .get(shard)
                    .ok_or_else(|| anyhow::anyhow!("{shard}: held nowhere"))?;
                let mut modes: Vec<&str> = held.values().map(|l| l.mode.as_str()).collect();
                modes.sort_unstable();
                anyhow::ensure!(
                    modes == ["AttachedSingle", "Secondary"],
                    "{shard}: modes {modes:?}"
                );
                for (node, location) in held {
                    anyhow::ensure!(
                        location.tenant_conf == ha_aware(want),
                        "{shard} on node {node} ({}): tenant_conf {}",
                        location.mode,
                        location.tenant_conf
                    );
                }
            }
            Ok(())
        },
    )
    .await
    .expect("the config reaches every location");
}

/// Settles the tenant and checks that every shard is still attached where and in the
/// generation it was at creation, and that no simulator ever accepted another generation.
async fn expect_same_attachments(
    api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    before: &BTreeMap<String, Attachment>,
    what: &str,
) {
    let after = wait_settled(api, sims, &[tenant.to_owned()], SETTLE_DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{what}: the tenant settles: {e:#}"));
    assert_eq!(&after, before, "{what}: attachments (node, generation)");
    let generations = history::attach_generations(&sims.all_history().expect("histories"));
    for (shard, attachment) in before {
        let accepted: Vec<u32> = generations
            .get(shard)
            .map(|g| g.keys().copied().collect())
            .unwrap_or_default();
        assert_eq!(
            accepted,
            vec![attachment.generation],
            "{what}: {shard} was attached in no other generation"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_config() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    // Through a follower: PUT, PATCH and GET are forwarded to the leader.
    let api = StorageApi::new(cluster.client(follower));
    assert_ne!(follower, leader);

    // Create with a top-level config field.
    let tenant = tenant_id(TAG, 1);
    let mut create = tenant_create_body(&tenant, 2, 1);
    create["gc_period"] = json!("1h");
    api.create_tenant(&create).await.expect("create");
    let created_conf = json!({"gc_period": "1h"});
    wait_config_everywhere(&sims, &tenant, &created_conf).await;
    let before = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("the tenant settles");
    assert_eq!(
        get_config(&api, &tenant).await,
        json!({"tenant_specific_overrides": created_conf, "effective_config": created_conf})
    );
    let described = api.describe_tenant(&tenant).await.expect("describe");
    assert_eq!(described.config, created_conf);

    // PATCH: null removes, a value sets.
    write_config(
        &api,
        Method::PATCH,
        &json!({"tenant_id": tenant, "gc_period": null, "pitr_interval": "1d"}),
    )
    .await;
    // The typed config writes durations as humantime does, so "1d" is stored and sent "1day".
    let patched = json!({"pitr_interval": "1day"});
    assert_eq!(
        get_config(&api, &tenant).await,
        json!({"tenant_specific_overrides": patched, "effective_config": patched})
    );
    wait_config_everywhere(&sims, &tenant, &patched).await;
    expect_same_attachments(&api, &sims, &tenant, &before, "after PATCH").await;
    let described = api.describe_tenant(&tenant).await.expect("describe");
    assert_eq!(described.config, patched);

    // PATCH without the existing key keeps it.
    write_config(
        &api,
        Method::PATCH,
        &json!({"tenant_id": tenant, "gc_horizon": 1024}),
    )
    .await;
    let merged = json!({"pitr_interval": "1day", "gc_horizon": 1024});
    assert_eq!(get_config(&api, &tenant).await["effective_config"], merged);
    wait_config_everywhere(&sims, &tenant, &merged).await;

    // PUT replaces the whole config.
    write_config(
        &api,
        Method::PUT,
        &json!({"tenant_id": tenant, "compaction_period": "20s"}),
    )
    .await;
    let replaced = json!({"compaction_period": "20s"});
    assert_eq!(
        get_config(&api, &tenant).await,
        json!({"tenant_specific_overrides": replaced, "effective_config": replaced})
    );
    wait_config_everywhere(&sims, &tenant, &replaced).await;
    expect_same_attachments(&api, &sims, &tenant, &before, "after PUT").await;
    let valid = api
        .validate(
            &before
                .iter()
                .map(|(s, a)| (s.clone(), a.generation))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("validate");
    assert!(
        valid.len() == before.len() && valid.values().all(|v| *v),
        "the creation generations are still current: {valid:?}"
    );

    // Unknown tenant: 404 for GET, PATCH and PUT, and nothing gets created.
    let unknown = tenant_id(TAG, 2);
    expect_error(
        "GET config of an unknown tenant",
        send_text(
            &api,
            Method::GET,
            &format!("/v1/tenant/{unknown}/config"),
            None,
        )
        .await,
        404,
    );
    for method in [Method::PATCH, Method::PUT] {
        let body = json!({"tenant_id": unknown, "gc_period": "1h"}).to_string();
        expect_error(
            &format!("{method} config of an unknown tenant"),
            send_text(&api, method.clone(), "/v1/tenant/config", Some(&body)).await,
            404,
        );
    }
    let err = api
        .describe_tenant(&unknown)
        .await
        .expect_err("no tenant created");
    assert_eq!(err.status(), Some(404), "{err}");

    // Malformed: 400, and the config is unchanged.
    let malformed = [
        ("no tenant_id", r#"{"gc_period": "1h"}"#.to_owned()),
        (
            "tenant_id not an id",
            r#"{"tenant_id": "not-a-tenant", "gc_period": "1h"}"#.to_owned(),
        ),
        (
            "tenant_id a number",
            r#"{"tenant_id": 5, "gc_period": "1h"}"#.to_owned(),
        ),
        ("not JSON", r#"{"tenant_id": "#.to_owned()),
        ("a JSON array", format!(r#"["{tenant}"]"#)),
        ("a JSON string", format!(r#""{tenant}""#)),
    ];
    for method in [Method::PATCH, Method::PUT] {
        for (what, body) in &malformed {
            expect_error(
                &format!("{method} with {what}"),
                send_text(&api, method.clone(), "/v1/tenant/config", Some(body)).await,
                400,
            );
        }
    }
    expect_error(
        "GET config of a malformed id",
        send_text(&api, Method::GET, "/v1/tenant/not-a-tenant/config", None).await,
        400,
    );
    assert_eq!(
        get_config(&api, &tenant).await["tenant_specific_overrides"],
        replaced,
        "refused writes change nothing"
    );

    expect_same_attachments(&api, &sims, &tenant, &before, "at the end").await;
    api.consistency_check()
        .await
        .expect("consistency_check 200");
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}
