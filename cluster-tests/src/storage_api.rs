//! The storage-controller part of the storcon API (tenants, node shards, upcalls, debug hooks),
//! as this test suite reads the contract (`neon-storage-controller.md` sections 2.2 to 2.6).
//!
//! Like [`crate::api`], the types are written down here instead of imported from the server
//! crates, so a wire change on the server shows up as a decode failure. Every response type
//! denies unknown fields; [`expect_keys`] additionally checks that no documented field is missing
//! (serde would silently turn a missing `Option` into `None`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::NodeDescribeResponse;
use crate::client::{Client, ClientError, RawResponse};
use crate::wait::POLL_INTERVAL;

/// `POST /v1/tenant` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreateResponse {
    pub shards: Vec<TenantCreateResponseShard>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreateResponseShard {
    pub shard_id: String,
    pub node_id: u64,
    pub generation: u32,
}

/// `GET /control/v1/tenant/:tenant_id`, and each element of the tenant list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDescribeResponse {
    pub tenant_id: String,
    pub stripe_size: u32,
    /// `{"Attached": n}`, `"Secondary"` or `"Detached"`.
    pub policy: Value,
    pub config: Value,
    pub shards: Vec<TenantDescribeResponseShard>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDescribeResponseShard {
    pub tenant_shard_id: String,
    pub node_attached: Option<u64>,
    pub node_secondary: Vec<u64>,
    pub last_error: String,
    pub is_reconciling: bool,
    pub is_pending_compute_notification: bool,
    pub is_splitting: bool,
    pub is_importing: bool,
    pub scheduling_policy: String,
    pub preferred_az_id: Option<String>,
}

impl TenantDescribeResponse {
    /// The replicated part (no leader soft state such as `is_reconciling` or `last_error`),
    /// comparable before and after something that must not change it.
    pub fn durable(&self) -> Value {
        json!({
            "tenant_id": self.tenant_id,
            "stripe_size": self.stripe_size,
            "policy": self.policy,
            "config": self.config,
            "shards": self.shards.iter().map(|s| json!({
                "tenant_shard_id": s.tenant_shard_id,
                "node_attached": s.node_attached,
                "node_secondary": s.node_secondary,
                "is_splitting": s.is_splitting,
                "scheduling_policy": s.scheduling_policy,
                "preferred_az_id": s.preferred_az_id,
            })).collect::<Vec<_>>(),
        })
    }
}

