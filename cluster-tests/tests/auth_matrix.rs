//! A three-replica cluster with `[auth]`: every route prefix answers 401 without a token, 403 with
//! a token of the wrong scope (or a bad signature, or expired), and lets the right scope and
//! `admin` through (but not on `/raft`, which takes `controller_peer` only), on the leader and on
//! a follower (which checks before it forwards). The replicas still form, elect and forward
//! using their own `controller_peer` tokens, followers are `/ready` (their question to the
//! leader carries the peer token), and the leader's calls to a pageserver carry the configured
//! pageserver token.
//!
//! Tokens are signed with the TEST-ONLY keys in `cluster-tests/fixtures/auth/`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_tests::auth::{now, sign_with, test_auth, token};
use cluster_tests::config::{AuthOptions, ControllerOptions};
use cluster_tests::{Cluster, ClusterOptions, NodeRegisterRequest, deadline, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

/// One request, with `Authorization: Bearer <token>` when given, or `authorization` verbatim.
async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    authorization: Option<String>,
) -> (u16, String) {
    let mut req = http.request(method.clone(), format!("{base}{path}"));
    if let Some(a) = authorization {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {base}{path}: no response: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, text)
}

fn msg(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["msg"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<no msg in {body:?}>"))
}

/// A route, the scope it requires and a scope it must refuse.
struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
    scope: &'static str,
    wrong: &'static str,
}

fn case(
    method: Method,
    path: &str,
    body: Option<Value>,
    scope: &'static str,
    wrong: &'static str,
) -> Case {
    Case {
        method,
        path: path.to_owned(),
        body,
        scope,
        wrong,
    }
}

