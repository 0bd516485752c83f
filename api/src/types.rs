//! Small types that appear on the wire and in the replicated model alike: node ids,
//! generations, and the policies of tenants and nodes.

use serde::{Deserialize, Serialize};

/// A pageserver's id, as pageservers and upstream number them.
pub type NodeId = u64;

/// A shard's attachment generation.
pub type Generation = u32;

/// Where a tenant's shards should live. JSON is externally tagged as upstream:
/// `{"Attached": 1}`, `"Secondary"`, `"Detached"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementPolicy {
    /// One attached location plus this many secondaries.
    Attached(usize),
    Secondary,
    Detached,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        PlacementPolicy::Attached(0)
    }
}

impl PlacementPolicy {
    pub fn want_secondaries(self) -> usize {
        match self {
            PlacementPolicy::Attached(n) => n,
            PlacementPolicy::Secondary => 1,
            PlacementPolicy::Detached => 0,
        }
    }
}

/// How much the controller may change a shard (upstream `ShardSchedulingPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ShardSchedulingPolicy {
    #[default]
    Active,
    /// No optimisation; still fails over.
    Essential,
    /// No scheduling changes; reconciles still run towards the current intent.
    Pause,
    /// No reconciles at all.
    Stop,
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
