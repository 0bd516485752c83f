//! Malformed or invalid requests get a 4xx with a `{"msg": ...}` body, on the leader and through a
//! follower, and change nothing.

use cluster_tests::checks::check_nodes_everywhere;
use cluster_tests::client::READ_LOCAL_HEADER;
use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, deadline};
use reqwest::Method;
use serde_json::{Value, json};

/// What a case must answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Exactly(u16),
    AnyClientError,
}

/// A valid registration of node 7 as JSON, with `field` set to `value`.
fn with(field: &str, value: Value) -> String {
    let mut body = serde_json::to_value(NodeRegisterRequest::fake(7)).expect("serializes");
    body[field] = value;
    body.to_string()
}

/// A valid registration of node 7 as JSON, without `field`.
fn without(field: &str) -> String {
    let mut body = serde_json::to_value(NodeRegisterRequest::fake(7)).expect("serializes");
    body.as_object_mut().expect("an object").remove(field);
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input() {
    let (cluster, leader) = Cluster::start_formed(ClusterOptions::default())
        .await
        .expect("a formed cluster");
    let follower = cluster.live_other_than(leader);

    let registered: Vec<NodeRegisterRequest> = (1..=2).map(NodeRegisterRequest::fake).collect();
    for node in &registered {
        cluster
            .register(leader, node)
            .await
            .expect("registering via the leader");
    }
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    let before = cluster
        .status_of(leader)
        .await
        .expect("status of the leader");

    use Expect::{AnyClientError, Exactly};
    const JSON: &str = "application/json";
    let posts: Vec<(&str, &str, String, Expect)> = vec![
        (
            "truncated JSON",
            JSON,
            r#"{"node_id": 7, "listen_pg_addr": "#.into(),
            Exactly(400),
        ),
        ("not JSON", JSON, "node_id=7".into(), Exactly(400)),
        ("empty body", JSON, String::new(), Exactly(400)),
        ("empty object", JSON, "{}".into(), Exactly(400)),
        (
            "missing listen_http_port",
            JSON,
            without("listen_http_port"),
            Exactly(400),
        ),
        (
            "missing availability_zone_id",
            JSON,
            without("availability_zone_id"),
            Exactly(400),
        ),
        (
            "grpc addr without port",
            JSON,
            with("listen_grpc_addr", json!("127.0.0.1")),
            Exactly(400),
        ),
        (
            "grpc port without addr",
            JSON,
            with("listen_grpc_port", json!(4000)),
            Exactly(400),
        ),
        (
            "array instead of object",
            JSON,
            "[7]".into(),
            AnyClientError,
        ),
        (
            "node_id as a string",
            JSON,
            with("node_id", json!("seven")),
            AnyClientError,
        ),
        (
            "negative node_id",
            JSON,
            with("node_id", json!(-7)),
            AnyClientError,
        ),
        (
            "port out of range",
            JSON,
            with("listen_pg_port", json!(70000)),
            AnyClientError,
        ),
        (
            "AZ as a number",
            JSON,
            with("availability_zone_id", json!(5)),
            AnyClientError,
        ),
        (
            "no content type",
            "",
            with("node_id", json!(7)),
            AnyClientError,
        ),
    ];
    let gets: Vec<(&str, String, Expect)> = vec![
        (
            "non-numeric id",
            "/control/v1/node/abc".to_owned(),
            Exactly(400),
        ),
        (
            "negative id",
            "/control/v1/node/-1".to_owned(),
            Exactly(400),
        ),
        (
            "fractional id",
            "/control/v1/node/1.5".to_owned(),
            Exactly(400),
        ),
        (
            "unknown id",
            "/control/v1/node/999".to_owned(),
            Exactly(404),
        ),
    ];

    let mut failures = Vec::new();
    for via in [leader, follower] {
        let client = cluster.client(via);
        for (what, content_type, body, expect) in &posts {
            let resp = client
                .raw(
                    Method::POST,
                    "/control/v1/node",
                    Some((content_type, body.clone())),
                    &[],
                )
                .await
                .expect("the replica answers");
            if let Some(problem) = judge(resp.status, resp.msg(), *expect) {
                failures.push(format!(
                    "POST {what} via {via}: {problem}; body {:?}",
                    resp.body
                ));
            }
        }
        for (what, path, expect) in &gets {
            for headers in [&[][..], &[(READ_LOCAL_HEADER, "true")][..]] {
                let resp = client
                    .raw(Method::GET, path, None, headers)
                    .await
                    .expect("the replica answers");
                if let Some(problem) = judge(resp.status, resp.msg(), *expect) {
                    failures.push(format!(
                        "GET {what} via {via} {headers:?}: {problem}; body {:?}",
                        resp.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "bad requests answered wrongly:\n{}",
        failures.join("\n")
    );

    // Nothing changed: same nodes everywhere, nothing new committed.
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("replicas converge");
    check_nodes_everywhere(&cluster, &registered)
        .await
        .expect("the node list is unchanged");
    let after = cluster
        .status_of(leader)
        .await
        .expect("status of the leader");
    if after.term == before.term {
        // A rejected request must not have been proposed. (A re-election appends an entry, so only
        // compare within one term.)
        assert_eq!(
            before.last_applied, after.last_applied,
            "rejected requests appended entries"
        );
    }
    cluster.check_no_crashes().expect("no replica crashed");
}

/// `None` if the answer is acceptable, else what is wrong with it.
fn judge(status: u16, msg: Option<String>, expect: Expect) -> Option<String> {
    let status_ok = match expect {
        Expect::Exactly(code) => status == code,
        Expect::AnyClientError => (400..500).contains(&status),
    };
    if !status_ok {
        return Some(format!("HTTP {status}, expected {expect:?}"));
    }
    match msg {
        Some(msg) if !msg.trim().is_empty() => None,
        Some(_) => Some(format!("HTTP {status} with an empty msg")),
        None => Some(format!("HTTP {status} without a {{\"msg\"}} body")),
    }
}
