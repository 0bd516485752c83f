//! Tenant placement end to end, through a follower: a 4-shard `Attached(1)` tenant ends with
//! every shard attached on exactly one simulated pageserver (AttachedSingle, in the generation
//! the controller reported) and secondary on another; describe, list, node shards and node list
//! agree with what the simulators hold; every response has the reference's shape, field by
//! field; consistency_check passes; validate approves exactly the current generations.

use std::collections::{BTreeMap, BTreeSet};

use cluster_tests::StorageApi;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{
    TenantCreateResponse, TenantDescribeResponse, expect_keys, fields, shard_ids,
    tenant_create_body, tenant_id,
};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0x7e1a;

async fn get_json(api: &StorageApi, path: &str) -> Value {
    let raw = api
        .send(Method::GET, path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(raw.status, 200, "GET {path}: {}", raw.body);
    serde_json::from_str(&raw.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", raw.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_placement() {
    let ControllerFixture {
        sims,
        cluster,
        leader,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));

    // Create, through the follower; the answer's shape field by field.
    let sharded = tenant_id(TAG, 1);
    let raw = api
        .send(
            Method::POST,
            "/v1/tenant",
            Some(&tenant_create_body(&sharded, 4, 1)),
        )
        .await
        .expect("create answered");
    assert_eq!(raw.status, 201, "create: {}", raw.body);
    let body: Value = serde_json::from_str(&raw.body).expect("JSON");
    expect_keys(&body, fields::TENANT_CREATE_RESPONSE).expect("TenantCreateResponse shape");
    for shard in body["shards"].as_array().expect("shards array") {
        expect_keys(shard, fields::TENANT_CREATE_RESPONSE_SHARD).expect("shard shape");
        assert!(shard["shard_id"].is_string(), "{shard}");
        assert!(shard["node_id"].is_u64(), "{shard}");
        assert!(shard["generation"].is_u64(), "{shard}");
    }
    let created: TenantCreateResponse = serde_json::from_value(body).expect("typed");
    let mut created_ids: Vec<String> = created.shards.iter().map(|s| s.shard_id.clone()).collect();
    created_ids.sort();
    assert_eq!(created_ids, shard_ids(&sharded, 4));

    // Every shard attached where the controller said, in the generation it said.
    let attachments = wait_settled(&api, &sims, std::slice::from_ref(&sharded), SETTLE_DEADLINE)
        .await
        .expect("the tenant settles");
    for shard in &created.shards {
        let held = attachments[&shard.shard_id];
        assert_eq!(
            (held.node, held.generation),
            (shard.node_id, shard.generation),
            "{}: the simulators hold what the create answer reported",
            shard.shard_id
        );
        assert!(shard.generation >= 1, "attached in a real generation");
    }

    // Describe: shape and content.
    let path = format!("/control/v1/tenant/{sharded}");
    let raw_describe = get_json(&api, &path).await;
    expect_keys(&raw_describe, fields::TENANT_DESCRIBE_RESPONSE).expect("describe shape");
    for shard in raw_describe["shards"].as_array().expect("shards") {
        expect_keys(shard, fields::TENANT_DESCRIBE_RESPONSE_SHARD).expect("shard shape");
    }
    let described: TenantDescribeResponse =
        serde_json::from_value(raw_describe.clone()).expect("typed describe");
    assert_eq!(described.tenant_id, sharded);
    assert_eq!(described.stripe_size, 2048);
    assert_eq!(described.policy, json!({"Attached": 1}));
    assert!(described.config.is_object(), "{:?}", described.config);
    let ids: Vec<String> = described
        .shards
        .iter()
        .map(|s| s.tenant_shard_id.clone())
        .collect();
    assert_eq!(ids, shard_ids(&sharded, 4), "shards in shard order");
    for s in &described.shards {
        let attached = s.node_attached.expect("attached");
        assert_eq!(attached, attachments[&s.tenant_shard_id].node);
        assert_eq!(s.node_secondary.len(), 1, "{s:?}");
        let secondary = s.node_secondary[0];
        assert_ne!(secondary, attached);
        assert_eq!(s.last_error, "");
        assert!(!s.is_reconciling && !s.is_pending_compute_notification);
        assert!(!s.is_splitting && !s.is_importing);
        assert_eq!(s.scheduling_policy, "Active");
        let az = s.preferred_az_id.as_deref().expect("a preferred AZ");
        assert_eq!(sims.az(attached), az, "{s:?}: attached in the preferred AZ");
        assert_ne!(sims.az(secondary), az, "{s:?}: the secondary in another AZ");
    }
    // Every replica's answer is the leader's.
    let via_leader = StorageApi::new(cluster.client(leader))
        .describe_tenant(&sharded)
        .await
        .expect("describe via the leader");
    assert_eq!(via_leader, described);

    // An unsharded tenant too, then list and paging.
    let unsharded = tenant_id(TAG, 2);
    let created_unsharded = api
        .create_tenant(&tenant_create_body(&unsharded, 0, 1))
        .await
        .expect("unsharded create");
    assert_eq!(created_unsharded.shards.len(), 1);
    assert_eq!(created_unsharded.shards[0].shard_id, unsharded);
    let tenants = [sharded.clone(), unsharded.clone()];
    let attachments = wait_settled(&api, &sims, &tenants, SETTLE_DEADLINE)
        .await
        .expect("both tenants settle");
    let raw_list = get_json(&api, "/control/v1/tenant").await;
    for tenant in raw_list.as_array().expect("list is an array") {
        expect_keys(tenant, fields::TENANT_DESCRIBE_RESPONSE).expect("list element shape");
    }
    let list: Vec<TenantDescribeResponse> = serde_json::from_value(raw_list).expect("typed list");
    let listed: Vec<&str> = list.iter().map(|t| t.tenant_id.as_str()).collect();
    assert_eq!(listed, vec![sharded.as_str(), unsharded.as_str()]);
    assert_eq!(list[0], described);
    assert_eq!(
        list[1],
        api.describe_tenant(&unsharded).await.expect("describe")
    );
    let page = api.list_tenants(Some(1), None).await.expect("page 1");
    assert_eq!(page, list[..1].to_vec());
    let page = api
        .list_tenants(Some(1), Some(&sharded))
        .await
        .expect("page 2");
    assert_eq!(page, list[1..].to_vec());
    let page = api
        .list_tenants(None, Some(&unsharded))
        .await
        .expect("page 3");
    assert!(page.is_empty(), "{page:?}");

    // Node shards: shape, and exactly the intent, with observed modes.
    for node in sims.ids() {
        let raw = get_json(&api, &format!("/control/v1/node/{node}/shards")).await;
        expect_keys(&raw, fields::NODE_SHARD_RESPONSE).expect("NodeShardResponse shape");
        for shard in raw["shards"].as_array().expect("shards") {
            expect_keys(shard, fields::NODE_SHARD).expect("NodeShard shape");
        }
        let answer = api.node_shards(node).await.expect("node shards");
        assert_eq!(answer.node_id, node);
        let got: BTreeMap<String, (Option<bool>, Option<bool>)> = answer
            .shards
            .iter()
            .map(|s| {
                (
                    s.tenant_shard_id.clone(),
                    (s.is_intended_secondary, s.is_observed_secondary),
                )
            })
            .collect();
        let mut want = BTreeMap::new();
        for tenant in list.iter() {
            for s in &tenant.shards {
                if s.node_attached == Some(node) {
                    want.insert(s.tenant_shard_id.clone(), (Some(false), Some(false)));
                } else if s.node_secondary.contains(&node) {
                    want.insert(s.tenant_shard_id.clone(), (Some(true), Some(true)));
                }
            }
        }
        assert_eq!(got, want, "node {node}");
    }
    // An unknown node has no shards: 200 with an empty list, as upstream.
    let raw = get_json(&api, "/control/v1/node/9999/shards").await;
    assert_eq!(raw, json!({"node_id": 9999, "shards": []}));

    // Nodes: shape, Active, and the addresses the simulators registered.
    let raw_nodes = get_json(&api, "/control/v1/node").await;
    let nodes = raw_nodes.as_array().expect("node list");
    assert_eq!(nodes.len(), 3, "{raw_nodes}");
    for (node, id) in nodes.iter().zip(sims.ids()) {
        expect_keys(node, fields::NODE_DESCRIBE_RESPONSE).expect("NodeDescribeResponse shape");
        let port = sims.addr(id).port();
        assert_eq!(
            node,
            &json!({
                "id": id, "availability": "Active", "scheduling": "Active",
                "availability_zone_id": sims.az(id),
                "listen_http_addr": "127.0.0.1", "listen_http_port": port,
                "listen_https_port": null,
                "listen_pg_addr": "127.0.0.1", "listen_pg_port": port,
                "listen_grpc_addr": null, "listen_grpc_port": null,
            })
        );
    }

    // Consistency check: 200 with a `null` body.
    let raw = api
        .send(Method::POST, "/debug/v1/consistency_check", None)
        .await
        .expect("consistency check answered");
    assert_eq!((raw.status, raw.body.as_str()), (200, "null"));

    // Validate: shape; the current generation is valid, older ones are not, unknown omitted.
    let mut probe: Vec<(String, u32)> = Vec::new();
    for (shard, held) in &attachments {
        probe.push((shard.clone(), held.generation));
        if held.generation > 1 {
            probe.push((shard.clone(), held.generation - 1));
        }
    }
    let unknown = format!("{}-0004", tenant_id(TAG, 99));
    let body =
        json!({"tenants": [{"id": &probe[0].0, "gen": probe[0].1}, {"id": unknown, "gen": 1}]});
    let raw = api
        .send(Method::POST, "/upcall/v1/validate", Some(&body))
        .await
        .expect("validate answered");
    assert_eq!(raw.status, 200, "{}", raw.body);
    let answer: Value = serde_json::from_str(&raw.body).expect("JSON");
    expect_keys(&answer, fields::VALIDATE_RESPONSE).expect("ValidateResponse shape");
    assert_eq!(
        answer["tenants"],
        json!([{"id": &probe[0].0, "valid": true}]),
        "the unknown shard is omitted"
    );
    for (shard, generation) in &probe {
        let valid = api
            .validate(&[(shard.clone(), *generation)])
            .await
            .expect("validate");
        let current = attachments[shard].generation == *generation;
        assert_eq!(
            valid.get(shard),
            Some(&current),
            "{shard} generation {generation}"
        );
    }

    // Safety over the whole run, and nobody crashed.
    let events = sims.all_history().expect("histories");
    history::ensure_safe(&events).expect("generation safety");
    let attached_shards: BTreeSet<String> = history::attach_generations(&events)
        .keys()
        .cloned()
        .collect();
    let all: BTreeSet<String> = attachments.keys().cloned().collect();
    assert_eq!(attached_shards, all);

    // A policy asking for more secondaries than there are nodes besides the attached one: 409
    // (upstream), and the tenant stays with the secondaries that could be placed.
    let greedy = tenant_id(TAG, 3);
    let answer = api
        .send(
            Method::POST,
            "/v1/tenant",
            Some(&tenant_create_body(&greedy, 0, 3)),
        )
        .await
        .expect("greedy create");
    assert_eq!(answer.status, 409, "{}", answer.body);
    let msg: Value = serde_json::from_str(&answer.body).expect("json");
    assert!(
        msg["msg"]
            .as_str()
            .is_some_and(|m| m.contains("secondaries")),
        "{msg}"
    );
    let kept = api.describe_tenant(&greedy).await.expect("greedy kept");
    assert_eq!(kept.shards.len(), 1);
    assert!(kept.shards[0].node_attached.is_some(), "{kept:?}");
    assert_eq!(kept.shards[0].node_secondary.len(), 2, "{kept:?}");
    let deleted = api
        .send(Method::DELETE, &format!("/v1/tenant/{greedy}"), None)
        .await
        .expect("delete greedy");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");

    // Negative control: the checker reads the real files. A rogue attach of a shard on its
    // secondary, in the generation its attached node holds, must be reported.
    let rogue = &described.shards[0];
    let generation = attachments[&rogue.tenant_shard_id].generation;
    let secondary = rogue.node_secondary[0];
    let (status, body) = sims
        .request(
            secondary,
            Method::PUT,
            &format!("/v1/tenant/{}/location_config", rogue.tenant_shard_id),
            Some(&json!({
                "mode": "AttachedSingle", "generation": generation, "secondary_conf": null,
                "shard_number": 0, "shard_count": 4, "shard_stripe_size": 2048, "tenant_conf": {},
            })),
        )
        .await
        .expect("rogue attach");
    assert_eq!(status, 200, "{body}");
    let violations = history::check(&sims.all_history().expect("histories"));
    assert_eq!(
        violations,
        vec![history::Violation::SameGenerationOnTwoNodes {
            shard: rogue.tenant_shard_id.clone(),
            generation,
            nodes: {
                let mut nodes = vec![rogue.node_attached.expect("attached"), secondary];
                nodes.sort_unstable();
                nodes
            },
        }]
    );
}
