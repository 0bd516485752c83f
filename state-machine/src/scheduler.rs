//! The pure scheduler: where each shard's attached and secondary locations should be.
//!
//! Inputs are the replicated state and the leader's view of each node (availability from
//! heartbeats, utilization); the output is a list of new intents for the leader to commit with
//! `Command::SetIntents`. Nothing here reads a clock or does I/O.
//!
//! Scoring follows upstream: candidates are compared by a tuple, lowest wins.
//! - attached: (AZ: preferred < unknown < other, tenant affinity, utilization, attached count, id)
//! - secondary: (AZ: other < unknown < preferred, tenant affinity, utilization, non-home count, id)
//!
//! `affinity` counts the locations of the same tenant's other shards on a node, so shards of one
//! tenant spread out. Overloaded nodes are used only when nothing else is left.

use std::collections::BTreeMap;

use crate::ids::TenantShardId;
use crate::node::NodeId;
use crate::state::State;
use crate::tenant::{Intent, PlacementPolicy, ShardSchedulingPolicy, TenantShard};
use storcon_api::wire::{MaySchedule, SchedulerDump, SchedulerNodeDump, SchedulerUtilization};

/// Utilization score at which a node counts as overloaded (upstream: twice "full").
pub const OVERLOADED_SCORE: u64 = 2_000_000;

/// New intents of a tenant's shards (only those that changed), and the shards that could not
/// be placed with why (they keep their intent).
pub type Placement = (
    Vec<(TenantShardId, Intent)>,
    Vec<(TenantShardId, ScheduleError)>,
);

/// The leader's view of one node when scheduling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: NodeId,
    pub az: String,
    /// Heartbeats succeed (Active or WarmingUp). An unavailable node's attachments fail over.
    pub available: bool,
    /// Available and its scheduling policy accepts new work.
    pub may_schedule: bool,
    pub utilization_score: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("no pageservers are registered")]
    NoPageservers,
    #[error("no schedulable pageserver satisfies the constraints")]
    ImpossibleConstraint,
}

#[derive(Debug, Clone, Copy, Default)]
struct Load {
    attached: usize,
    total: usize,
    home: usize,
}

pub struct Scheduler {
    nodes: BTreeMap<NodeId, NodeView>,
    load: BTreeMap<NodeId, Load>,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Attached,
    Secondary,
}

impl Scheduler {
    /// Builds the scheduler with the load implied by every current intent.
    pub fn new(state: &State, nodes: impl IntoIterator<Item = NodeView>) -> Scheduler {
        let nodes: BTreeMap<NodeId, NodeView> = nodes.into_iter().map(|n| (n.id, n)).collect();
        // From the shard table's per-node counts, not a pass over every shard: this runs for
        // every tenant creation and every metrics scrape.
        let load = state
            .shards
            .nodes()
            .map(|(id, on)| {
                let home = nodes.get(&id).map_or(0, |n| on.preferring(&n.az));
                let load = Load {
                    attached: on.attached,
                    total: on.intended.len(),
                    home,
                };
                (id, load)
            })
            .filter(|(_, l)| l.total > 0)
            .collect();
        Scheduler { nodes, load }
    }

    fn account(&mut self, intent: &Intent, preferred_az: Option<&str>, sign: isize) {
        let nodes = &self.nodes;
        let mut bump = |node: NodeId, attached: bool| {
            let home = nodes
                .get(&node)
                .is_some_and(|n| Some(n.az.as_str()) == preferred_az);
            let l = self.load.entry(node).or_default();
            let add = |v: &mut usize| *v = v.saturating_add_signed(sign);
            add(&mut l.total);
            if attached {
                add(&mut l.attached);
            }
            if home {
                add(&mut l.home);
            }
        };
        if let Some(a) = intent.attached {
            bump(a, true);
        }
        for s in &intent.secondaries {
            bump(*s, false);
        }
    }

