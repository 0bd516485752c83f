//! Commands carried by the Raft log and the responses `apply` gives for them.

use serde::{Deserialize, Serialize};

use crate::ids::{TenantId, TenantShardId};
use crate::node::{NodeId, NodeRegisterRequest, NodeSchedulingPolicy, RegisterOutcome};
use crate::split::SplitRecord;
use crate::tenant::{CreateTenant, Generation, Intent, PlacementPolicy, ShardSchedulingPolicy};
use crate::{ReplicaId, Term};

/// One replicated change. Everything `apply` needs is inside: no clock or randomness is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Commands proposed together as one log entry (the proposer's group commit), applied in
    /// order, each exactly as if it were an entry of its own. Never nested, never proposed by
    /// a caller (see `Command::admissible_size`). Answered with [`Response::Batch`].
    Batch(Vec<Command>),
    /// Register a pageserver, or re-register one idempotently.
    RegisterNode(NodeRegisterRequest),
    /// A replica that became leader records itself, so every replica can answer
    /// `GET /control/v1/leader`. It is also the leader's first entry of its term.
    RecordLeader {
        node_id: ReplicaId,
        term: Term,
        address: String,
        /// Wall-clock time the leader read when it proposed this, RFC 3339.
        started_at: String,
    },
    SetNodeScheduling {
        node_id: NodeId,
        policy: NodeSchedulingPolicy,
    },
    /// Create every shard of a tenant; idempotent for the same shard count.
    CreateTenant(CreateTenant),
    DeleteTenant {
        tenant_id: TenantId,
    },
    SetTenantPolicy {
        tenant_id: TenantId,
        placement: Option<PlacementPolicy>,
        scheduling: Option<ShardSchedulingPolicy>,
    },
    SetTenantConfig {
        tenant_id: TenantId,
        config: serde_json::Value,
    },
    /// Field by field: a `null` removes the field, a value sets it, an absent field is kept.
    PatchTenantConfig {
        tenant_id: TenantId,
        patch: serde_json::Map<String, serde_json::Value>,
    },
    /// Onboarding of a known tenant (`location_config`), as one change: the placement, the
    /// config, and for an attached mode the control plane's generation for shards without one.
    OnboardTenant {
        tenant_id: TenantId,
        placement: PlacementPolicy,
        config: serde_json::Value,
        generation: Option<Generation>,
    },
    /// Onboarding: shards without a generation take the control plane's. Superseded by
    /// `OnboardTenant`; kept so that logs written before it still decode.
    AdoptGeneration {
        tenant_id: TenantId,
        generation: Generation,
    },
    /// Scheduling decisions of the leader. Unknown shards (deleted meanwhile) are skipped.
    SetIntents(Vec<(TenantShardId, Intent)>),
    /// Issue the next generation of `shard` to `node_id`; must commit before any attach in it.
    IncrementGeneration {
        shard: TenantShardId,
        node_id: NodeId,
    },
    /// A pageserver restarted: every shard whose generation was issued to it gets a new one.
    ReAttach {
        node_id: NodeId,
    },
    /// Start a split (see `split.rs`): validated again at apply against the applied state.
    BeginSplit {
        tenant_id: TenantId,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
        /// Term of the proposing leader; only that term may complete the split.
        term: Term,
    },
    /// The commit point of a split: parents replaced by their children.
    CompleteSplit {
        tenant_id: TenantId,
        term: Term,
    },
    /// Give up a split that has not completed; the parents carry on.
    AbortSplit {
        tenant_id: TenantId,
    },
    /// Upstream's test hook: attach `shard` (created if missing) to `node_id` in a new
    /// generation (or `generation_override`), or detach it when `node_id` is `None`.
    AttachHook {
        shard: TenantShardId,
        node_id: Option<NodeId>,
        generation_override: Option<Generation>,
        config: Option<serde_json::Value>,
    },
    /// `PUT /control/v1/preferred_azs`: each shard's preferred AZ set (or cleared); all or
    /// nothing (an unknown shard or an AZ without a registered node is refused).
    SetPreferredAzs(Vec<(TenantShardId, Option<String>)>),
    /// Begin a graceful migration of a shard's attachment (see `migration.rs`): with
    /// `prewarm`, the destination becomes a secondary to warm up; without, the cut-over is at
    /// once.
    StartMigration(crate::migration::StartMigration),
    /// The warm-up is done: the intent's attachment moves to the destination.
    CutoverMigration {
        shard: TenantShardId,
        destination: NodeId,
    },
    /// Give up a migration that has not cut over; a secondary added for it goes.
    CancelMigration {
        shard: TenantShardId,
    },
    /// Begin a drain or fill of a node (see `node_operation.rs`); one at a time.
    StartNodeOperation(crate::node_operation::NodeOperation),
    /// End it: done, or cancelled.
    FinishNodeOperation {
        operation: crate::node_operation::NodeOperation,
        cancelled: bool,
    },
    /// The end of a node delete (or the legacy synchronous delete): the node goes with every
    /// reference to it, and its id is tombstoned.
    DeleteNode {
        node_id: NodeId,
    },
    /// `DELETE /debug/v1/tombstone/:id`: the id may register again.
    DeleteTombstone {
        node_id: NodeId,
    },
    /// Upstream's `POST /debug/v1/tenant/:tenant_id/drop`: forget every shard of the tenant,
    /// and a split of it in flight, whatever their state. Nothing is detached anywhere.
    DropTenant {
        tenant_id: TenantId,
    },
    /// Upstream's `POST /debug/v1/node/:node_id/drop`: remove the node record and every
    /// reference to it (intents, the holder of a generation) in one change, placing nothing.
    /// Refused while a split in flight names the node.
    DropNode {
        node_id: NodeId,
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
    /// The request does not hold for the current state (upstream's 412).
    #[error("{0}")]
    PreconditionFailed(String),
}

impl From<storcon_api::InvalidRequest> for Rejection {
    fn from(e: storcon_api::InvalidRequest) -> Self {
        Rejection::BadRequest(e.0)
    }
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries, and commands with nothing to report.
    None,
    NodeRegistered(RegisterOutcome),
    LeaderRecorded,
    TenantCreated {
        created: bool,
    },
    Generation(Generation),
    /// New generations issued by a re-attach, in shard order.
    ReAttached(Vec<(TenantShardId, Generation)>),
    SplitBegun(SplitRecord),
    /// The record of the split that was given up.
    SplitAborted(SplitRecord),
    /// The shards whose preferred AZ changed, in id order.
    PreferredAzsSet(Vec<TenantShardId>),
    /// The generation an attach hook issued; `None` for a detach.
    AttachHook(Option<Generation>),
    Done,
    Rejected(Rejection),
    /// The answers to a [`Command::Batch`], one per command, in its order.
    Batch(Vec<Response>),
}
