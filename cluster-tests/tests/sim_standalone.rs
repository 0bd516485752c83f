//! `pageserver-sim` on its own, against a stub controller inside the test: re-attach before
//! serving, location_config round trips and refusals (stale generation, lower term), restart
//! re-attach semantics, shard split, validated deletions, and the history file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cluster_tests::binary::pageserver_sim_binary;
use cluster_tests::{free_port, wait_until};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;

const TENANT: &str = "1f359dd625e519a1a4e8d7509690f6fc";
const OTHER_TENANT: &str = "2c2d0e9c7a5b4e3f8a1b2c3d4e5f6a7b";
const TL1: &str = "11111111111111111111111111111111";
const TL2: &str = "22222222222222222222222222222222";
const TL3: &str = "33333333333333333333333333333333";
const TOKEN: &str = "sim-test-token";
/// Generous: debug builds on a busy machine. Only a broken run waits this long.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Stub controller

#[derive(Default)]
struct StubState {
    /// `tenants` of the next re-attach answers.
    reattach_tenants: Vec<Value>,
    /// This many re-attach calls answer 503 first.
    reattach_failures: u32,
    /// `Some(v)`: every validated shard gets `valid: v`; `None`: shards are omitted.
    valid: Option<bool>,
    reattach_calls: Vec<(Option<String>, Value)>,
    validate_calls: Vec<Value>,
}

#[derive(Clone)]
struct StubShared {
    state: Arc<Mutex<StubState>>,
    /// Re-attach answers wait until this is true.
    gate: Arc<watch::Sender<bool>>,
}

struct Stub {
    url: String,
    shared: StubShared,
    server: tokio::task::JoinHandle<()>,
}

impl Stub {
    async fn start() -> anyhow::Result<Stub> {
        let shared = StubShared {
            state: Arc::new(Mutex::new(StubState {
                valid: Some(true),
                ..StubState::default()
            })),
            gate: Arc::new(watch::Sender::new(true)),
        };
        let router = axum::Router::new()
            .route("/upcall/v1/re-attach", post(stub_reattach))
            .route("/upcall/v1/validate", post(stub_validate))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Stub {
            url,
            shared,
            server,
        })
    }

    fn state(&self) -> MutexGuard<'_, StubState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_gate(&self, open: bool) {
        self.shared.gate.send_replace(open);
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn stub_reattach(
    State(shared): State<StubShared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fail = {
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.reattach_calls.push((auth, body));
        let fail = state.reattach_failures > 0;
        state.reattach_failures = state.reattach_failures.saturating_sub(1);
        fail
    };
    if fail {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"msg": "no leader"})),
        )
            .into_response();
    }
    let mut gate = shared.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let tenants = shared
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .reattach_tenants
        .clone();
    Json(json!({ "tenants": tenants })).into_response()
}

