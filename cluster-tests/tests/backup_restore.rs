//! Backup, restore and forced recovery, end to end (issue 12, item 6), with the real `storcon`
//! binary's subcommands.
//!
//! `backup_and_restore`: a three-replica cluster with tenants (one split) and three simulated
//! pageservers. `storcon backup` through a follower writes a verified file; the old cluster
//! then issues more generations (a pageserver re-attaches). A corrupted or truncated copy is
//! refused by `storcon restore` with a clear message and nothing written. The backup is
//! restored into a fresh data dir of a new config (three members listed, only one started):
//! it leads a one-member cluster holding every tenant, shard, node and policy, at a term above
//! the old one, and restoring again into that dir is refused. The simulators re-attach to it
//! and end up holding generations strictly above every generation the old cluster issued (its
//! last known ones and the simulators' histories); a new tenant is created above the floor.
//! `storcon members add` then adds a replica back (join mode, a new id, an empty data dir): it
//! becomes a voter, catches up, and serves the tenants.
//!
//! `recover_after_quorum_loss`: three replicas, two SIGKILLed, the survivor stopped; `storcon
//! recover` without `--force` refuses and changes nothing; with it, it warns loudly, keeps the
//! old store file, and the survivor starts as a one-member cluster that serves reads and
//! writes with the tenants intact and generations above every one issued; a replica is then
//! added back as after a restore.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cluster_tests::cli_run::{Run, run_storcon};
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{
    Cluster, ClusterOptions, ClusterStatus, ControllerOptions, ReadMode, Sims, StorageApi,
    deadline, wait_until,
};
use reqwest::Method;
use serde_json::Value;

const TAG: u32 = 0xbac0;
const GAP: u32 = 1_000_000;

/// Pageservers of both scenarios: (node id, AZ).
const PAGESERVERS: [(u64, &str); 3] = [(1, "az-a"), (2, "az-a"), (3, "az-b")];

fn controller_options() -> ControllerOptions {
    // No optimiser moves: placements stay as created, so the restored intents can be compared
    // with the backed-up ones shard by shard.
    ControllerOptions::without_optimiser()
}

/// Runs `storcon <args>`; no `STORCON_*` from the test's environment leaks in unless `env`
/// sets it.
async fn storcon(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_storcon(args.iter().map(|a| a.to_string()).collect(), env).await
}

/// `storcon restore --config <config> --from <from> <more>`.
async fn restore(config: &str, from: &Path, more: &[&str]) -> Run {
    let mut args = vec!["restore", "--config", config, "--from"];
    args.push(from.to_str().expect("utf-8 path"));
    args.extend_from_slice(more);
    storcon(&args, &[]).await
}

fn assert_exit(out: &Run, code: i32, what: &str) {
    assert_eq!(out.code, code, "{what}: {out}");
}

/// `GET /debug/v1/tenant` of the leader: every shard, by id. A leader just started answers 503
/// until its services have started: waited out.
async fn dump(api: &StorageApi) -> BTreeMap<String, Value> {
    let body = wait_until("the tenant dump", deadline::STARTUP, async || {
        let (status, body) = api.call(Method::GET, "/debug/v1/tenant", None).await;
        anyhow::ensure!(status == 200, "{status}: {body}");
        Ok(body)
    })
    .await
    .expect("the leader's tenant dump");
    body.as_array()
        .expect("array")
        .iter()
        .map(|s| {
            let id = s["tenant_shard_id"].as_str().expect("id").to_owned();
            (id, s.clone())
        })
        .collect()
}

/// The highest generation the old cluster issued per shard: its own last known one and every
/// one a simulator ever accepted attached.
fn highest_issued(
    controller: &BTreeMap<String, Value>,
    events: &[history::Event],
) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = controller
        .iter()
        .map(|(id, s)| (id.clone(), s["generation"].as_u64().unwrap_or(0)))
        .collect();
    for (shard, generations) in history::attach_generations(events) {
        let top = generations.keys().max().copied().unwrap_or(0);
        let entry = out.entry(shard).or_default();
        *entry = (*entry).max(u64::from(top));
    }
    out
}

/// The parts of a shard a restore must keep as they were (generations are raised, observed
/// state is the new leader's own).
fn durable_part(shard: &Value) -> Value {
    serde_json::json!({
        "shard": shard["shard"],
        "policy": shard["policy"],
        "intent": shard["intent"],
        "config": shard["config"],
        "scheduling_policy": shard["scheduling_policy"],
        "generation_pageserver": shard["generation_pageserver"],
    })
}