    /// Every node as this scheduler sees it (`GET /debug/v1/scheduler`): the locations counted
    /// from the intents it was built with, its AZ, and whether and at what utilization it
    /// takes new work.
    pub fn dump(&self) -> SchedulerDump {
        let nodes = self
            .nodes
            .values()
            .map(|n| {
                let load = self.load.get(&n.id).copied().unwrap_or_default();
                let may_schedule = if n.may_schedule {
                    MaySchedule::Yes(SchedulerUtilization {
                        utilization_score: n.utilization_score,
                    })
                } else {
                    MaySchedule::No
                };
                let node = SchedulerNodeDump {
                    shard_count: load.total,
                    attached_shard_count: load.attached,
                    secondary_shard_count: load.total.saturating_sub(load.attached),
                    home_shard_count: load.home,
                    az: n.az.clone(),
                    may_schedule,
                    available: n.available,
                };
                (n.id, node)
            })
            .collect();
        SchedulerDump { nodes }
    }

    /// The AZ for a new tenant: among AZs with a schedulable node, the one with the fewest home
    /// shards per node (ties by name).
    pub fn choose_az(&self) -> Option<String> {
        let mut per_az: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for n in self.nodes.values().filter(|n| n.may_schedule) {
            let e = per_az.entry(n.az.as_str()).or_default();
            e.0 += self.load.get(&n.id).map_or(0, |l| l.home);
            e.1 += 1;
        }
        let max_nodes = per_az.values().map(|(_, c)| *c).max()?;
        per_az
            .into_iter()
            .min_by_key(|(az, (home, count))| (home * max_nodes / count, *az))
            .map(|(az, _)| az.to_string())
    }

