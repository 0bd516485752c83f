//! The background optimiser, pure (upstream section 5.5): graceful moves that make placements
//! better by the scheduler's criteria, proposed only when nothing else is pending.
//!
//! A location is scored by a key, lowest best, compared after the move (the destination
//! counted with the shard, the origin with it too):
//! - attachment: (AZ: preferred < unknown < other, attachments of the tenant's other shards on
//!   the node, attachments on the node);
//! - secondary: (AZ: other < unknown < preferred, secondaries of the tenant's other shards on
//!   the node, secondaries on the node).
//!
//! A shard moves only when its best candidate's key is strictly lower than its current key.
//! Why that cannot oscillate: each move strictly lowers, lexicographically, the potential
//! (Σ attachment AZ ranks, Σ over tenants and nodes of (tenant's attachments there)²,
//! Σ (attachments per node)², then the same three for secondaries), whose key components are
//! exactly the changes of those sums; attachment moves may rearrange secondaries, but they
//! come first in the order. Upstream compares only AZ and affinity here (its utilization and
//! counts are zeroed for optimisation to avoid flapping); the strict after-the-move comparison
//! lets storcon also balance counts without flapping.
//!
//! Only shards with an `Attached` policy, scheduling `Active`, not splitting, without a
//! migration under way, attached on a node that takes work, are considered; one move per
//! tenant per pass, at most `max` in all. Candidates take work and are not overloaded.

use std::collections::BTreeMap;

use crate::ids::{TenantId, TenantShardId};
use crate::node::NodeId;
use crate::scheduler::{NodeView, OVERLOADED_SCORE};
use crate::state::State;
use crate::tenant::{Intent, PlacementPolicy, ShardSchedulingPolicy, TenantShard};

/// One proposed move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Optimisation {
    /// A graceful migration (prewarmed, then live) of the attachment.
    MigrateAttachment {
        shard: TenantShardId,
        origin: NodeId,
        destination: NodeId,
    },
    /// One secondary replaced by a better one.
    ReplaceSecondary {
        shard: TenantShardId,
        old: NodeId,
        new: NodeId,
    },
}

impl Optimisation {
    pub fn shard(&self) -> TenantShardId {
        match self {
            Optimisation::MigrateAttachment { shard, .. }
            | Optimisation::ReplaceSecondary { shard, .. } => *shard,
        }
    }

    /// The intent once the move is done (a migration as `cut_over` leaves it).
    pub fn intent_after(&self, shard: &TenantShard) -> Intent {
        let mut s = shard.clone();
        match self {
            Optimisation::MigrateAttachment { destination, .. } => {
                crate::migration::cut_over(&mut s, *destination)
            }
            Optimisation::ReplaceSecondary { old, new, .. } => {
                for n in s.intent.secondaries.iter_mut() {
                    if n == old {
                        *n = *new;
                    }
                }
            }
        }
        s.intent
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Attached,
    Secondary,
}

type Key = (u8, usize, usize);

/// Locations per node and per (tenant, node), by role, updated as moves are planned.
#[derive(Default)]
struct Loads {
    per_node: BTreeMap<(NodeId, bool), usize>,
    per_tenant: BTreeMap<(TenantId, NodeId, bool), usize>,
}

impl Loads {
    fn add(&mut self, tenant: TenantId, node: NodeId, role: Role, sign: isize) {
        let attached = role == Role::Attached;
        for v in [
            self.per_node.entry((node, attached)).or_default(),
            self.per_tenant.entry((tenant, node, attached)).or_default(),
        ] {
            *v = v.saturating_add_signed(sign);
        }
    }

    fn account(&mut self, tenant: TenantId, intent: &Intent, sign: isize) {
        if let Some(a) = intent.attached {
            self.add(tenant, a, Role::Attached, sign);
        }
        for s in &intent.secondaries {
            self.add(tenant, *s, Role::Secondary, sign);
        }
    }

