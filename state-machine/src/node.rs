//! Pageserver node records: the replicated part of upstream's `Node`.

use serde::{Deserialize, Serialize};

pub use storcon_api::node::{NodeDescribeResponse, NodeRegisterRequest};
pub use storcon_api::types::{NodeAvailability, NodeId, NodeSchedulingPolicy};

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

impl crate::state::State {
    /// Every shard intended or observed on `node` (`GET /control/v1/node/:id/shards`), by id.
    /// `observed` maps a shard seen on the node to `Some(true)` secondary, `Some(false)` attached,
    /// `None` uncertain. `is_intended_secondary` is `null` for a shard not intended on the node,
    /// as upstream (`false` would mean "intended attached here"). An unknown node has none.
    pub fn node_shards(
        &self,
        node: NodeId,
        observed: &std::collections::BTreeMap<crate::ids::TenantShardId, Option<bool>>,
    ) -> Vec<storcon_api::wire::NodeShard> {
        let mut ids: std::collections::BTreeSet<_> = observed.keys().copied().collect();
        ids.extend(self.shards_on(node).intended.iter().copied());
        ids.into_iter()
            .map(|id| storcon_api::wire::NodeShard {
                tenant_shard_id: id,
                is_intended_secondary: self
                    .shard(&id)
                    .filter(|s| s.intent.contains(node))
                    .map(|s| s.intent.secondaries.contains(&node)),
                is_observed_secondary: observed.get(&id).copied().flatten(),
            })
            .collect()
    }
}
