//! Calls to the pageservers that hold a tenant's shards, shared by the timeline operations,
//! the passthroughs and tenant delete:
//!
//! - where each shard is attached: the node its latest generation was issued to, as the
//!   replicated state records it (upstream's `generation_pageserver`);
//! - one call per shard, concurrently, with retries of 503s and timeouts; or a call about a
//!   shard to a node of the caller's choice (a secondary, any available node);
//! - whether an attachment moved while the calls ran, so that a caller can repeat a call on the
//!   new location or refuse with "attachment changed, retry" (upstream's
//!   `tenant_remote_mutation`).

use std::time::Duration;

use futures::future::join_all;
use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{Generation, NodeRecord, PlacementPolicy};
use storcon_api::timeline::Relayed;
use storcon_http::OperationError;
use storcon_http::metrics::PageserverCall;

use crate::controller::Controller;
use crate::controller::nodes::Avail;
use crate::controller::pageserver::{PsError, Relay};

/// How long one relayed call may take (each attempt), and how often busy answers are retried.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const CALL_RETRIES: u32 = 5;

/// One shard's attached location.
#[derive(Debug, Clone)]
pub(super) struct AttachedShard {
    pub shard: TenantShardId,
    pub node: NodeRecord,
    pub generation: Generation,
}

impl AttachedShard {
    fn same_place(&self, other: &AttachedShard) -> bool {
        self.shard == other.shard
            && self.node.id == other.node.id
            && self.generation == other.generation
    }
}

/// A relayed call's answer, or why there was none.
pub(super) type CallResult = Result<Relayed, OperationError>;

