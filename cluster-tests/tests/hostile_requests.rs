//! Hostile requests (issue 8, the smaller defects), each on the leader and through a follower:
//! every one is a 4xx with a JSON `{"msg"}` body, and no replica exits.
//!
//! - A shard id with a multi-byte character across byte 32 (the parser sliced the `str` there
//!   and panicked, which dropped the connection and a follower relayed as 503): in validate,
//!   create, inspect, attach-hook and the `location_config` path, 400.
//! - Percent-encoded invalid UTF-8 in a path parameter, 400; a 405 has a `msg` body too.
//! - `..` and `%2e%2e` path segments, sent verbatim on the request line (an HTTP client would
//!   resolve them): 400, so a follower cannot forward them as another route.
//! - A body over the 4 MiB limit: 413 with a `msg`, also from a follower.
//! - `shard_parameters` in the positional array form (`[2]`): 400, nothing created; the object
//!   form works, with both its fields (one missing, or an unknown key: 400, nothing created, as
//!   upstream).
//! - `PUT /debug/v1/failpoints` with one bad entry: 400, and none of the list is applied.
//!
//! None of these proposes anything: `last_applied` is unchanged within the term. Then
//! `location_config` with `tenant_conf: 5` (once refused only when applied, now by the typed
//! config at the edge): it creates no tenant, and on an existing tenant leaves its placement
//! policy and config as they were (policy and config change in one command).
//!
//! [`jwt_nbf`]: a token whose `nbf` lies 10 minutes ahead is 403 and its write commits nothing;
//! with `nbf` in the past it is accepted.

use cluster_tests::auth::{now, sign, test_auth};
use cluster_tests::checks::{assert_no_failures, check_nodes_everywhere, judge_error};
use cluster_tests::cluster::REQUEST_TIMEOUT;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::raw_http;
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{
    Client, Cluster, ClusterOptions, ClusterStatus, NodeRegisterRequest, RawResponse, ReadMode,
    StorageApi, deadline, wait_until,
};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x4057;
/// 37 bytes, as a sharded id, with `é` (two bytes) across byte 32.
const MULTIBYTE_ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u{e9}0101";
/// [`MULTIBYTE_ID`] percent-encoded for a path.
const MULTIBYTE_ID_IN_PATH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa%C3%A90101";
/// Over the API's 4 MiB body limit.
const OVERSIZED_BODY: usize = 5 << 20;

/// The body, shortened for a failure message.
fn short(body: &str) -> String {
    if body.len() <= 300 {
        body.to_owned()
    } else {
        let head: String = body.chars().take(300).collect();
        format!("{head}... ({} bytes)", body.len())
    }
}

/// A client for replica `via` that opens a new connection for every request.
fn unpooled(cluster: &Cluster, via: u64) -> Client {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a reqwest client");
    Client::new(http, cluster.url(via))
}

/// `GET /control/v1/tenant/{tenant}` via `via`: the answer, unless it is 404 (no such tenant).
async fn tenant_found(cluster: &Cluster, via: u64, tenant: &str) -> Option<String> {
    let path = format!("/control/v1/tenant/{tenant}");
    let resp = cluster.request(via, Method::GET, &path, None, &[]).await;
    (resp.status != 404).then(|| format!("HTTP {}: {}", resp.status, short(&resp.body)))
}

/// Converges, then checks that no entry was appended since `before` unless a term changed.
async fn expect_nothing_committed(cluster: &Cluster, before: &[ClusterStatus], what: &str) {
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("replicas converge after {what}: {e:#}"));
    let after = cluster.all_statuses().await.expect("every replica answers");
    for (b, a) in before.iter().zip(&after) {
        if a.term == b.term {
            assert_eq!(
                (a.leader_id, a.last_applied),
                (b.leader_id, b.last_applied),
                "replica {}: {what} changed the leader or appended entries within term {}",
                a.node_id,
                a.term
            );
        }
    }
}

