//! A deeply nested tenant config once poisoned the Raft log: serde_json admits 127 levels, so a
//! `PATCH /v1/tenant/config` whose config nested ~123 levels was parsed, proposed and committed,
//! and the log entry wrapping it (a few levels deeper) no longer decoded. Every replica that
//! read it back exited with status 70, leader after leader (issue 8).
//!
//! Here, on the leader and through a follower: `PATCH` and `PUT /v1/tenant/config` with a field
//! nested 33 to 127 levels, and a `POST /v1/tenant` with such a flattened config field, are all
//! 400 with a `msg`, propose nothing (same `last_applied` within a term) and create nothing.
//! Tenant configs are typed, so a config nests 3 levels at most and the depth bound of a config
//! (16 levels) is no longer reachable: the free-form field once accepted at that edge (15 levels
//! deep) is now refused, as are free-form keys and a typed field given a nested value. A 10 KiB
//! string in a typed field (`timeline_get_throttle.task_kinds`) is accepted; a 40 KiB one (over
//! `MAX_CONFIG_BYTES`) is 400. No replica exits. Then every replica is SIGKILLed and restarted in turn, so each reads its
//! whole log back: a leader is elected, the replicas converge, and the tenant's config is what
//! the accepted PATCHes left.

use cluster_tests::checks::{assert_no_failures, judge_error};
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{expect_keys, tenant_create_body, tenant_id};
use cluster_tests::{Cluster, ClusterStatus, StorageApi, deadline};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0xdee9;
/// Array depths of the refused `deep` field; the body nests one level more.
const DEPTHS: &[usize] = &[33, 60, 110, 121, 122, 123, 126, 127];