    fn get(&self, tenant: TenantId, node: NodeId, role: Role) -> (usize, usize) {
        let attached = role == Role::Attached;
        (
            self.per_tenant
                .get(&(tenant, node, attached))
                .copied()
                .unwrap_or(0),
            self.per_node.get(&(node, attached)).copied().unwrap_or(0),
        )
    }
}

/// The moves worth making now, at most `max`, in shard order.
pub fn plan(state: &State, nodes: &[NodeView], max: usize) -> Vec<Optimisation> {
    let views: BTreeMap<NodeId, &NodeView> = nodes.iter().map(|n| (n.id, n)).collect();
    let mut loads = loads_of(state);
    let mut planned = Vec::new();
    let mut last_tenant = None;
    for shard in state.shards() {
        if planned.len() >= max {
            break;
        }
        if last_tenant == Some(shard.id.tenant_id) || !eligible(state, shard, &views) {
            continue;
        }
        let Some(found) = best_move(shard, &views, &loads) else {
            continue;
        };
        let tenant = shard.id.tenant_id;
        loads.account(tenant, &shard.intent, -1);
        loads.account(tenant, &found.intent_after(shard), 1);
        last_tenant = Some(tenant);
        planned.push(found);
    }
    planned
}

fn loads_of(state: &State) -> Loads {
    let mut loads = Loads::default();
    for s in state.shards() {
        // A migration under way counts as done, so no other move is planned on stale loads.
        let intent = match state.migration(&s.id) {
            Some(m) => {
                let mut after = s.clone();
                crate::migration::cut_over(&mut after, m.destination);
                after.intent
            }
            None => s.intent.clone(),
        };
        loads.account(s.id.tenant_id, &intent, 1);
    }
    loads
}

/// Whether attaching `shard` on `destination` instead of where it is scores worse by the
/// optimiser's key, so that the optimiser would move it back: the migrate API's 412 "worse
/// scoring" unless the scheduler is overridden (upstream refuses what its optimiser undoes).
pub fn is_worse_attachment(
    state: &State,
    nodes: &[NodeView],
    shard: &TenantShard,
    destination: NodeId,
) -> bool {
    let views: BTreeMap<NodeId, &NodeView> = nodes.iter().map(|n| (n.id, n)).collect();
    let Some(origin) = shard.intent.attached else {
        return false;
    };
    let loads = loads_of(state);
    let key = attachment_key(shard, &views, &loads);
    key(destination, true) > key(origin, false)
}

/// Whether the optimiser (or the chaos injector) may move `shard`.
pub fn eligible(state: &State, shard: &TenantShard, views: &BTreeMap<NodeId, &NodeView>) -> bool {
    matches!(shard.placement, PlacementPolicy::Attached(_))
        && shard.scheduling == ShardSchedulingPolicy::Active
        && !shard.splitting
        && state.migration(&shard.id).is_none()
        && shard
            .intent
            .attached
            .and_then(|a| views.get(&a))
            .is_some_and(|v| v.may_schedule)
}

/// The shard's improving move, attachment first.
fn best_move(
    shard: &TenantShard,
    views: &BTreeMap<NodeId, &NodeView>,
    loads: &Loads,
) -> Option<Optimisation> {
    let key = |node: NodeId, role: Role, joining: bool| {
        location_key(shard, views, loads, node, role, joining)
    };
    let candidates = |role: Role| {
        views
            .values()
            .filter(|v| v.may_schedule && v.utilization_score < OVERLOADED_SCORE)
            .map(|v| v.id)
            .filter(move |n| match role {
                // A secondary is the warmest destination; only the attached node is out.
                Role::Attached => shard.intent.attached != Some(*n),
                Role::Secondary => !shard.intent.contains(*n),
            })
    };
    let origin = shard.intent.attached?;
    let current = key(origin, Role::Attached, false);
    let destination = candidates(Role::Attached)
        .map(|n| {
            (
                key(n, Role::Attached, true),
                !shard.intent.secondaries.contains(&n),
                n,
            )
        })
        .min()
        .filter(|(k, _, _)| *k < current);
    if let Some((_, _, destination)) = destination {
        return Some(Optimisation::MigrateAttachment {
            shard: shard.id,
            origin,
            destination,
        });
    }
    for old in &shard.intent.secondaries {
        // A secondary on a node that takes no work (paused for a restart, draining) is left
        // for the node operation (a fill comes back for it).
        if !views.get(old).is_some_and(|v| v.may_schedule) {
            continue;
        }
        let current = key(*old, Role::Secondary, false);
        let better = candidates(Role::Secondary)
            .map(|n| (key(n, Role::Secondary, true), n))
            .min()
            .filter(|(k, _)| *k < current);
        if let Some((_, new)) = better {
            return Some(Optimisation::ReplaceSecondary {
                shard: shard.id,
                old: *old,
                new,
            });
        }
    }
    None
}

/// The key of `shard`'s location on `node`: `joining` when the shard would move there (the
/// node counted with it), else where it is (its own location is no affinity to itself).
fn location_key(
    shard: &TenantShard,
    views: &BTreeMap<NodeId, &NodeView>,
    loads: &Loads,
    node: NodeId,
    role: Role,
    joining: bool,
) -> Key {
    let (mine, all) = loads.get(shard.id.tenant_id, node, role);
    let (mine, all) = if joining {
        (mine, all + 1)
    } else {
        (mine.saturating_sub(1), all)
    };
    let az = shard.preferred_az.as_deref();
    (az_rank(views.get(&node).copied(), az, role), mine, all)
}

fn attachment_key<'a>(
    shard: &'a TenantShard,
    views: &'a BTreeMap<NodeId, &'a NodeView>,
    loads: &'a Loads,
) -> impl Fn(NodeId, bool) -> Key + 'a {
    move |node, joining| location_key(shard, views, loads, node, Role::Attached, joining)
}

/// Attachments belong in the preferred AZ, secondaries outside it (to survive its loss).
fn az_rank(view: Option<&NodeView>, az: Option<&str>, role: Role) -> u8 {
    let (Some(az), Some(view)) = (az, view) else {
        return 1;
    };
    match (view.az == az, role) {
        (true, Role::Attached) | (false, Role::Secondary) => 0,
        _ => 2,
    }
}
