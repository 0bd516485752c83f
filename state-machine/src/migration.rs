//! Graceful migrations of a shard's attachment as replicated state (upstream section 5.4, with
//! the warm-up recorded so a new leader carries it on).
//!
//! - `StartMigration` with `prewarm`: the destination becomes a secondary of the shard (if it
//!   was not one) and a [`MigrationRecord`] is stored. The leader warms the secondary up, then
//!   commits `CutoverMigration`. Without `prewarm`, the cut-over happens at once and nothing is
//!   recorded.
//! - `CutoverMigration`: the intent's attachment moves to the destination and the record goes.
//!   The origin stays as a secondary only if the policy wants more secondaries than are left.
//!   The reconciler then moves the attachment live (origin `AttachedStale`, destination
//!   `AttachedMulti` in a new generation, catch-up, destination `AttachedSingle`).
//! - `CancelMigration`: the record goes, and so does a secondary added only for the warm-up.
//!
//! Invariants (checked in `State::validate`): a record's shard exists, is attached by intent on
//! the record's origin, and has the destination among its secondaries; the destination takes
//! new work (Active or Filling). Any other change that breaks this (a failover, a policy
//! change, a node drop, a drain or delete of the destination) ends the migration: the record
//! is pruned in the same command, with a secondary added only for it.

use serde::{Deserialize, Serialize};

use crate::command::{Rejection, Response};
use crate::ids::TenantShardId;
use crate::node::{NodeId, NodeSchedulingPolicy};
use crate::rows::{self, Mutation};
use crate::state::State;
use crate::tenant::{PlacementPolicy, TenantShard};

type Applied = Result<(Response, Vec<Mutation>), Rejection>;

/// A migration warming its destination up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    pub shard: TenantShardId,
    pub origin: NodeId,
    pub destination: NodeId,
    /// The destination was made a secondary for the warm-up (a cancel removes it again).
    pub added_secondary: bool,
    /// How long the warm-up may take in all, and each download request.
    pub warmup_timeout_ms: u64,
    pub download_request_timeout_ms: u64,
}

/// What a migrate request asks, as the leader proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartMigration {
    pub shard: TenantShardId,
    pub origin: NodeId,
    pub destination: NodeId,
    pub prewarm: bool,
    pub warmup_timeout_ms: u64,
    pub download_request_timeout_ms: u64,
}

/// The secondaries a shard's policy wants.
fn wanted_secondaries(shard: &TenantShard) -> usize {
    match shard.placement {
        PlacementPolicy::Attached(n) => n,
        _ => 0,
    }
}

/// Moves the intent's attachment to `destination`; the origin stays a secondary only while
/// the policy wants more secondaries than are left.
pub fn cut_over(shard: &mut TenantShard, destination: NodeId) {
    let origin = shard.intent.attached;
    shard.intent.secondaries.retain(|n| *n != destination);
    shard.intent.attached = Some(destination);
    if let Some(o) = origin.filter(|o| *o != destination)
        && shard.intent.secondaries.len() < wanted_secondaries(shard)
    {
        shard.intent.secondaries.insert(0, o);
    }
}

impl State {
    pub fn migration(&self, shard: &TenantShardId) -> Option<&MigrationRecord> {
        self.migrations.get(shard)
    }

    pub fn migrations(&self) -> impl Iterator<Item = &MigrationRecord> {
        self.migrations.values()
    }

    /// Checks a migrate request against the state: the shard is attached by policy on
    /// `origin`, not splitting, and `destination` is another registered node.
    pub fn check_migration(
        &self,
        shard: TenantShardId,
        origin: NodeId,
        destination: NodeId,
    ) -> Result<&TenantShard, Rejection> {
        let s = self
            .shards
            .get(&shard)
            .ok_or_else(|| Rejection::NotFound(format!("Tenant shard {shard} not found")))?;
        if !matches!(s.placement, PlacementPolicy::Attached(_)) {
            return Err(Rejection::BadRequest(format!(
                "{shard} has placement policy {:?}: nothing to migrate",
                s.placement
            )));
        }
        if s.splitting {
            return Err(Rejection::Conflict(format!("{shard} is splitting")));
        }
        if !self.nodes.contains_key(&destination) {
            return Err(Rejection::BadRequest(format!(
                "Node {destination} not found"
            )));
        }
        if s.intent.attached != Some(origin) {
            return Err(Rejection::PreconditionFailed(format!(
                "{shard} is attached on {:?}, not on node {origin}",
                s.intent.attached
            )));
        }
        if origin == destination {
            return Err(Rejection::BadRequest(format!(
                "{shard} is already attached on node {destination}"
            )));
        }
        Ok(s)
    }