    /// New intents for the shards of one tenant (in shard order). Only changed intents are
    /// returned; shards that cannot be placed are returned with their error and keep their intent.
    #[allow(clippy::type_complexity)]
    pub fn schedule_tenant<'a>(
        &mut self,
        shards: impl IntoIterator<Item = &'a TenantShard>,
    ) -> Placement {
        let shards: Vec<&TenantShard> = shards.into_iter().collect();
        // Affinity context: every location of this tenant, updated as shards are placed.
        let mut affinity: BTreeMap<NodeId, usize> = BTreeMap::new();
        for s in &shards {
            for n in s.intent.nodes() {
                *affinity.entry(n).or_default() += 1;
            }
        }
        let mut changed = Vec::new();
        let mut errors = Vec::new();
        for shard in shards {
            for n in shard.intent.nodes() {
                if let Some(c) = affinity.get_mut(&n) {
                    *c = c.saturating_sub(1);
                }
            }
            let result = self.schedule_shard(shard, &affinity);
            let intent = match result {
                Ok(intent) => intent,
                Err(e) => {
                    errors.push((shard.id, e));
                    shard.intent.clone()
                }
            };
            for n in intent.nodes() {
                *affinity.entry(n).or_default() += 1;
            }
            if intent != shard.intent {
                let az = shard.preferred_az.as_deref();
                self.account(&shard.intent, az, -1);
                self.account(&intent, az, 1);
                changed.push((shard.id, intent));
            }
        }
        (changed, errors)
    }

    fn schedule_shard(
        &self,
        shard: &TenantShard,
        affinity: &BTreeMap<NodeId, usize>,
    ) -> Result<Intent, ScheduleError> {
        if shard.splitting
            || matches!(
                shard.scheduling,
                ShardSchedulingPolicy::Pause | ShardSchedulingPolicy::Stop
            )
        {
            return Ok(shard.intent.clone());
        }
        if self.nodes.is_empty() && shard.placement != PlacementPolicy::Detached {
            return Err(ScheduleError::NoPageservers);
        }
        let az = shard.preferred_az.as_deref();
        // Nodes that were deleted no longer hold anything.
        let mut intent = Intent {
            attached: shard.intent.attached.filter(|n| self.nodes.contains_key(n)),
            secondaries: shard
                .intent
                .secondaries
                .iter()
                .copied()
                .filter(|n| self.nodes.contains_key(n))
                .collect(),
        };
        match shard.placement {
            PlacementPolicy::Detached => return Ok(Intent::default()),
            PlacementPolicy::Attached(want) => {
                if let Some(a) = intent.attached
                    && !self.is_available(a)
                    && self.nodes.values().any(|n| n.may_schedule && n.id != a)
                {
                    // Fail over: keep the lost node as a secondary so it is reused when it
                    // returns; never demote when no other node could take the attachment.
                    intent.attached = None;
                    intent.secondaries.insert(0, a);
                }
                if intent.attached.is_none() {
                    let promoted = self.best(Role::Attached, az, affinity, |n| {
                        intent.secondaries.contains(&n)
                    });
                    let chosen = match promoted {
                        Some(n) => Some(n),
                        None => self.best(Role::Attached, az, affinity, |n| !intent.contains(n)),
                    };
                    let chosen = chosen.ok_or(ScheduleError::ImpossibleConstraint)?;
                    intent.secondaries.retain(|s| *s != chosen);
                    intent.attached = Some(chosen);
                }
                while intent.secondaries.len() < want {
                    match self.best(Role::Secondary, az, affinity, |n| !intent.contains(n)) {
                        Some(n) => intent.secondaries.push(n),
                        None => break,
                    }
                }
                // A failover keeps the lost node as a secondary; beyond what the policy wants,
                // drop unavailable secondaries (the optimiser's job for available ones).
                while intent.secondaries.len() > want {
                    match intent
                        .secondaries
                        .iter()
                        .rposition(|n| !self.is_available(*n))
                    {
                        Some(i) => {
                            intent.secondaries.remove(i);
                        }
                        None => break,
                    }
                }
            }
            PlacementPolicy::Secondary => {
                if let Some(a) = intent.attached.take() {
                    intent.secondaries.insert(0, a);
                }
                if intent.secondaries.is_empty() {
                    let n = self
                        .best(Role::Attached, az, affinity, |_| true)
                        .ok_or(ScheduleError::ImpossibleConstraint)?;
                    intent.secondaries.push(n);
                }
                // Keep one, preferring the preferred AZ, then an available node.
                let keep = intent
                    .secondaries
                    .iter()
                    .copied()
                    .min_by_key(|n| (!self.in_az(*n, az), !self.is_available(*n), *n));
                intent.secondaries = keep.into_iter().collect();
            }
        }
        Ok(intent.normalized())
    }

    fn is_available(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| n.available)
    }

    fn in_az(&self, node: NodeId, az: Option<&str>) -> bool {
        az.is_some() && self.nodes.get(&node).map(|n| n.az.as_str()) == az
    }

    /// The best schedulable node among those `allowed`, by the role's score tuple.
    fn best(
        &self,
        role: Role,
        az: Option<&str>,
        affinity: &BTreeMap<NodeId, usize>,
        allowed: impl Fn(NodeId) -> bool,
    ) -> Option<NodeId> {
        let candidates: Vec<&NodeView> = self
            .nodes
            .values()
            .filter(|n| n.may_schedule && allowed(n.id))
            .collect();
        let relaxed = candidates
            .iter()
            .all(|n| n.utilization_score >= OVERLOADED_SCORE);
        candidates
            .into_iter()
            .filter(|n| relaxed || n.utilization_score < OVERLOADED_SCORE)
            .min_by_key(|n| {
                let load = self.load.get(&n.id).copied().unwrap_or_default();
                let az_rank = match (az, role) {
                    (None, _) => 1,
                    (Some(p), Role::Attached) => {
                        if n.az == p {
                            0
                        } else {
                            2
                        }
                    }
                    (Some(p), Role::Secondary) => {
                        if n.az == p {
                            2
                        } else {
                            0
                        }
                    }
                };
                let count = match role {
                    Role::Attached => load.attached,
                    Role::Secondary => load.total - load.home.min(load.total),
                };
                (
                    az_rank,
                    affinity.get(&n.id).copied().unwrap_or(0),
                    n.utilization_score,
                    count,
                    n.id,
                )
            })
            .map(|n| n.id)
    }
}
