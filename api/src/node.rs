//! Pageserver registration and description (upstream `NodeRegisterRequest` and
//! `NodeDescribeResponse`).

use serde::{Deserialize, Serialize};

use crate::InvalidRequest;
use crate::types::{NodeAvailability, NodeId, NodeSchedulingPolicy};

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
    /// `node_ip_addr`, when given, is an IP address (upstream decodes it as `IpAddr`). Checked
    /// before proposing only: older log entries may hold any string, and replaying them must
    /// give the answer they had.
    pub fn check_node_ip_addr(&self) -> Result<(), InvalidRequest> {
        match &self.node_ip_addr {
            Some(ip) if ip.parse::<std::net::IpAddr>().is_err() => Err(InvalidRequest(format!(
                "node_ip_addr: invalid IP address syntax: {}",
                crate::ids::shortened(ip)
            ))),
            _ => Ok(()),
        }
    }

    /// Checks that need no state. The same check runs in `apply`, so a request that skips the
    /// HTTP layer still cannot store a half-specified gRPC endpoint.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        if self.listen_grpc_addr.is_some() != self.listen_grpc_port.is_some() {
            return Err(InvalidRequest(
                "listen_grpc_addr and listen_grpc_port must be given together".into(),
            ));
        }
        if self.listen_http_addr.is_empty() || self.listen_pg_addr.is_empty() {
            return Err(InvalidRequest(
                "listen_http_addr and listen_pg_addr must not be empty".into(),
            ));
        }
        if self.availability_zone_id.is_empty() {
            return Err(InvalidRequest(
                "availability_zone_id must not be empty".into(),
            ));
        }
        Ok(())
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