    pub(crate) fn start_migration(&mut self, m: &StartMigration) -> Applied {
        let mut shard = self
            .check_migration(m.shard, m.origin, m.destination)?
            .clone();
        let mut muts = Vec::new();
        // A migration already warming up is replaced by this one.
        if let Some(old) = self.migrations.remove(&m.shard) {
            if old.added_secondary && old.destination != m.destination {
                shard.intent.secondaries.retain(|n| *n != old.destination);
            }
            muts.push(rows::delete(rows::migration_key(&m.shard)));
        }
        if m.prewarm && !self.takes_migrations(m.destination) {
            return Err(Rejection::PreconditionFailed(format!(
                "Node {} takes no new work: nothing can warm up there",
                m.destination
            )));
        }
        if m.prewarm {
            let added = !shard.intent.secondaries.contains(&m.destination);
            if added {
                shard.intent.secondaries.push(m.destination);
            }
            let record = MigrationRecord {
                shard: m.shard,
                origin: m.origin,
                destination: m.destination,
                added_secondary: added,
                warmup_timeout_ms: m.warmup_timeout_ms,
                download_request_timeout_ms: m.download_request_timeout_ms,
            };
            muts.push(rows::put(rows::migration_key(&m.shard), &record));
            self.migrations.insert(m.shard, record);
        } else {
            cut_over(&mut shard, m.destination);
        }
        muts.push(self.put_shard(shard));
        Ok((Response::Done, muts))
    }

    pub(crate) fn cutover_migration(&mut self, id: TenantShardId, destination: NodeId) -> Applied {
        let record = self
            .migrations
            .get(&id)
            .filter(|r| r.destination == destination)
            .cloned()
            .ok_or_else(|| {
                Rejection::Conflict(format!(
                    "no migration of {id} to node {destination} is in progress"
                ))
            })?;
        let mut shard = self
            .check_migration(id, record.origin, destination)?
            .clone();
        cut_over(&mut shard, destination);
        self.migrations.remove(&id);
        let muts = vec![
            rows::delete(rows::migration_key(&id)),
            self.put_shard(shard),
        ];
        Ok((Response::Done, muts))
    }

    pub(crate) fn cancel_migration(&mut self, id: TenantShardId) -> Applied {
        let Some(record) = self.migrations.remove(&id) else {
            return Ok((Response::Done, Vec::new()));
        };
        let mut muts = vec![rows::delete(rows::migration_key(&id))];
        if record.added_secondary
            && let Some(mut shard) = self.shards.get(&id).cloned()
        {
            shard
                .intent
                .secondaries
                .retain(|n| *n != record.destination);
            muts.push(self.put_shard(shard));
        }
        Ok((Response::Done, muts))
    }

    /// Ends every migration whose shard no longer fits it (deleted, split, attached elsewhere,
    /// destination no longer a secondary): run after every command, so the invariant holds.
    pub(crate) fn prune_migrations(&mut self) -> Vec<Mutation> {
        let stale: Vec<TenantShardId> = self
            .migrations
            .values()
            .filter(|r| !self.migration_fits(r))
            .map(|r| r.shard)
            .collect();
        let mut muts = Vec::new();
        for id in stale {
            let Some(record) = self.migrations.remove(&id) else {
                continue;
            };
            muts.push(rows::delete(rows::migration_key(&id)));
            // A secondary added only for the warm-up goes with it.
            if record.added_secondary
                && let Some(shard) = self.shards.get(&id)
                && shard.intent.secondaries.contains(&record.destination)
            {
                let mut shard = shard.clone();
                shard
                    .intent
                    .secondaries
                    .retain(|n| *n != record.destination);
                muts.push(self.put_shard(shard));
            }
        }
        muts
    }

    pub(crate) fn migration_fits(&self, r: &MigrationRecord) -> bool {
        self.takes_migrations(r.destination)
            && self.shards.get(&r.shard).is_some_and(|s| {
                !s.splitting
                    && s.intent.attached == Some(r.origin)
                    && s.intent.secondaries.contains(&r.destination)
            })
    }

    /// A prewarmed migration may end on `node`: it takes new work (a drain or delete of it
    /// ends the migrations warming up towards it, so none cuts over onto a node being emptied).
    fn takes_migrations(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| {
            matches!(
                n.scheduling,
                NodeSchedulingPolicy::Active | NodeSchedulingPolicy::Filling
            )
        })
    }
}
