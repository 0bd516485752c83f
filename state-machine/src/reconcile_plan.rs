//! The reconcile planner: what must happen on pageservers for a shard's locations to match its
//! intent, as a list of [`Step`]s. Pure: no I/O, no clock; the controller's executor carries the
//! steps out against a snapshot and records what it observed. A shard is "dirty" exactly when
//! its plan is not empty.
//!
//! Order of the steps, as upstream reconciles:
//! 1. the attached node: read back an uncertain location first (of the intended node, or of
//!    another active node that may hold the shard attached), else attach it:
//!    - in the current generation when only the config differs (no generation bump);
//!    - live, when another active node holds it attached (the origin): origin `AttachedStale`,
//!      destination `AttachedMulti` in a new generation, catch-up of the destination to the
//!      origin's LSNs, destination `AttachedSingle`. A plan resumes where the observed state
//!      is: an origin already stale is not made stale again, a destination already `Multi` in
//!      the current generation only catches up and finalizes. The destination becomes
//!      `AttachedSingle` only once the origin is stale, so two `AttachedSingle` never coexist;
//!    - else cold: a new generation, `AttachedSingle` at once (the origin is gone or offline);
//! 2. each secondary that differs: make it a secondary (the origin too, if intended so);
//! 3. every observed location outside the intent: detach it.
//!
//! A location that is, or may be, attached is made a secondary or detached only once the
//! intended attachment is in place (its attach step is done): until then it may be the only
//! one serving. The executor plans again after the attach, so this costs no extra pass.
//!
//! Only nodes the caller says are active get steps; the others are handled when they return. A
//! shard that is splitting, whose policy is `Stop`, or that is the child of a split in flight
//! (owned by the split driver) gets none.

use std::collections::BTreeMap;

use crate::node::NodeId;
use crate::tenant::{Generation, ShardSchedulingPolicy, TenantShard};
use storcon_api::wire::{LocationConfig, LocationConfigMode};

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
    /// Live migration, origin first: `node` keeps `generation` but goes `AttachedStale`.
    MakeStale {
        node: NodeId,
        generation: Generation,
    },
    /// Live migration: issue a new generation to `node`, attach it `AttachedMulti`.
    AttachMulti {
        node: NodeId,
    },
    /// Live migration: wait until `node`'s timelines reach the LSNs `origin` has.
    CatchUp {
        node: NodeId,
        origin: NodeId,
    },
    /// Live migration: `node`, attached in the current generation issued to it, goes
    /// `AttachedSingle`.
    Finalize {
        node: NodeId,
    },
}

impl Step {
    pub fn node(&self) -> NodeId {
        match *self {
            Step::ReadBack { node }
            | Step::AttachNewGeneration { node }
            | Step::AttachCurrentGeneration { node, .. }
            | Step::MakeSecondary { node }
            | Step::Detach { node }
            | Step::MakeStale { node, .. }
            | Step::AttachMulti { node }
            | Step::CatchUp { node, .. }
            | Step::Finalize { node } => node,
        }
    }

    /// One of a live migration's steps, which only make sense in sequence.
    pub fn is_live_migration(&self) -> bool {
        matches!(
            self,
            Step::MakeStale { .. }
                | Step::AttachMulti { .. }
                | Step::CatchUp { .. }
                | Step::Finalize { .. }
        )
    }

    /// Part of bringing the attachment where it is intended (compute learns of it after these,
    /// before anything is detached).
    pub fn is_attach(&self) -> bool {
        matches!(
            self,
            Step::AttachNewGeneration { .. }
                | Step::AttachCurrentGeneration { .. }
                | Step::MakeStale { .. }
                | Step::AttachMulti { .. }
                | Step::CatchUp { .. }
                | Step::Finalize { .. }
        )
    }
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

/// How the attachment gets to `node`, given the single step [`attach_step`] chose: live from an
/// active node holding it attached (see the module docs), or that step.
fn attach_steps(
    shard: &TenantShard,
    node: NodeId,
    step: Step,
    observed: &Locations,
    active: &impl Fn(NodeId) -> bool,
) -> Vec<Step> {
    if matches!(step, Step::ReadBack { .. }) {
        return vec![step];
    }
    // Before deciding between live and cold: what other active nodes hold must be known.
    if let Some(other) = observed
        .iter()
        .find(|(n, l)| *n != node && active(*n) && matches!(l, ObservedLocation::Unknown))
    {
        return vec![Step::ReadBack { node: other.0 }];
    }
    let origin = observed
        .iter()
        .filter(|(n, _)| *n != node && active(*n))
        .filter_map(|(n, l)| {
            let c = l.known()?;
            let g = c.generation.filter(|_| c.mode.is_attached())?;
            Some((n, g, c.mode))
        })
        .max_by_key(|(_, g, _)| *g);
    let Some((origin, origin_generation, origin_mode)) = origin else {
        return vec![step];
    };
    let here = observed.get(node).known();
    let current_multi = shard.generation_pageserver == Some(node)
        && here.is_some_and(|c| {
            c.mode == LocationConfigMode::AttachedMulti && c.generation == shard.generation
        });
    if current_multi {
        return vec![Step::CatchUp { node, origin }, Step::Finalize { node }];
    }
    if matches!(step, Step::AttachCurrentGeneration { .. }) {
        // Already attached here in the current generation: only its config or mode differs.
        return vec![step];
    }
    let mut steps = Vec::new();
    if origin_mode != LocationConfigMode::AttachedStale {
        steps.push(Step::MakeStale {
            node: origin,
            generation: origin_generation,
        });
    }
    steps.extend([
        Step::AttachMulti { node },
        Step::CatchUp { node, origin },
        Step::Finalize { node },
    ]);
    steps
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
        steps.extend(attach_steps(shard, a, step, observed, &active));
    }
    // A location that is (or may be) attached is demoted or detached only once the intended
    // attachment is in place: until then it may be the only one serving.
    let settled = match shard.intent.attached {
        Some(a) => attach_step(shard, a, observed).is_none(),
        None => true,
    };
    let may_serve = |n: NodeId| match observed.get(n) {
        ObservedLocation::Known(c) => c.mode.is_attached(),
        ObservedLocation::Unknown => true,
        ObservedLocation::Absent => false,
    };
    let secondary = shard.secondary_location();
    for s in shard
        .intent
        .secondaries
        .iter()
        .copied()
        .filter(|s| active(*s) && (settled || !may_serve(*s)))
    {
        if !matches(observed.get(s), &secondary) {
            steps.push(Step::MakeSecondary { node: s });
        }
    }
    steps.extend(
        observed
            .nodes()
            .filter(|n| !shard.intent.contains(*n) && active(*n))
            .filter(|n| settled || !may_serve(*n))
            .map(|node| Step::Detach { node }),
    );
    steps
}
