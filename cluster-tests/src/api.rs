//! Wire types of the storcon HTTP API, written down independently of the server crates.
//!
//! These are the test suite's own reading of the contract: they are deliberately not imported from
//! `storcon-http` or `state-machine`, so a change on the server that breaks the wire format shows up
//! here as a decode failure instead of silently changing both sides.

use serde::{Deserialize, Serialize};

/// Body of `POST /control/v1/node`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegisterRequest {
    pub node_id: u64,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    pub listen_grpc_addr: Option<String>,
    pub listen_grpc_port: Option<u16>,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    pub listen_https_port: Option<u16>,
    pub availability_zone_id: String,
}

impl NodeRegisterRequest {
    /// A well-formed registration for pageserver `node_id`.
    ///
    /// Addresses point at 127.0.0.1 on ports below the ephemeral range, where nothing listens, so a
    /// leader heartbeating these fake pageservers fails fast instead of waiting on DNS. Distinct
    /// ids get distinct ports for the first 14,000 ids.
    pub fn fake(node_id: u64) -> Self {
        let http_port = 2000 + u16::try_from((node_id * 2) % 28_000).expect("below 28,000");
        NodeRegisterRequest {
            node_id,
            listen_pg_addr: "127.0.0.1".to_owned(),
            listen_pg_port: http_port + 1,
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: "127.0.0.1".to_owned(),
            listen_http_port: http_port,
            listen_https_port: None,
            availability_zone_id: format!("az-{}", ["a", "b", "c"][(node_id % 3) as usize]),
        }
    }

    /// What `GET /control/v1/node/:id` should describe after this registration, apart from the
    /// leader-local `availability`.
    pub fn expected_description(&self) -> NodeDescription {
        NodeDescription {
            id: self.node_id,
            scheduling: "Active".to_owned(),
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

/// One element of `GET /control/v1/node`, or the body of `GET /control/v1/node/:id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescribeResponse {
    pub id: u64,
    /// Leader-local soft state (from heartbeats), so replicas may disagree on it.
    pub availability: String,
    pub scheduling: String,
    pub availability_zone_id: String,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    pub listen_https_port: Option<u16>,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    pub listen_grpc_addr: Option<String>,
    pub listen_grpc_port: Option<u16>,
}

impl NodeDescribeResponse {
    /// The replicated part of the description, comparable across replicas.
    pub fn durable(&self) -> NodeDescription {
        NodeDescription {
            id: self.id,
            scheduling: self.scheduling.clone(),
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

/// [`NodeDescribeResponse`] without `availability`: the fields every replica must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDescription {
    pub id: u64,
    pub scheduling: String,
    pub availability_zone_id: String,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    pub listen_https_port: Option<u16>,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    pub listen_grpc_addr: Option<String>,
    pub listen_grpc_port: Option<u16>,
}

/// Body of `GET /control/v1/cluster`, answered by the replica asked from its own Raft metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub members: Vec<ClusterMember>,
}

impl ClusterStatus {
    /// The members that vote (every role but `learner`).
    pub fn voters(&self) -> std::collections::BTreeSet<u64> {
        self.members
            .iter()
            .filter(|m| m.role != "learner")
            .map(|m| m.id)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    pub id: u64,
    pub addr: String,
    /// One of `leader`, `follower`, `candidate`, `learner`, `unknown`.
    pub role: String,
}

/// Body of `GET /control/v1/leader` when a leader is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub address: String,
    pub started_at: String,
}

/// Every error body the API returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub msg: String,
}