/// `depth` levels of `[` around a `1`.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// `GET /v1/tenant/{tenant}/config` via replica `via`, which must answer 200.
async fn config_via(cluster: &Cluster, via: u64, tenant: &str) -> Value {
    let path = format!("/v1/tenant/{tenant}/config");
    let resp = cluster.request(via, Method::GET, &path, None, &[]).await;
    assert_eq!(resp.status, 200, "GET {path} via {via}: {}", resp.body);
    let body: Value = serde_json::from_str(&resp.body).expect("JSON config");
    expect_keys(&body, &["tenant_specific_overrides", "effective_config"]).expect("config shape");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_tenant_config() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(leader));
    let tenant = tenant_id(TAG, 1);
    api.create_tenant(&tenant_create_body(&tenant, 2, 1))
        .await
        .expect("create the tenant");
    wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("the tenant settles");
    assert_eq!(
        config_via(&cluster, leader, &tenant).await["tenant_specific_overrides"],
        json!({}),
        "created without config"
    );
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    let before = cluster.all_statuses().await.expect("every replica answers");

    // Deep bodies: refused at the edge, on the leader and through a follower.
    let mut failures = Vec::new();
    for via in [leader, follower] {
        for &depth in DEPTHS {
            let body = format!(r#"{{"tenant_id":"{tenant}","deep":{}}}"#, nested(depth));
            for method in [Method::PATCH, Method::PUT] {
                let resp = cluster
                    .request(
                        via,
                        method.clone(),
                        "/v1/tenant/config",
                        Some(body.clone()),
                        &[],
                    )
                    .await;
                if let Some(problem) = judge_error(&resp, 400) {
                    failures.push(format!(
                        "{method} /v1/tenant/config, deep {depth}, via {via}: {problem}; body {:?}",
                        resp.body
                    ));
                }
            }
        }
        let new_tenant = tenant_id(TAG, 100 + u32::try_from(via).expect("small id"));
        let body = format!(
            r#"{{"new_tenant_id":"{new_tenant}","deep":{}}}"#,
            nested(123)
        );
        let resp = cluster
            .request(via, Method::POST, "/v1/tenant", Some(body), &[])
            .await;
        if let Some(problem) = judge_error(&resp, 400) {
            failures.push(format!(
                "POST /v1/tenant with a flattened deep 123 field via {via}: {problem}; body {:?}",
                resp.body
            ));
        }
        let path = format!("/control/v1/tenant/{new_tenant}");
        let resp = cluster.request(via, Method::GET, &path, None, &[]).await;
        if resp.status != 404 {
            failures.push(format!(
                "the refused create of {new_tenant} via {via} left a tenant: GET {path}: HTTP {}: {}",
                resp.status, resp.body
            ));
        }
    }
    assert_no_failures(&failures, "deep requests answered wrongly");

    // Nobody exited, nothing was proposed, the leadership did not move.
    cluster.check_no_crashes().expect("no replica exited");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge after the deep requests");
    let after = cluster.all_statuses().await.expect("every replica answers");
    let term = |s: &[ClusterStatus]| s.iter().map(|s| s.term).max().expect("replicas");
    if term(&after) == term(&before) {
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                (a.leader_id, a.term),
                (b.leader_id, b.term),
                "replica {}: leader and term unchanged without an election",
                a.node_id
            );
            assert_eq!(
                a.last_applied, b.last_applied,
                "replica {}: refused requests appended entries",
                a.node_id
            );
        }
    }
    assert_eq!(
        config_via(&cluster, follower, &tenant).await["tenant_specific_overrides"],
        json!({}),
        "refused writes left the config unchanged"
    );

    // Accepted: typed fields, one of them holding a 10 KiB string.
    let big = "x".repeat(10 << 10);
    let throttle = |kind: &str| {
        json!({"task_kinds": [kind], "initial": 0, "refill_interval": "1s", "refill_amount": 1,
               "max": 1})
    };
    let accepted = [
        (
            leader,
            json!({"tenant_id": tenant, "gc_period": "1h"}).to_string(),
        ),
        (
            follower,
            json!({"tenant_id": tenant, "timeline_get_throttle": throttle(&big)}).to_string(),
        ),
    ];
    for (via, body) in accepted {
        let resp = cluster
            .request(via, Method::PATCH, "/v1/tenant/config", Some(body), &[])
            .await;
        assert_eq!(
            resp.status, 200,
            "PATCH at the accepted edge via {via}: {}",
            resp.body
        );
        assert_eq!(
            serde_json::from_str::<Value>(&resp.body).expect("JSON answer"),
            Value::Null,
            "PATCH answers null"
        );
    }
    let expected = json!({"gc_period": "1h", "timeline_get_throttle": throttle(&big)});
    // Refused: nested free-form values at and past the old edge, a typed field given a nested
    // value, a free-form key, and a typed config over MAX_CONFIG_BYTES (32 KiB).
    let huge = "x".repeat(40 << 10);
    for via in [leader, follower] {
        for (what, body) in [
            (
                "a config 17 levels deep",
                format!(r#"{{"tenant_id":"{tenant}","ok16":{}}}"#, nested(16)),
            ),
            (
                "a free-form field 15 levels deep (the old accepted edge)",
                format!(r#"{{"tenant_id":"{tenant}","ok":{}}}"#, nested(15)),
            ),
            (
                "a typed field given a value 15 levels deep",
                format!(r#"{{"tenant_id":"{tenant}","gc_period":{}}}"#, nested(15)),
            ),
            (
                "a free-form 10 KiB string field",
                json!({"tenant_id": tenant, "big": big}).to_string(),
            ),
            (
                "a 40 KiB config field",
                json!({"tenant_id": tenant, "timeline_get_throttle": throttle(&huge)}).to_string(),
            ),
        ] {
            let resp = cluster
                .request(via, Method::PATCH, "/v1/tenant/config", Some(body), &[])
                .await;
            if let Some(problem) = judge_error(&resp, 400) {
                failures.push(format!(
                    "PATCH with {what} via {via}: {problem}; body {:?}",
                    resp.body
                ));
            }
        }
    }
    assert_no_failures(&failures, "requests past the edge answered wrongly");
    for via in [leader, follower] {
        assert_eq!(
            config_via(&cluster, via, &tenant).await,
            json!({"tenant_specific_overrides": expected, "effective_config": expected}),
            "the config holds the accepted PATCHes only (via {via})"
        );
    }
    cluster.check_no_crashes().expect("no replica exited");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge after the config changes");

    // Every replica reads its whole log back after a SIGKILL.
    for id in cluster.ids() {
        cluster.kill(id);
        cluster
            .wait_for_leader(deadline::ELECTION)
            .await
            .unwrap_or_else(|e| panic!("a leader while replica {id} is down: {e:#}"));
        cluster
            .restart(id)
            .unwrap_or_else(|e| panic!("restart replica {id}: {e:#}"));
        cluster
            .wait_for_leader(deadline::ELECTION)
            .await
            .unwrap_or_else(|e| panic!("a leader after restarting replica {id}: {e:#}"));
        cluster
            .wait_converged(deadline::CONVERGE)
            .await
            .unwrap_or_else(|e| panic!("replicas converge after restarting replica {id}: {e:#}"));
        cluster
            .check_no_crashes()
            .unwrap_or_else(|e| panic!("after restarting replica {id}: {e}"));
        assert_eq!(
            config_via(&cluster, id, &tenant).await["tenant_specific_overrides"],
            expected,
            "config via the restarted replica {id}"
        );
    }
    for id in cluster.ids() {
        assert_eq!(
            config_via(&cluster, id, &tenant).await,
            json!({"tenant_specific_overrides": expected, "effective_config": expected}),
            "config via replica {id} after every restart"
        );
    }
    let new_leader = cluster.leader_id().await.expect("a leader");
    let described = StorageApi::new(cluster.client(new_leader))
        .describe_tenant(&tenant)
        .await
        .expect("describe");
    assert_eq!(described.config, expected, "the describe agrees");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica exited");
}
