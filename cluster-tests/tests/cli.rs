//! The operator CLI (`storcon <subcommand> --api URL`, issue 12 item 1), run as a subprocess
//! of the built binary against a live three-replica cluster with simulated pageservers, the
//! API always asked through a follower. Table output is parsed by its `|` columns and `--json`
//! as JSON; both are checked against what the API answers. One fixture per group:
//!
//! - `nodes_cluster_and_errors`: `nodes`, `cluster status` (leader, term, lag per member asked
//!   of the leader; a follower's own answer has no lag; a SIGSTOPped replica's lag grows, then
//!   returns to 0 once it is resumed), `node-configure`, `node-delete`,
//!   `node-tombstones`, `node-delete-tombstone`, `node-drop`; `STORCON_API`; clap's usage
//!   errors exit 2, server errors print the status and `msg` and exit 1, an unreachable API
//!   exits 3.
//! - `tenants_and_shards`: `tenant-create`, `tenants` (all, per node), `tenant-describe`,
//!   `tenant-policy`, `set-tenant-config`, `patch-tenant-config`, `tenant-shard-migrate`
//!   (`--dry-run` lists the move and changes nothing, then the move), `...-migrate-secondary`,
//!   `cancel-reconcile`, `tenant-shard-split` (`--dry-run`, then `--wait`),
//!   `tenant-set-preferred-az`, `tenant-drop`, `tenant-delete`.
//! - `drain_and_fill`: `start-drain --dry-run` lists each attached shard going to its
//!   secondary and changes nothing (a misspelt `dryrun` is a 400); `--wait` counts the shards
//!   down and exits 0 once the node is `PauseForRestart` and empty; a fill's dry run names
//!   exactly the shards the fill then brings back; a `--wait` shorter than the fill exits 4.
//! - `members_and_step_down`: `cluster status` (table and JSON), `members add` of a replica
//!   in join mode (a voter, by `cluster status --json`), a second add of the same id (the
//!   server's 409 and `msg`, exit 1), `members remove`, `step-down` (the leader `cluster
//!   status` names moves) and `step-down --to N` (lands on N); bad arguments exit 2.
//! - `token_from_flag_or_env`: with auth on, no token is a 401 and a wrong scope a 403 (exit
//!   1); `--token` and `STORCON_TOKEN` work, and `cluster status` sends it to the leader too.
//!
//! The optimiser is off, so the placements checked are the operations' own.

use std::collections::{BTreeMap, BTreeSet};

use cluster_tests::auth::{test_auth, token};
use cluster_tests::cli_run::{Run, run_storcon};
use cluster_tests::config::ControllerOptions;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::tenant_id;
use cluster_tests::{
    Cluster, ClusterOptions, ClusterStatus, StorageApi, deadline, free_port, wait_until,
};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0xc11;

