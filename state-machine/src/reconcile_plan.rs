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
use storcon_api::wire::LocationConfig;

/// What the controller knows of one node's location of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ObservedLocation {
    /// Certainly nothing there.
    #[default]
    Absent,
    /// Uncertain: a call in flight or failed, a node lost. Read it back before relying on it.
    Unknown,
    /// The pageserver holds this location.
    Known(LocationConfig),
}

impl ObservedLocation {
    /// A pageserver's listing entry: `None` is a location it has but could not describe.
    pub fn listed(conf: Option<LocationConfig>) -> Self {
        conf.map_or(ObservedLocation::Unknown, ObservedLocation::Known)
    }

    pub fn known(&self) -> Option<&LocationConfig> {
        match self {
            ObservedLocation::Known(c) => Some(c),
            _ => None,
        }
    }
}

static ABSENT: ObservedLocation = ObservedLocation::Absent;

/// What the controller last knew of each node's location of one shard. Only `Unknown` and
/// `Known` are stored; a node without an entry is `Absent`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locations(BTreeMap<NodeId, ObservedLocation>);

impl Locations {
    pub fn get(&self, node: NodeId) -> &ObservedLocation {
        self.0.get(&node).unwrap_or(&ABSENT)
    }

    /// Records what `node` holds; `Absent` forgets the node.
    pub fn set(&mut self, node: NodeId, location: ObservedLocation) {
        match location {
            ObservedLocation::Absent => {
                self.0.remove(&node);
            }
            other => {
                self.0.insert(node, other);
            }
        }
    }

    /// Nodes where something is, or may be.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.0.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &ObservedLocation)> {
        self.0.iter().map(|(n, l)| (*n, l))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything on `node` becomes uncertain (it was lost or restarted).
    pub fn mark_unknown(&mut self, node: NodeId) {
        if let Some(l) = self.0.get_mut(&node) {
            *l = ObservedLocation::Unknown;
        }
    }
}

impl FromIterator<(NodeId, ObservedLocation)> for Locations {
    fn from_iter<I: IntoIterator<Item = (NodeId, ObservedLocation)>>(iter: I) -> Self {
        let mut l = Locations::default();
        for (node, location) in iter {
            l.set(node, location);
        }
        l
    }
}

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
pub fn matches(observed: &ObservedLocation, wanted: &LocationConfig) -> bool {
    match observed {
        ObservedLocation::Known(o) => {
            o.mode == wanted.mode
                && o.generation == wanted.generation
                && o.shard_number == wanted.shard_number
                && o.shard_count == wanted.shard_count
                && o.shard_stripe_size == wanted.shard_stripe_size
                && o.secondary_conf == wanted.secondary_conf
                && o.tenant_conf == wanted.tenant_conf
        }
        ObservedLocation::Absent | ObservedLocation::Unknown => false,
    }
}

/// The step that makes `node` hold `shard` attached as intended, or `None` when it already
/// does (attached there in the current generation, issued to that node, with this config).
/// The split driver's "settled" check is this being `None` for the intended node.
pub fn attach_step(shard: &TenantShard, node: NodeId, observed: &Locations) -> Option<Step> {
    let location = observed.get(node);
    let current = match location {
        ObservedLocation::Unknown => return Some(Step::ReadBack { node }),
        ObservedLocation::Known(c) => Some(c),
        ObservedLocation::Absent => None,
    };
    let issued_here = shard.generation_pageserver == Some(node);
    match shard.generation {
        Some(g) if issued_here && matches(location, &shard.attached_location(g)) => None,
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
            .nodes()
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
    let secondary = shard.secondary_location();
    for s in shard
        .intent
        .secondaries
        .iter()
        .copied()
        .filter(|s| active(*s))
    {
        if !matches(observed.get(s), &secondary) {
            steps.push(Step::MakeSecondary { node: s });
        }
    }
    steps.extend(
        observed
            .nodes()
            .filter(|n| !shard.intent.contains(*n) && active(*n))
            .map(|node| Step::Detach { node }),
    );
    steps
}
