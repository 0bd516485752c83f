//! `GET /metrics` on every replica: strict Prometheus text that moves with what happens.
//!
//! - `metrics_follow_create_reconcile_and_failover`: every replica's exposition parses strictly
//!   without a token and shows its log fsyncs timed and a commit index not behind its applied
//!   index; a tenant create through a follower counts on the follower's and the
//!   leader's `POST /v1/tenant` series and raises the shard gauge on every replica; the
//!   reconciles it starts, and those of a policy change that adds secondaries, count as spawned
//!   and completed with `location_config` calls in the pageserver request histogram, and the
//!   per-node gauges follow the intents; a passthrough GET counts as a passthrough; after the
//!   leader is killed each survivor reports a higher term, one more leader change and the new
//!   leader's id, and only the new leader reports itself leading. Values are compared before
//!   and after, never guessed.
//!   Then, once a refused passthrough and a stopped pageserver have given every family a series
//!   (a family with none is not listed at all), every metric name in the expressions of
//!   `packaging/grafana/storcon.json` must be one the new leader's `/metrics` exposes.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, ensure};
use cluster_tests::client::http_client;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::prom::{self, Exposition};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{Cluster, StorageApi, deadline, wait_until};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0x3e7c;
const CREATE: &[(&str, &str)] = &[
    ("path", "/v1/tenant"),
    ("method", "post"),
    ("status", "201"),
];
const PUT_LOCATION: &[(&str, &str)] = &[
    ("path", "/v1/tenant/{tenant_shard_id}/location_config"),
    ("method", "put"),
];
const SPAWNED: &str = "storage_controller_reconcile_spawn_total";
const COMPLETE: &str = "storage_controller_reconcile_complete_total";
const PS_LATENCY_COUNT: &str = "storage_controller_pageserver_request_latency_count";
const ATTACHED: &str = "storage_controller_node_attached_shards";
const LOCATIONS: &str = "storage_controller_node_shards";

async fn scrape(cluster: &Cluster, id: u64) -> anyhow::Result<Exposition> {
    prom::scrape(&http_client(Duration::from_secs(5)), &cluster.url(id)).await
}

/// The leader's reconcile and pageserver counters, to compare before and after a step.
#[derive(Debug, Clone, Copy)]
struct LeaderWork {
    spawned: f64,
    completed_ok: f64,
    location_puts: f64,
}

impl LeaderWork {
    fn of(e: &Exposition) -> LeaderWork {
        LeaderWork {
            spawned: e.sum(SPAWNED, &[]),
            completed_ok: e.sum(COMPLETE, &[("status", "ok")]),
            location_puts: e.sum(PS_LATENCY_COUNT, PUT_LOCATION),
        }
    }

    /// Every counter moved past `before`.
    fn moved_past(&self, before: &LeaderWork) -> anyhow::Result<()> {
        ensure!(
            self.spawned > before.spawned
                && self.completed_ok > before.completed_ok
                && self.location_puts > before.location_puts,
            "leader counters did not all move: before {before:?}, now {self:?}"
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_create_reconcile_and_failover() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));

