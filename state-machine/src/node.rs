//! Pageserver node records and their wire shapes (upstream `NodeRegisterRequest` and
//! `NodeDescribeResponse`).

use serde::{Deserialize, Serialize};

use crate::command::Rejection;

pub type NodeId = u64;

/// Body of `POST /control/v1/node` and the inline `register` of a re-attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegisterRequest {
    pub node_id: NodeId,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    #[serde(default)]
    pub listen_grpc_addr: Option<String>,
    #[serde(default)]
    pub listen_grpc_port: Option<u16>,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    #[serde(default)]
    pub listen_https_port: Option<u16>,
    pub availability_zone_id: String,
    /// Reachable IP of the registering node, if it knows one. Accepted for compatibility; not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ip_addr: Option<String>,
}

impl NodeRegisterRequest {
    /// Checks that need no state. The same check runs in `apply`, so a request that skips the
    /// HTTP layer still cannot store a half-specified gRPC endpoint.
    pub fn validate(&self) -> Result<(), Rejection> {
        if self.listen_grpc_addr.is_some() != self.listen_grpc_port.is_some() {
            return Err(Rejection::BadRequest(
                "listen_grpc_addr and listen_grpc_port must be given together".into(),
            ));
        }
        if self.listen_http_addr.is_empty() || self.listen_pg_addr.is_empty() {
            return Err(Rejection::BadRequest(
                "listen_http_addr and listen_pg_addr must not be empty".into(),
            ));
        }
        if self.availability_zone_id.is_empty() {
            return Err(Rejection::BadRequest(
                "availability_zone_id must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// Whether a node may be given new work. Persisted; PascalCase on the wire as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodeSchedulingPolicy {
    #[default]
    Active,
    Filling,
    Pause,
    PauseForRestart,
    Draining,
    Deleting,
}

/// Liveness as seen by the leader's heartbeats. Never replicated: every node starts `Offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodeAvailability {
    Active,
    WarmingUp,
    #[default]
    Offline,
}

/// The replicated record of one pageserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    pub listen_https_port: Option<u16>,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    pub listen_grpc_addr: Option<String>,
    pub listen_grpc_port: Option<u16>,
    pub availability_zone_id: String,
    pub scheduling: NodeSchedulingPolicy,
}

/// What a register did, so callers can log it; the HTTP answer is `null` in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOutcome {
    Created,
    Unchanged,
    /// Only the optional endpoints (https, grpc) differed and were updated.
    Updated,
}

impl NodeRecord {
    pub fn from_request(req: &NodeRegisterRequest) -> Self {
        NodeRecord {
            id: req.node_id,
            listen_http_addr: req.listen_http_addr.clone(),
            listen_http_port: req.listen_http_port,
            listen_https_port: req.listen_https_port,
            listen_pg_addr: req.listen_pg_addr.clone(),
            listen_pg_port: req.listen_pg_port,
            listen_grpc_addr: req.listen_grpc_addr.clone(),
            listen_grpc_port: req.listen_grpc_port,
            availability_zone_id: req.availability_zone_id.clone(),
            scheduling: NodeSchedulingPolicy::Active,
        }
    }

    /// Upstream rule: the identity of a node is its HTTP and PG endpoints and its AZ. A
    /// re-register that changes any of them is a conflict; https and grpc may change.
    pub fn identity_matches(&self, req: &NodeRegisterRequest) -> bool {
        self.listen_http_addr == req.listen_http_addr
            && self.listen_http_port == req.listen_http_port
            && self.listen_pg_addr == req.listen_pg_addr
            && self.listen_pg_port == req.listen_pg_port
            && self.availability_zone_id == req.availability_zone_id
    }

    pub fn describe(&self, availability: NodeAvailability) -> NodeDescribeResponse {
        NodeDescribeResponse {
            id: self.id,
            availability,
            scheduling: self.scheduling,
            availability_zone_id: self.availability_zone_id.clone(),
            listen_http_addr: self.listen_http_addr.clone(),
            listen_http_port: self.listen_http_port,
            listen_https_port: self.listen_https_port,
            listen_pg_addr: self.listen_pg_addr.clone(),
            listen_pg_port: self.listen_pg_port,
            listen_grpc_addr: self.listen_grpc_addr.clone(),
            listen_grpc_port: self.listen_grpc_port,
        }
    }
}

/// Body of `GET /control/v1/node/:node_id` (upstream field order and names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescribeResponse {
    pub id: NodeId,
    pub availability: NodeAvailability,
    pub scheduling: NodeSchedulingPolicy,
    pub availability_zone_id: String,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    pub listen_https_port: Option<u16>,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    pub listen_grpc_addr: Option<String>,
    pub listen_grpc_port: Option<u16>,
}
