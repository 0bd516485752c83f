//! What a drain, a fill or a split would move, from the same planners the operations run, for
//! `?dry_run=true` (the answer is `storcon_api::dry_run::DryRunResponse`). Pure: the caller
//! passes the state and its node views, and nothing is changed.
//!
//! A preview is the plan against the state of the moment: a drain decides each fallback and
//! each secondary's lag when it reaches the shard, and a split places its children's
//! secondaries after it commits, so the real run can differ where the state moved meanwhile.

use storcon_api::dry_run::PlannedMove;

use crate::node_operation::{drain_candidates, drain_fallback, fill_plan};
use crate::scheduler::NodeView;
use crate::{NodeId, SplitPlan, State};

/// A drain of `node`: each candidate to its secondary, or to the fallback node when it has
/// none (`to: null` when no node could take it: the drain would leave it).
pub fn drain(state: &State, node: NodeId, views: &[NodeView]) -> Vec<PlannedMove> {
    drain_candidates(state, node, views)
        .into_iter()
        .map(|(shard, secondary)| match secondary {
            Some(to) => PlannedMove {
                tenant_shard_id: shard,
                from: Some(node),
                to: Some(to),
                note: "to its secondary, if it has caught up when the drain reaches it".into(),
            },
            None => {
                let to = state
                    .shard(&shard)
                    .and_then(|s| drain_fallback(state, s, node, views));
                PlannedMove {
                    tenant_shard_id: shard,
                    from: Some(node),
                    to,
                    note: match to {
                        Some(_) => "no secondary: a cold move".into(),
                        None => "no secondary and no node to take it: stays".into(),
                    },
                }
            }
        })
        .collect()
}

/// A fill of `node`: the shards it takes back, from where they are attached now.
pub fn fill(state: &State, node: NodeId, views: &[NodeView]) -> Vec<PlannedMove> {
    fill_plan(state, node, views)
        .into_iter()
        .map(|(shard, from)| PlannedMove {
            tenant_shard_id: shard,
            from: Some(from),
            to: Some(node),
            note: "back from its attached location".into(),
        })
        .collect()
}

/// A split: every child, created and attached on its parent's node (`NoOp`: nothing).
pub fn split(plan: &SplitPlan) -> Vec<PlannedMove> {
    match plan {
        SplitPlan::NoOp(_) => Vec::new(),
        SplitPlan::Split { parents, .. } => parents
            .iter()
            .flat_map(|p| {
                p.children.iter().map(move |child| PlannedMove {
                    tenant_shard_id: *child,
                    from: Some(p.node),
                    to: Some(p.node),
                    note: format!("child of {}, attached where its parent is", p.id),
                })
            })
            .collect(),
    }
}