    // Every replica serves its own strict exposition, without a token.
    let mut before = Vec::new();
    for id in cluster.ids() {
        let e = wait_until(
            "each replica counts both pageservers",
            deadline::CONVERGE,
            async || {
                let e = scrape(&cluster, id).await?;
                let nodes = e.value("storage_controller_pageserver_nodes", &[]);
                ensure!(nodes == Some(2.0), "replica {id}: {nodes:?} pageservers");
                Ok(e)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("replica {id}: {e:#}"));
        // The store's own metrics on every replica: each appended (and fsynced) log entries,
        // and its commit index is never behind what it applied.
        let get = |name: &str| e.sum(name, &[]);
        assert!(
            get("storcon_raft_log_append_fsync_seconds_count") > 0.0,
            "replica {id}: no fsync timed"
        );
        let (committed, applied) = (
            get("storcon_raft_commit_index"),
            get("storcon_raft_applied_index"),
        );
        assert!(
            applied > 0.0 && committed >= applied,
            "replica {id}: committed {committed}, applied {applied}"
        );
        if id == leader {
            assert!(
                get("storcon_raft_proposal_latency_seconds_count") > 0.0,
                "leader timed no proposal"
            );
        }
        before.push((id, e));
    }
    let on = |id: u64| &before.iter().find(|(i, _)| *i == id).expect("scraped").1;
    let leader_before = LeaderWork::of(on(leader));
    let shards_before = on(leader).sum("storage_controller_tenant_shards", &[]);

    // A create through the follower.
    let tenant = tenant_id(TAG, 1);
    let raw = api
        .send(
            Method::POST,
            "/v1/tenant",
            Some(&tenant_create_body(&tenant, 2, 0)),
        )
        .await
        .expect("create answered");
    assert_eq!(raw.status, 201, "create: {}", raw.body);
    wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("the tenant settles");

    // The follower counted the request it received, the leader the one forwarded to it.
    for id in [follower, leader] {
        let now = scrape(&cluster, id).await.expect("scrape");
        let (was, is) = (
            on(id).sum("storage_controller_http_request_status_total", CREATE),
            now.sum("storage_controller_http_request_status_total", CREATE),
        );
        assert!(
            is >= was + 1.0,
            "replica {id}: create counter {was} -> {is}"
        );
        let count = now.sum(
            "storage_controller_http_request_latency_count",
            &[("path", "/v1/tenant"), ("method", "post")],
        );
        assert!(
            count >= is,
            "replica {id}: latency count {count} < requests {is}"
        );
    }
    // Every replica's shard gauge, from its own applied state.
    for id in cluster.ids() {
        wait_until(
            "the shard gauge counts the new shards",
            deadline::CONVERGE,
            async || {
                let got = scrape(&cluster, id)
                    .await?
                    .sum("storage_controller_tenant_shards", &[]);
                ensure!(got == shards_before + 2.0, "replica {id}: {got}");
                Ok(())
            },
        )
        .await
        .expect("shard gauge");
    }
    // The leader reconciled the new shards: spawned, completed ok, location_config sent.
    let after_create = wait_until(
        "the leader's reconcile counters move",
        SETTLE_DEADLINE,
        async || {
            let e = scrape(&cluster, leader).await?;
            let work = LeaderWork::of(&e);
            work.moved_past(&leader_before)?;
            Ok((work, e))
        },
    )
    .await
    .expect("reconciles counted");
    let (work_after_create, e) = after_create;
    assert_eq!(
        e.sum(ATTACHED, &[]) - on(leader).sum(ATTACHED, &[]),
        2.0,
        "attached shards per node add up to the new shards"
    );

    // A reconcile of another kind: the policy now wants a secondary for each shard.
    let raw = api
        .send(
            Method::PUT,
            &format!("/control/v1/tenant/{tenant}/policy"),
            Some(&json!({"placement": {"Attached": 1}})),
        )
        .await
        .expect("policy answered");
    assert_eq!(raw.status, 200, "policy: {}", raw.body);
    wait_until(
        "secondaries are reconciled and counted",
        SETTLE_DEADLINE,
        async || {
            let e = scrape(&cluster, leader).await?;
            LeaderWork::of(&e).moved_past(&work_after_create)?;
            let (attached, all) = (e.sum(ATTACHED, &[]), e.sum(LOCATIONS, &[]));
            ensure!(
                all - attached
                    == on(leader).sum(LOCATIONS, &[]) - on(leader).sum(ATTACHED, &[]) + 2.0,
                "secondary locations per node: {} attached, {} in all",
                attached,
                all
            );
            Ok(())
        },
    )
    .await
    .expect("policy reconcile counted");
    // Routes are counted by template: no label anywhere holds the tenant's id.
    let e = scrape(&cluster, follower).await.expect("scrape");
    let policy = [
        ("path", "/control/v1/tenant/{tenant_id}/policy"),
        ("method", "put"),
        ("status", "200"),
    ];
    assert!(e.sum("storage_controller_http_request_status_total", &policy) >= 1.0);
    for sample in e.families.values().flat_map(|f| &f.samples) {
        assert!(
            !sample.labels.values().any(|v| v.contains(&tenant)),
            "a label holds a tenant id: {sample:?}"
        );
    }
    wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("the tenant settles with secondaries");

    // A passthrough GET is counted apart from the controller's own calls, under one template.
    let passthrough = |e: &Exposition, labels: &[(&str, &str)]| {
        e.sum(
            "storage_controller_passthrough_request_latency_count",
            labels,
        )
    };
    let was = passthrough(&scrape(&cluster, leader).await.expect("scrape"), &[]);
    wait_until(
        "a passthrough GET is answered and counted",
        SETTLE_DEADLINE,
        async || {
            let raw = api
                .send(Method::GET, &format!("/v1/tenant/{tenant}/timeline"), None)
                .await?;
            ensure!(
                raw.status == 200,
                "passthrough: {} {}",
                raw.status,
                raw.body
            );
            let e = scrape(&cluster, leader).await?;
            let (all, templated) = (
                passthrough(&e, &[]),
                passthrough(
                    &e,
                    &[
                        ("path", "/v1/tenant/{tenant_shard_id}/{*rest}"),
                        ("method", "get"),
                    ],
                ),
            );
            ensure!(
                all > was && templated == all,
                "passthroughs {was} -> {all} ({templated} templated)"
            );
            Ok(())
        },
    )
    .await
    .expect("passthrough counted");

    // Failover: the survivors see a new term and a new leader.
    let survivors: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let mut raft_before = Vec::new();
    for id in &survivors {
        let e = scrape(&cluster, *id).await.expect("scrape");
        assert_eq!(e.value("storcon_raft_leader_id", &[]), Some(leader as f64));
        raft_before.push((
            *id,
            e.sum("storcon_raft_term", &[]),
            e.sum("storcon_raft_leader_changes_total", &[]),
        ));
    }
    cluster.kill(leader);
    let new_leader = cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await
        .expect("the survivors elect a new leader");
    for (id, term, changes) in raft_before {
        wait_until(
            "the survivor's Raft metrics show the failover",
            deadline::ELECTION,
            async || {
                let e = scrape(&cluster, id).await?;
                let value = |name: &str, labels: &[(&str, &str)]| {
                    e.value(name, labels)
                        .ok_or_else(|| anyhow!("replica {id}: no {name} {labels:?}"))
                };
                let leads = if id == new_leader { 1.0 } else { 0.0 };
                ensure!(
                    value("storcon_raft_term", &[])? > term,
                    "replica {id}: term not past {term}"
                );
                ensure!(
                    value("storcon_raft_leader_changes_total", &[])? > changes,
                    "replica {id}: leader changes not past {changes}"
                );
                ensure!(
                    value("storcon_raft_leader_id", &[])? == new_leader as f64,
                    "replica {id}: leader id"
                );
                ensure!(
                    value("storcon_raft_is_leader", &[])? == leads,
                    "replica {id}: is_leader"
                );
                ensure!(
                    value(
                        "storage_controller_leadership_status",
                        &[("status", "leader")]
                    )? == leads
                        && value(
                            "storage_controller_leadership_status",
                            &[("status", "candidate")]
                        )? == 1.0 - leads,
                    "replica {id}: leadership status"
                );
                Ok(())
            },
        )
        .await
        .expect("failover seen in the metrics");
    }

    // Errors, so that every family has a series: a passthrough the pageserver refuses, and a
    // pageserver that stops answering the new leader's heartbeats.
    let new_api = StorageApi::new(cluster.client(new_leader));
    let errors = |e: &Exposition, name: &str| e.sum(name, &[]);
    wait_until(
        "a refused passthrough is counted",
        SETTLE_DEADLINE,
        async || {
            new_api
                .send(
                    Method::GET,
                    &format!("/v1/tenant/{tenant}/no_such_route"),
                    None,
                )
                .await?;
            let e = scrape(&cluster, new_leader).await?;
            let got = errors(&e, "storage_controller_passthrough_request_error_total");
            ensure!(got > 0.0, "no passthrough error counted yet");
            Ok(())
        },
    )
    .await
    .expect("passthrough error counted");
    sims.kill(2);
    let exposition = wait_until(
        "failed heartbeats are counted",
        SETTLE_DEADLINE,
        async || {
            let e = scrape(&cluster, new_leader).await?;
            let got = errors(&e, "storage_controller_pageserver_request_error_total");
            ensure!(got > 0.0, "no pageserver error counted yet");
            Ok(e)
        },
    )
    .await
    .expect("pageserver errors counted");
    check_dashboard(&exposition);
}

/// Every metric name the dashboard's expressions use is one `exposition` has, and the
/// dashboard charts each area the metrics cover.
fn check_dashboard(exposition: &Exposition) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/grafana/storcon.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let used = prom::dashboard_metric_names(&dashboard);
    for needed in [
        "storage_controller_http_request_status_total",
        "storage_controller_http_request_latency_bucket",
        "storage_controller_pageserver_request_latency_bucket",
        "storage_controller_reconcile_complete_total",
        "storcon_raft_term",
        "storcon_raft_apply_lag",
        "storcon_raft_log_append_fsync_seconds_bucket",
        "storcon_raft_leader_changes_total",
        "storage_controller_tenant_shards",
        "storage_controller_node_shards",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not chart {needed}"
        );
    }
    let exposed = exposition.exposed_names();
    let missing: BTreeSet<&String> = used.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses names /metrics does not expose: {missing:?}\nexposed: {exposed:?}"
    );
}