/// `storcon --api <api> <args>`, with no `STORCON_*` from the test's environment.
async fn cli(api: &str, args: &[&str]) -> Run {
    let mut all = vec!["--api".to_string(), api.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    run_storcon(all, &[]).await
}

async fn get(api: &StorageApi, path: &str) -> Value {
    let (status, body) = api.call(Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The replicated part of `GET /debug/v1/tenant` (observed locations and reconcile results
/// left out): what a dry run must not change.
async fn durable_shards(api: &StorageApi) -> Value {
    let mut dump = get(api, "/debug/v1/tenant").await;
    for shard in dump.as_array_mut().expect("shard dump") {
        let m = shard.as_object_mut().expect("shard");
        for volatile in ["observed", "last_error", "pending_compute_notification"] {
            m.remove(volatile);
        }
    }
    dump
}

/// Each node's scheduling policy.
async fn schedulings(api: &StorageApi) -> BTreeMap<u64, Value> {
    get(api, "/control/v1/node")
        .await
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["id"].as_u64().expect("id"), n["scheduling"].clone()))
        .collect()
}

async fn start(pageservers: &[(u64, &str)]) -> ControllerFixture {
    ControllerFixture::start_with(
        pageservers,
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        ControllerOptions::without_optimiser(),
    )
    .await
    .expect("a formed cluster with Active simulators")
}

fn node(nodes: &Value, id: u64) -> &Value {
    nodes
        .as_array()
        .expect("node list")
        .iter()
        .find(|n| n["id"] == json!(id))
        .unwrap_or_else(|| panic!("node {id} in {nodes}"))
}

fn ids(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| match &v[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cluster_and_errors() {
    let fx = start(&[(1, "az-a"), (2, "az-b"), (3, "az-b")]).await;
    let url = fx.cluster.url(fx.follower);
    let api = StorageApi::new(fx.cluster.client(fx.follower));

    // nodes: the table and the JSON say what the API says.
    let nodes = get(&api, "/control/v1/node").await;
    let run = cli(&url, &["nodes"]).await.ok();
    let rows = run.table();
    assert_eq!(rows.len(), 3, "{run}");
    for row in &rows {
        let n = node(&nodes, row["Id"].parse().expect("numeric id"));
        assert_eq!(
            row["AZ"],
            n["availability_zone_id"].as_str().unwrap(),
            "{run}"
        );
        assert_eq!(
            row["Scheduling"],
            n["scheduling"].as_str().unwrap(),
            "{run}"
        );
        assert_eq!(row["Availability"], "Active", "{run}");
        assert_eq!(
            row["Hostname"],
            format!(
                "{}:{}",
                n["listen_http_addr"].as_str().unwrap(),
                n["listen_http_port"]
            ),
            "{run}"
        );
    }
    let listed = cli(&url, &["nodes", "--json"]).await.ok().json();
    assert_eq!(ids(&listed, "id"), ids(&nodes, "id"));
    assert_eq!(
        ids(&listed, "availability_zone_id"),
        ["az-a", "az-b"].map(String::from).into()
    );

    // STORCON_API in place of --api.
    let from_env = run_storcon(
        vec!["nodes".into(), "--json".into()],
        &[("STORCON_API", &url)],
    )
    .await
    .ok()
    .json();
    assert_eq!(ids(&from_env, "id"), ids(&nodes, "id"));

    // cluster status through a follower: the leader's view, with a lag for every member.
    let leader = fx
        .cluster
        .wait_for_leader(SETTLE_DEADLINE)
        .await
        .expect("leader");
    let own = get(&api, "/control/v1/cluster").await;
    assert_eq!(own["node_id"], json!(fx.follower));
    for m in own["members"].as_array().expect("members") {
        assert!(
            m["lag"].is_null() && m["matched_index"].is_null(),
            "a follower knows no lag: {own}"
        );
    }
    let run = cli(&url, &["cluster", "status"]).await.ok();
    assert_eq!(run.field("Leader"), leader.to_string(), "{run}");
    let from_leader = get(
        &StorageApi::new(fx.cluster.client(leader)),
        "/control/v1/cluster",
    )
    .await;
    assert_eq!(run.field("Term"), from_leader["term"].to_string(), "{run}");
    let rows = run.table();
    assert_eq!(
        rows.iter()
            .map(|r| r["Id"].clone())
            .collect::<BTreeSet<_>>(),
        fx.cluster.ids().iter().map(u64::to_string).collect(),
        "{run}"
    );
    for row in &rows {
        let lag: u64 = row["Lag"]
            .parse()
            .unwrap_or_else(|_| panic!("a numeric lag: {run}"));
        let matched: u64 = row["Matched index"].parse().expect("numeric matched index");
        assert!(matched > 0 || lag > 0, "an index or a lag: {run}");
        let role = if row["Id"] == leader.to_string() {
            "leader"
        } else {
            "follower"
        };
        assert_eq!(row["Role"], role, "{run}");
    }
    let status = cli(&url, &["cluster", "status", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        status["node_id"],
        json!(leader),
        "asked of the leader: {status}"
    );
    for m in status["members"].as_array().expect("members") {
        assert!(m["lag"].is_u64() && m["matched_index"].is_u64(), "{status}");
    }
    // With nothing written, every member catches up: lag 0 everywhere.
    wait_until("every member's lag is 0", SETTLE_DEADLINE, async || {
        let s = cli(&url, &["cluster", "status", "--json"])
            .await
            .ok()
            .json();
        let lags: Vec<&Value> = s["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["lag"])
            .collect();
        anyhow::ensure!(lags.iter().all(|l| **l == json!(0)), "lags {lags:?}");
        Ok(())
    })
    .await
    .expect("caught up");

    // A paused follower falls behind: its lag grows with each write, and goes back to 0.
    let paused = fx
        .cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != fx.follower)
        .expect("a third replica");
    fx.cluster.pause(paused).expect("SIGSTOP");
    let lag_of = |s: &Value, id: u64| {
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == json!(id))
            .expect("member")["lag"]
            .clone()
    };
    for policy in ["pause", "active"] {
        cli(
            &url,
            &["node-configure", "--node-id", "1", "--scheduling", policy],
        )
        .await
        .ok();
    }
    let behind = wait_until("the paused replica lags", SETTLE_DEADLINE, async || {
        let s = cli(&url, &["cluster", "status", "--json"])
            .await
            .ok()
            .json();
        let lag = lag_of(&s, paused).as_u64().unwrap_or(0);
        anyhow::ensure!(
            lag >= 2 && lag_of(&s, fx.follower) == json!(0),
            "lags in {s}"
        );
        Ok(lag)
    })
    .await
    .expect("a lag");
    let run = cli(&url, &["cluster", "status"]).await.ok();
    let row = run
        .table()
        .into_iter()
        .find(|r| r["Id"] == paused.to_string())
        .expect("its row");
    assert!(
        row["Lag"].parse::<u64>().expect("numeric") >= behind,
        "{run}"
    );
    fx.cluster.resume(paused).expect("SIGCONT");
    wait_until(
        "the resumed replica catches up",
        SETTLE_DEADLINE,
        async || {
            let s = cli(&url, &["cluster", "status", "--json"])
                .await
                .ok()
                .json();
            anyhow::ensure!(lag_of(&s, paused) == json!(0), "lags in {s}");
            Ok(())
        },
    )
    .await
    .expect("caught up");
    // node-configure, checked against the API.
    for (flag, listed) in [("pause", "Pause"), ("active", "Active")] {
        cli(
            &url,
            &["node-configure", "--node-id", "3", "--scheduling", flag],
        )
        .await
        .ok();
        assert_eq!(
            api.node_scheduling(3).await.unwrap().as_deref(),
            Some(listed)
        );
    }

    // Server errors: the status and the server's msg on stderr, exit 1.
    cli(
        &url,
        &["node-configure", "--node-id", "99", "--scheduling", "pause"],
    )
    .await
    .fails(1, &["404", "Node 99 not registered"]);
    let unknown = tenant_id(TAG, 99);
    cli(&url, &["tenant-describe", "--tenant-id", &unknown])
        .await
        .fails(1, &["404", &format!("Tenant {unknown} not found")]);
    cli(&url, &["tenant-describe", "--tenant-id", "not-hex"])
        .await
        .fails(1, &["400"]);
    cli(&url, &["cancel-drain", "--node-id", "1"])
        .await
        .fails(1, &["412", "no drain in progress"]);

    // Bad arguments: clap's usage error, exit 2, nothing sent.
    cli(&url, &["nodes", "--bogus"])
        .await
        .fails(2, &["Usage:", "--bogus"]);
    cli(&url, &["node-configure", "--node-id", "x"])
        .await
        .fails(2, &["invalid value 'x' for '--node-id"]);
    cli(
        &url,
        &[
            "node-configure",
            "--node-id",
            "1",
            "--scheduling",
            "sideways",
        ],
    )
    .await
    .fails(2, &["invalid value 'sideways'"]);
    cli(&url, &["node-configure", "--node-id", "1"])
        .await
        .fails(2, &["--availability or --scheduling"]);
    cli(&url, &["node-drop", "--node-id", "2"])
        .await
        .fails(2, &["--unclean"]);
    cli(
        &url,
        &["start-drain", "--node-id", "1", "--dry-run", "--wait"],
    )
    .await
    .fails(2, &["cannot be used with"]);
    cli(&url, &["no-such-command"]).await.fails(2, &["Usage:"]);
    run_storcon(vec!["nodes".into()], &[])
        .await
        .fails(2, &["STORCON_API"]);
    assert_eq!(
        api.node_scheduling(1).await.unwrap().as_deref(),
        Some("Active")
    );

    // Nothing listening: a clean message, exit 3.
    let nobody = format!("127.0.0.1:{}", free_port());
    let run = cli(&nobody, &["nodes"])
        .await
        .fails(3, &["cannot reach", &nobody]);
    assert!(!run.stderr.contains("panicked"), "{run}");

    // node-delete, tombstones, node-drop.
    cli(&url, &["node-delete", "--node-id", "3"]).await.ok();
    let tombstones = get(&api, "/debug/v1/tombstone").await;
    assert_eq!(ids(&tombstones, "id"), ["3".to_string()].into());
    let run = cli(&url, &["node-tombstones"]).await.ok();
    assert_eq!(
        run.table()
            .iter()
            .map(|r| r["Id"].clone())
            .collect::<Vec<_>>(),
        ["3"],
        "{run}"
    );
    let listed = cli(&url, &["tombstones", "--json"]).await.ok().json();
    assert_eq!(ids(&listed, "id"), ids(&tombstones, "id"));
    cli(&url, &["node-delete-tombstone", "--node-id", "3"])
        .await
        .ok();
    assert_eq!(get(&api, "/debug/v1/tombstone").await, json!([]));
    cli(&url, &["node-delete-tombstone", "--node-id", "3"])
        .await
        .fails(1, &["404"]);
    cli(&url, &["node-drop", "--node-id", "2", "--unclean"])
        .await
        .ok();
    let nodes = get(&api, "/control/v1/node").await;
    assert!(!ids(&nodes, "id").contains("2"), "{nodes}");
    cli(&url, &["node-drop", "--node-id", "2", "--unclean"])
        .await
        .fails(1, &["404"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_shards() {
    let fx = start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")]).await;
    let url = fx.cluster.url(fx.follower);
    let api = StorageApi::new(fx.cluster.client(fx.follower));
    let one = tenant_id(TAG, 1);
    let two = tenant_id(TAG, 2);

    // tenant-create: table and JSON.
    let run = cli(
        &url,
        &[
            "tenant-create",
            "--tenant-id",
            &one,
            "--placement",
            "attached:1",
        ],
    )
    .await
    .ok();
    let rows = run.table();
    assert_eq!(rows.len(), 1, "{run}");
    assert_eq!(rows[0]["Shard"], one, "{run}");
    let created = cli(
        &url,
        &[
            "tenant-create",
            "--tenant-id",
            &two,
            "--shard-count",
            "2",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        created["shards"].as_array().map(Vec::len),
        Some(2),
        "{created}"
    );
    wait_settled(&api, &fx.sims, &[one.clone(), two.clone()], SETTLE_DEADLINE)
        .await
        .expect("placed");

    // tenants: every tenant, with its shard count and policy.
    let run = cli(&url, &["tenants"]).await.ok();
    let rows: BTreeMap<String, BTreeMap<String, String>> = run
        .table()
        .into_iter()
        .map(|r| (r["TenantId"].clone(), r))
        .collect();
    assert_eq!(
        rows.keys().cloned().collect::<BTreeSet<_>>(),
        [one.clone(), two.clone()].into(),
        "{run}"
    );
    assert_eq!(rows[&one]["ShardCount"], "1");
    assert_eq!(rows[&one]["Placement"], "Attached(1)");
    assert_eq!(rows[&two]["ShardCount"], "2");
    assert_eq!(rows[&two]["StripeSize"], "2048");
    let listed = cli(&url, &["tenants", "--json"]).await.ok().json();
    let from_api = get(&api, "/control/v1/tenant").await;
    assert_eq!(ids(&listed, "tenant_id"), ids(&from_api, "tenant_id"));
    for (a, b) in listed
        .as_array()
        .unwrap()
        .iter()
        .zip(from_api.as_array().unwrap())
    {
        assert_eq!(
            (&a["policy"], &a["stripe_size"]),
            (&b["policy"], &b["stripe_size"])
        );
        assert_eq!(
            ids(&a["shards"], "node_attached"),
            ids(&b["shards"], "node_attached")
        );
    }

    // tenant-describe against the API.
    let described = get(&api, &format!("/control/v1/tenant/{one}")).await;
    let shard = &described["shards"][0];
    let attached = shard["node_attached"].as_u64().expect("attached");
    let secondary = shard["node_secondary"][0].as_u64().expect("a secondary");
    let run = cli(&url, &["tenant-describe", "--tenant-id", &one])
        .await
        .ok();
    let row = &run.table()[0];
    assert_eq!(row["Shard"], one, "{run}");
    assert_eq!(row["Attached"], attached.to_string(), "{run}");
    assert_eq!(row["Secondary"], secondary.to_string(), "{run}");
    assert_eq!(row["Attached AZ"], fx.sims.az(attached), "{run}");
    assert_eq!(run.field("Policy"), "Attached(1)", "{run}");
    let json_described = cli(&url, &["tenant-describe", "--tenant-id", &one, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(json_described["tenant_id"], json!(one));
    assert_eq!(
        json_described["shards"][0]["node_attached"],
        json!(attached)
    );
    assert_eq!(
        json_described["shards"][0]["node_secondary"],
        json!([secondary])
    );

    // tenants --node-id: that node's shards, as the API lists them.
    let run = cli(&url, &["tenants", "--node-id", &attached.to_string()])
        .await
        .ok();
    let on_node = get(&api, &format!("/control/v1/node/{attached}/shards")).await;
    let rows = run.table();
    assert_eq!(
        rows.len(),
        on_node["shards"].as_array().unwrap().len(),
        "{run}"
    );
    assert!(
        rows.iter()
            .any(|r| r["Shard"] == one && r["Intended"] == "attached"),
        "{run}"
    );

    // tenant-policy.
    cli(
        &url,
        &[
            "tenant-policy",
            "--tenant-id",
            &two,
            "--scheduling",
            "pause",
        ],
    )
    .await
    .ok();
    for s in get(&api, &format!("/control/v1/tenant/{two}")).await["shards"]
        .as_array()
        .unwrap()
    {
        assert_eq!(s["scheduling_policy"], "Pause");
    }
    cli(
        &url,
        &[
            "tenant-policy",
            "--tenant-id",
            &two,
            "--scheduling",
            "active",
        ],
    )
    .await
    .ok();
    cli(
        &url,
        &[
            "tenant-policy",
            "--tenant-id",
            &two,
            "--placement",
            "sideways",
        ],
    )
    .await
    .fails(2, &["attached:N"]);

    // Tenant config: set, patch, and the server's refusal of an unknown key.
    let config_path = format!("/v1/tenant/{one}/config");
    cli(
        &url,
        &[
            "set-tenant-config",
            "--tenant-id",
            &one,
            "--config",
            r#"{"gc_period": "1h"}"#,
        ],
    )
    .await
    .ok();
    assert_eq!(
        get(&api, &config_path).await["tenant_specific_overrides"],
        json!({"gc_period": "1h"})
    );
    let patch = r#"{"gc_period": null, "pitr_interval": "1day"}"#;
    cli(
        &url,
        &[
            "patch-tenant-config",
            "--tenant-id",
            &one,
            "--config",
            patch,
        ],
    )
    .await
    .ok();
    assert_eq!(
        get(&api, &config_path).await["tenant_specific_overrides"],
        json!({"pitr_interval": "1day"})
    );
    cli(
        &url,
        &[
            "set-tenant-config",
            "--tenant-id",
            &one,
            "--config",
            r#"{"bogus_key": 1}"#,
        ],
    )
    .await
    .fails(1, &["400", "bogus_key"]);
    cli(
        &url,
        &[
            "set-tenant-config",
            "--tenant-id",
            &one,
            "--config",
            "not json",
        ],
    )
    .await
    .fails(2, &["--config: not JSON"]);

    // Migrate: the dry run lists the move and changes nothing; then the move itself.
    let to = [1, 2, 3]
        .into_iter()
        .find(|n| *n != attached && *n != secondary)
        .expect("a third node");
    let before = durable_shards(&api).await;
    let migrate = [
        "tenant-shard-migrate",
        "--tenant-shard-id",
        one.as_str(),
        "--node",
        &to.to_string(),
        "--override-scheduler",
    ];
    let plan = cli(&url, &[&migrate[..], &["--dry-run", "--json"]].concat())
        .await
        .ok()
        .json();
    assert_eq!(plan["dry_run"], json!(true), "{plan}");
    let moves = plan["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), 1, "{plan}");
    assert_eq!(moves[0]["tenant_shard_id"], json!(one));
    assert_eq!(moves[0]["from"], json!(attached));
    assert_eq!(moves[0]["to"], json!(to));
    let run = cli(&url, &[&migrate[..], &["--dry-run"]].concat())
        .await
        .ok();
    assert_eq!(run.table()[0]["To"], to.to_string(), "{run}");
    assert_eq!(
        durable_shards(&api).await,
        before,
        "a dry run changes nothing"
    );
    cli(
        &url,
        &[
            "tenant-shard-migrate",
            "--tenant-shard-id",
            &one,
            "--node",
            "99",
            "--dry-run",
        ],
    )
    .await
    .fails(1, &["400", "Node 99 not found"]);
    cli(&url, &migrate).await.ok();
    let now = get(&api, &format!("/control/v1/tenant/{one}")).await;
    assert_eq!(now["shards"][0]["node_attached"], json!(to), "{now}");
    wait_settled(&api, &fx.sims, std::slice::from_ref(&one), SETTLE_DEADLINE)
        .await
        .expect("settled");

    // migrate-secondary, cancel-reconcile.
    cli(
        &url,
        &[
            "tenant-shard-migrate-secondary",
            "--tenant-shard-id",
            &one,
            "--node",
            &attached.to_string(),
        ],
    )
    .await
    .ok();
    let now = get(&api, &format!("/control/v1/tenant/{one}")).await;
    assert_eq!(
        now["shards"][0]["node_secondary"],
        json!([attached]),
        "{now}"
    );
    cli(&url, &["cancel-reconcile", "--tenant-shard-id", &one])
        .await
        .ok();
    let unknown_shard = tenant_id(TAG, 98);
    cli(
        &url,
        &[
            "tenant-shard-cancel-reconcile",
            "--tenant-shard-id",
            &unknown_shard,
        ],
    )
    .await
    .fails(1, &["404"]);

    // Split: the dry run names the children on their parents' nodes; then --wait.
    wait_settled(&api, &fx.sims, &[one.clone(), two.clone()], SETTLE_DEADLINE)
        .await
        .expect("settled");
    let parents = get(&api, &format!("/control/v1/tenant/{two}")).await;
    let parent_node: BTreeMap<String, Value> = parents["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["tenant_shard_id"].as_str().unwrap().to_string(),
                s["node_attached"].clone(),
            )
        })
        .collect();
    let before = durable_shards(&api).await;
    let split = [
        "tenant-shard-split",
        "--tenant-id",
        two.as_str(),
        "--shard-count",
        "4",
    ];
    let plan = cli(&url, &[&split[..], &["--dry-run", "--json"]].concat())
        .await
        .ok()
        .json();
    let moves = plan["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), 4, "{plan}");
    for m in moves {
        let child = m["tenant_shard_id"].as_str().unwrap();
        // Child n of 4 comes from parent n % 2 of 2.
        let n = u8::from_str_radix(&child[33..35], 16).unwrap();
        let parent = format!("{two}-{:02x}02", n % 2);
        assert_eq!(
            m["to"], parent_node[&parent],
            "{child} on its parent {parent}'s node: {plan}"
        );
        assert_eq!(m["from"], m["to"], "{plan}");
    }
    assert_eq!(
        cli(&url, &[&split[..], &["--dry-run"]].concat())
            .await
            .ok()
            .table()
            .len(),
        4
    );
    assert_eq!(
        durable_shards(&api).await,
        before,
        "a dry run changes nothing"
    );
    cli(
        &url,
        &[
            "tenant-shard-split",
            "--tenant-id",
            &unknown_shard,
            "--shard-count",
            "4",
            "--dry-run",
        ],
    )
    .await
    .fails(1, &["404"]);
    let run = cli(
        &url,
        &[&split[..], &["--wait", "--timeout", "120"]].concat(),
    )
    .await
    .ok();
    assert!(
        run.stdout
            .contains(&format!("split of {two} done: 4 shard(s)")),
        "{run}"
    );
    let after = get(&api, &format!("/control/v1/tenant/{two}")).await;
    let shards = after["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4, "{after}");
    assert!(
        shards
            .iter()
            .all(|s| s["is_splitting"] == json!(false) && s["node_attached"].is_u64()),
        "{after}"
    );
    assert_eq!(
        ids(&after["shards"], "tenant_shard_id"),
        ids(&plan["moves"], "tenant_shard_id"),
        "the children the dry run named"
    );

    // Preferred AZ: the one given, then each shard's attached node's.
    let run = cli(
        &url,
        &[
            "tenant-set-preferred-az",
            "--tenant-id",
            &one,
            "--preferred-az",
            "az-b",
        ],
    )
    .await
    .ok();
    assert_eq!(run.table()[0]["Preferred AZ"], "az-b", "{run}");
    assert_eq!(
        get(&api, &format!("/control/v1/tenant/{one}")).await["shards"][0]["preferred_az_id"],
        "az-b"
    );
    cli(
        &url,
        &["tenant-set-preferred-az", "--tenant-id", &two, "--json"],
    )
    .await
    .ok();
    for s in get(&api, &format!("/control/v1/tenant/{two}")).await["shards"]
        .as_array()
        .unwrap()
    {
        let on = s["node_attached"].as_u64().unwrap();
        assert_eq!(s["preferred_az_id"], json!(fx.sims.az(on)), "{s}");
    }

    // tenant-drop forgets; tenant-delete deletes.
    cli(&url, &["tenant-drop", "--tenant-id", &one, "--unclean"])
        .await
        .ok();
    let (status, _) = api
        .call(Method::GET, &format!("/control/v1/tenant/{one}"), None)
        .await;
    assert_eq!(status, 404);
    wait_until("tenant deleted", SETTLE_DEADLINE, async || {
        let run = cli(&url, &["tenant-delete", "--tenant-id", &two]).await;
        anyhow::ensure!(run.code == 0 || run.stderr.contains("404"), "{run}");
        let (status, _) = api
            .call(Method::GET, &format!("/control/v1/tenant/{two}"), None)
            .await;
        anyhow::ensure!(status == 404, "still listed: {status}");
        Ok(())
    })
    .await
    .expect("deleted");
    assert_eq!(
        cli(&url, &["tenants", "--json"]).await.ok().json(),
        json!([])
    );
}

/// Shards attached on `node` by intent, from the API.
async fn attached_on(api: &StorageApi, node: u64) -> BTreeSet<String> {
    get(api, &format!("/control/v1/node/{node}/shards")).await["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["is_intended_secondary"] == json!(false))
        .map(|s| s["tenant_shard_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_fill() {
    let fx = start(&[(1, "az-a"), (2, "az-a"), (3, "az-a")]).await;
    let url = fx.cluster.url(fx.follower);
    let api = StorageApi::new(fx.cluster.client(fx.follower));
    let tenants: Vec<String> = (1..=4).map(|n| tenant_id(TAG, 10 + n)).collect();
    for t in &tenants {
        cli(
            &url,
            &[
                "tenant-create",
                "--tenant-id",
                t,
                "--placement",
                "attached:1",
            ],
        )
        .await
        .ok();
    }
    wait_settled(&api, &fx.sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("placed");
    // A timeline each, so that a move waits for the destination to catch up.
    for t in &tenants {
        let body = json!({"new_timeline_id": format!("{TAG:08x}{:024x}", 1)});
        let (status, answer) = api
            .call(
                Method::POST,
                &format!("/v1/tenant/{t}/timeline"),
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    let mut per_node = Vec::new();
    for n in 1..=3 {
        per_node.push((attached_on(&api, n).await.len(), n));
    }
    let busiest = per_node.iter().max().expect("nodes").1;
    let node_arg = busiest.to_string();
    let on_busiest = attached_on(&api, busiest).await;
    assert!(!on_busiest.is_empty());

    // The drain's dry run: each shard attached there, to its secondary; nothing changes.
    let dump = durable_shards(&api).await;
    let nodes = schedulings(&api).await;
    let plan = cli(
        &url,
        &["start-drain", "--node-id", &node_arg, "--dry-run", "--json"],
    )
    .await
    .ok()
    .json();
    let moves = plan["moves"].as_array().expect("moves");
    assert_eq!(ids(&plan["moves"], "tenant_shard_id"), on_busiest, "{plan}");
    for m in moves {
        let shard = m["tenant_shard_id"].as_str().unwrap();
        let described = get(&api, &format!("/control/v1/tenant/{shard}")).await;
        assert_eq!(m["from"], json!(busiest), "{plan}");
        assert_eq!(
            m["to"], described["shards"][0]["node_secondary"][0],
            "{shard} to its secondary: {plan}"
        );
    }
    let run = cli(&url, &["start-drain", "--node-id", &node_arg, "--dry-run"])
        .await
        .ok();
    assert_eq!(run.table().len(), moves.len(), "{run}");
    assert_eq!(
        durable_shards(&api).await,
        dump,
        "a dry run changes nothing"
    );
    assert_eq!(schedulings(&api).await, nodes, "a dry run changes nothing");
    cli(&url, &["start-drain", "--node-id", "99", "--dry-run"])
        .await
        .fails(1, &["404"]);
    // A misspelt dry_run must not start the real drain.
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/control/v1/node/{busiest}/drain?dryrun=true"),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        schedulings(&api).await,
        nodes,
        "a refused query changes nothing"
    );
    cli(
        &url,
        &["start-drain", "--node-id", &node_arg, "--dry-run=yes"],
    )
    .await
    .fails(2, &["Usage:"]);

    // The drain, waited for; each move waits for the destination to catch up, so the progress
    // lines count the shards down.
    fx.sims
        .set_behaviour(&json!({"catch_up_ms": 700}))
        .await
        .expect("slow catch-up");
    let run = cli(
        &url,
        &[
            "start-drain",
            "--node-id",
            &node_arg,
            "--wait",
            "--timeout",
            "150",
        ],
    )
    .await
    .ok();
    let prefix = format!("drain of node {busiest}: ");
    let left: Vec<usize> = run
        .stdout
        .lines()
        .filter(|l| l.contains("left to move"))
        .filter_map(|l| l.strip_prefix(&prefix)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(left.len() >= 2, "a line per count: {run}");
    assert!(
        left.windows(2).all(|w| w[0] > w[1]),
        "counting down: {left:?}"
    );
    assert!(
        left[0] <= on_busiest.len() && left[left.len() - 1] == 0,
        "{left:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "drain of node {busiest} done: node PauseForRestart"
        )),
        "{run}"
    );
    assert_eq!(
        api.node_scheduling(busiest).await.unwrap().as_deref(),
        Some("PauseForRestart")
    );
    assert_eq!(attached_on(&api, busiest).await, BTreeSet::new());

    // A fill needs the node Active; its dry run says so as the fill would.
    cli(&url, &["start-fill", "--node-id", &node_arg, "--dry-run"])
        .await
        .fails(1, &["412"]);
    cli(
        &url,
        &[
            "node-configure",
            "--node-id",
            &node_arg,
            "--scheduling",
            "active",
        ],
    )
    .await
    .ok();
    let dump = durable_shards(&api).await;
    let plan = cli(
        &url,
        &["start-fill", "--node-id", &node_arg, "--dry-run", "--json"],
    )
    .await
    .ok()
    .json();
    let planned = ids(&plan["moves"], "tenant_shard_id");
    assert!(
        !planned.is_empty(),
        "the node should take its share back: {plan}"
    );
    for m in plan["moves"].as_array().unwrap() {
        assert_eq!(m["to"], json!(busiest), "{plan}");
    }
    assert_eq!(
        durable_shards(&api).await,
        dump,
        "a dry run changes nothing"
    );
    // Each move of the fill takes 3 s: a 1 s --wait gives up with exit 4, and the fill goes on.
    fx.sims
        .set_behaviour(&json!({"catch_up_ms": 3000}))
        .await
        .expect("slower catch-up");
    let run = cli(
        &url,
        &[
            "start-fill",
            "--node-id",
            &node_arg,
            "--wait",
            "--timeout",
            "1",
            "--json",
        ],
    )
    .await;
    let run = run.fails(
        4,
        &[&format!("fill of node {busiest} still running after 1s")],
    );
    // The intent cuts over as each move starts: the count may already be up.
    let progress = format!("fill of node {busiest}: ");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&progress) && l.ends_with("shard(s) attached, node Filling")),
        "progress on stderr with --json: {run}"
    );
    assert!(
        run.stdout.is_empty(),
        "no JSON for an unfinished wait: {run}"
    );
    wait_until("the fill ends", SETTLE_DEADLINE, async || {
        let scheduling = api.node_scheduling(busiest).await?;
        anyhow::ensure!(scheduling.as_deref() == Some("Active"), "{scheduling:?}");
        Ok(())
    })
    .await
    .expect("filled");
    assert_eq!(
        attached_on(&api, busiest).await,
        planned,
        "the fill moved what its dry run named"
    );
    cli(&url, &["cancel-fill", "--node-id", &node_arg])
        .await
        .fails(1, &["412", "no fill in progress"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_flag_or_env() {
    let files = tempfile::tempdir().expect("tempdir");
    let auth = test_auth(files.path());
    let admin = auth.client_token.clone();
    let (cluster, leader) = Cluster::start_formed_with_auth(
        ClusterOptions::default(),
        Some(ControllerOptions::test_defaults()),
        Some(auth),
    )
    .await
    .expect("a formed cluster with auth");
    cluster.wait_ready(deadline::CONVERGE).await.expect("ready");
    let url = cluster.url(cluster.live_other_than(leader));

    cli(&url, &["nodes"]).await.fails(1, &["401"]);
    let wrong_scope = token("pageserverapi");
    cli(&url, &["--token", &wrong_scope, "nodes"])
        .await
        .fails(1, &["403"]);
    let listed = cli(&url, &["--token", &admin, "nodes", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(listed, json!([]));
    let env = [
        ("STORCON_API", url.as_str()),
        ("STORCON_TOKEN", admin.as_str()),
    ];
    let status = run_storcon(
        vec!["cluster".into(), "status".into(), "--json".into()],
        &env,
    )
    .await
    .ok()
    .json();
    // The token went to the leader too: it answered, with a lag per member.
    assert_eq!(status["node_id"], json!(leader), "{status}");
    assert!(
        status["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["lag"].is_u64()),
        "{status}"
    );
}

/// `cluster status --json` parsed as the harness's typed status.
async fn cluster_status(api: &str) -> ClusterStatus {
    let run = cli(api, &["cluster", "status", "--json"]).await.ok();
    serde_json::from_value(run.json()).unwrap_or_else(|e| panic!("{e}: {run}"))
}

/// `step-down` printed `leadership moved from replica A to replica B (term T)`: (A, B).
fn moved(run: &Run) -> (u64, u64) {
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("leadership moved from replica "))
        .unwrap_or_else(|| panic!("no handover line: {run}"));
    let (from, rest) = line.split_once(" to replica ").expect("to replica");
    let (to, _) = rest.split_once(' ').expect("term");
    (from.parse().expect("numeric"), to.parse().expect("numeric"))
}

/// Waits until `cluster status` (the table's `Leader:` line) names `leader`.
async fn wait_cli_leader(api: &str, leader: u64) {
    wait_until(
        "cluster status names the new leader",
        deadline::ELECTION,
        async || {
            let run = cli(api, &["cluster", "status"]).await;
            anyhow::ensure!(run.code == 0, "{run}");
            anyhow::ensure!(run.field("Leader") == leader.to_string(), "{run}");
            Ok(())
        },
    )
    .await
    .expect("the leader moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_step_down() {
    let (mut cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");
    let url = cluster.url(cluster.live_other_than(leader));

    // cluster status, table and JSON, through a follower.
    let run = cli(&url, &["cluster", "status"]).await.ok();
    assert_eq!(run.field("Leader"), leader.to_string(), "{run}");
    let roles: BTreeMap<String, String> = run
        .table()
        .into_iter()
        .map(|r| (r["Id"].clone(), r["Role"].clone()))
        .collect();
    let expected: BTreeMap<String, String> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let role = if id == leader { "leader" } else { "follower" };
            (id.to_string(), role.to_string())
        })
        .collect();
    assert_eq!(roles, expected, "{run}");
    let status = cluster_status(&url).await;
    assert_eq!(status.leader_id, Some(leader));
    assert_eq!(status.voters(), BTreeSet::from([1, 2, 3]), "{status:?}");

    // members add: a replica in join mode becomes a voter.
    let addr4 = cluster
        .start_joining(4)
        .expect("replica 4 starts")
        .to_string();
    let run = cli(&url, &["members", "add", "--id", "4", "--addr", &addr4])
        .await
        .ok();
    assert!(run.stdout.contains("replica 4 added"), "{run}");
    let status = cluster_status(&url).await;
    assert_eq!(status.voters(), BTreeSet::from([1, 2, 3, 4]), "{status:?}");
    let m4 = status.members.iter().find(|m| m.id == 4).expect("4 listed");
    assert_eq!(m4.addr, addr4);
    assert_ne!(m4.role, "learner", "{status:?}");

    // Adding it again: the server's 409 and msg, exit 1, membership unchanged.
    let again = cli(&url, &["members", "add", "--id", "4", "--addr", &addr4]).await;
    let (code, body) = StorageApi::new(cluster.client(leader))
        .call(
            Method::POST,
            "/control/v1/members",
            Some(&json!({"id": 4, "addr": addr4})),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    let msg = body["msg"].as_str().expect("msg");
    assert!(msg.contains("already a member"), "{msg}");
    again.fails(1, &["409", msg, "/control/v1/members"]);
    assert_eq!(cluster_status(&url).await.voters().len(), 4);

    // members remove: gone from the list.
    let run = cli(&url, &["members", "remove", "--id", "4"]).await.ok();
    assert!(run.stdout.contains("replica 4 removed"), "{run}");
    let status = cluster_status(&url).await;
    assert!(status.members.iter().all(|m| m.id != 4), "{status:?}");
    assert_eq!(status.voters(), BTreeSet::from([1, 2, 3]), "{status:?}");
    cluster.kill(4);

    // step-down: leadership moves off the leader.
    let term = status.term;
    let run = cli(&url, &["step-down"]).await.ok();
    let (from, to) = moved(&run);
    assert_eq!(from, leader, "{run}");
    assert_ne!(to, leader, "{run}");
    wait_cli_leader(&url, to).await;
    let status = cluster_status(&url).await;
    assert!(status.term > term, "{status:?} after term {term}");

    // step-down --to a named voter: it lands there (one not leading, the highest id).
    let named = [1u64, 2, 3]
        .into_iter()
        .rfind(|id| *id != to)
        .expect("named");
    let answer = cli(&url, &["step-down", "--to", &named.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(answer["previous_leader"], json!(to), "{answer}");
    assert_eq!(answer["new_leader"], json!(named), "{answer}");
    wait_cli_leader(&url, named).await;
    assert_eq!(cluster_status(&url).await.leader_id, Some(named));

    // Bad arguments: clap's usage errors, exit 2, nothing sent.
    for args in [
        &["members", "add", "--id", "5"][..],
        &["members", "add", "--id", "five", "--addr", &addr4],
        &["members", "remove"],
        &["members", "remove", "--id", "-1"],
        &["members"],
        &["step-down", "--to", "two"],
        &["cluster"],
    ] {
        cli(&url, args).await.fails(2, &[]);
    }
    let status = cluster_status(&url).await;
    assert_eq!(status.voters(), BTreeSet::from([1, 2, 3]), "{status:?}");
    assert_eq!(status.leader_id, Some(named));
}
