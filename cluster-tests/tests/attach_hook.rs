//! `POST /debug/v1/attach-hook` through a follower: attach a new shard to a node (it is
//! created, gets a generation, and the simulator ends holding it attached), attach again (a newer
//! generation), refuse a generation that goes back, unknown nodes and malformed bodies with
//! nothing changed, then detach (placement Detached, no attachment left on the simulator).

use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::SETTLE_DEADLINE;
use cluster_tests::wait_until;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attach_hook() {
    let fx = ControllerFixture::start(&[(1, "az-a"), (2, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = cluster_tests::StorageApi::new(fx.cluster.client(fx.follower));
    let shard = "000a7700000000000000000000000001";
    let hook = async |body: Value| {
        api.send(Method::POST, "/debug/v1/attach-hook", Some(&body))
            .await
            .expect("answer")
    };
    let gen_of = |body: &str| -> Option<u64> {
        let v: Value = serde_json::from_str(body).expect("JSON");
        v["gen"].as_u64()
    };

    let r = hook(json!({"tenant_shard_id": shard, "node_id": 1})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let first = gen_of(&r.body).expect("a generation");
    let r = hook(json!({"tenant_shard_id": shard, "node_id": 1})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let second = gen_of(&r.body).expect("a generation");
    assert!(second > first, "{first} then {second}");

    // Refusals change nothing.
    for (body, status) in [
        (
            json!({"tenant_shard_id": shard, "node_id": 1, "generation_override": 0}),
            409,
        ),
        (
            json!({"tenant_shard_id": shard, "node_id": 1, "generation_override": -3}),
            400,
        ),
        (json!({"tenant_shard_id": shard, "node_id": 42}), 404),
        (json!({"tenant_shard_id": "not-an-id", "node_id": 1}), 400),
        (json!({"node_id": 1}), 400),
    ] {
        let r = hook(body.clone()).await;
        assert_eq!(r.status, status, "{body}: {r:?}");
        assert!(r.msg().is_some(), "{body}: no msg in {r:?}");
    }

    // The reconciler makes the simulator hold it attached, in whatever generation is newest.
    wait_until(
        "node 1 holds the shard attached",
        SETTLE_DEADLINE,
        async || {
            let held = fx.sims.locations(1).await?;
            let loc = held
                .get(shard)
                .ok_or_else(|| anyhow::anyhow!("not held: {held:?}"))?;
            anyhow::ensure!(loc.mode == "AttachedSingle", "{loc:?}");
            anyhow::ensure!(loc.generation >= Some(second as u32), "{loc:?}");
            Ok(())
        },
    )
    .await
    .expect("attached");

    let r = hook(json!({"tenant_shard_id": shard, "node_id": null})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(gen_of(&r.body), None);
    let inspect = api
        .send(
            Method::POST,
            "/debug/v1/inspect",
            Some(&json!({"tenant_shard_id": shard})),
        )
        .await
        .expect("inspect");
    assert_eq!(inspect.status, 200);
    let v: Value = serde_json::from_str(&inspect.body).expect("JSON");
    assert!(v["attachment"].is_null(), "detached: {v}");
    wait_until(
        "the simulators no longer hold the shard",
        SETTLE_DEADLINE,
        async || {
            let view = fx.sims.view().await?;
            anyhow::ensure!(!view.contains_key(shard), "{:?}", view.get(shard));
            api.consistency_check().await?;
            Ok(())
        },
    )
    .await
    .expect("detached everywhere");
    history::ensure_safe(&fx.sims.all_history().expect("histories")).expect("history safe");
    fx.cluster.check_no_crashes().expect("no replica crashed");
}
