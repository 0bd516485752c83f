//! Background node operations as replicated state (upstream section 5.11): at most one at a
//! time, cluster-wide, recorded so that a new leader resumes it.
//!
//! - `StartNodeOperation` records the operation and sets the node's policy: a drain
//!   `Draining`, a fill `Filling`. Refused (412) while another runs or unless the node's
//!   policy is `Active`; the same operation again is 409.
//! - `FinishNodeOperation` ends it: a drain done leaves `PauseForRestart` (the operator
//!   restarts the pageserver, whose re-attach makes it `Active` again), anything cancelled or a
//!   fill done leaves `Active`. Refused (412) when that operation is not running.
//!
//! Invariant (checked in `State::validate`): the record's node exists and has the policy of
//! the operation. A change that breaks this (a re-attach resets a draining node to Active, an
//! operator sets the policy, the node is dropped) ends the operation in the same command.
//!
//! The pure planning the leader's drivers run (which shards move, where) is here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Rejection, Response};
use crate::ids::{TenantId, TenantShardId};
use crate::node::{NodeId, NodeSchedulingPolicy};
use crate::rows::{self, Mutation};
use crate::scheduler::NodeView;
use crate::state::State;
use crate::tenant::{PlacementPolicy, ShardSchedulingPolicy, TenantShard};

type Applied = Result<(Response, Vec<Mutation>), Rejection>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeOperationKind {
    Drain,
    Fill,
    /// Move everything off, then delete the node and tombstone its id.
    Delete,
}

impl NodeOperationKind {
    /// The node's policy while the operation runs.
    pub fn policy(self) -> NodeSchedulingPolicy {
        match self {
            NodeOperationKind::Drain => NodeSchedulingPolicy::Draining,
            NodeOperationKind::Fill => NodeSchedulingPolicy::Filling,
            NodeOperationKind::Delete => NodeSchedulingPolicy::Deleting,
        }
    }

    /// Policies the node may have when the operation starts (upstream: Active; a delete also
    /// from Pause).
    fn may_start_from(self, policy: NodeSchedulingPolicy) -> bool {
        policy == NodeSchedulingPolicy::Active
            || (self == NodeOperationKind::Delete && policy == NodeSchedulingPolicy::Pause)
    }

    /// The node's policy once it ends.
    fn policy_after(self, cancelled: bool) -> NodeSchedulingPolicy {
        match (self, cancelled) {
            (NodeOperationKind::Drain, false) => NodeSchedulingPolicy::PauseForRestart,
            _ => NodeSchedulingPolicy::Active,
        }
    }