async fn stub_validate(State(shared): State<StubShared>, Json(body): Json<Value>) -> Json<Value> {
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    state.validate_calls.push(body.clone());
    let answers: Vec<Value> = match state.valid {
        None => Vec::new(),
        Some(valid) => body["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| json!({"id": t["id"], "valid": valid}))
            .collect(),
    };
    Json(json!({ "tenants": answers }))
}

// ---------------------------------------------------------------------------------------------
// The simulator process

/// One `pageserver-sim` process; killed on drop, also when the test panics.
struct Sim {
    node_id: u64,
    addr: SocketAddr,
    dir: PathBuf,
    controller: String,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Sim {
    fn new(stub: &Stub, dir: &Path, node_id: u64) -> anyhow::Result<Sim> {
        Ok(Sim {
            node_id,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: dir.to_path_buf(),
            controller: stub.url.clone(),
            child: None,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()?,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("sim.log")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(pageserver_sim_binary())
            .arg("--node-id")
            .arg(self.node_id.to_string())
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--controller")
            .arg(&self.controller)
            .arg("--az")
            .arg("az-a")
            .arg("--token")
            .arg(TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning pageserver-sim")?;
        self.child = Some(child);
        Ok(())
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_serving().await
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start().await
    }

    async fn wait_serving(&mut self) -> anyhow::Result<()> {
        wait_until("pageserver-sim serving", DEADLINE, async || {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                anyhow::bail!("pageserver-sim exited: {status}");
            }
            let (status, _) = self
                .call(Method::GET, "/v1/utilization", None, None)
                .await?;
            ensure!(status == 200, "utilization answered {status}");
            Ok(())
        })
        .await
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        term: Option<u64>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("http://{}{path}", self.addr);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(term) = term {
            request = request.header("x-storcon-term", term.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// One request that must be answered with `status`; returns the body.
    async fn req(&self, req: Req<'_>, status: u16) -> anyhow::Result<Value> {
        let what = format!("{} {}", req.method, req.path);
        let (got, body) = self.call(req.method, req.path, req.body, req.term).await?;
        ensure!(
            got == status,
            "{what}: expected {status}, got {got}: {body}"
        );
        Ok(body)
    }

    async fn get(&self, path: &str, status: u16) -> anyhow::Result<Value> {
        self.req(Req::new(Method::GET, path), status).await
    }

    async fn post(&self, path: &str, body: Value, status: u16) -> anyhow::Result<Value> {
        self.req(Req::new(Method::POST, path).body(body), status)
            .await
    }

    async fn delete(&self, path: &str, status: u16) -> anyhow::Result<Value> {
        self.req(Req::new(Method::DELETE, path), status).await
    }

    /// `PUT location_config` of `tsid` in `mode` (and `generation`), expecting `status`.
    async fn set(
        &self,
        tsid: &str,
        mode: &str,
        generation: Option<u32>,
        status: u16,
    ) -> anyhow::Result<Value> {
        let path = format!("/v1/tenant/{tsid}/location_config?lazy=true&flush_ms=100");
        self.req(
            Req::new(Method::PUT, &path).body(conf(tsid, mode, generation)),
            status,
        )
        .await
    }

    /// `(mode, generation)` of a present location.
    async fn placement(&self, tsid: &str) -> anyhow::Result<(String, Value)> {
        let loc = self
            .get(&format!("/v1/location_config/{tsid}"), 200)
            .await?;
        Ok((
            loc["mode"].as_str().unwrap_or("?").to_owned(),
            loc["generation"].clone(),
        ))
    }

    async fn absent(&self, tsid: &str) -> anyhow::Result<()> {
        self.get(&format!("/v1/location_config/{tsid}"), 404)
            .await
            .map(drop)
    }

    async fn history(&self) -> anyhow::Result<Vec<Value>> {
        let body = self.get("/debug/sim/history", 200).await?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }
}

/// A request to the simulator: method, path, optional body and term.
struct Req<'a> {
    method: Method,
    path: &'a str,
    body: Option<Value>,
    term: Option<u64>,
}

impl<'a> Req<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Req {
            method,
            path,
            body: None,
            term: None,
        }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn term(mut self, term: u64) -> Self {
        self.term = Some(term);
        self
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.log_path())
        {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- pageserver-sim {} log tail ----", self.node_id);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn shard(number: u8, count: u8) -> String {
    format!("{TENANT}-{number:02x}{count:02x}")
}

fn conf(tsid: &str, mode: &str, generation: Option<u32>) -> Value {
    let (number, count) = match tsid.split_once('-') {
        Some((_, slug)) if slug.len() == 4 => (
            u8::from_str_radix(&slug[..2], 16).unwrap_or(0),
            u8::from_str_radix(&slug[2..], 16).unwrap_or(0),
        ),
        _ => (0, 0),
    };
    let secondary_conf = (mode == "Secondary").then(|| json!({"warm": true}));
    json!({
        "mode": mode, "generation": generation, "secondary_conf": secondary_conf,
        "shard_number": number, "shard_count": count, "shard_stripe_size": 2048,
        "tenant_conf": {}
    })
}

fn attached(tsid: &str, generation: u32) -> Value {
    json!({"id": tsid, "gen": generation, "mode": "AttachedSingle", "stripe_size": 2048})
}

fn secondary(tsid: &str) -> Value {
    json!({"id": tsid, "gen": null, "mode": "Secondary", "stripe_size": 2048})
}

fn put(path: &str, body: Value) -> Req<'_> {
    Req::new(Method::PUT, path).body(body)
}

fn new_timeline(id: &str) -> Value {
    json!({"new_timeline_id": id, "pg_version": 17})
}

fn placed(mode: &str, generation: Value) -> (String, Value) {
    (mode.to_owned(), generation)
}

fn events<'a>(history: &'a [Value], kind: &str, tsid: &str) -> Vec<&'a Value> {
    history
        .iter()
        .filter(|e| e["kind"] == kind && e["tenant_shard_id"] == tsid)
        .collect()
}

fn msg_contains(body: &Value, needle: &str) -> bool {
    body["msg"].as_str().is_some_and(|m| m.contains(needle))
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Re-attach is retried after a 503 and the API stays closed until it is answered; then
/// location_config round trips, refusals of stale generations and lower terms, and history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_after_reattach_and_fences_stale_requests() -> anyhow::Result<()> {
    let stub = Stub::start().await?;
    stub.state().reattach_failures = 1;
    stub.set_gate(false);
    let dir = tempfile::tempdir()?;
    let mut sim = Sim::new(&stub, dir.path(), 1)?;
    sim.spawn()?;

    wait_until(
        "a retried re-attach held by the stub",
        DEADLINE,
        async || {
            let calls = stub.state().reattach_calls.len();
            ensure!(calls >= 2, "{calls} re-attach calls");
            Ok(())
        },
    )
    .await?;
    // It binds its port only after re-attach (and logs "serving on" right after). Its log, not
    // a connect to the port: another test's server may have been given the same free port.
    let log = std::fs::read_to_string(sim.log_path())?;
    assert!(
        !log.contains("serving on"),
        "serving before re-attach was answered: {log}"
    );
    let (auth, request) = stub.state().reattach_calls[1].clone();
    assert_eq!(auth, Some(format!("Bearer {TOKEN}")));
    assert_eq!(request["node_id"], 1);
    assert_eq!(request["empty_local_disk"], true);
    let register = &request["register"];
    assert_eq!(register["listen_http_port"], sim.addr.port());
    assert_eq!(register["listen_http_addr"], "127.0.0.1");
    assert_eq!(register["availability_zone_id"], "az-a");
    stub.set_gate(true);
    sim.wait_serving().await?;

    // Attach, and what the listing, utilization and attached-only routes say about it.
    let body = sim.set(TENANT, "AttachedSingle", Some(1), 200).await?;
    assert_eq!(body["shards"], json!([{"shard_id": TENANT, "node_id": 1}]));
    assert_eq!(
        sim.placement(TENANT).await?,
        placed("AttachedSingle", json!(1))
    );
    let list = sim.get("/v1/location_config", 200).await?;
    assert_eq!(list["tenant_shards"][0][0], TENANT);
    let util = sim.get("/v1/utilization", 200).await?;
    assert_eq!(util["shard_count"], 1);
    assert_eq!(util["max_shard_count"], 20000);
    assert!(util["utilization_score"].as_u64().is_some(), "{util}");
    let timelines = format!("/v1/tenant/{TENANT}/timeline");
    let info = sim.post(&timelines, new_timeline(TL1), 201).await?;
    assert_eq!(info["last_record_lsn"], "0/16B5A50");
    sim.post(&timelines, new_timeline(TL1), 201).await?;
    let heatmap = format!("/v1/tenant/{TENANT}/heatmap_upload");
    sim.post(&heatmap, Value::Null, 200).await?;
    let download = format!("/v1/tenant/{TENANT}/secondary/download?wait_ms=0");
    sim.post(&download, Value::Null, 404).await?;

    // Secondary: no generation, a download status, no attached-only routes.
    sim.set(TENANT, "Secondary", None, 200).await?;
    assert_eq!(
        sim.placement(TENANT).await?,
        placed("Secondary", Value::Null)
    );
    sim.post(&heatmap, Value::Null, 404).await?;
    sim.post(&timelines, new_timeline(TL2), 404).await?;
    let progress = sim
        .get(&format!("/v1/tenant/{TENANT}/secondary/status"), 200)
        .await?;
    assert_eq!(progress["layers_total"], 10);

    // Attach in a newer generation; an older one is refused, also after a detach.
    sim.set(TENANT, "AttachedMulti", Some(3), 200).await?;
    let body = sim.set(TENANT, "AttachedSingle", Some(2), 400).await?;
    assert!(msg_contains(&body, "older"), "{body}");
    sim.set(TENANT, "AttachedSingle", Some(3), 200).await?;
    sim.set(TENANT, "Detached", None, 200).await?;
    sim.absent(TENANT).await?;
    sim.set(TENANT, "Detached", None, 200).await?;
    sim.set(TENANT, "AttachedSingle", Some(2), 400).await?;
    // The detached attachment had a timeline (kept while secondary): validated first.
    let validations = stub.state().validate_calls.clone();
    assert_eq!(
        validations,
        vec![json!({"tenants": [{"id": TENANT, "gen": 3}]})]
    );

    // A fresh secondary downloads the heatmap's layers (uploaded above on request) at its
    // rate: not done at once, done within a wait long enough.
    sim.set(TENANT, "Secondary", None, 200).await?;
    let first = sim.post(&download, Value::Null, 202).await?;
    assert_eq!(first["layers_total"], 10, "{first}");
    assert!(
        first["layers_downloaded"].as_u64() < first["layers_total"].as_u64(),
        "{first}"
    );
    assert!(first["heatmap_mtime"].is_string(), "{first}");
    let waited = format!("/v1/tenant/{TENANT}/secondary/download?wait_ms=30000");
    let done = sim.post(&waited, Value::Null, 200).await?;
    assert_eq!(done["layers_downloaded"], 10, "{done}");
    assert_eq!(done["bytes_downloaded"], done["bytes_total"], "{done}");

    // Term fencing: lower terms are refused, no header is accepted.
    let config_path = format!("/v1/tenant/{TENANT}/location_config");
    let attach4 =
        || Req::new(Method::PUT, &config_path).body(conf(TENANT, "AttachedSingle", Some(4)));
    sim.req(attach4().term(5), 200).await?;
    let body = sim.req(attach4().term(4), 409).await?;
    assert!(msg_contains(&body, "term"), "{body}");
    sim.req(Req::new(Method::GET, "/v1/utilization").term(4), 409)
        .await?;
    sim.req(attach4(), 200).await?;
    sim.req(attach4().term(6), 200).await?;

    // Malformed requests.
    let body = sim
        .req(
            Req::new(Method::PUT, &config_path).body(json!({"mode": "Sideways"})),
            400,
        )
        .await?;
    assert!(body["msg"].is_string(), "{body}");
    sim.set("xyz", "Secondary", None, 400).await?;
    sim.set(TENANT, "AttachedSingle", None, 400).await?;

    // History: every change and refusal, in order, also on disk.
    let history = sim.history().await?;
    let changes = events(&history, "location_config", TENANT);
    let summary: Vec<(Value, Value, Value)> = changes
        .iter()
        .map(|e| {
            (
                e["mode"].clone(),
                e["generation"].clone(),
                e["accepted"].clone(),
            )
        })
        .collect();
    assert_eq!(summary[0], (json!("AttachedSingle"), json!(1), json!(true)));
    assert_eq!(summary[1], (json!("Secondary"), Value::Null, json!(true)));
    assert_eq!(
        summary[3],
        (json!("AttachedSingle"), json!(2), json!(false))
    );
    let refused_term: Vec<_> = changes.iter().filter(|e| e["term"] == 4).collect();
    assert_eq!(refused_term.len(), 1);
    assert_eq!(refused_term[0]["accepted"], false);
    let validated = events(&history, "validate", TENANT);
    assert!(
        validated
            .iter()
            .any(|e| e["valid"] == true && e["generation"] == 3)
    );
    let on_disk = std::fs::read_to_string(dir.path().join("data/history.jsonl"))?;
    assert_eq!(on_disk.lines().count(), history.len());
    Ok(())
}

/// Restart: locations survive, and the re-attach answer is applied to local shards only
/// (absent -> dropped, Secondary -> secondary, Attached -> new generation, lower -> demoted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_applies_reattach_to_local_locations() -> anyhow::Result<()> {
    let stub = Stub::start().await?;
    let dir = tempfile::tempdir()?;
    let mut sim = Sim::new(&stub, dir.path(), 2)?;
    sim.start().await?;
    let (a, b, c, d) = (shard(0, 4), shard(1, 4), shard(2, 4), shard(3, 4));
    for s in [&a, &b, &c] {
        sim.set(s, "AttachedSingle", Some(3), 200).await?;
    }
    sim.set(&d, "Secondary", None, 200).await?;
    let timelines = format!("/v1/tenant/{a}/timeline");
    sim.post(&timelines, new_timeline(TL1), 201).await?;

    // The controller keeps everything, bumping generations as re-attach does.
    stub.state().reattach_tenants = vec![
        attached(&a, 4),
        attached(&b, 4),
        attached(&c, 4),
        secondary(&d),
    ];
    sim.restart().await?;
    let last_call = stub.state().reattach_calls.last().cloned();
    assert_eq!(
        last_call.map(|c| c.1["empty_local_disk"].clone()),
        Some(json!(false))
    );
    for s in [&a, &b, &c] {
        assert_eq!(sim.placement(s).await?, placed("AttachedSingle", json!(4)));
    }
    assert_eq!(sim.placement(&d).await?, placed("Secondary", Value::Null));
    let listed = sim.get(&timelines, 200).await?;
    assert_eq!(listed[0]["timeline_id"], TL1);

    // Now: newer generation, LOWER generation (demote), absent, secondary -> attached, and a
    // shard that is not local (ignored).
    let other = format!("{OTHER_TENANT}-0001");
    stub.state().reattach_tenants = vec![
        attached(&a, 5),
        attached(&b, 2),
        attached(&d, 1),
        attached(&other, 7),
    ];
    sim.restart().await?;
    assert_eq!(sim.placement(&a).await?, placed("AttachedSingle", json!(5)));
    assert_eq!(sim.placement(&b).await?, placed("Secondary", Value::Null));
    sim.absent(&c).await?;
    assert_eq!(sim.placement(&d).await?, placed("AttachedSingle", json!(1)));
    sim.absent(&other).await?;
    let listed = sim.get(&timelines, 200).await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    // b held generation 4 once: an attach in 3 stays refused after the demotion.
    sim.set(&b, "AttachedSingle", Some(3), 400).await?;

    let history = sim.history().await?;
    let last = |tsid: &str| {
        events(&history, "reattach", tsid)
            .last()
            .map(|e| (*e).clone())
    };
    let b_event = last(&b).context("b re-attach event")?;
    assert_eq!(
        (&b_event["mode"], &b_event["accepted"]),
        (&json!("Secondary"), &json!(false))
    );
    let c_event = last(&c).context("c re-attach event")?;
    assert_eq!(
        (&c_event["mode"], &c_event["accepted"]),
        (&json!("Detached"), &json!(true))
    );
    assert!(last(&other).is_none(), "non-local shard recorded");
    Ok(())
}

/// Split: children attached in the parent's generation with its timelines, the parent dropped;
/// injected failure and stall; children survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_creates_children_in_parent_generation() -> anyhow::Result<()> {
    let stub = Stub::start().await?;
    let dir = tempfile::tempdir()?;
    let mut sim = Sim::new(&stub, dir.path(), 3)?;
    sim.start().await?;
    sim.set(TENANT, "AttachedSingle", Some(5), 200).await?;
    sim.post(
        &format!("/v1/tenant/{TENANT}/timeline"),
        new_timeline(TL1),
        201,
    )
    .await?;
    let wait = format!("/v1/tenant/{TENANT}/wait_lsn");
    let timeout = json!({"secs": 1, "nanos": 0});
    sim.post(&wait, json!({TL1: "0/2000000", "timeout": timeout}), 200)
        .await?;
    sim.post(&wait, json!({TL2: "0/1", "timeout": timeout}), 404)
        .await?;

    let split = |tsid: &str| format!("/v1/tenant/{tsid}/shard_split");
    let four = json!({"new_shard_count": 4, "new_stripe_size": 1024});
    sim.req(put(&split(&shard(0, 2)), four.clone()), 404)
        .await?;
    let one = json!({"new_shard_count": 1, "new_stripe_size": null});
    sim.req(put(&split(TENANT), one), 400).await?;
    let four_again = four.clone();
    let body = sim.req(put(&split(TENANT), four), 200).await?;
    let children: Vec<String> = (0..4).map(|i| shard(i, 4)).collect();
    assert_eq!(body["new_shards"], json!(children));
    for child in &children {
        let loc = sim
            .get(&format!("/v1/location_config/{child}"), 200)
            .await?;
        assert_eq!(
            (&loc["mode"], &loc["generation"]),
            (&json!("AttachedSingle"), &json!(5))
        );
        assert_eq!(loc["shard_stripe_size"], 1024);
        let tls = sim
            .get(&format!("/v1/tenant/{child}/timeline"), 200)
            .await?;
        assert_eq!(tls[0]["last_record_lsn"], "0/2000000");
    }
    // The parent left the tenant map, as a pageserver's does; a retry after a lost answer
    // gets the same children.
    sim.absent(TENANT).await?;
    let again = sim.req(put(&split(TENANT), four_again), 200).await?;
    assert_eq!(again["new_shards"], json!(children));
    sim.req(put(&split(TENANT), json!({"new_shard_count": 8})), 404)
        .await?;

    // Injected failure: 500 and nothing created.
    let behaviour = "/debug/sim/split_behaviour";
    sim.req(put(behaviour, json!({"fail": true, "stall_ms": 0})), 200)
        .await?;
    let eight = json!({"new_shard_count": 8, "new_stripe_size": null});
    sim.req(put(&split(&children[0]), eight.clone()), 500)
        .await?;
    sim.absent(&shard(0, 8)).await?;

    // Stall: the answer comes late, the split itself is done.
    sim.req(
        put(behaviour, json!({"fail": false, "stall_ms": 1500})),
        200,
    )
    .await?;
    let started = Instant::now();
    let body = sim.req(put(&split(&children[1]), eight), 200).await?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "answered after {took:?}"
    );
    assert_eq!(body["new_shards"], json!([shard(1, 8), shard(5, 8)]));

    let history = sim.history().await?;
    for child in &children {
        let created: Vec<_> = events(&history, "split", child)
            .into_iter()
            .filter(|e| e["accepted"] == true)
            .collect();
        // Created once, then named again by the retry.
        assert_eq!(created.len(), 2, "{child}: {created:?}");
        assert!(
            created[1]["reason"]
                .as_str()
                .is_some_and(|r| r.ends_with("already split")),
            "{child}: {created:?}"
        );
        assert_eq!(created[0]["generation"], 5);
    }
    let failed = events(&history, "split", &children[0]);
    assert!(failed.iter().any(|e| e["accepted"] == false), "{failed:?}");
    for parent in [TENANT, children[1].as_str()] {
        let removed = events(&history, "split_parent_removed", parent);
        assert_eq!(removed.len(), 1, "{parent}: {removed:?}");
        assert_eq!(removed[0]["generation"], 5);
    }
    sim.absent(&children[1]).await?;

    // Everything survives a restart in which the controller keeps it all.
    let mut keep: Vec<Value> = children
        .iter()
        .filter(|c| **c != children[1])
        .map(|c| attached(c, 5))
        .collect();
    keep.extend([attached(&shard(1, 8), 5), attached(&shard(5, 8), 5)]);
    stub.state().reattach_tenants = keep;
    sim.restart().await?;
    let list = sim.get("/v1/location_config", 200).await?;
    assert_eq!(
        list["tenant_shards"].as_array().map(Vec::len),
        Some(5),
        "{list}"
    );
    Ok(())
}