impl Controller {
    /// Every shard of the tenant at its attached location, in shard order (shard zero first).
    /// A tenant whose policy attaches nothing is 409; a shard not attached yet is 503.
    pub(super) fn attached_shards(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<AttachedShard>, OperationError> {
        let state = self.state.read();
        let mut out = Vec::new();
        for s in state.tenant_shards(tenant) {
            match attachment(&state, s) {
                Some(at) if matches!(s.placement, PlacementPolicy::Attached(_)) => out.push(at),
                _ if matches!(
                    s.placement,
                    PlacementPolicy::Detached | PlacementPolicy::Secondary
                ) =>
                {
                    return Err(OperationError::Conflict(format!(
                        "tenant {tenant} is not attached: its placement policy is {:?}",
                        s.placement
                    )));
                }
                _ => {
                    return Err(OperationError::NotYet(
                        "One or more shards in tenant is not yet attached".into(),
                    ));
                }
            }
        }
        if out.is_empty() {
            return Err(OperationError::TenantNotFound(tenant));
        }
        Ok(out)
    }

    /// The shards of the tenant that have an attached location, whatever their policy.
    pub(super) fn attachments(&self, tenant: TenantId) -> Vec<AttachedShard> {
        let state = self.state.read();
        state
            .tenant_shards(tenant)
            .filter_map(|s| attachment(&state, s))
            .collect()
    }

    /// The shards of `before` whose attachment is no longer where it was, at their new
    /// locations. A tenant that is gone or no longer attached is an error.
    pub(super) fn moved(
        &self,
        before: &[AttachedShard],
    ) -> Result<Vec<AttachedShard>, OperationError> {
        let Some(first) = before.first() else {
            return Ok(Vec::new());
        };
        let now = self.attachments(first.shard.tenant_id);
        let mut moved = Vec::new();
        for b in before {
            let at = now.iter().find(|a| a.shard == b.shard).ok_or_else(|| {
                OperationError::NotYet(format!(
                    "shard {} is no longer attached (split or detach?), please retry",
                    b.shard
                ))
            })?;
            if !at.same_place(b) {
                moved.push(at.clone());
            }
        }
        Ok(moved)
    }

    /// One call to a shard's pageserver: `path` goes after `/v1/tenant/<shard>`.
    pub(super) async fn call_shard(
        &self,
        at: &AttachedShard,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> CallResult {
        self.call_node(&at.node, at.shard, method, path, body, CALL_TIMEOUT)
            .await
    }

    /// One call about `shard` to `node`, whatever the node holds of it (a secondary, or
    /// nothing: a deletion or time travel by any node).
    pub(super) async fn call_node(
        &self,
        node: &NodeRecord,
        shard: TenantShardId,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> CallResult {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| OperationError::Internal(format!("cannot encode the call: {e}")))?;
        let call = Relay {
            method,
            path_and_query: format!("/v1/tenant/{shard}{path}"),
            body,
            timeout,
            retries: CALL_RETRIES,
            kind: PageserverCall::Controller,
        };
        self.ps
            .relay(node, &call)
            .await
            .map_err(|e| call_error(node, shard, e))
    }

    /// A client's GET relayed to the shard's pageserver, counted as a passthrough.
    pub(super) async fn passthrough_get(&self, at: &AttachedShard, rest: &str) -> CallResult {
        let call = Relay {
            method: reqwest::Method::GET,
            path_and_query: format!("/v1/tenant/{}{rest}", at.shard),
            body: None,
            timeout: CALL_TIMEOUT,
            retries: CALL_RETRIES,
            kind: PageserverCall::Passthrough,
        };
        self.ps
            .relay(&at.node, &call)
            .await
            .map_err(|e| call_error(&at.node, at.shard, e))
    }

    /// A pageserver to make a call that any of them can make (upstream's "any available
    /// node"): the lowest-numbered Active one.
    pub(super) fn any_active_node(&self) -> Result<NodeRecord, OperationError> {
        let active: Vec<_> = self
            .nodes
            .states()
            .iter()
            .filter(|(_, n)| n.avail == Avail::Active)
            .map(|(id, _)| *id)
            .collect();
        let state = self.state.read();
        active
            .iter()
            .find_map(|id| state.node(*id).cloned())
            .ok_or_else(|| OperationError::NotYet("no pageserver is available".into()))
    }

    /// The same call to every shard of `targets`, concurrently; answers in their order.
    pub(super) async fn call_shards(
        &self,
        targets: &[AttachedShard],
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Vec<CallResult> {
        join_all(
            targets
                .iter()
                .map(|at| self.call_shard(at, method.clone(), path, body)),
        )
        .await
    }
}

fn attachment(
    state: &state_machine::State,
    s: &state_machine::TenantShard,
) -> Option<AttachedShard> {
    Some(AttachedShard {
        shard: s.id,
        node: state.node(s.generation_pageserver?)?.clone(),
        generation: s.generation?,
    })
}

fn call_error(node: &NodeRecord, shard: TenantShardId, e: PsError) -> OperationError {
    match e {
        PsError::Cancelled => {
            OperationError::NotLeading("leadership lost during the call; retry".into())
        }
        other => OperationError::NotYet(format!(
            "pageserver {} ({}) for {shard}: {other}",
            node.id, node.listen_http_addr
        )),
    }
}

/// A pageserver's non-2xx answer as the client's error, with its status kept.
pub(super) fn refused(at: &AttachedShard, relayed: &Relayed) -> OperationError {
    refused_by(&at.node, relayed)
}

pub(super) fn refused_by(node: &NodeRecord, relayed: &Relayed) -> OperationError {
    OperationError::Pageserver {
        node: node.id,
        status: relayed.status,
        msg: pageserver_msg(&relayed.body),
    }
}

/// The `msg` of a pageserver's error body, or the body itself, shortened.
pub(super) fn pageserver_msg(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    state_machine::ids::shortened(&text)
}

pub(super) fn is_success(r: &Relayed) -> bool {
    (200..300).contains(&r.status)
}

/// A 2xx answer's body as JSON (`null` for an empty one).
pub(super) fn json_body(
    at: &AttachedShard,
    r: &Relayed,
) -> Result<serde_json::Value, OperationError> {
    json_body_of(&at.node, at.shard, r)
}

pub(super) fn json_body_of(
    node: &NodeRecord,
    shard: TenantShardId,
    r: &Relayed,
) -> Result<serde_json::Value, OperationError> {
    if r.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&r.body).map_err(|e| {
        OperationError::Internal(format!(
            "pageserver {} answered {shard} with a body that is not JSON: {e}",
            node.id
        ))
    })
}