    fn name(self) -> &'static str {
        match self {
            NodeOperationKind::Drain => "drain",
            NodeOperationKind::Fill => "fill",
            NodeOperationKind::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeOperation {
    pub node: NodeId,
    pub kind: NodeOperationKind,
    /// A delete that does not wait for shards to move (they are placed afresh elsewhere).
    #[serde(default)]
    pub force: bool,
}

impl NodeOperation {
    /// The same operation (of the same node), whatever its options.
    pub fn same(&self, other: &NodeOperation) -> bool {
        self.node == other.node && self.kind == other.kind
    }
}

impl State {
    pub fn node_operation(&self) -> Option<&NodeOperation> {
        self.node_operation.as_ref()
    }

    /// Whether `op` may start now: what `StartNodeOperation` checks at apply, for a preview
    /// that must refuse what the real start would.
    pub fn check_start_node_operation(&self, op: &NodeOperation) -> Result<(), Rejection> {
        if let Some(running) = &self.node_operation {
            if running.same(op) {
                return Err(Rejection::Conflict(format!(
                    "Node {} is already {:?}",
                    op.node,
                    op.kind.policy()
                )));
            }
            return Err(Rejection::PreconditionFailed(format!(
                "Background operation already ongoing for node {} ({})",
                running.node,
                running.kind.name()
            )));
        }
        let node = self
            .nodes
            .get(&op.node)
            .ok_or_else(|| Rejection::NotFound(format!("Node {} not registered", op.node)))?;
        if !op.kind.may_start_from(node.scheduling) {
            return Err(Rejection::PreconditionFailed(format!(
                "Cannot start a {} of node {}: its scheduling policy is {:?}",
                op.kind.name(),
                op.node,
                node.scheduling
            )));
        }
        Ok(())
    }

    pub(crate) fn start_node_operation(&mut self, op: NodeOperation) -> Applied {
        self.check_start_node_operation(&op)?;
        let mut node = self
            .nodes
            .get(&op.node)
            .cloned()
            .ok_or_else(|| Rejection::NotFound(format!("Node {} not registered", op.node)))?;
        node.scheduling = op.kind.policy();
        let muts = vec![
            rows::put(rows::node_key(op.node), &node),
            rows::put(rows::NODE_OPERATION_KEY.to_string(), &op),
        ];
        self.nodes.insert(op.node, node);
        self.node_operation = Some(op);
        Ok((Response::Done, muts))
    }

    pub(crate) fn finish_node_operation(&mut self, op: NodeOperation, cancelled: bool) -> Applied {
        if !self.node_operation.is_some_and(|running| running.same(&op)) {
            return Err(Rejection::PreconditionFailed(format!(
                "Node {} has no {} in progress",
                op.node,
                op.kind.name()
            )));
        }
        let mut muts = vec![rows::delete(rows::NODE_OPERATION_KEY.to_string())];
        self.node_operation = None;
        if let Some(mut node) = self.nodes.get(&op.node).cloned() {
            node.scheduling = op.kind.policy_after(cancelled);
            muts.push(rows::put(rows::node_key(op.node), &node));
            self.nodes.insert(op.node, node);
        }
        Ok((Response::Done, muts))
    }

    /// Ends the operation if its node no longer has its policy (see the module docs).
    pub(crate) fn prune_node_operation(&mut self) -> Vec<Mutation> {
        match self.node_operation {
            Some(op) if !self.node_operation_fits(&op) => {
                self.node_operation = None;
                vec![rows::delete(rows::NODE_OPERATION_KEY.to_string())]
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn node_operation_fits(&self, op: &NodeOperation) -> bool {
        self.nodes
            .get(&op.node)
            .is_some_and(|n| n.scheduling == op.kind.policy())
    }
}

/// Whether a node operation moves this shard at all: attached by policy, scheduling Active
/// (upstream skips Pause and Stop), not splitting.
fn movable(s: &TenantShard) -> bool {
    matches!(s.placement, PlacementPolicy::Attached(_))
        && s.scheduling == ShardSchedulingPolicy::Active
        && !s.splitting
}

/// The shards a drain of `node` moves, in id order, each with the secondary it would go to
/// (the first intended secondary on a node that may take work), or `None` when it has none.
pub fn drain_candidates(
    state: &State,
    node: NodeId,
    views: &[NodeView],
) -> Vec<(TenantShardId, Option<NodeId>)> {
    let may: BTreeMap<NodeId, bool> = views.iter().map(|v| (v.id, v.may_schedule)).collect();
    state
        .shards()
        .filter(|s| s.intent.attached == Some(node) && movable(s))
        .map(|s| {
            let to = s
                .intent
                .secondaries
                .iter()
                .copied()
                .find(|n| may.get(n).copied().unwrap_or(false));
            (s.id, to)
        })
        .collect()
}

/// Where a drained shard without a usable secondary goes: a node that may take work, other than
/// `from`, in the shard's preferred AZ if one is, with the fewest attached shards (then id).
pub fn drain_fallback(
    state: &State,
    shard: &TenantShard,
    from: NodeId,
    views: &[NodeView],
) -> Option<NodeId> {
    let mut attached: BTreeMap<NodeId, usize> = BTreeMap::new();
    for s in state.shards() {
        if let Some(a) = s.intent.attached {
            *attached.entry(a).or_default() += 1;
        }
    }
    views
        .iter()
        .filter(|v| v.may_schedule && v.id != from && !shard.intent.contains(v.id))
        .min_by_key(|v| {
            let outside = shard.preferred_az.as_deref() != Some(v.az.as_str());
            (outside, attached.get(&v.id).copied().unwrap_or(0), v.id)
        })
        .map(|v| v.id)
}

/// The shards a fill of `node` takes back, each with the node it is attached on now: shards
/// with a secondary on `node`, first those whose preferred AZ is the node's and that are
/// attached outside it (when there is more than one AZ), then the others, from the most
/// loaded nodes first, until `node` holds its share (`attached shards / nodes that may take
/// work`). At most `attached - share` from each donor, and at most `max(shards / nodes, 1)`
/// shards of one tenant, as upstream.
pub fn fill_plan(state: &State, node: NodeId, views: &[NodeView]) -> Vec<(TenantShardId, NodeId)> {
    let az_of: BTreeMap<NodeId, &str> = views.iter().map(|v| (v.id, v.az.as_str())).collect();
    let Some(node_az) = az_of.get(&node).copied() else {
        return Vec::new();
    };
    let workers = views
        .iter()
        .filter(|v| v.may_schedule || v.id == node)
        .count()
        .max(1);
    let multi_az = {
        let mut azs: Vec<&str> = az_of.values().copied().collect();
        azs.sort_unstable();
        azs.dedup();
        azs.len() > 1
    };
    let mut attached: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut total = 0;
    for s in state.shards() {
        if let (Some(a), PlacementPolicy::Attached(_)) = (s.intent.attached, s.placement) {
            *attached.entry(a).or_default() += 1;
            total += 1;
        }
    }
    let share = total / workers;
    let mine = attached.get(&node).copied().unwrap_or(0);
    let mut needed = share.saturating_sub(mine);
    let per_tenant_cap = |count: u8| (usize::from(count.max(1)) / workers).max(1);
    let mut per_tenant: BTreeMap<TenantId, usize> = BTreeMap::new();
    let mut taken_from: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut plan = Vec::new();
    let candidates: Vec<(&TenantShard, NodeId)> = state
        .shards()
        .filter(|s| movable(s) && s.intent.secondaries.contains(&node))
        .filter_map(|s| s.intent.attached.filter(|a| *a != node).map(|a| (s, a)))
        .collect();
    let home_first = candidates.iter().filter(|(s, from)| {
        multi_az
            && s.preferred_az.as_deref() == Some(node_az)
            && az_of.get(from).copied() != Some(node_az)
    });
    let mut by_load: Vec<&(&TenantShard, NodeId)> = candidates.iter().collect();
    by_load.sort_by_key(|(s, from)| {
        (
            std::cmp::Reverse(attached.get(from).copied().unwrap_or(0)),
            s.id,
        )
    });
    for (s, from) in home_first.chain(by_load) {
        if needed == 0 {
            break;
        }
        if plan.iter().any(|(id, _)| *id == s.id) {
            continue;
        }
        let donor_load = attached.get(from).copied().unwrap_or(0);
        let taken = taken_from.get(from).copied().unwrap_or(0);
        let tenant_taken = per_tenant.get(&s.id.tenant_id).copied().unwrap_or(0);
        let home = multi_az
            && s.preferred_az.as_deref() == Some(node_az)
            && az_of.get(from).copied() != Some(node_az);
        if !home && donor_load.saturating_sub(taken) <= share {
            continue;
        }
        if tenant_taken >= per_tenant_cap(s.id.shard_count.0) {
            continue;
        }
        *taken_from.entry(*from).or_default() += 1;
        *per_tenant.entry(s.id.tenant_id).or_default() += 1;
        plan.push((s.id, *from));
        needed -= 1;
    }
    plan
}
