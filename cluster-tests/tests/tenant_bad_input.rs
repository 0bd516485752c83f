//! Bad input to the storage-controller API, on the leader and through a follower: malformed
//! JSON, wrong types, a shard id where a tenant id belongs, shard counts out of range, unknown
//! and invalid tenant and node ids, a create with another shard count for an existing tenant,
//! a node config whose body names another node. Every one is a 4xx with a `{"msg": ...}` body
//! and changes nothing: afterwards consistency_check passes, the tenant and node lists are
//! unchanged, generations still validate, and no pageserver received a call.

use cluster_tests::checks::judge_error_body;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{SETTLE_DEADLINE, wait_settled};
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{Cluster, ClusterOptions, ControllerOptions, StorageApi};
use reqwest::Method;
use serde_json::{Value, json};

const TAG: u32 = 0xbad1;
const JSON: &str = "application/json";

/// What a case must answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Exactly(u16),
    AnyClientError,
}

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: &'static str,
    body: Option<String>,
    expect: Expect,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    body: Option<&str>,
    expect: Expect,
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        content_type: JSON,
        body: body.map(str::to_owned),
        expect,
    }
}

/// A valid create body for `tenant`, with `field` set to `value` (`Value::Null`: removed).
fn create_with(tenant: &str, pointer: &str, value: Value) -> String {
    let mut body = tenant_create_body(tenant, 4, 1);
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let target = if parent.is_empty() {
        &mut body
    } else {
        body.pointer_mut(parent).expect("parent exists")
    };
    let object = target.as_object_mut().expect("an object");
    if value.is_null() {
        object.remove(key);
    } else {
        object.insert(key.to_owned(), value);
    }
    body.to_string()
}