fn record(failures: &mut Vec<String>, what: &str, via: u64, resp: &RawResponse, want: u16) {
    if let Some(problem) = judge_error(resp, want) {
        failures.push(format!(
            "{what} via {via}: {problem}; body {:?}",
            short(&resp.body)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(leader));
    let existing = tenant_id(TAG, 1);
    let mut create = tenant_create_body(&existing, 0, 1);
    create["gc_period"] = json!("1h");
    api.create_tenant(&create).await.expect("create");
    wait_settled(
        &api,
        &sims,
        std::slice::from_ref(&existing),
        SETTLE_DEADLINE,
    )
    .await
    .expect("the tenant settles");
    let described_before = api.describe_tenant(&existing).await.expect("describe");
    assert_eq!(described_before.policy, json!({"Attached": 1}));
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    let before = cluster.all_statuses().await.expect("every replica answers");

    let mut failures = Vec::new();
    for via in [leader, follower] {
        let n = u32::try_from(via).expect("small id");
        // A multi-byte character across byte 32 of a shard id (400), then a 405, and a path
        // parameter that is not UTF-8 (400).
        let multibyte = |what: &str, method: Method, path: String, body: String| {
            let label = format!("multi-byte shard id in {what} ({method} {path})");
            (label, method, path, Some(body), 400)
        };
        let detached = json!({"mode": "Detached", "tenant_conf": {}}).to_string();
        let refused: Vec<(String, Method, String, Option<String>, u16)> = vec![
            multibyte(
                "validate",
                Method::POST,
                "/upcall/v1/validate".into(),
                json!({"tenants": [{"id": MULTIBYTE_ID, "gen": 1}]}).to_string(),
            ),
            multibyte(
                "create",
                Method::POST,
                "/v1/tenant".into(),
                json!({"new_tenant_id": MULTIBYTE_ID}).to_string(),
            ),
            multibyte(
                "inspect",
                Method::POST,
                "/debug/v1/inspect".into(),
                json!({"tenant_shard_id": MULTIBYTE_ID}).to_string(),
            ),
            multibyte(
                "attach-hook",
                Method::POST,
                "/debug/v1/attach-hook".into(),
                json!({"tenant_shard_id": MULTIBYTE_ID, "node_id": null}).to_string(),
            ),
            multibyte(
                "location_config",
                Method::PUT,
                format!("/v1/tenant/{MULTIBYTE_ID_IN_PATH}/location_config"),
                detached,
            ),
            (
                "PATCH /control/v1/node".into(),
                Method::PATCH,
                "/control/v1/node".into(),
                None,
                405,
            ),
            (
                "GET /control/v1/tenant/%FF%FE".into(),
                Method::GET,
                "/control/v1/tenant/%FF%FE".into(),
                None,
                400,
            ),
        ];
        for (what, method, path, body, want) in refused {
            let resp = cluster.request(via, method, &path, body, &[]).await;
            record(&mut failures, &what, via, &resp, want);
        }

        // Dot segments, sent verbatim.
        for target in ["/control/v1/../v1/tenant", "/control/v1/%2e%2e/v1/tenant"] {
            let resp =
                raw_http::request(cluster.addr(via), "GET", target, &[], None, REQUEST_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| panic!("GET {target} via {via}: {e:#}"));
            record(&mut failures, &format!("GET {target}"), via, &resp, 400);
        }

        // A body over the limit. The server answers before reading it all and closes the
        // connection, so this goes on a connection of its own, not the cluster's shared pool
        // (where the next request would inherit the broken connection).
        let big_tenant = tenant_id(TAG, 20 + n);
        let pad = "x".repeat(OVERSIZED_BODY);
        let body = json!({"new_tenant_id": big_tenant, "pad": pad}).to_string();
        let resp = unpooled(&cluster, via)
            .raw(
                Method::POST,
                "/v1/tenant",
                Some(("application/json", body)),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("POST /v1/tenant of 5 MiB via {via}: no answer: {e}"));
        record(&mut failures, "POST /v1/tenant of 5 MiB", via, &resp, 413);
        if let Some(found) = tenant_found(&cluster, via, &big_tenant).await {
            failures.push(format!(
                "the 5 MiB create via {via} left tenant {big_tenant}: {found}"
            ));
        }

        // Positional struct form.
        let array_tenant = tenant_id(TAG, 30 + n);
        let body = json!({"new_tenant_id": array_tenant, "shard_parameters": [2]}).to_string();
        let resp = cluster
            .request(via, Method::POST, "/v1/tenant", Some(body), &[])
            .await;
        record(&mut failures, "shard_parameters [2]", via, &resp, 400);
        if let Some(found) = tenant_found(&cluster, via, &array_tenant).await {
            failures.push(format!(
                "the refused shard_parameters [2] via {via} left tenant {array_tenant}: {found}"
            ));
        }

        // Failpoints: one bad entry applies none of the list (on the replica asked).
        let list = cluster
            .request(via, Method::GET, "/debug/v1/failpoints", None, &[])
            .await;
        assert_eq!(
            list.status, 200,
            "failpoints enabled on {via}: {}",
            list.body
        );
        let body = json!([{"name": "a", "actions": "return"}, {"name": "", "actions": "off"}]);
        let resp = cluster
            .request(
                via,
                Method::PUT,
                "/debug/v1/failpoints",
                Some(body.to_string()),
                &[],
            )
            .await;
        record(
            &mut failures,
            "failpoints with an empty name",
            via,
            &resp,
            400,
        );
        let list = cluster
            .request(via, Method::GET, "/debug/v1/failpoints", None, &[])
            .await;
        assert_eq!(list.status, 200, "GET failpoints on {via}: {}", list.body);
        let list: Vec<Value> = serde_json::from_str(&list.body).expect("failpoint list");
        if let Some(a) = list.iter().find(|f| f["name"] == "a") {
            failures.push(format!(
                "the refused failpoint list was applied in part on {via}: {a}"
            ));
        }
    }
    assert_no_failures(&failures, "hostile requests answered wrongly");
    cluster.check_no_crashes().expect("no replica exited");
    expect_nothing_committed(&cluster, &before, "requests refused before proposing").await;

    // A tenant config that is not an object, in location_config (refused by the typed config).
    let conf_five = json!({"mode": "Detached", "tenant_conf": 5}).to_string();
    for via in [leader, follower] {
        let n = u32::try_from(via).expect("small id");
        let new_tenant = tenant_id(TAG, 40 + n);
        for (what, tenant) in [
            ("a new tenant", new_tenant.as_str()),
            ("the existing tenant", &existing),
        ] {
            let path = format!("/v1/tenant/{tenant}/location_config");
            let resp = cluster
                .request(via, Method::PUT, &path, Some(conf_five.clone()), &[])
                .await;
            record(
                &mut failures,
                &format!("location_config tenant_conf 5 on {what} ({path})"),
                via,
                &resp,
                400,
            );
        }
        if let Some(found) = tenant_found(&cluster, via, &new_tenant).await {
            failures.push(format!(
                "the refused location_config via {via} created {new_tenant}: {found}"
            ));
        }
        let described = StorageApi::new(cluster.client(via))
            .describe_tenant(&existing)
            .await
            .expect("describe the existing tenant");
        if (&described.policy, &described.config)
            != (&described_before.policy, &described_before.config)
        {
            failures.push(format!(
                "the refused location_config via {via} changed {existing}: policy {} config {} \
                 (was {} and {})",
                described.policy,
                described.config,
                described_before.policy,
                described_before.config
            ));
        }
    }
    assert_no_failures(
        &failures,
        "refused location_configs answered or applied wrongly",
    );

    // shard_parameters needs both of its fields and refuses unknown keys, as upstream; neither
    // refusal creates anything.
    let mut failures = Vec::new();
    for (what, params) in [
        ("count only", json!({"count": 2})),
        ("stripe_size only", json!({"stripe_size": 2048})),
        (
            "an unknown key",
            json!({"count": 2, "stripe_size": 2048, "shards": 2}),
        ),
    ] {
        for via in [leader, follower] {
            let tenant = tenant_id(TAG, 60 + u32::try_from(via).expect("small id"));
            let body = json!({"new_tenant_id": tenant, "shard_parameters": params}).to_string();
            let resp = cluster
                .request(via, Method::POST, "/v1/tenant", Some(body), &[])
                .await;
            record(
                &mut failures,
                &format!("shard_parameters with {what}"),
                via,
                &resp,
                400,
            );
            if let Ok(found) = StorageApi::new(cluster.client(via))
                .describe_tenant(&tenant)
                .await
            {
                failures.push(format!(
                    "shard_parameters with {what} via {via} created {found:?}"
                ));
            }
        }
    }
    assert_no_failures(
        &failures,
        "incomplete shard_parameters answered or applied wrongly",
    );

    // The object form of shard_parameters works.
    let mut created = Vec::new();
    for via in [leader, follower] {
        let tenant = tenant_id(TAG, 50 + u32::try_from(via).expect("small id"));
        let body =
            json!({"new_tenant_id": tenant, "shard_parameters": {"count": 2, "stripe_size": 2048}})
                .to_string();
        let resp = cluster
            .request(via, Method::POST, "/v1/tenant", Some(body), &[])
            .await;
        assert_eq!(
            resp.status, 201,
            "create with shard_parameters {{count: 2, stripe_size: 2048}} via {via}: {}",
            resp.body
        );
        let shards: Vec<String> = StorageApi::new(cluster.client(via))
            .describe_tenant(&tenant)
            .await
            .expect("describe")
            .shards
            .iter()
            .map(|s| s.tenant_shard_id.clone())
            .collect();
        assert_eq!(shards, shard_ids(&tenant, 2), "two shards via {via}");
        created.push(tenant);
    }
    created.push(existing.clone());
    wait_settled(&api, &sims, &created, SETTLE_DEADLINE)
        .await
        .expect("every tenant settles");
    api.consistency_check().await.expect("consistency check");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica exited");
}

/// Sends each of `requests` via each of `vias`, in that order, with `Authorization:
/// {authorization}`, and hands every answer to `check` as it comes.
async fn send_each(
    cluster: &Cluster,
    vias: [u64; 2],
    requests: &[(Method, &str, Option<String>)],
    authorization: &str,
    mut check: impl FnMut(u64, &Method, &str, RawResponse),
) {
    for via in vias {
        for (method, path, body) in requests {
            let resp = cluster
                .request(
                    via,
                    method.clone(),
                    path,
                    body.clone(),
                    &[("authorization", authorization)],
                )
                .await;
            check(via, method, path, resp);
        }
    }
}

/// A token with `nbf` set is refused until then, and accepted after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_nbf() {
    let files = tempfile::tempdir().expect("tempdir");
    let auth = test_auth(files.path());
    let (cluster, leader) =
        Cluster::start_formed_with_auth(ClusterOptions::default(), None, Some(auth))
            .await
            .expect("a formed cluster with auth");
    let follower = cluster.live_other_than(leader);
    // A new leader commits a record of itself after its first entry: wait for it everywhere,
    // so that entry is not taken for one a refused request appended.
    wait_until(
        "every replica to know the leader's record",
        deadline::CONVERGE,
        async || {
            for id in cluster.ids() {
                let record = cluster.client(id).leader(ReadMode::Local).await?;
                anyhow::ensure!(record.is_some(), "replica {id} has no leader record yet");
            }
            Ok(())
        },
    )
    .await
    .expect("the leader's record is applied everywhere");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    let before = cluster.all_statuses().await.expect("every replica answers");

    let early = format!(
        "Bearer {}",
        sign(json!({"scope": "infra", "nbf": now() + 600}))
    );
    let node = NodeRegisterRequest::fake(3);
    let register = serde_json::to_string(&node).expect("json");
    let list_nodes = (Method::GET, "/control/v1/node", None);
    let register_node = (Method::POST, "/control/v1/node", Some(register));
    let mut failures = Vec::new();
    send_each(
        &cluster,
        [leader, follower],
        &[list_nodes.clone(), register_node.clone()],
        &early,
        |via, method, path, resp| {
            record(
                &mut failures,
                &format!("{method} {path} with nbf ahead"),
                via,
                &resp,
                403,
            );
            if resp
                .msg()
                .is_some_and(|m| !m.starts_with("Forbidden: JWT authentication error"))
            {
                failures.push(format!(
                    "{method} {path} with nbf ahead via {via}: refused for another reason: {}",
                    resp.body
                ));
            }
        },
    )
    .await;
    assert_no_failures(
        &failures,
        "requests with a not-yet-valid token answered wrongly",
    );
    cluster.check_no_crashes().expect("no replica exited");
    expect_nothing_committed(&cluster, &before, "requests with a not-yet-valid token").await;

    // With nbf in the past, the same requests pass.
    let valid = format!(
        "Bearer {}",
        sign(json!({"scope": "infra", "nbf": now() - 60}))
    );
    send_each(
        &cluster,
        [follower, leader],
        &[register_node, list_nodes],
        &valid,
        |via, method, path, resp| {
            assert_eq!(
                resp.status, 200,
                "{method} {path} with nbf in the past via {via}: {}",
                resp.body
            );
        },
    )
    .await;
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    check_nodes_everywhere(&cluster, std::slice::from_ref(&node))
        .await
        .expect("the accepted registration is listed everywhere");
    cluster.check_no_crashes().expect("no replica exited");
}