/// (path, `Authorization` header) of every request a [`recording_pageserver`] got.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A stand-in pageserver that records the `Authorization` header of every request it gets.
async fn recording_pageserver() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let router = axum::Router::new().fallback({
        let seen = seen.clone();
        move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                let auth = req
                    .headers()
                    .get(reqwest::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock()
                    .expect("not poisoned")
                    .push((req.uri().path().to_owned(), auth));
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "recording only",
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the recording pageserver");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix() {
    let files = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, format!("{text}\n")).expect("write token file");
        path
    };
    let pageserver_token = token("pageserverapi");
    let auth = AuthOptions {
        pageserver_token_file: Some(write("pageserver.jwt", &pageserver_token)),
        ..test_auth(files.path())
    };
    // Forming, electing and the harness's convergence checks (admin token) all run with auth on.
    let (cluster, leader) = Cluster::start_formed_with_auth(
        ClusterOptions::default(),
        Some(ControllerOptions::test_defaults()),
        Some(auth),
    )
    .await
    .expect("a formed cluster with auth");
    let follower = cluster.live_other_than(leader);
    // A follower is ready only once its leader answered it, with the follower's peer token.
    cluster
        .wait_ready(deadline::CONVERGE)
        .await
        .expect("every replica becomes ready");

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(40))
        .build()
        .expect("client");
    let bearer = |scope: &str| Some(format!("Bearer {}", token(scope)));

    // Probes need no token.
    for id in cluster.ids() {
        for probe in ["/status", "/live", "/ready"] {
            let (status, body) =
                send(&http, &cluster.url(id), Method::GET, probe, None, None).await;
            assert_eq!(status, 200, "replica {id} {probe}: {body}");
        }
    }

    // A write through a follower with pageserverapi: the follower forwards with the caller's
    // token and the leader checks it again. (Before any pageserver is registered, so the create
    // does not wait for reconciles.)
    let base = cluster.url(follower);
    let tenant = "0000000000000000000000000000a17e";
    let (status, body) = send(
        &http,
        &base,
        Method::POST,
        "/v1/tenant",
        Some(&json!({"new_tenant_id": tenant})),
        bearer("pageserverapi"),
    )
    .await;
    assert!(
        status != 401 && status != 403 && status < 500,
        "create tenant via follower: {status} {body}"
    );
    let (status, body) = send(
        &http,
        &base,
        Method::GET,
        &format!("/control/v1/tenant/{tenant}"),
        None,
        bearer("scrubber"),
    )
    .await;
    assert_eq!(status, 200, "describe the new tenant via follower: {body}");

    let unknown_tenant = "00000000000000000000000000abcdef";
    let register_9 = serde_json::to_value(NodeRegisterRequest::fake(9)).expect("json");
    let node_config = json!({"node_id": 404, "availability": null, "scheduling": null});
    let tenant_path = format!("/control/v1/tenant/{unknown_tenant}");
    let policy_path = format!("/control/v1/tenant/{unknown_tenant}/policy");
    let delete_path = format!("/v1/tenant/{unknown_tenant}");
    // (method, path, body, required scope, a scope that must be refused)
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        case(Method::POST,   "/upcall/v1/validate",          Some(json!({"tenants": []})), "generations_api", "pageserverapi"),
        case(Method::DELETE, &delete_path,                   None,                         "pageserverapi",   "generations_api"),
        case(Method::POST,   "/control/v1/node",             Some(register_9),             "infra",           "scrubber"),
        case(Method::GET,    "/control/v1/node",             None,                         "infra",           "pageserverapi"),
        case(Method::GET,    "/control/v1/node/9",           None,                         "infra",           "scrubber"),
        case(Method::PUT,    "/control/v1/node/404/config",  Some(node_config),            "admin",           "infra"),
        case(Method::GET,    "/control/v1/node/9/shards",    None,                         "admin",           "infra"),
        case(Method::GET,    "/control/v1/tenant",           None,                         "admin",           "scrubber"),
        case(Method::GET,    &tenant_path,                   None,                         "scrubber",        "infra"),
        case(Method::PUT,    &policy_path,                   Some(json!({"placement": "Detached"})), "admin", "pageserverapi"),
        case(Method::GET,    "/control/v1/leader",           None,                         "admin",           "infra"),
        case(Method::GET,    "/control/v1/cluster",          None,                         "controller_peer", "infra"),
        case(Method::POST,   "/debug/v1/consistency_check",  None,                         "admin",           "pageserverapi"),
        case(Method::GET,    "/raft/formation",              None,                         "controller_peer", "infra"),
        case(Method::POST,   "/raft/vote",                   Some(json!({"not": "a vote"})), "controller_peer", "infra"),
        case(Method::GET,    "/no/such/route",               None,                         "admin",           "infra"),
    ];

    for target in [follower, leader] {
        let base = cluster.url(target);
        for c in &cases {
            let what = format!("replica {target}: {} {}", c.method, c.path);
            let (status, body) = send(
                &http,
                &base,
                c.method.clone(),
                &c.path,
                c.body.as_ref(),
                None,
            )
            .await;
            assert_eq!(status, 401, "{what} without a token: {body}");
            assert!(msg(&body).starts_with("Unauthorized: "), "{what}: {body}");

            let (status, body) = send(
                &http,
                &base,
                c.method.clone(),
                &c.path,
                c.body.as_ref(),
                bearer(c.wrong),
            )
            .await;
            assert_eq!(status, 403, "{what} with scope {}: {body}", c.wrong);
            assert!(msg(&body).starts_with("Forbidden: "), "{what}: {body}");

            for scope in [c.scope, "admin"] {
                let (status, body) = send(
                    &http,
                    &base,
                    c.method.clone(),
                    &c.path,
                    c.body.as_ref(),
                    bearer(scope),
                )
                .await;
                // Raft RPCs and the formation probe take the peer scope only: an operator's
                // token must not be able to forge a leader.
                if scope == "admin" && c.path.starts_with("/raft/") {
                    assert_eq!(status, 403, "{what} with scope admin: {body}");
                    assert!(msg(&body).contains("only"), "{what}: {body}");
                } else {
                    assert!(
                        status != 401 && status != 403,
                        "{what} with scope {scope}: {status} {body}"
                    );
                }
            }
        }
    }

    // Garbled headers are 401; bad signatures and expired tokens are 403.
    let base = cluster.url(follower);
    let path = "/control/v1/node";
    for garbled in ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "token"] {
        let (status, body) = send(
            &http,
            &base,
            Method::GET,
            path,
            None,
            Some(garbled.to_owned()),
        )
        .await;
        assert_eq!(status, 401, "{garbled:?}: {body}");
    }
    let foreign = sign_with("b", json!({"scope": "admin"}));
    let expired = sign_with("a", json!({"scope": "admin", "exp": now() - 60}));
    for (what, t) in [
        ("foreign key", foreign),
        ("expired", expired),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let (status, body) = send(
            &http,
            &base,
            Method::GET,
            path,
            None,
            Some(format!("Bearer {t}")),
        )
        .await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(
            msg(&body).starts_with("Forbidden: JWT authentication error"),
            "{what}: {body}"
        );
    }
    // An `exp` in the future and an (ignored) `tenant_id` are fine.
    let fresh = sign_with(
        "a",
        json!({"scope": "infra", "exp": now() + 600, "tenant_id": unknown_tenant}),
    );
    let (status, body) = send(
        &http,
        &base,
        Method::GET,
        path,
        None,
        Some(format!("Bearer {fresh}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A write through a follower with infra: register a pageserver.
    let (ps_port, seen) = recording_pageserver().await;
    let mut node = NodeRegisterRequest::fake(1);
    node.listen_http_port = ps_port;
    let (status, body) = send(
        &http,
        &base,
        Method::POST,
        "/control/v1/node",
        Some(&serde_json::to_value(&node).expect("json")),
        bearer("infra"),
    )
    .await;
    assert_eq!(status, 200, "register via follower: {body}");
    for id in cluster.ids() {
        let (status, body) = send(
            &http,
            &cluster.url(id),
            Method::GET,
            "/control/v1/node/1",
            None,
            bearer("infra"),
        )
        .await;
        assert_eq!(status, 200, "replica {id} describes node 1: {body}");
    }

    // The leader's heartbeats to that pageserver carry the pageserver token.
    let expected = format!("Bearer {pageserver_token}");
    wait_until(
        "a pageserver call with the pageserver token",
        deadline::CONVERGE,
        async || {
            let seen = seen.lock().expect("not poisoned").clone();
            anyhow::ensure!(!seen.is_empty(), "no call reached the pageserver yet");
            let wrong: Vec<_> = seen
                .iter()
                .filter(|(_, a)| a.as_deref() != Some(&expected))
                .collect();
            anyhow::ensure!(wrong.is_empty(), "calls without the token: {wrong:?}");
            Ok(())
        },
    )
    .await
    .expect("pageserver calls carry the configured token");

    cluster.check_no_crashes().expect("no replica crashed");
}
