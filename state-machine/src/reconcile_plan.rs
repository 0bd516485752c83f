//! The reconcile planner: what must happen on pageservers for a shard's locations to match its
//! intent, as a list of [`Step`]s. Pure: no I/O, no clock; the controller's executor carries the
//! steps out against a snapshot and records what it observed. A shard is "dirty" exactly when
//! its plan is not empty.
//!
//! Order of the steps, as upstream reconciles:
//! 1. the attached node: read back an uncertain location first, else attach in a new generation,
//!    or in the current one when only the config differs (no generation bump);
//! 2. each secondary that differs: make it a secondary;
//! 3. every observed location outside the intent: detach it.
//!
//! Only nodes the caller says are active get steps; the others are handled when they return. A
//! shard that is splitting, whose policy is `Stop`, or that is the child of a split in flight
//! (owned by the split driver) gets none.

use std::collections::BTreeMap;

use crate::node::NodeId;
use crate::tenant::{Generation, ShardSchedulingPolicy, TenantShard};
use crate::wire::LocationConfig;

/// What the controller last knew of each node's location of one shard: no entry means
/// certainly nothing there, `None` means uncertain (a call in flight or failed, a node lost).
pub type Locations = BTreeMap<NodeId, Option<LocationConfig>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The attached node's location is uncertain: read it before deciding (then plan again).
    ReadBack {
        node: NodeId,
    },
    /// Issue a new generation to `node` through Raft, then attach it there.
    AttachNewGeneration {
        node: NodeId,
    },
    /// `node` already holds `generation` attached; only the config (or mode) differs.
    AttachCurrentGeneration {
        node: NodeId,
        generation: Generation,
    },
    MakeSecondary {
        node: NodeId,
    },
    Detach {
        node: NodeId,
    },
}

/// Whether an observed location already is what the controller wants there. Fields the
/// pageserver fills in on its own are ignored.
pub fn matches(observed: &Option<LocationConfig>, wanted: &LocationConfig) -> bool {
    match observed {
        Some(o) => {
            o.mode == wanted.mode
                && o.generation == wanted.generation
                && o.shard_number == wanted.shard_number
                && o.shard_count == wanted.shard_count
                && o.shard_stripe_size == wanted.shard_stripe_size
                && o.secondary_conf == wanted.secondary_conf
                && o.tenant_conf == wanted.tenant_conf
        }
        None => false,
    }
}

/// The step that makes `node` hold `shard` attached as intended, or `None` when it already
/// does (attached there in the current generation, issued to that node, with this config).
/// The split driver's "settled" check is this being `None` for the intended node.
pub fn attach_step(shard: &TenantShard, node: NodeId, observed: &Locations) -> Option<Step> {
    let current = match observed.get(&node) {
        Some(None) => return Some(Step::ReadBack { node }),
        Some(Some(c)) => Some(c),
        None => None,
    };
    let issued_here = shard.generation_pageserver == Some(node);
    match shard.generation {
        Some(g)
            if issued_here && matches(&current.cloned(), &LocationConfig::attached(shard, g)) =>
        {
            None
        }
        Some(g)
            if issued_here
                && current.is_some_and(|c| c.mode.is_attached() && c.generation == Some(g)) =>
        {
            Some(Step::AttachCurrentGeneration {
                node,
                generation: g,
            })
        }
        _ => Some(Step::AttachNewGeneration { node }),
    }
}

/// The steps that bring `shard`'s locations to its intent. `shard` is `None` for a shard the
/// state no longer holds: `owned_by_split` says whether it is the child of a split in flight
/// (left alone), else every location of it is detached.
pub fn plan(
    shard: Option<&TenantShard>,
    owned_by_split: bool,
    observed: &Locations,
    active: impl Fn(NodeId) -> bool,
) -> Vec<Step> {
    let Some(shard) = shard else {
        if owned_by_split {
            return Vec::new();
        }
        return observed
            .keys()
            .copied()
            .filter(|n| active(*n))
            .map(|node| Step::Detach { node })
            .collect();
    };
    if shard.splitting || shard.scheduling == ShardSchedulingPolicy::Stop {
        return Vec::new();
    }
    let mut steps = Vec::new();
    if let Some(a) = shard.intent.attached.filter(|a| active(*a))
        && let Some(step) = attach_step(shard, a, observed)
    {
        steps.push(step);
    }
    let secondary = LocationConfig::secondary(shard);
    for s in shard
        .intent
        .secondaries
        .iter()
        .copied()
        .filter(|s| active(*s))
    {
        if !matches(observed.get(&s).unwrap_or(&None), &secondary) {
            steps.push(Step::MakeSecondary { node: s });
        }
    }
    steps.extend(
        observed
            .keys()
            .copied()
            .filter(|n| !shard.intent.contains(*n) && active(*n))
            .map(|node| Step::Detach { node }),
    );
    steps
}