async fn node_ids(api: &StorageApi) -> Vec<u64> {
    let mut ids: Vec<u64> = api
        .nodes()
        .await
        .expect("nodes")
        .iter()
        .map(|n| n.id)
        .collect();
    ids.sort();
    ids
}

/// `GET /control/v1/cluster` of `id` as JSON (for `restored_from`, which the harness's typed
/// status does not read).
async fn cluster_json(cluster: &Cluster, id: u64) -> Value {
    let (status, body) = StorageApi::new(cluster.client(id))
        .call(Method::GET, "/control/v1/cluster", None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until replica `id` leads a cluster of itself alone and reports how it was seeded.
async fn wait_one_member_leader(cluster: &Cluster, id: u64, kind: &str) -> Value {
    let leader = cluster
        .wait_for_leader(deadline::STARTUP)
        .await
        .expect("a leader");
    assert_eq!(leader, id);
    let status = cluster_json(cluster, id).await;
    let members: Vec<u64> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(members, [id], "a one-member cluster: {status}");
    let restored = &status["restored_from"];
    assert_eq!(restored["kind"], kind, "{status}");
    assert_eq!(restored["generation_gap"], GAP, "{status}");
    assert!(
        restored["taken_at"]["index"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    status
}

/// Every shard's generation, in the controller and on the simulator it is attached to, is
/// strictly above what the old cluster issued.
async fn assert_generations_above(
    api: &StorageApi,
    sims: &Sims,
    tenants: &[String],
    old: &BTreeMap<String, u64>,
) {
    let attachments = wait_settled(api, sims, tenants, SETTLE_DEADLINE)
        .await
        .expect("settled on the restored controller");
    let now = dump(api).await;
    // Split parents of the old cluster are gone; every shard there is now was known to it.
    let current: Vec<(&String, &Value)> = now
        .iter()
        .filter(|(id, _)| tenants.iter().any(|t| id.starts_with(t.as_str())))
        .collect();
    assert!(!current.is_empty());
    for (shard, s) in current {
        let issued = old
            .get(shard)
            .unwrap_or_else(|| panic!("{shard} unknown to the old cluster"));
        let controller = s["generation"].as_u64().expect("generation");
        assert!(
            controller > *issued,
            "{shard}: controller generation {controller} not above the old {issued}"
        );
        let held = attachments
            .get(shard)
            .unwrap_or_else(|| panic!("{shard} not attached"));
        assert!(
            u64::from(held.generation) > *issued,
            "{shard}: node {} holds generation {} not above the old {issued}",
            held.node,
            held.generation
        );
    }
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
}

/// A replica added back to the one-member cluster `leader` leads (after a restore or a
/// recovery) with `storcon members add`: a new `id`, an empty data dir, join mode, the member
/// there is as its only peer. It becomes a voter, its applied index reaches the leader's, its
/// own node records are the leader's, and `tenants` are read through it.
async fn add_back_a_replica(cluster: &mut Cluster, leader: u64, id: u64, tenants: &[String]) {
    let addr = cluster
        .start_joining_peers(id, &[leader])
        .expect("the new replica starts")
        .to_string();
    let out = storcon(
        &[
            "members",
            "add",
            "--api",
            &cluster.url(leader),
            "--id",
            &id.to_string(),
            "--addr",
            &addr,
            "--json",
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0, "members add");
    let added: ClusterStatus =
        serde_json::from_value(out.json()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(added.voters(), BTreeSet::from([leader, id]), "{added:?}");
    let target = cluster
        .status_of(leader)
        .await
        .expect("the leader's status")
        .last_applied;
    assert!(target.is_some());
    wait_until(
        "the added replica catches up",
        deadline::CONVERGE,
        async || {
            let s = cluster.status_of(id).await?;
            anyhow::ensure!(
                s.leader_id == Some(leader) && s.last_applied >= target,
                "not yet: {s:?}, the leader had applied {target:?}"
            );
            Ok(())
        },
    )
    .await
    .expect("caught up with the leader");
    // Its own applied state: the node records, read without forwarding (tenant reads are the
    // leader's only).
    let leader_api = StorageApi::new(cluster.client(leader));
    let mut local: Vec<u64> = cluster
        .client(id)
        .list_nodes(ReadMode::Local)
        .await
        .expect("a local read")
        .iter()
        .map(|n| n.id)
        .collect();
    local.sort();
    assert_eq!(local, node_ids(&leader_api).await, "its own applied state");
    // The tenants through it (forwarded to the leader): every one, every shard.
    let through = StorageApi::new(cluster.client(id));
    let listed: BTreeSet<String> = through
        .list_tenants(None, None)
        .await
        .expect("tenants through it")
        .into_iter()
        .map(|t| t.tenant_id)
        .collect();
    assert_eq!(
        listed,
        tenants.iter().cloned().collect(),
        "tenants via {id}"
    );
    assert_eq!(
        dump(&through).await.keys().collect::<Vec<_>>(),
        dump(&leader_api).await.keys().collect::<Vec<_>>(),
        "shards via {id}"
    );
}

fn write_corrupted(from: &Path, to: &Path) {
    let original = std::fs::read_to_string(from).expect("backup");
    // A row's text changes, the JSON stays valid: only the checksum can tell.
    let corrupted = original.replacen("az-a", "az-c", 1);
    assert_ne!(corrupted, original);
    std::fs::write(to, corrupted).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_and_restore() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start_with(
        &PAGESERVERS,
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        controller_options(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));
    let tenants: Vec<String> = (1..=3).map(|n| tenant_id(TAG, n)).collect();
    for (tenant, (count, secondaries)) in tenants.iter().zip([(1, 1), (2, 1), (1, 0)]) {
        api.create_tenant(&tenant_create_body(tenant, count, secondaries))
            .await
            .unwrap_or_else(|e| panic!("create {tenant}: {e}"));
    }
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("created");
    let split = api.split_tenant(&tenants[2], 2, None).await.expect("split");
    assert_eq!(split.status, 200, "{split:?}");
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("split settled");
    let before = dump(&api).await;
    assert_eq!(before.len(), 5, "1 + 2 + 2 shards: {before:?}");
    let nodes_before = node_ids(&api).await;

    // 1. Backup through a follower, by flag and by environment.
    let file = cluster.dir().join("backup.json");
    let file_arg = file.to_str().expect("utf-8 path");
    let follower_url = cluster.url(follower);
    let out = storcon(&["backup", "--api", &follower_url, "--out", file_arg], &[]).await;
    assert_exit(&out, 0, "backup");
    let summary = out.stdout;
    eprintln!("backup_and_restore: {}", summary.trim());
    assert!(
        summary.contains("3 tenants, 5 shards, 3 nodes") && summary.contains("sha256:"),
        "{summary}"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).expect("file")).expect("json");
    assert_eq!(doc["format_version"], 1);
    assert_eq!(
        doc["taken_by"], leader,
        "served by the leader, asked through {follower}"
    );
    let index = doc["taken_at_log_id"]["index"].as_u64().expect("index");
    assert!(
        summary.contains(&format!("log index {index} ")),
        "{summary}"
    );
    let checksum = doc["checksum"].as_str().expect("checksum");
    assert!(summary.contains(checksum), "{summary}");
    let by_env = cluster.dir().join("backup-env.json");
    let out = storcon(
        &["backup", "--out", by_env.to_str().expect("utf-8")],
        &[("STORCON_API", &follower_url)],
    )
    .await;
    assert_exit(&out, 0, "backup with STORCON_API");
    let out = storcon(&["backup", "--out", "/nonexistent/x.json"], &[]).await;
    assert_exit(&out, 2, "backup without an API address");

    // 2. The old cluster carries on: a pageserver re-attaches, so generations are issued that
    //    the backup does not know.
    sims.kill(1);
    sims.restart(1).await.expect("sim 1 re-attached");
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("settled after the re-attach");
    let old_last = dump(&api).await;
    let events = sims.all_history().expect("histories");
    let old = highest_issued(&old_last, &events);
    assert!(
        before
            .iter()
            .any(|(id, s)| s["generation"].as_u64() < Some(old[id])),
        "some generation was issued after the backup"
    );
    let old_term = cluster.status_of(leader).await.expect("status").term;
    for id in cluster.ids() {
        cluster.kill(id);
    }

    // 3. A new cluster's configs (three members listed); only replica 1 will run.
    let mut restored =
        Cluster::configure(ClusterOptions::default(), Some(controller_options()), None)
            .expect("configs");
    let config = restored.config_path(1).to_str().expect("utf-8").to_owned();
    let data_dir = restored.data_dir(1).to_path_buf();

    let corrupted = restored.dir().join("corrupted.json");
    write_corrupted(&file, &corrupted);
    restore(&config, &corrupted, &[])
        .await
        .fails(1, &["backup checksum mismatch"]);
    assert!(!data_dir.exists(), "a refused restore wrote nothing");
    let truncated = restored.dir().join("truncated.json");
    let bytes = std::fs::read(&file).expect("backup");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    restore(&config, &truncated, &[])
        .await
        .fails(1, &["not a storcon backup document"]);
    restore(&config, &file, &["--generation-gap", "4294967295"])
        .await
        .fails(1, &["would overflow"]);
    assert!(
        !data_dir.join("raft.redb").exists(),
        "a refused gap leaves no store behind"
    );

    // 4. Restore.
    let out = restore(&config, &file, &[]).await.ok();
    eprintln!("backup_and_restore: {}", out.stdout.trim());
    assert!(
        out.stdout.contains("3 tenants, 5 shards, 3 nodes"),
        "{}",
        out.stdout
    );
    restore(&config, &file, &[]).await.fails(3, &["not empty"]);

    // 5. It starts as the leader of a cluster of itself, above the old terms (the simulators
    //    still run: it heartbeats them from the restored node records).
    restored.restart(1).expect("start the restored replica");
    let status = wait_one_member_leader(&restored, 1, "Restore").await;
    assert!(
        status["term"].as_u64().expect("term") > old_term,
        "{status}"
    );
    let new_api = StorageApi::new(restored.client(1));
    let after = dump(&new_api).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (id, shard) in &before {
        assert_eq!(durable_part(&after[id]), durable_part(shard), "{id}");
    }
    assert_eq!(node_ids(&new_api).await, nodes_before);
    let described = new_api.list_tenants(None, None).await.expect("tenants");
    assert_eq!(
        described
            .iter()
            .map(|t| t.tenant_id.clone())
            .collect::<Vec<_>>(),
        tenants
    );

    // 6. The pageservers re-attach to it and hold new generations above all the old ones.
    for id in sims.ids() {
        sims.kill(id);
        sims.set_controller(id, &restored.url(1));
    }
    let restarts = futures::future::join_all(sims.ids().into_iter().map(|id| sims.restart(id)));
    for r in restarts.await {
        r.expect("a simulator re-attached to the restored controller");
    }
    assert_generations_above(&new_api, &sims, &tenants, &old).await;

    // 7. It serves writes: a new tenant counts from the raised floor (once the re-attached
    //    pageservers are schedulable again).
    sims.wait_active(&new_api, &sims.ids(), SETTLE_DEADLINE)
        .await
        .expect("pageservers Active on the restored controller");
    let fresh = tenant_id(TAG, 9);
    new_api
        .create_tenant(&tenant_create_body(&fresh, 1, 1))
        .await
        .expect("create on the restored cluster");
    let all: Vec<String> = tenants.iter().cloned().chain([fresh.clone()]).collect();
    let attachments = wait_settled(&new_api, &sims, &all, SETTLE_DEADLINE)
        .await
        .expect("new tenant settled");
    let gen_fresh = attachments
        .iter()
        .find(|(id, _)| id.starts_with(&fresh))
        .map(|(_, a)| a.generation)
        .expect("fresh attached");
    assert!(gen_fresh > GAP, "{gen_fresh}");

    // 8. A replica is added back: the restored cluster grows again.
    add_back_a_replica(&mut restored, 1, 4, &all).await;
    restored.check_no_crashes().expect("no crashes");
    sims.check_no_crashes().expect("no simulator crashes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recover_after_quorum_loss() {
    let ControllerFixture {
        sims,
        mut cluster,
        leader,
        follower,
    } = ControllerFixture::start_with(
        &PAGESERVERS,
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        controller_options(),
    )
    .await
    .expect("a formed cluster with Active simulators");
    // The simulators talk to `follower`: it is the survivor, so they keep their controller URL.
    let survivor = follower;
    let api = StorageApi::new(cluster.client(survivor));
    let tenants: Vec<String> = (11..=12).map(|n| tenant_id(TAG, n)).collect();
    for tenant in &tenants {
        api.create_tenant(&tenant_create_body(tenant, 2, 1))
            .await
            .unwrap_or_else(|e| panic!("create {tenant}: {e}"));
    }
    wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("created");
    let before = dump(&api).await;
    let old_term = cluster.status_of(leader).await.expect("status").term;

    // 1. Quorum loss: two replicas SIGKILLed; the survivor cannot write any more.
    for id in cluster.ids().into_iter().filter(|id| *id != survivor) {
        cluster.kill(id);
    }
    let old = highest_issued(&before, &sims.all_history().expect("histories"));
    cluster.kill(survivor);

    // 2. Without --force: refused, nothing changed.
    let config = cluster
        .config_path(survivor)
        .to_str()
        .expect("utf-8")
        .to_owned();
    let data_dir = cluster.data_dir(survivor).to_path_buf();
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("data dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let files_before = listing(&data_dir);
    let store_before = std::fs::read(data_dir.join("raft.redb")).expect("store");
    let out = storcon(&["recover", "--config", &config], &[]).await;
    assert_exit(&out, 3, "recover without --force");
    assert!(out.stderr.contains("without --force"), "{}", out.stderr);
    assert_eq!(listing(&data_dir), files_before);
    assert_eq!(
        std::fs::read(data_dir.join("raft.redb")).expect("store"),
        store_before
    );

    // 3. With --force: a loud warning, the old store kept beside the new one.
    let out = storcon(&["recover", "--config", &config, "--force"], &[]).await;
    assert_exit(&out, 0, "recover --force");
    let stderr = out.stderr;
    assert!(
        stderr.contains("WARNING") && stderr.contains("ONE-MEMBER"),
        "{stderr}"
    );
    assert!(
        out.stdout.contains("2 tenants, 4 shards, 3 nodes"),
        "{}",
        out.stdout
    );
    let kept: Vec<String> = listing(&data_dir)
        .into_iter()
        .filter(|n| n.starts_with("raft.redb.before-recover-"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", listing(&data_dir));

    // 4. The survivor leads a cluster of itself.
    cluster.restart(survivor).expect("start the survivor");
    let status = wait_one_member_leader(&cluster, survivor, "Recover").await;
    assert!(
        status["term"].as_u64().expect("term") > old_term,
        "{status}"
    );
    let log = cluster.log_since_last_start(survivor);
    assert!(!log.contains("refusing to bootstrap"), "{log}");

    // Reads: the tenants as they were.
    let after = dump(&api).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (id, shard) in &before {
        assert_eq!(durable_part(&after[id]), durable_part(shard), "{id}");
    }
    // The leader reconciles every shard into a new generation above the old ones, and a
    // restarted pageserver re-attaches in the same numbering.
    assert_generations_above(&api, &sims, &tenants, &old).await;
    sims.kill(2);
    sims.restart(2).await.expect("sim 2 re-attached");
    assert_generations_above(&api, &sims, &tenants, &old).await;

    // Writes.
    let fresh = tenant_id(TAG, 19);
    api.create_tenant(&tenant_create_body(&fresh, 1, 0))
        .await
        .expect("create on the recovered cluster");
    let all: Vec<String> = tenants.iter().cloned().chain([fresh]).collect();
    wait_settled(&api, &sims, &all, SETTLE_DEADLINE)
        .await
        .expect("new tenant settled");
    // A replica is added back to the recovered cluster.
    add_back_a_replica(&mut cluster, survivor, 4, &all).await;

    // A backup of the recovered cluster cannot be restored over the survivor's own data dir.
    let file = cluster.dir().join("after-recover.json");
    let out = storcon(
        &[
            "backup",
            "--api",
            &cluster.url(survivor),
            "--out",
            file.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0, "backup of the recovered cluster");
    assert!(
        out.stdout.contains("3 tenants, 5 shards, 3 nodes"),
        "{}",
        out.stdout
    );
    restore(&config, &file, &[]).await.fails(3, &["not empty"]);
    wait_until("the survivor still serves", deadline::WRITE, async || {
        anyhow::ensure!(
            cluster.status_of(survivor).await?.leader_id == Some(survivor),
            "not leading"
        );
        Ok(())
    })
    .await
    .expect("still leading");
    cluster.check_no_crashes().expect("no crashes");
    sims.check_no_crashes().expect("no simulator crashes");
}