/// Why `status`/`body` is not the answer `expect` wants, if it is not.
fn judge(status: u16, body: &str, expect: Expect) -> Option<String> {
    let status_ok = match expect {
        Expect::Exactly(code) => status == code,
        Expect::AnyClientError => (400..500).contains(&status),
    };
    if !status_ok {
        return Some(format!("HTTP {status}, expected {expect:?}"));
    }
    judge_error_body(status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_bad_input() {
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
    let created = api
        .create_tenant(&tenant_create_body(&tenant, 4, 1))
        .await
        .expect("create");
    let settled = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("settles");
    let list_before: Vec<Value> = api
        .list_tenants(None, None)
        .await
        .expect("list")
        .iter()
        .map(|t| t.durable())
        .collect();
    let nodes_before = api.nodes().await.expect("nodes");
    let calls_before = sims.location_config_calls().expect("histories");

    let unknown = tenant_id(TAG, 2);
    let shard = format!("{tenant}-0104");
    use Expect::{AnyClientError, Exactly};
    use Method as M;
    let create = "/v1/tenant";
    let t = tenant.as_str();
    let mut cases = vec![
        // Create: malformed bodies, wrong types, ranges, a shard id, another shard count.
        case(
            "truncated JSON",
            M::POST,
            create,
            Some(r#"{"new_tenant_id": "#),
            Exactly(400),
        ),
        case("not JSON", M::POST, create, Some("tenant=1"), Exactly(400)),
        case("empty body", M::POST, create, Some(""), Exactly(400)),
        case("empty object", M::POST, create, Some("{}"), Exactly(400)),
        case("array", M::POST, create, Some("[1]"), AnyClientError),
        case(
            "invalid tenant id",
            M::POST,
            create,
            Some(&create_with(t, "/new_tenant_id", json!("xyz"))),
            Exactly(400),
        ),
        case(
            "tenant id as a number",
            M::POST,
            create,
            Some(&create_with(t, "/new_tenant_id", json!(7))),
            Exactly(400),
        ),
        case(
            "sharded new_tenant_id",
            M::POST,
            create,
            Some(&create_with(t, "/new_tenant_id", json!(shard))),
            Exactly(400),
        ),
        case(
            "shard count 256",
            M::POST,
            create,
            Some(&create_with(
                &unknown,
                "/shard_parameters/count",
                json!(256),
            )),
            Exactly(400),
        ),
        case(
            "shard count 1000",
            M::POST,
            create,
            Some(&create_with(
                &unknown,
                "/shard_parameters/count",
                json!(1000),
            )),
            Exactly(400),
        ),
        case(
            "negative shard count",
            M::POST,
            create,
            Some(&create_with(&unknown, "/shard_parameters/count", json!(-1))),
            Exactly(400),
        ),
        case(
            "shard count as a string",
            M::POST,
            create,
            Some(&create_with(
                &unknown,
                "/shard_parameters/count",
                json!("four"),
            )),
            Exactly(400),
        ),
        case(
            "stripe size 0",
            M::POST,
            create,
            Some(&create_with(
                &unknown,
                "/shard_parameters/stripe_size",
                json!(0),
            )),
            Exactly(400),
        ),
        case(
            "stripe size as a string",
            M::POST,
            create,
            Some(&create_with(
                &unknown,
                "/shard_parameters/stripe_size",
                json!("big"),
            )),
            Exactly(400),
        ),
        case(
            "placement of a wrong type",
            M::POST,
            create,
            Some(&create_with(
                &unknown,
                "/placement_policy",
                json!({"Attached": "one"}),
            )),
            Exactly(400),
        ),
        case(
            "unknown placement",
            M::POST,
            create,
            Some(&create_with(
                &unknown,
                "/placement_policy",
                json!("Sideways"),
            )),
            Exactly(400),
        ),
        case(
            "generation as a string",
            M::POST,
            create,
            Some(&create_with(&unknown, "/generation", json!("one"))),
            Exactly(400),
        ),
        case(
            "existing tenant, 2 shards",
            M::POST,
            create,
            Some(&tenant_create_body(t, 2, 1).to_string()),
            Exactly(409),
        ),
        case(
            "existing tenant, unsharded",
            M::POST,
            create,
            Some(&tenant_create_body(t, 0, 1).to_string()),
            Exactly(409),
        ),
        // Describe, list, delete, policy: unknown and invalid ids.
        case(
            "describe unknown tenant",
            M::GET,
            &format!("/control/v1/tenant/{unknown}"),
            None,
            Exactly(404),
        ),
        case(
            "describe invalid tenant id",
            M::GET,
            "/control/v1/tenant/xyz",
            None,
            Exactly(400),
        ),
        case(
            "describe by shard id",
            M::GET,
            &format!("/control/v1/tenant/{shard}"),
            None,
            Exactly(400),
        ),
        case(
            "list after an invalid id",
            M::GET,
            "/control/v1/tenant?start_after=xyz",
            None,
            Exactly(400),
        ),
        case(
            "delete unknown tenant",
            M::DELETE,
            &format!("/v1/tenant/{unknown}"),
            None,
            Exactly(404),
        ),
        case(
            "delete invalid tenant id",
            M::DELETE,
            "/v1/tenant/xyz",
            None,
            Exactly(400),
        ),
        case(
            "policy of unknown tenant",
            M::PUT,
            &format!("/control/v1/tenant/{unknown}/policy"),
            Some(r#"{"placement": "Detached"}"#),
            Exactly(404),
        ),
        case(
            "policy of invalid tenant id",
            M::PUT,
            "/control/v1/tenant/xyz/policy",
            Some(r#"{"placement": "Detached"}"#),
            Exactly(400),
        ),
        case(
            "unknown placement policy",
            M::PUT,
            &format!("/control/v1/tenant/{t}/policy"),
            Some(r#"{"placement": "Sideways"}"#),
            Exactly(400),
        ),
        case(
            "unknown policy field",
            M::PUT,
            &format!("/control/v1/tenant/{t}/policy"),
            Some(r#"{"placement": "Detached", "bogus": 1}"#),
            Exactly(400),
        ),
        case(
            "malformed policy",
            M::PUT,
            &format!("/control/v1/tenant/{t}/policy"),
            Some(r#"{"placement": "#),
            Exactly(400),
        ),
        // Nodes.
        case(
            "node config path/body mismatch",
            M::PUT,
            "/control/v1/node/1/config",
            Some(r#"{"node_id": 2, "availability": "Offline"}"#),
            Exactly(400),
        ),
        case(
            "node config of unknown node",
            M::PUT,
            "/control/v1/node/99/config",
            Some(r#"{"node_id": 99, "availability": "Offline"}"#),
            Exactly(404),
        ),
        case(
            "node config with unknown availability",
            M::PUT,
            "/control/v1/node/1/config",
            Some(r#"{"node_id": 1, "availability": "Sideways"}"#),
            Exactly(400),
        ),
        case(
            "node config with unknown scheduling",
            M::PUT,
            "/control/v1/node/1/config",
            Some(r#"{"node_id": 1, "scheduling": "Sideways"}"#),
            Exactly(400),
        ),
        case(
            "node config of invalid node id",
            M::PUT,
            "/control/v1/node/abc/config",
            Some(r#"{"node_id": 1}"#),
            Exactly(400),
        ),
        case(
            "malformed node config",
            M::PUT,
            "/control/v1/node/1/config",
            Some("{"),
            Exactly(400),
        ),
        case(
            "shards of invalid node id",
            M::GET,
            "/control/v1/node/abc/shards",
            None,
            Exactly(400),
        ),
        // Upcalls that must not get as far as changing anything.
        case(
            "validate an invalid shard id",
            M::POST,
            "/upcall/v1/validate",
            Some(r#"{"tenants": [{"id": "xyz", "gen": 1}]}"#),
            Exactly(400),
        ),
        case(
            "validate a negative generation",
            M::POST,
            "/upcall/v1/validate",
            Some(&json!({"tenants": [{"id": format!("{t}-0004"), "gen": -1}]}).to_string()),
            Exactly(400),
        ),
        case(
            "re-attach with a malformed node id",
            M::POST,
            "/upcall/v1/re-attach",
            Some(r#"{"node_id": "one"}"#),
            Exactly(400),
        ),
    ];
    // A registration naming another node than the re-attaching one.
    let mut register = json!({
        "node_id": 1, "register": {
            "node_id": 2, "listen_pg_addr": "127.0.0.1", "listen_pg_port": sims.addr(1).port(),
            "listen_grpc_addr": null, "listen_grpc_port": null,
            "listen_http_addr": "127.0.0.1", "listen_http_port": sims.addr(1).port(),
            "listen_https_port": null, "availability_zone_id": sims.az(1)},
        "empty_local_disk": false
    });
    cases.push(case(
        "re-attach with another node's registration",
        M::POST,
        "/upcall/v1/re-attach",
        Some(&register.to_string()),
        Exactly(400),
    ));
    register["node_id"] = json!(2);
    register["register"]["node_id"] = json!(1);
    cases.push(case(
        "re-attach with another node's registration, reversed",
        M::POST,
        "/upcall/v1/re-attach",
        Some(&register.to_string()),
        Exactly(400),
    ));
    // node_ip_addr must be an IP address (upstream decodes an IpAddr), both in a register and
    // in a re-attach's inline registration.
    let mut bad_ip = register["register"].clone();
    bad_ip["node_id"] = json!(7);
    bad_ip["node_ip_addr"] = json!("not-an-ip");
    cases.push(case(
        "register with a node_ip_addr that is not an IP",
        M::POST,
        "/control/v1/node",
        Some(&bad_ip.to_string()),
        Exactly(400),
    ));
    let reattach_bad_ip = json!({"node_id": 7, "register": bad_ip, "empty_local_disk": false});
    cases.push(case(
        "re-attach registering a node_ip_addr that is not an IP",
        M::POST,
        "/upcall/v1/re-attach",
        Some(&reattach_bad_ip.to_string()),
        Exactly(400),
    ));
    cases.push(Case {
        content_type: "",
        ..case(
            "create without a content type",
            M::POST,
            create,
            Some(&tenant_create_body(&unknown, 4, 1).to_string()),
            AnyClientError,
        )
    });

    let mut failures = Vec::new();
    for via in [leader, follower] {
        let client = cluster.client(via);
        for c in &cases {
            let body = c.body.clone().map(|b| (c.content_type, b));
            let resp = client
                .raw(c.method.clone(), &c.path, body, &[])
                .await
                .unwrap_or_else(|e| panic!("{} via {via}: no answer: {e}", c.what));
            if let Some(problem) = judge(resp.status, &resp.body, c.expect) {
                failures.push(format!(
                    "{} ({} {}) via {via}: {problem}; body {:?}",
                    c.what, c.method, c.path, resp.body
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad requests answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A retried create with the same shard count is not bad input: 201, the same answer.
    let again = api
        .create_tenant(&tenant_create_body(&tenant, 4, 1))
        .await
        .expect("idempotent create");
    assert_eq!(again, created);

    // Nothing changed.
    api.consistency_check().await.expect("consistency check");
    let list_after: Vec<Value> = api
        .list_tenants(None, None)
        .await
        .expect("list")
        .iter()
        .map(|t| t.durable())
        .collect();
    assert_eq!(list_after, list_before, "tenant list unchanged");
    assert_eq!(
        api.nodes().await.expect("nodes"),
        nodes_before,
        "node list unchanged"
    );
    let still = wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
        .await
        .expect("still settled");
    assert_eq!(still, settled, "no attachment or generation changed");
    let probe: Vec<(String, u32)> = settled
        .iter()
        .map(|(s, a)| (s.clone(), a.generation))
        .collect();
    let valid = api.validate(&probe).await.expect("validate");
    assert!(
        valid.values().all(|v| *v) && valid.len() == probe.len(),
        "{valid:?}"
    );
    assert_eq!(
        sims.location_config_calls().expect("histories"),
        calls_before,
        "no pageserver call"
    );
    history::ensure_safe(&sims.all_history().expect("histories")).expect("generation safety");
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}

/// The tenant list's query string is input too. Split out of [`tenant_bad_input`] because the
/// controller answers it with axum's plain-text rejection instead of a `{"msg"}` body (observed:
/// `GET /control/v1/tenant?limit=many` -> 400 `Failed to deserialize query string: limit: invalid
/// digit found in string`, on the leader and through a follower): `http/src/tenants.rs` `list`
/// takes `axum::extract::Query` directly instead of an extractor that maps its rejection to
/// `ApiError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_list_bad_query() {
    let (cluster, leader) = Cluster::start_formed_with_controller(
        ClusterOptions::default(),
        Some(ControllerOptions::test_defaults()),
    )
    .await
    .expect("a formed cluster");
    let follower = cluster.live_other_than(leader);
    let mut failures = Vec::new();
    for via in [leader, follower] {
        for path in [
            "/control/v1/tenant?limit=many",
            "/control/v1/tenant?limit=-1",
        ] {
            let resp = cluster
                .client(via)
                .raw(Method::GET, path, None, &[])
                .await
                .unwrap_or_else(|e| panic!("GET {path} via {via}: no answer: {e}"));
            if let Some(problem) = judge(resp.status, &resp.body, Expect::Exactly(400)) {
                failures.push(format!(
                    "GET {path} via {via}: {problem}; body {:?}",
                    resp.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    cluster.check_no_crashes().expect("no replica crashed");
}