/// Deletions: a timeline's data goes only when the controller validates the generation; the
/// API call completes either way (202, then 404). A tenant delete removes remote data too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_are_validated_first() -> anyhow::Result<()> {
    let stub = Stub::start().await?;
    let dir = tempfile::tempdir()?;
    let mut sim = Sim::new(&stub, dir.path(), 4)?;
    sim.start().await?;
    sim.set(TENANT, "AttachedSingle", Some(2), 200).await?;
    let timelines = format!("/v1/tenant/{TENANT}/timeline");
    for tl in [TL1, TL2, TL3] {
        sim.post(&timelines, new_timeline(tl), 201).await?;
    }
    let retained = async || -> anyhow::Result<usize> {
        let state = sim.get("/debug/sim/state", 200).await?;
        Ok(state["retained"].as_array().map(Vec::len).unwrap_or(0))
    };

    // Not validated: the timeline disappears from the API, its data is retained.
    stub.state().valid = Some(false);
    let tl1 = format!("{timelines}/{TL1}");
    sim.delete(&tl1, 202).await?;
    sim.delete(&tl1, 404).await?;
    let last_validate = stub.state().validate_calls.last().cloned();
    assert_eq!(
        last_validate,
        Some(json!({"tenants": [{"id": TENANT, "gen": 2}]}))
    );
    assert_eq!(retained().await?, 1);

    // Validated: dropped.
    stub.state().valid = Some(true);
    sim.delete(&format!("{timelines}/{TL2}"), 202).await?;
    assert_eq!(retained().await?, 1);
    let left = sim.get(&timelines, 200).await?;
    assert_eq!(left.as_array().map(Vec::len), Some(1));

    // A tenant delete is the controller's order, not a clean-up: no validation, and the
    // shard's remote data goes with its local location (202, then 404).
    stub.state().valid = None;
    let remote_tenant = dir.path().join("data/remote/tenants").join(TENANT);
    assert!(remote_tenant.exists(), "{}", remote_tenant.display());
    let tenant = format!("/v1/tenant/{TENANT}");
    sim.delete(&tenant, 202).await?;
    sim.delete(&tenant, 404).await?;
    sim.absent(TENANT).await?;
    assert!(!remote_tenant.exists(), "{}", remote_tenant.display());
    assert_eq!(retained().await?, 1);
    sim.delete(&format!("{timelines}/{TL3}"), 412).await?;

    let history = sim.history().await?;
    let validity: Vec<Value> = events(&history, "validate", TENANT)
        .iter()
        .map(|e| e["valid"].clone())
        .collect();
    assert_eq!(validity, vec![json!(false), json!(true)]);
    Ok(())
}
