//! Shard splits as replicated state (upstream section 5.3, with Raft as the transaction).
//!
//! A split is three commands:
//! - `BeginSplit` validates against the applied state, marks the parents splitting, drops their
//!   secondary intents and stores a [`SplitRecord`] naming each parent's node and generation and
//!   its children. Nothing may then change a parent's placement or generation by intent.
//! - `CompleteSplit` is the single commit point: the parents' rows are replaced by their children,
//!   attached on the parent's node in the parent's generation, and the record goes away.
//! - `AbortSplit` clears the marker and the record; the parents carry on as before.
//!
//! Invariants:
//! - a tenant is at one shard count in the state at every moment: children exist only after the
//!   commit, parents only before it, so no state holds both or neither;
//! - only the term that began a split can complete it; any term can abort it, so a new leader
//!   that finds a record aborts it and a deposed leader's late `CompleteSplit` is refused; a
//!   `BeginSplit` of a term older than the recorded leader's is refused, so a past term's
//!   controller cannot record a split after the current one cleared them at its start;
//! - completion is refused if a parent's generation moved since `BeginSplit` (a pageserver
//!   re-attached meanwhile and dropped the children it had made).

use serde::{Deserialize, Serialize};

use crate::Term;
use crate::command::{Rejection, Response};
use crate::ids::{TenantId, TenantShardId};
use crate::node::NodeId;
use crate::rows::{self, Mutation};
use crate::state::State;
use crate::tenant::{Generation, Intent, PlacementPolicy, ShardSchedulingPolicy, TenantShard};

type Applied = Result<(Response, Vec<Mutation>), Rejection>;

/// One parent of a split in flight: where it is attached and in which generation, and the
/// children the pageserver is asked to create from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitParent {
    pub id: TenantShardId,
    pub node: NodeId,
    pub generation: Generation,
    pub children: Vec<TenantShardId>,
}

/// A split that has begun and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub tenant_id: TenantId,
    pub new_shard_count: u8,
    pub new_stripe_size: u32,
    /// The leader term that began the split; only it may complete it.
    pub term: Term,
    pub parents: Vec<SplitParent>,
}

impl SplitRecord {
    pub fn children(&self) -> impl Iterator<Item = TenantShardId> + '_ {
        self.parents.iter().flat_map(|p| p.children.iter().copied())
    }
}

/// What a split request amounts to against the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitPlan {
    /// Already at the requested count: the current shards are the answer.
    NoOp(Vec<TenantShardId>),
    Split {
        new_shard_count: u8,
        new_stripe_size: u32,
        parents: Vec<SplitParent>,
    },
}

impl State {
    pub fn split_record(&self, tenant_id: TenantId) -> Option<&SplitRecord> {
        self.splits.get(&tenant_id)
    }

    pub fn split_records(&self) -> impl Iterator<Item = &SplitRecord> {
        self.splits.values()
    }

    /// A shard the controller owns: an existing one, or a child a split in flight is creating.
    /// Locations of anything else on a pageserver are leftovers to detach.
    pub fn knows_shard(&self, id: &TenantShardId) -> bool {
        self.shards.contains_key(id)
            || self
                .splits
                .get(&id.tenant_id)
                .is_some_and(|r| r.children().any(|c| c == *id))
    }

    /// Validates a split request, with upstream's answers. Used by the handler before anything
    /// happens and again by `BeginSplit` itself, so a race between them is caught at apply.
    pub fn plan_split(
        &self,
        tenant_id: TenantId,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
    ) -> Result<SplitPlan, Rejection> {
        let shards: Vec<&TenantShard> = self.tenant_shards(tenant_id).collect();
        let Some(first) = shards.first() else {
            return Err(Rejection::NotFound(format!("Tenant {tenant_id} not found")));
        };
        if self.splits.contains_key(&tenant_id) {
            return Err(Rejection::Conflict(format!(
                "Tenant {tenant_id} is already splitting"
            )));
        }
        let current = first.id.shard_count.count();
        if new_shard_count == 0 {
            return Err(Rejection::BadRequest(
                "new_shard_count must be positive".into(),
            ));
        }
        if current > new_shard_count {
            return Err(Rejection::BadRequest(format!(
                "Requested count {new_shard_count} but already have shards at count {current}"
            )));
        }
        if current == new_shard_count {
            return Ok(SplitPlan::NoOp(shards.iter().map(|s| s.id).collect()));
        }
        if !new_shard_count.is_multiple_of(current) {
            return Err(Rejection::BadRequest(format!(
                "Requested count {new_shard_count} is not a multiple of the current count {current}"
            )));
        }
        let stripe = match new_stripe_size {
            Some(0) => {
                return Err(Rejection::BadRequest(
                    "new_stripe_size must be positive".into(),
                ));
            }
            Some(s) if current > 1 && s != first.stripe_size => {
                return Err(Rejection::BadRequest(format!(
                    "Cannot change stripe size of a tenant with {current} shards"
                )));
            }
            Some(s) => s,
            None => first.stripe_size,
        };
        let mut parents = Vec::with_capacity(shards.len());
        for s in &shards {
            if s.scheduling == ShardSchedulingPolicy::Stop {
                return Err(Rejection::BadRequest(format!(
                    "Cannot split a tenant whose shard {} has scheduling policy Stop",
                    s.id
                )));
            }
            let attached = s
                .intent
                .attached
                .filter(|_| matches!(s.placement, PlacementPolicy::Attached(_)));
            let (Some(node), Some(generation)) = (attached, s.generation) else {
                return Err(Rejection::BadRequest(
                    "Cannot split a tenant that is not attached".into(),
                ));
            };
            if s.generation_pageserver != Some(node) {
                return Err(Rejection::Conflict(format!(
                    "Shard {} is being moved to node {node}; retry the split when it settles",
                    s.id
                )));
            }
            parents.push(SplitParent {
                id: s.id,
                node,
                generation,
                children: s.id.split_children(new_shard_count),
            });
        }
        Ok(SplitPlan::Split {
            new_shard_count,
            new_stripe_size: stripe,
            parents,
        })
    }

