//! Compute notifications against a control-plane hook run inside the test (axum on
//! 127.0.0.1:0, `[controller] compute_hook_url`). Every notification carries the configured
//! control-plane token (`compute_hook_token_file`) as `Authorization: Bearer`:
//!
//! 1. Each new tenant (2-shard, unsharded, 1-shard) is notified once with
//!    `{"tenant_id","preferred_az","stripe_size","shards":[{"node_id","shard_number"}]}`
//!    (`stripe_size` null unless sharded) naming the attached nodes from the describe; at the
//!    moment the hook receives a body, every node it names holds its shard `AttachedSingle`.
//! 2. A config change re-attaches in place (same body): nothing is re-sent.
//! 3. A pageserver is SIGKILLed: every tenant attached there is notified again with the new
//!    nodes, which match `node_attached`; tenants not attached there are not notified again.
//! 4. A hook answering 503 three times is retried within one notification.
//! 5. A hook that keeps failing leaves the tenant `is_pending_compute_notification` (the
//!    background pass retries it), including while a retry is in flight; once the hook
//!    accepts, the body arrives and the flag clears.
//! 6. An unsharded tenant split into 4 with stripe size 1024 is notified with its four
//!    children and the new stripe size.
//! 7. A leader SIGKILLed right after a split committed (paused at `split-after-complete`)
//!    never told compute; the new leader does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::routing::put;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::sims::SimLocation;
use cluster_tests::storage_api::{
    TenantDescribeResponse, expect_keys, ha_aware, shard_ids, tenant_create_body, tenant_id,
};
use cluster_tests::{ClusterOptions, ControllerOptions, Sims, StorageApi, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0xc0de;
/// The control plane's token, configured as `[controller] compute_hook_token_file`; the hook
/// counts a notification without it as unexpected.
const HOOK_TOKEN: &str = "control-plane-test-token";

/// How the hook answers the next notifications.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    /// `status` for the next `times` requests (then `Ok`), or for every request.
    Fail {
        status: u16,
        times: Option<u32>,
    },
}

/// One `PUT /notify-attach` the hook received.
#[derive(Clone, Debug)]
struct Received {
    body: Value,
    status: u16,
    /// For accepted bodies: whether every node named held its shard `AttachedSingle` when
    /// the body arrived (`Err` says what was wrong).
    held: Result<(), String>,
}

