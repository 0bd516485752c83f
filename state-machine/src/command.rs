//! Commands carried by the Raft log and the responses `apply` gives for them.

use serde::{Deserialize, Serialize};

use crate::node::{NodeId, NodeRegisterRequest, RegisterOutcome};

/// One replicated change. Everything `apply` needs is inside: no clock or randomness is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Register a pageserver, or re-register one idempotently.
    RegisterNode(NodeRegisterRequest),
    /// A replica that became leader records itself, so every replica can answer
    /// `GET /control/v1/leader`. It is also the leader's first entry of its term.
    RecordLeader {
        node_id: NodeId,
        term: u64,
        address: String,
        /// Wall-clock time the leader read when it proposed this, RFC 3339.
        started_at: String,
    },
}

/// Why a command was refused. The state is unchanged when a command is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries, and commands with nothing to report.
    None,
    NodeRegistered(RegisterOutcome),
    LeaderRecorded,
    Rejected(Rejection),
}
