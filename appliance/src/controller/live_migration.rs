//! The live-migration steps of a reconcile (planned by `state_machine::reconcile_plan`), in
//! upstream's order, each followed by a failpoint:
//!
//! 1. `MakeStale`: the origin keeps its generation but goes `AttachedStale` (it stops remote
//!    writes it can avoid and keeps serving reads). Failpoint `live-migration-after-stale`.
//! 2. `AttachMulti`: a new generation for the destination through Raft, then the destination
//!    `AttachedMulti` in it (current, but another attachment may still run: no deletions).
//!    Failpoint `live-migration-after-multi`.
//! 3. `CatchUp`: the origin's `last_record_lsn` of each timeline, then the destination's
//!    `wait_lsn` until it has them all (202 is retried up to `CATCH_UP_WAIT`; a destination
//!    that cannot catch up fails the pass, which leaves the origin stale and serving).
//!    Failpoint `live-migration-after-catch-up`.
//! 4. `Finalize`: the destination `AttachedSingle` in its generation. Compute is told next;
//!    the origin then becomes a secondary or is detached by the ordinary steps.
//!
//! Each step is idempotent and the planner picks the first not yet done from what pageservers
//! hold, so a leader that dies anywhere here is followed by one that carries on.

use std::time::Duration;

use state_machine::ids::TenantShardId;
use state_machine::{Command, Generation, NodeRecord, Response};
use storcon_api::wire::LocationConfigMode;
use tokio::time::Instant;

use super::Controller;
use super::reconcile::ReconcileError;

/// How long a destination may take to reach the origin's LSNs before the pass fails.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);
/// One `wait_lsn` call's own timeout.
const WAIT_LSN_CALL: Duration = Duration::from_secs(10);

impl Controller {
    async fn live_failpoint(&self, name: &str) -> Result<(), ReconcileError> {
        self.failpoints
            .hit(name)
            .await
            .map_err(|e| ReconcileError::Failpoint(e.to_string()))
    }

    pub(super) async fn make_stale(
        &self,
        id: TenantShardId,
        origin: &NodeRecord,
        generation: Generation,
    ) -> Result<(), ReconcileError> {
        let shard = self.shard_or_gone(&id)?;
        let mut conf = shard.attached_location(generation);
        conf.mode = LocationConfigMode::AttachedStale;
        tracing::info!(node = %origin.id, %generation, "live migration: origin stale");
        self.put(origin, id, &conf).await?;
        self.live_failpoint("live-migration-after-stale").await
    }

    pub(super) async fn attach_multi(
        &self,
        id: TenantShardId,
        destination: &NodeRecord,
    ) -> Result<(), ReconcileError> {
        let generation = self.new_generation(id, destination).await?;
        let shard = self.shard_or_gone(&id)?;
        let mut conf = shard.attached_location(generation);
        conf.mode = LocationConfigMode::AttachedMulti;
        tracing::info!(node = %destination.id, %generation, "live migration: destination multi");
        self.put(destination, id, &conf).await?;
        self.live_failpoint("live-migration-after-multi").await
    }

    pub(super) async fn catch_up(
        &self,
        id: TenantShardId,
        destination: &NodeRecord,
        origin: &NodeRecord,
    ) -> Result<(), ReconcileError> {
        let ps = |call| {
            move |error| ReconcileError::Pageserver {
                call,
                node: origin.id,
                error,
            }
        };
        let lsns = self
            .ps_for(origin.id)
            .timeline_lsns(origin, id)
            .await
            .map_err(ps("reading the origin's timelines"))?;
        let started = Instant::now();
        if !lsns.is_empty() {
            loop {
                let done = self
                    .ps_for(destination.id)
                    .wait_lsn(destination, id, &lsns, WAIT_LSN_CALL)
                    .await
                    .map_err(|error| ReconcileError::Pageserver {
                        call: "wait_lsn",
                        node: destination.id,
                        error,
                    })?;
                if done {
                    break;
                }
                if started.elapsed() > CATCH_UP_WAIT {
                    return Err(ReconcileError::CatchUp {
                        node: destination.id,
                        waited: started.elapsed(),
                    });
                }
            }
        }
        tracing::info!(
            node = %destination.id,
            timelines = lsns.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "live migration: caught up"
        );
        self.live_failpoint("live-migration-after-catch-up").await
    }

    pub(super) async fn finalize(
        &self,
        id: TenantShardId,
        destination: &NodeRecord,
    ) -> Result<(), ReconcileError> {
        let shard = self.shard_or_gone(&id)?;
        let generation = match (shard.generation, shard.generation_pageserver) {
            (Some(g), Some(holder)) if holder == destination.id => g,
            _ => {
                return Err(ReconcileError::NodeChanged {
                    node: destination.id,
                });
            }
        };
        tracing::info!(node = %destination.id, %generation, "live migration: destination single");
        self.put(destination, id, &shard.attached_location(generation))
            .await
    }

    /// A new generation of `id` for `node`, committed through Raft (a deposed leader cannot).
    pub(super) async fn new_generation(
        &self,
        id: TenantShardId,
        node: &NodeRecord,
    ) -> Result<Generation, ReconcileError> {
        match self
            .propose(Command::IncrementGeneration {
                shard: id,
                node_id: node.id,
            })
            .await
        {
            Ok(Response::Generation(g)) => Ok(g),
            Ok(other) => Err(ReconcileError::UnexpectedAnswer(format!("{other:?}"))),
            Err(e) => Err(ReconcileError::Generation(e)),
        }
    }

    pub(super) fn shard_or_gone(
        &self,
        id: &TenantShardId,
    ) -> Result<state_machine::TenantShard, ReconcileError> {
        self.state
            .read()
            .shard(id)
            .cloned()
            .ok_or(ReconcileError::ShardGone)
    }
}