struct Hook {
    answer: Mutex<Answer>,
    received: Mutex<Vec<Received>>,
    /// Requests that are not a well-formed `PUT /notify-attach`.
    unexpected: Mutex<Vec<String>>,
    /// node id -> simulator base URL, for checking what a named node holds.
    sims: Mutex<BTreeMap<u64, String>>,
    http: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hook {
    fn set_answer(&self, answer: Answer) {
        *lock(&self.answer) = answer;
    }

    fn next_status(&self) -> u16 {
        let mut answer = lock(&self.answer);
        match *answer {
            Answer::Ok => 200,
            Answer::Fail {
                status,
                times: None,
            } => status,
            Answer::Fail {
                status,
                times: Some(n),
            } => {
                *answer = if n <= 1 {
                    Answer::Ok
                } else {
                    Answer::Fail {
                        status,
                        times: Some(n - 1),
                    }
                };
                status
            }
        }
    }

    /// Every request for `tenant`, in arrival order.
    fn for_tenant(&self, tenant: &str) -> Vec<Received> {
        lock(&self.received)
            .iter()
            .filter(|r| r.body["tenant_id"] == json!(tenant))
            .cloned()
            .collect()
    }

    /// Bodies for `tenant` the hook accepted, in arrival order.
    fn delivered(&self, tenant: &str) -> Vec<Value> {
        self.for_tenant(tenant)
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
            .collect()
    }

    fn statuses(&self, tenant: &str) -> Vec<u16> {
        self.for_tenant(tenant).iter().map(|r| r.status).collect()
    }

    /// Whether each shard named in `body` is held `AttachedSingle` by the node named for it.
    async fn check_held(&self, body: &Value) -> Result<(), String> {
        let tenant = body["tenant_id"].as_str().ok_or("no tenant_id")?;
        let shards = body["shards"].as_array().ok_or("no shards")?;
        for shard in shards {
            let node = shard["node_id"].as_u64().ok_or("no node_id")?;
            let number = shard["shard_number"].as_u64().ok_or("no shard_number")?;
            let url = lock(&self.sims)
                .get(&node)
                .cloned()
                .ok_or_else(|| format!("node {node} is not a simulator"))?;
            let list: Value = self
                .http
                .get(format!("{url}/v1/location_config"))
                .send()
                .await
                .map_err(|e| format!("node {node}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("node {node}: {e}"))?;
            let entries = list["tenant_shards"]
                .as_array()
                .ok_or_else(|| format!("node {node}: bad list {list}"))?;
            let held = entries.iter().find_map(|entry| {
                let id = entry[0].as_str()?;
                let matches = if id == tenant {
                    number == 0
                } else {
                    id.strip_prefix(tenant)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .and_then(|suffix| suffix.get(..2))
                        .and_then(|n| u64::from_str_radix(n, 16).ok())
                        == Some(number)
                };
                matches.then(|| serde_json::from_value::<SimLocation>(entry[1].clone()).ok())?
            });
            match held {
                Some(loc) if loc.mode == "AttachedSingle" => {}
                other => {
                    return Err(format!(
                        "shard {number} of {tenant} named on node {node}, which holds {other:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

async fn notify_attach(
    State(hook): State<Arc<Hook>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> StatusCode {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/json" {
        lock(&hook.unexpected).push(format!("content-type {content_type:?}"));
    }
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if authorization != format!("Bearer {HOOK_TOKEN}") {
        lock(&hook.unexpected).push(format!("authorization {authorization:?}"));
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            lock(&hook.unexpected).push(format!(
                "undecodable body ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ));
            return StatusCode::BAD_REQUEST;
        }
    };
    let status = hook.next_status();
    let held = if status == 200 {
        hook.check_held(&body).await
    } else {
        Ok(())
    };
    lock(&hook.received).push(Received { body, status, held });
    StatusCode::from_u16(status).expect("a valid status")
}

async fn unexpected(State(hook): State<Arc<Hook>>, method: HttpMethod, uri: Uri) -> StatusCode {
    lock(&hook.unexpected).push(format!("{method} {uri}"));
    StatusCode::NOT_FOUND
}

/// The hook's server task; aborted on drop.
struct HookServer {
    hook: Arc<Hook>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl HookServer {
    async fn start() -> HookServer {
        let hook = Arc::new(Hook {
            answer: Mutex::new(Answer::Ok),
            received: Mutex::new(Vec::new()),
            unexpected: Mutex::new(Vec::new()),
            sims: Mutex::new(BTreeMap::new()),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("reqwest client"),
        });
        let app = Router::new()
            .route("/notify-attach", put(notify_attach))
            .fallback(unexpected)
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the hook");
        let url = format!("http://{}", listener.local_addr().expect("hook address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the hook serves");
        });
        HookServer { hook, url, task }
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shard number encoded in a shard id (`<tenant>` is 0, `<tenant>-NNCC` is NN).
fn shard_number(shard_id: &str) -> u64 {
    shard_id.split_once('-').map_or(0, |(_, suffix)| {
        u64::from_str_radix(&suffix[..2], 16).expect("hex")
    })
}

/// The body the control plane should have for `described` (`count` shards as created).
fn expected_body(described: &TenantDescribeResponse, count: u8) -> Value {
    json!({
        "tenant_id": described.tenant_id,
        "preferred_az": described.shards[0].preferred_az_id,
        "stripe_size": (count > 1).then_some(described.stripe_size),
        "shards": described.shards.iter().map(|s| json!({
            "node_id": s.node_attached,
            "shard_number": shard_number(&s.tenant_shard_id),
        })).collect::<Vec<_>>(),
    })
}

/// Waits until the hook's last accepted body for `tenant` is what the describe implies, the
/// tenant is settled on the simulators and no notification is pending. Returns the body.
async fn wait_notified(
    api: &StorageApi,
    sims: &Sims,
    hook: &Hook,
    tenant: &str,
    count: u8,
) -> Value {
    wait_until(
        &format!("the hook to have the current attachments of {tenant}"),
        SETTLE_DEADLINE,
        async || {
            wait_settled(api, sims, &[tenant.to_owned()], Duration::from_secs(2)).await?;
            let described = api.describe_tenant(tenant).await?;
            let want = expected_body(&described, count);
            let last = hook.delivered(tenant).pop();
            anyhow::ensure!(
                last.as_ref() == Some(&want),
                "last accepted {last:?}, want {want}"
            );
            let pending: Vec<bool> = described
                .shards
                .iter()
                .map(|s| s.is_pending_compute_notification)
                .collect();
            anyhow::ensure!(pending.iter().all(|p| !p), "pending: {pending:?}");
            Ok(want)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// `is_pending_compute_notification` of a one-shard tenant.
async fn pending(api: &StorageApi, tenant: &str) -> bool {
    let described = api.describe_tenant(tenant).await.expect("describe");
    described.shards[0].is_pending_compute_notification
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_hook() {
    let server = HookServer::start().await;
    let hook = server.hook.clone();
    let token_dir = tempfile::tempdir().expect("tempdir");
    let token_file = token_dir.path().join("compute-hook-token");
    std::fs::write(&token_file, HOOK_TOKEN).expect("write the token file");
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower: _,
    } = ControllerFixture::start_with(
        &[(1, "az-a"), (2, "az-a"), (3, "az-b")],
        SETTLE_DEADLINE,
        ClusterOptions::default(),
        ControllerOptions {
            background_reconcile_ms: Some(500),
            compute_hook_url: Some(server.url.clone()),
            compute_hook_token_file: Some(token_file.clone()),
            // It counts notifications exactly: no moves of the optimiser's in between.
            ..ControllerOptions::without_optimiser()
        },
    )
    .await
    .expect("a formed cluster with Active simulators");
    *lock(&hook.sims) = sims.ids().into_iter().map(|n| (n, sims.url(n))).collect();
    let api = StorageApi::new(cluster.client(leader));

    // 1. New tenants: a 2-shard, an unsharded and a 1-shard one, each notified once.
    let tenants: Vec<(String, u8, usize)> = vec![
        (tenant_id(TAG, 1), 2, 1),
        (tenant_id(TAG, 2), 0, 1),
        (tenant_id(TAG, 3), 1, 0),
    ];
    for (tenant, count, secondaries) in &tenants {
        api.create_tenant(&tenant_create_body(tenant, *count, *secondaries))
            .await
            .expect("create");
    }
    for (tenant, count, _) in &tenants {
        let body = wait_notified(&api, &sims, &hook, tenant, *count).await;
        expect_keys(
            &body,
            &["tenant_id", "preferred_az", "stripe_size", "shards"],
        )
        .expect("notify body shape");
        for shard in body["shards"].as_array().expect("shards") {
            expect_keys(shard, &["node_id", "shard_number"]).expect("notify shard shape");
        }
        let sent = hook.for_tenant(tenant);
        assert_eq!(sent.len(), 1, "{tenant} notified once: {sent:?}");
        let raw: Value = sent[0].body.clone();
        expect_keys(
            &raw,
            &["tenant_id", "preferred_az", "stripe_size", "shards"],
        )
        .expect("the wire body has exactly the documented keys");
        assert!(
            raw["preferred_az"].is_string(),
            "a preferred AZ was chosen: {raw}"
        );
    }
    let sharded = &tenants[0].0;
    assert_eq!(
        hook.delivered(sharded)[0]["stripe_size"],
        json!(2048),
        "the 2-shard tenant names its stripe size"
    );

    // 2. A config change re-attaches in place with the same body: nothing is re-sent.
    for (tenant, _, _) in &tenants[..2] {
        let raw = api
            .send(
                Method::PATCH,
                "/v1/tenant/config",
                Some(&json!({"tenant_id": tenant, "gc_period": "2h"})),
            )
            .await
            .expect("PATCH answered");
        assert_eq!(raw.status, 200, "PATCH config of {tenant}: {}", raw.body);
    }
    let changed: Vec<String> = tenants[..2].iter().map(|t| t.0.clone()).collect();
    wait_until(
        "the new config on every location",
        SETTLE_DEADLINE,
        async || {
            let view = sims.view().await?;
            for tenant in &changed {
                let count = if *tenant == *sharded { 2 } else { 0 };
                for shard in shard_ids(tenant, count) {
                    let held = view.get(&shard).cloned().unwrap_or_default();
                    anyhow::ensure!(held.len() == 2, "{shard}: held on {:?}", held.keys());
                    for (node, location) in held {
                        anyhow::ensure!(
                            location.tenant_conf == ha_aware(&json!({"gc_period": "2h"})),
                            "{shard} on {node}: {}",
                            location.tenant_conf
                        );
                    }
                }
            }
            wait_settled(&api, &sims, &changed, Duration::from_secs(2)).await?;
            Ok(())
        },
    )
    .await
    .expect("config reconciled");
    for (tenant, _, _) in &tenants {
        let sent = hook.for_tenant(tenant);
        assert_eq!(
            sent.len(),
            1,
            "{tenant}: no re-send of an identical body: {sent:?}"
        );
    }

    // 3. Kill the pageserver holding shard 0 of the sharded tenant.
    let described = api.describe_tenant(sharded).await.expect("describe");
    let victim = described.shards[0].node_attached.expect("attached");
    let mut on_victim = BTreeMap::new();
    for (tenant, _, _) in &tenants {
        let d = api.describe_tenant(tenant).await.expect("describe");
        let hit = d.shards.iter().any(|s| s.node_attached == Some(victim));
        on_victim.insert(tenant.clone(), hit);
    }
    sims.kill(victim);
    for (tenant, count, _) in &tenants {
        let body = wait_notified(&api, &sims, &hook, tenant, *count).await;
        let named: Vec<u64> = body["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .map(|s| s["node_id"].as_u64().expect("node id"))
            .collect();
        assert!(
            !named.contains(&victim),
            "{tenant}: the body still names the killed node {victim}: {body}"
        );
        let delivered = hook.delivered(tenant);
        if on_victim[tenant] {
            assert_eq!(delivered.len(), 2, "{tenant} notified of its new nodes");
        } else {
            assert_eq!(
                delivered.len(),
                1,
                "{tenant} was not attached on {victim}: {delivered:?}"
            );
        }
        let described = api.describe_tenant(tenant).await.expect("describe");
        let attached: Vec<u64> = described
            .shards
            .iter()
            .map(|s| s.node_attached.expect("attached"))
            .collect();
        assert_eq!(
            named, attached,
            "{tenant}: notified nodes are node_attached"
        );
    }
    assert!(on_victim[sharded.as_str()]);

    // 4. A hook answering 503 three times: the same notification is retried until accepted.
    hook.set_answer(Answer::Fail {
        status: 503,
        times: Some(3),
    });
    let retried = tenant_id(TAG, 4);
    api.create_tenant(&tenant_create_body(&retried, 1, 1))
        .await
        .expect("create");
    wait_notified(&api, &sims, &hook, &retried, 1).await;
    assert_eq!(
        hook.statuses(&retried),
        vec![503, 503, 503, 200],
        "three refusals, then accepted"
    );
    let bodies: Vec<Value> = hook
        .for_tenant(&retried)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "every retry sends the same body: {bodies:?}"
    );

    // 5. A hook that keeps failing: the tenant stays pending, also while a retry is in flight.
    hook.set_answer(Answer::Fail {
        status: 500,
        times: None,
    });
    let stuck = tenant_id(TAG, 5);
    api.create_tenant(&tenant_create_body(&stuck, 0, 1))
        .await
        .expect("create");
    wait_until(
        "a refused notification to leave the tenant pending",
        SETTLE_DEADLINE,
        async || {
            let statuses = hook.statuses(&stuck);
            // 500 is not retried within a send: each one is a new pass of the background loop.
            anyhow::ensure!(statuses.len() >= 3, "hook saw {statuses:?}");
            anyhow::ensure!(pending(&api, &stuck).await, "not pending");
            Ok(())
        },
    )
    .await
    .expect("pending while the hook refuses");
    hook.set_answer(Answer::Fail {
        status: 503,
        times: None,
    });
    let first_503 = hook.statuses(&stuck).len();
    let mut samples = Vec::new();
    for seen in [2, 3] {
        wait_until(
            "the controller to retry a 503",
            Duration::from_secs(30),
            async || {
                let n = hook.statuses(&stuck)[first_503..]
                    .iter()
                    .filter(|s| **s == 503)
                    .count();
                anyhow::ensure!(n >= seen, "{n} answers of 503");
                Ok(())
            },
        )
        .await
        .expect("503s retried");
        samples.push((seen, pending(&api, &stuck).await));
    }
    assert!(
        hook.delivered(&stuck).is_empty(),
        "nothing accepted while failing"
    );
    hook.set_answer(Answer::Ok);
    wait_notified(&api, &sims, &hook, &stuck, 0).await;
    assert!(!pending(&api, &stuck).await, "delivered: no longer pending");

    // 6. A split tells compute the children and the new stripe size (upstream sends it once
    // every child is attached).
    let split = &tenants[1].0;
    let raw = api.split_tenant(split, 4, Some(1024)).await.expect("split");
    assert_eq!(raw.status, 200, "split {split}: {}", raw.body);
    let body = wait_notified(&api, &sims, &hook, split, 4).await;
    assert_eq!(body["stripe_size"], json!(1024), "{body}");
    assert_eq!(body["shards"].as_array().map(Vec::len), Some(4), "{body}");

    // 7. The leader dies right after a split committed, before it could tell compute: the new
    // leader tells compute at its start.
    let late = &tenants[2].0;
    for id in cluster.ids() {
        StorageApi::new(cluster.client(id))
            .set_failpoint("split-after-complete", "pause")
            .await
            .expect("failpoint");
    }
    let survivor = cluster.live_other_than(leader);
    let baseline = api
        .failpoint_hits("split-after-complete")
        .await
        .expect("failpoints");
    let call = {
        let api = StorageApi::new(cluster.client(survivor));
        let tenant = late.clone();
        tokio::spawn(async move { api.split_tenant(&tenant, 2, None).await })
    };
    wait_until(
        "the leader paused after the commit",
        SETTLE_DEADLINE,
        async || {
            let hits = api.failpoint_hits("split-after-complete").await?;
            anyhow::ensure!(hits > baseline, "{hits} hits");
            Ok(())
        },
    )
    .await
    .expect("paused");
    cluster.kill(leader);
    for id in cluster.live_ids() {
        StorageApi::new(cluster.client(id))
            .set_failpoint("split-after-complete", "off")
            .await
            .expect("failpoint off");
    }
    let answer = call.await.expect("split task");
    eprintln!("compute_hook: the split whose leader died answered {answer:?}");
    cluster
        .wait_for_new_leader(leader, cluster_tests::deadline::ELECTION)
        .await
        .expect("a new leader");
    let api = StorageApi::new(cluster.client(survivor));
    let body = wait_notified(&api, &sims, &hook, late, 2).await;
    assert_eq!(body["shards"].as_array().map(Vec::len), Some(2), "{body}");

    // Every accepted body named nodes that held their shards attached at that moment.
    for r in lock(&hook.received).iter().filter(|r| r.status == 200) {
        assert_eq!(r.held, Ok(()), "notified before attached: {}", r.body);
    }
    assert_eq!(*lock(&hook.unexpected), Vec::<String>::new());

    api.consistency_check().await.expect("consistency_check");
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
    // Last, so every other check has run: the flag while a retry of a failed notification is
    // in flight.
    assert!(
        samples.iter().all(|(_, p)| *p),
        "is_pending_compute_notification after the n-th 503 of a retry, while the hook keeps \
         failing: {samples:?} (expected true throughout)"
    );
    drop(sims);
    drop(cluster);
    drop(server);
}