/// `GET /control/v1/node/:node_id/shards`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeShardResponse {
    pub node_id: u64,
    pub shards: Vec<NodeShard>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeShard {
    pub tenant_shard_id: String,
    pub is_intended_secondary: Option<bool>,
    pub is_observed_secondary: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateResponse {
    tenants: Vec<ValidateResponseTenant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateResponseTenant {
    id: String,
    valid: bool,
}

/// Documented fields of each response object, for [`expect_keys`].
pub mod fields {
    /// `POST /v1/tenant/:id/secondary/download` (upstream `SecondaryProgress`).
    pub const SECONDARY_PROGRESS: &[&str] = &[
        "heatmap_mtime",
        "layers_downloaded",
        "layers_total",
        "bytes_downloaded",
        "bytes_total",
    ];
    /// `POST .../lsn_lease` (upstream `LsnLease`).
    pub const LSN_LEASE: &[&str] = &["valid_until"];
    /// `PUT .../detach_ancestor` (upstream `AncestorDetached`).
    pub const ANCESTOR_DETACHED: &[&str] = &["reparented_timelines"];
    /// `GET /control/v1/tenant/:id/timeline/:id` (upstream `TenantTimelineDescribeResponse`).
    pub const TIMELINE_DESCRIBE: &[&str] = &["shards", "image_consistent_lsn"];
    /// `GET /v1/tenant/:id`, relayed from the pageserver (upstream `TenantInfo`).
    pub const TENANT_INFO: &[&str] = &[
        "id",
        "state",
        "current_physical_size",
        "attachment_status",
        "generation",
        "gc_blocking",
    ];
    /// The TimelineInfo fields the controller itself reads from a pageserver's answer, which a
    /// create relays with `safekeepers` added (upstream `TimelineCreateResponseStorcon`).
    pub const TIMELINE_INFO_READ: &[&str] = &["tenant_id", "timeline_id", "last_record_lsn"];
    pub const TENANT_CREATE_RESPONSE: &[&str] = &["shards"];
    pub const TENANT_CREATE_RESPONSE_SHARD: &[&str] = &["shard_id", "node_id", "generation"];
    pub const TENANT_DESCRIBE_RESPONSE: &[&str] =
        &["tenant_id", "stripe_size", "policy", "config", "shards"];
    pub const TENANT_DESCRIBE_RESPONSE_SHARD: &[&str] = &[
        "tenant_shard_id",
        "node_attached",
        "node_secondary",
        "last_error",
        "is_reconciling",
        "is_pending_compute_notification",
        "is_splitting",
        "is_importing",
        "scheduling_policy",
        "preferred_az_id",
    ];
    pub const NODE_SHARD_RESPONSE: &[&str] = &["node_id", "shards"];
    pub const NODE_SHARD: &[&str] = &[
        "tenant_shard_id",
        "is_intended_secondary",
        "is_observed_secondary",
    ];
    pub const NODE_DESCRIBE_RESPONSE: &[&str] = &[
        "id",
        "availability",
        "scheduling",
        "availability_zone_id",
        "listen_http_addr",
        "listen_http_port",
        "listen_https_port",
        "listen_pg_addr",
        "listen_pg_port",
        "listen_grpc_addr",
        "listen_grpc_port",
    ];
    pub const VALIDATE_RESPONSE: &[&str] = &["tenants"];
    pub const VALIDATE_RESPONSE_TENANT: &[&str] = &["id", "valid"];
    pub const ERROR: &[&str] = &["msg"];
    /// `GET /debug/v1/tenant` elements (upstream `TenantShard`'s names, plus storcon's
    /// `generation_pageserver`) and their parts.
    pub const TENANT_SHARD_DUMP: &[&str] = &[
        "tenant_shard_id",
        "shard",
        "generation",
        "generation_pageserver",
        "policy",
        "intent",
        "observed",
        "config",
        "splitting",
        "scheduling_policy",
        "pending_compute_notification",
        "last_error",
    ];
    pub const SHARD_IDENTITY: &[&str] = &["number", "count", "stripe_size", "layout"];
    pub const INTENT_STATE: &[&str] = &["attached", "secondary", "preferred_az_id"];
    pub const OBSERVED_STATE: &[&str] = &["locations"];
    pub const OBSERVED_STATE_LOCATION: &[&str] = &["conf"];
    /// `GET /debug/v1/tenant/:tenant_id/locate` (upstream `TenantLocateResponse`).
    pub const TENANT_LOCATE_RESPONSE: &[&str] = &["shards", "shard_params"];
    pub const TENANT_LOCATE_RESPONSE_SHARD: &[&str] = &[
        "shard_id",
        "node_id",
        "listen_pg_addr",
        "listen_pg_port",
        "listen_grpc_addr",
        "listen_grpc_port",
        "listen_http_addr",
        "listen_http_port",
        "listen_https_port",
    ];
    pub const SHARD_PARAMETERS: &[&str] = &["count", "stripe_size"];
    /// `GET /debug/v1/scheduler` (upstream `Scheduler` / `SchedulerNode`'s names, plus
    /// storcon's `secondary_shard_count` and `available`).
    pub const SCHEDULER_DUMP: &[&str] = &["nodes"];
    pub const SCHEDULER_NODE: &[&str] = &[
        "shard_count",
        "attached_shard_count",
        "secondary_shard_count",
        "home_shard_count",
        "az",
        "may_schedule",
        "available",
    ];
}

/// The tenant config a location of a shard with secondaries is sent, for a tenant config
/// `conf`: upstream's HA-aware config adds `heatmap_period` (60 s) unless the tenant set one.
pub fn ha_aware(conf: &Value) -> Value {
    let mut sent = conf.clone();
    if let Some(map) = sent.as_object_mut() {
        map.entry("heatmap_period").or_insert_with(|| "1m".into());
    }
    sent
}

/// Fails unless `value` is an object with exactly the keys `keys` (in any order).
pub fn expect_keys(value: &Value, keys: &[&str]) -> anyhow::Result<()> {
    let object = value
        .as_object()
        .ok_or_else(|| anyhow!("expected an object with {keys:?}, got {value}"))?;
    let mut got: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = keys.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    ensure!(got == want, "keys {got:?}, expected {want:?} in {value}");
    Ok(())
}

/// A tenant id for tests: 32 hex digits, `tag` first so tests do not share ids by accident.
pub fn tenant_id(tag: u32, n: u32) -> String {
    format!("{tag:08x}{n:024x}")
}

/// The shard ids of a tenant with `count` shards (`0`: the unsharded id itself).
pub fn shard_ids(tenant_id: &str, count: u8) -> Vec<String> {
    if count == 0 {
        return vec![tenant_id.to_owned()];
    }
    (0..count)
        .map(|n| format!("{tenant_id}-{n:02x}{count:02x}"))
        .collect()
}

/// A `POST /v1/tenant` body: `count` shards (0 = unsharded), stripe 2048, `Attached(secondaries)`.
pub fn tenant_create_body(tenant_id: &str, count: u8, secondaries: usize) -> Value {
    json!({
        "new_tenant_id": tenant_id,
        "shard_parameters": {"count": count, "stripe_size": 2048},
        "placement_policy": {"Attached": secondaries},
    })
}

/// Typed calls to the storage-controller API of one replica (followers forward to the leader).
/// One request per call; no retries unless the method says so.
#[derive(Clone, Debug)]
pub struct StorageApi {
    client: Client,
}

impl StorageApi {
    pub fn new(client: Client) -> Self {
        StorageApi { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// [`StorageApi::send`] for tests: the status and the body as JSON (a body that is not
    /// JSON as a string); panics if no answer came at all.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let raw = self
            .send(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let value = serde_json::from_str(&raw.body).unwrap_or(Value::String(raw.body.clone()));
        (raw.status, value)
    }

    /// One request with an optional JSON body; any status is returned as is.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse, ClientError> {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.client.raw(method, path, body, &[]).await
    }

    /// One request whose answer must have status `expect` and decode as `T`.
    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expect: u16,
    ) -> Result<T, ClientError> {
        let raw = self.send(method, path, body).await?;
        let url = format!("{}{path}", self.client.base_url());
        if raw.status != expect {
            return Err(ClientError::Status {
                url,
                status: raw.status,
                body: raw.body,
            });
        }
        serde_json::from_str(&raw.body).map_err(|error| ClientError::Decode {
            url,
            status: raw.status,
            body: raw.body,
            error,
        })
    }

    /// `POST /v1/tenant`, expecting 201.
    pub async fn create_tenant(&self, body: &Value) -> Result<TenantCreateResponse, ClientError> {
        self.typed(Method::POST, "/v1/tenant", Some(body), 201)
            .await
    }

    pub async fn describe_tenant(
        &self,
        tenant_id: &str,
    ) -> Result<TenantDescribeResponse, ClientError> {
        let path = format!("/control/v1/tenant/{tenant_id}");
        self.typed(Method::GET, &path, None, 200).await
    }

    pub async fn list_tenants(
        &self,
        limit: Option<usize>,
        start_after: Option<&str>,
    ) -> Result<Vec<TenantDescribeResponse>, ClientError> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(after) = start_after {
            query.push(format!("start_after={after}"));
        }
        let path = if query.is_empty() {
            "/control/v1/tenant".to_owned()
        } else {
            format!("/control/v1/tenant?{}", query.join("&"))
        };
        self.typed(Method::GET, &path, None, 200).await
    }

    /// `GET /control/v1/node`.
    pub async fn nodes(&self) -> Result<Vec<NodeDescribeResponse>, ClientError> {
        self.typed(Method::GET, "/control/v1/node", None, 200).await
    }

    /// The scheduling policy of node `node_id` as listed (`Active`, `Draining`, ...), `None`
    /// when the node is not listed.
    pub async fn node_scheduling(&self, node_id: u64) -> Result<Option<String>, ClientError> {
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .find(|n| n.id == node_id)
            .map(|n| n.scheduling))
    }

    pub async fn node_shards(&self, node_id: u64) -> Result<NodeShardResponse, ClientError> {
        let path = format!("/control/v1/node/{node_id}/shards");
        self.typed(Method::GET, &path, None, 200).await
    }

    /// `PUT /control/v1/node/:id/config` with `body`; 200 `null`.
    pub async fn configure_node(&self, node_id: u64, body: &Value) -> Result<(), ClientError> {
        let path = format!("/control/v1/node/{node_id}/config");
        self.typed(Method::PUT, &path, Some(body), 200).await
    }

    /// `POST /upcall/v1/validate`: shard id -> valid, for the shards the controller knows.
    pub async fn validate(
        &self,
        tenants: &[(String, u32)],
    ) -> Result<BTreeMap<String, bool>, ClientError> {
        let body = json!({
            "tenants": tenants.iter().map(|(id, g)| json!({"id": id, "gen": g})).collect::<Vec<_>>(),
        });
        let answer: ValidateResponse = self
            .typed(Method::POST, "/upcall/v1/validate", Some(&body), 200)
            .await?;
        Ok(answer
            .tenants
            .into_iter()
            .map(|t| (t.id, t.valid))
            .collect())
    }

    /// `POST /debug/v1/reconcile_all`: how many reconciles it queued or waited for (it waits
    /// up to 30 s for them); 0 when nothing needed one.
    pub async fn reconcile_all(&self) -> Result<usize, ClientError> {
        self.typed(Method::POST, "/debug/v1/reconcile_all", None, 200)
            .await
    }

    /// `POST /debug/v1/consistency_check`: 200 `null`, or the 500 with the problems.
    pub async fn consistency_check(&self) -> Result<(), ClientError> {
        self.typed(Method::POST, "/debug/v1/consistency_check", None, 200)
            .await
    }

    /// `PUT /control/v1/tenant/:id/shard_split`; any status is returned as is.
    pub async fn split_tenant(
        &self,
        tenant_id: &str,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
    ) -> Result<RawResponse, ClientError> {
        let mut body = serde_json::json!({ "new_shard_count": new_shard_count });
        if let Some(stripe) = new_stripe_size {
            body["new_stripe_size"] = stripe.into();
        }
        let path = format!("/control/v1/tenant/{tenant_id}/shard_split");
        self.send(Method::PUT, &path, Some(&body)).await
    }

    /// `PUT /debug/v1/failpoints` on the replica this client talks to (never forwarded).
    pub async fn set_failpoint(&self, name: &str, actions: &str) -> Result<(), ClientError> {
        let body = serde_json::json!([{ "name": name, "actions": actions }]);
        self.typed::<Value>(Method::PUT, "/debug/v1/failpoints", Some(&body), 200)
            .await
            .map(|_| ())
    }

    /// How many times the failpoint `name` was reached on this replica.
    pub async fn failpoint_hits(&self, name: &str) -> Result<u64, ClientError> {
        let list: Vec<Value> = self
            .typed(Method::GET, "/debug/v1/failpoints", None, 200)
            .await?;
        Ok(list
            .iter()
            .find(|f| f["name"] == name)
            .and_then(|f| f["hits"].as_u64())
            .unwrap_or(0))
    }

    /// [`StorageApi::create_tenant`], retried on retryable failures (no answer, 5xx) every
    /// [`POLL_INTERVAL`] until `timeout`: a create is idempotent for the same shard count, so
    /// retrying one that did commit succeeds too. A non-retryable failure ends it at once.
    pub async fn create_tenant_with_retry(
        &self,
        body: &Value,
        timeout: Duration,
    ) -> anyhow::Result<TenantCreateResponse> {
        let start = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.create_tenant(body).await {
                Ok(created) => return Ok(created),
                Err(e) if e.is_retryable() && start.elapsed() < timeout => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(e) => {
                    return Err(anyhow!(e).context(format!(
                        "create {}: failed after {attempts} attempts in {:.1?}",
                        body["new_tenant_id"],
                        start.elapsed()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_wire_form() {
        let t = tenant_id(0xab, 5);
        assert_eq!(t, "000000ab000000000000000000000005");
        assert_eq!(shard_ids(&t, 0), vec![t.clone()]);
        assert_eq!(
            shard_ids(&t, 2),
            vec![format!("{t}-0002"), format!("{t}-0102")]
        );
    }

    #[test]
    fn expect_keys_wants_exactly_the_documented_fields() {
        let v = json!({"a": 1, "b": null});
        expect_keys(&v, &["b", "a"]).expect("same keys");
        assert!(expect_keys(&v, &["a"]).is_err(), "extra key");
        assert!(expect_keys(&v, &["a", "b", "c"]).is_err(), "missing key");
        assert!(expect_keys(&json!([1]), &["a"]).is_err(), "not an object");
    }

    #[test]
    fn describe_decodes_the_reference_example() {
        let example = json!({
            "tenant_id": "1f359dd625e519a1a4e8d7509690f6fc", "stripe_size": 2048,
            "policy": {"Attached": 1}, "config": {},
            "shards": [{"tenant_shard_id": "1f359dd625e519a1a4e8d7509690f6fc-0001",
                "node_attached": 1, "node_secondary": [2], "last_error": "",
                "is_reconciling": false, "is_pending_compute_notification": false,
                "is_splitting": false, "is_importing": false, "scheduling_policy": "Active",
                "preferred_az_id": "az-a"}]
        });
        let parsed: TenantDescribeResponse =
            serde_json::from_value(example.clone()).expect("decodes");
        assert_eq!(parsed.shards[0].node_secondary, vec![2]);
        let mut extra = example;
        extra["surprise"] = json!(1);
        assert!(serde_json::from_value::<TenantDescribeResponse>(extra).is_err());
    }
}
