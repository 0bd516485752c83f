//! `?dry_run=true` on `PUT /control/v1/node/:id/drain|fill`, `PUT .../migrate` and
//! `PUT .../shard_split`: the leader answers what the operation would do now, from its real
//! state, and changes nothing.

use serde::{Deserialize, Serialize};

use crate::ids::TenantShardId;
use crate::types::NodeId;

/// The query string of the routes that take a preview.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunQuery {
    /// Answer the planned moves instead of starting the operation.
    #[serde(default)]
    pub dry_run: bool,
}

/// One placement change the operation would make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMove {
    pub tenant_shard_id: TenantShardId,
    /// Where the shard is attached now (for a split's child: its parent's node).
    pub from: Option<NodeId>,
    /// Where it would be attached.
    pub to: Option<NodeId>,
    /// What the move is, in words (to a secondary, a cold move, a split child).
    pub note: String,
}

/// The answer to a dry run: 200, and nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunResponse {
    /// Always `true`: tells a preview apart from an operation's own answer.
    pub dry_run: bool,
    pub moves: Vec<PlannedMove>,
}

impl DryRunResponse {
    pub fn new(moves: Vec<PlannedMove>) -> Self {
        DryRunResponse {
            dry_run: true,
            moves,
        }
    }
}