    pub(crate) fn begin_split(
        &mut self,
        tenant_id: TenantId,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
        term: Term,
    ) -> Applied {
        // A controller of a past term whose replica leads again must not start a split: the
        // current term's controller already aborted whatever was recorded when it started.
        if let Some(leader) = self.leader()
            && leader.term > term
        {
            return Err(Rejection::Conflict(format!(
                "term {term} is not the current leader's term {}",
                leader.term
            )));
        }
        let (new_shard_count, new_stripe_size, parents) =
            match self.plan_split(tenant_id, new_shard_count, new_stripe_size)? {
                SplitPlan::NoOp(_) => {
                    return Err(Rejection::Conflict(format!(
                        "Tenant {tenant_id} is already at {new_shard_count} shards"
                    )));
                }
                SplitPlan::Split {
                    new_shard_count,
                    new_stripe_size,
                    parents,
                } => (new_shard_count, new_stripe_size, parents),
            };
        let mut muts = Vec::with_capacity(parents.len() + 1);
        for p in &parents {
            if let Some(mut shard) = self.shards.get(&p.id).cloned() {
                shard.splitting = true;
                shard.intent.secondaries.clear();
                muts.push(self.put_shard(shard));
            }
        }
        let record = SplitRecord {
            tenant_id,
            new_shard_count,
            new_stripe_size,
            term,
            parents,
        };
        muts.push(rows::put(rows::split_key(tenant_id), &record));
        self.splits.insert(tenant_id, record.clone());
        Ok((Response::SplitBegun(record), muts))
    }

    pub(crate) fn complete_split(&mut self, tenant_id: TenantId, term: Term) -> Applied {
        let Some(record) = self.splits.get(&tenant_id).cloned() else {
            return Err(Rejection::NotFound(format!(
                "Tenant {tenant_id} has no split in progress"
            )));
        };
        if record.term != term {
            return Err(Rejection::Conflict(format!(
                "split of {tenant_id} was begun in term {}; term {term} cannot complete it",
                record.term
            )));
        }
        let mut parents = Vec::with_capacity(record.parents.len());
        for p in &record.parents {
            match self.shards.get(&p.id) {
                Some(s) if s.generation == Some(p.generation) => parents.push(s.clone()),
                Some(s) => {
                    return Err(Rejection::Conflict(format!(
                        "{}: generation moved from {} to {:?} during the split",
                        p.id, p.generation, s.generation
                    )));
                }
                None => {
                    return Err(Rejection::Conflict(format!(
                        "{} disappeared during the split",
                        p.id
                    )));
                }
            }
        }
        let mut muts = Vec::new();
        for (parent, p) in parents.into_iter().zip(&record.parents) {
            self.shards.remove(&parent.id);
            muts.push(rows::delete(rows::shard_key(&parent.id)));
            for child in &p.children {
                muts.push(self.put_shard(TenantShard {
                    id: *child,
                    stripe_size: record.new_stripe_size,
                    generation: Some(p.generation),
                    generation_pageserver: Some(p.node),
                    placement: parent.placement,
                    config: parent.config.clone(),
                    scheduling: ShardSchedulingPolicy::Active,
                    preferred_az: parent.preferred_az.clone(),
                    intent: Intent {
                        attached: Some(p.node),
                        secondaries: Vec::new(),
                    },
                    splitting: false,
                }));
            }
        }
        self.splits.remove(&tenant_id);
        muts.push(rows::delete(rows::split_key(tenant_id)));
        Ok((Response::Done, muts))
    }

    pub(crate) fn abort_split(&mut self, tenant_id: TenantId) -> Applied {
        let Some(record) = self.splits.remove(&tenant_id) else {
            return Err(Rejection::NotFound(format!(
                "Tenant {tenant_id} has no split in progress"
            )));
        };
        let mut muts = Vec::with_capacity(record.parents.len() + 1);
        for p in &record.parents {
            if let Some(mut shard) = self.shards.get(&p.id).cloned() {
                shard.splitting = false;
                muts.push(self.put_shard(shard));
            }
        }
        muts.push(rows::delete(rows::split_key(tenant_id)));
        Ok((Response::SplitAborted(record), muts))
    }

    /// Refuses a command that would change a splitting tenant under the split's feet.
    pub(crate) fn refuse_if_splitting(&self, tenant_id: TenantId) -> Result<(), Rejection> {
        if self.splits.contains_key(&tenant_id) {
            return Err(Rejection::Conflict(format!(
                "Tenant {tenant_id} is splitting; retry when the split is done"
            )));
        }
        Ok(())
    }
}
