//! The shard-split driver (upstream 5.3), run by the leader. In order, with the failpoint each
//! step passes:
//!
//! 1. Validate against the applied state; no side effect on failure (`split-after-validation`).
//! 2. Reconcile the parents and wait until each is attached where its intent says.
//! 3. Commit `BeginSplit`: parents marked splitting, secondaries dropped (`split-after-begin`).
//! 4. Detach the parents' secondary locations, best effort.
//! 5. For each parent in turn, `PUT shard_split` on its node (`split-after-pageserver-split`).
//! 6. Commit `CompleteSplit`, the single commit point (`split-before-complete`,
//!    `split-after-complete`).
//! 7. Detach each parent (`split-parent-detach` before each), schedule the children's
//!    secondaries (the children stay attached on their parent's node, as upstream; the
//!    optimiser spreads them later with prewarmed migrations), reconcile the children, notify
//!    compute with the new stripe size.
//!
//! A dry run (`?dry_run=true`) is step 1 alone: the children and their parents' nodes
//! (`state_machine::preview::split`), with nothing changed.
//!
//! A failure between 3 and 6 queues an abort that retries until it commits; it holds the
//! tenant's lock, so a retried split waits for it. A failure after 6 leaves the rest to the
//! background task that finishes splits: the split stands. A new leader aborts every split it
//! finds recorded (it cannot know how far the old leader got, and only the old leader's term may
//! complete it); a split whose `CompleteSplit` committed is no longer recorded, and its leftover
//! parents are ordinary unknown locations that reconciles detach.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{Command, Response, SplitPlan, SplitRecord};
use storcon_api::wire::{LocationConfig, TenantShardSplitRequest};
use storcon_failpoints::FailpointError;
use storcon_http::OperationError;
use tokio::sync::OwnedRwLockWriteGuard;
use tokio::time::Instant;
use tracing::Instrument;

use super::observed::ObservedLocation;
use super::pageserver::PsError;
use super::{Controller, lock};
use raft_store::ProposeError;
use state_machine::NodeId;
use state_machine::reconcile_plan;

/// Upstream waits this long for the reconciles around a split.
const RECONCILE_WAIT: Duration = Duration::from_secs(30);
/// Pause between attempts of an abort that could not commit, or of a child's detach.
const ABORT_RETRY: Duration = Duration::from_secs(1);
/// Attempts to detach each child of an aborted split before leaving it to the background pass.
const DETACH_ATTEMPTS: u32 = 10;

/// Why a split failed, in the words the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// Refused by the state machine (a 4xx), or not known to have committed.
    #[error("{0}")]
    Proposal(#[from] ProposeError),
    /// The tenant's shards are not where the controller wants them yet; retry.
    #[error("{0}")]
    NotSettled(String),
    #[error("Failed to split {shard}: node {node} is not available")]
    NodeUnavailable { shard: TenantShardId, node: NodeId },
    #[error("Failed to split {shard}: {error}")]
    Pageserver {
        shard: TenantShardId,
        error: PsError,
    },
    #[error("pageserver {node} split {shard} into {created:?}, expected {expected:?}")]
    UnexpectedChildren {
        shard: TenantShardId,
        node: NodeId,
        created: BTreeSet<TenantShardId>,
        expected: BTreeSet<TenantShardId>,
    },
    #[error("unexpected answer to BeginSplit: {0}")]
    UnexpectedAnswer(String),
    #[error("leadership lost")]
    LeadershipLost,
    #[error(transparent)]
    Failpoint(#[from] FailpointError),
}

impl From<SplitError> for OperationError {
    fn from(e: SplitError) -> Self {
        match e {
            SplitError::Proposal(p) => OperationError::Proposal(p),
            SplitError::NotSettled(_) | SplitError::LeadershipLost => {
                OperationError::NotYet(e.to_string())
            }
            SplitError::NodeUnavailable { .. } | SplitError::Pageserver { .. } => {
                OperationError::Conflict(e.to_string())
            }
            SplitError::UnexpectedChildren { .. }
            | SplitError::UnexpectedAnswer(_)
            | SplitError::Failpoint(_) => OperationError::Internal(e.to_string()),
        }
    }
}

/// How far a failed split got: before `BeginSplit` nothing needs undoing.
enum Failure {
    BeforeBegin(SplitError),
    /// Begun (or possibly begun: its proposal failed without an answer); must be aborted.
    Begun(SplitError),
    /// Committed; the rest is finished in the background.
    Committed(SplitError),
}

impl Controller {
    /// The lock serializing splits and aborts of one tenant.
    async fn tenant_op(&self, tenant: TenantId) -> OwnedRwLockWriteGuard<()> {
        self.locks.tenant_exclusive(tenant).await
    }

    async fn failpoint(&self, name: &str) -> Result<(), SplitError> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(SplitError::LeadershipLost),
            r = self.failpoints.hit(name) => Ok(r?),
        }
    }

    /// `PUT /control/v1/tenant/:id/shard_split`.
    pub(super) async fn split_tenant(
        self: &Arc<Self>,
        tenant: TenantId,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
    ) -> Result<Vec<TenantShardId>, SplitError> {
        let guard = self.tenant_op(tenant).await;
        let started = Instant::now();
        match self
            .run_split(tenant, new_shard_count, new_stripe_size)
            .await
        {
            Ok(shards) => {
                tracing::info!(
                    %tenant,
                    new_shard_count,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "split done"
                );
                Ok(shards)
            }
            Err(Failure::BeforeBegin(e)) => Err(e),
            Err(Failure::Begun(e)) => {
                tracing::warn!(%tenant, error = %e, "split failed before its commit; aborting");
                let ctl = self.clone();
                tokio::spawn(
                    async move { ctl.abort_split(tenant, guard).await }
                        .instrument(tracing::info_span!("split_abort", %tenant)),
                );
                Err(e)
            }
            Err(Failure::Committed(e)) => {
                tracing::warn!(%tenant, error = %e, "split committed; finishing it in the background");
                let ctl = self.clone();
                tokio::spawn(
                    async move {
                        ctl.finish_split_quietly(tenant).await;
                        drop(guard);
                    }
                    .instrument(tracing::info_span!("split_finish", %tenant)),
                );
                Err(e)
            }
        }
    }

    async fn run_split(
        &self,
        tenant: TenantId,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
    ) -> Result<Vec<TenantShardId>, Failure> {
        let plan = self
            .state
            .read()
            .plan_split(tenant, new_shard_count, new_stripe_size)
            .map_err(|r| Failure::BeforeBegin(ProposeError::Rejected(r).into()))?;
        let parents: Vec<TenantShardId> = match plan {
            SplitPlan::NoOp(shards) => return Ok(shards),
            SplitPlan::Split { parents, .. } => parents.iter().map(|p| p.id).collect(),
        };
        self.failpoint("split-after-validation")
            .await
            .map_err(Failure::BeforeBegin)?;
        self.settle(&parents).await.map_err(Failure::BeforeBegin)?;

        let record = match self
            .propose(Command::BeginSplit {
                tenant_id: tenant,
                new_shard_count,
                new_stripe_size,
                term: self.term,
            })
            .await
        {
            Ok(Response::SplitBegun(record)) => record,
            Ok(other) => {
                return Err(Failure::Begun(SplitError::UnexpectedAnswer(format!(
                    "{other:?}"
                ))));
            }
            Err(e @ ProposeError::Rejected(_)) => return Err(Failure::BeforeBegin(e.into())),
            // It may still commit: abort to be sure.
            Err(e) => return Err(Failure::Begun(e.into())),
        };
        tracing::info!(%tenant, parents = record.parents.len(), new_shard_count, "split begun");
        // A reconcile of a parent that started before the split began still runs on its old
        // view; no pageserver may split while it can still change the parent's location.
        let parents: Vec<TenantShardId> = record.parents.iter().map(|p| p.id).collect();
        if self
            .wait_passes(parents, Instant::now() + RECONCILE_WAIT)
            .await
            .is_none()
        {
            return Err(Failure::Begun(SplitError::NotSettled(
                "a reconcile of the tenant is still running; retry the split".into(),
            )));
        }
        self.split_on_pageservers(&record)
            .await
            .map_err(Failure::Begun)?;

        self.failpoint("split-before-complete")
            .await
            .map_err(Failure::Begun)?;
        match self
            .propose(Command::CompleteSplit {
                tenant_id: tenant,
                term: self.term,
            })
            .await
        {
            Ok(_) => {}
            Err(e) => return Err(Failure::Begun(e.into())),
        }
        tracing::info!(%tenant, "split committed");
        self.hook.mark_pending(tenant);
        self.failpoint("split-after-complete")
            .await
            .map_err(Failure::Committed)?;
        self.finish_split(&record)
            .await
            .map_err(Failure::Committed)?;
        let mut children: Vec<TenantShardId> = record.children().collect();
        children.sort();
        Ok(children)
    }

    /// Reconciles the parents and checks each is attached, in its current generation, on the
    /// node its intent names: the pageserver splits what it holds.
    async fn settle(&self, parents: &[TenantShardId]) -> Result<(), SplitError> {
        self.reconcile_if_dirty(parents.iter().copied());
        // An old failed pass does not matter: what counts is where the parents are now.
        let deadline = Instant::now() + RECONCILE_WAIT;
        if self
            .wait_passes(parents.iter().copied(), deadline)
            .await
            .is_none()
        {
            return Err(SplitError::NotSettled(
                "the tenant's shards are still being reconciled; retry the split".into(),
            ));
        }
        let state = self.state.read();
        let observed = lock(&self.observed);
        for id in parents {
            // The planner has nothing to do on the intended node: attached there, in the
            // generation issued to it.
            let settled = state.shard(id).is_some_and(|s| {
                s.intent.attached.is_some_and(|node| {
                    reconcile_plan::attach_step(s, node, &observed.locations(id)).is_none()
                })
            });
            if !settled {
                return Err(SplitError::NotSettled(format!(
                    "{id} is not attached where the controller wants it yet; retry the split"
                )));
            }
        }
        Ok(())
    }

    /// Steps 4 and 5: detach the parents' secondaries, then ask each parent's pageserver to
    /// split it. Children are recorded as uncertain on the node before each call, so whatever
    /// the outcome, an abort detaches them.
    async fn split_on_pageservers(&self, record: &SplitRecord) -> Result<(), SplitError> {
        self.failpoint("split-after-begin").await?;
        for p in &record.parents {
            let secondaries: Vec<_> = lock(&self.observed)
                .locations(&p.id)
                .nodes()
                .filter(|n| *n != p.node)
                .collect();
            let Some(shard) = self.state.read().shard(&p.id).cloned() else {
                continue;
            };
            for n in secondaries {
                let Some(node) = self.node_if_active(n) else {
                    continue;
                };
                if let Err(e) = self.put(&node, p.id, &shard.detached_location()).await {
                    // Secondaries are not needed for correctness; a leftover is detached later.
                    tracing::warn!(parent = %p.id, node = %n, error = %e, "could not detach a secondary");
                }
            }
        }
        let request = TenantShardSplitRequest {
            new_shard_count: record.new_shard_count,
            new_stripe_size: Some(record.new_stripe_size),
        };
        for p in &record.parents {
            let node = self
                .node_if_active(p.node)
                .ok_or(SplitError::NodeUnavailable {
                    shard: p.id,
                    node: p.node,
                })?;
            {
                let mut obs = lock(&self.observed);
                obs.set(p.id, p.node, ObservedLocation::Unknown);
                for child in &p.children {
                    obs.set(*child, p.node, ObservedLocation::Unknown);
                }
            }
            let created = self
                .ps_for(p.node)
                .split(&node, p.id, &request, self.cfg.split_request_timeout())
                .await
                .map_err(|error| SplitError::Pageserver { shard: p.id, error })?;
            let expected: BTreeSet<_> = p.children.iter().copied().collect();
            let created: BTreeSet<_> = created.into_iter().collect();
            if created != expected {
                return Err(SplitError::UnexpectedChildren {
                    shard: p.id,
                    node: p.node,
                    created,
                    expected,
                });
            }
            tracing::info!(parent = %p.id, node = %p.node, children = created.len(), "pageserver split");
            self.failpoint("split-after-pageserver-split").await?;
        }
        Ok(())
    }

    /// Step 7, after the commit: detach the parents, give the children secondaries, reconcile
    /// them and tell compute. Errors here do not undo anything.
    async fn finish_split(&self, record: &SplitRecord) -> Result<(), SplitError> {
        for p in &record.parents {
            self.failpoint("split-parent-detach").await?;
            if let Some(node) = self.node_if_active(p.node) {
                let seq = self.reconciles.push(p.id);
                // The parent is gone from the state: its reconcile detaches it everywhere.
                let done = self
                    .reconciles
                    .wait(p.id, seq, Instant::now() + RECONCILE_WAIT)
                    .await;
                if done != Some(true) {
                    tracing::warn!(parent = %p.id, node = %node.id, "parent not detached yet; the background pass retries");
                }
            }
        }
        self.schedule_and_reconcile(record.tenant_id).await;
        Ok(())
    }

    /// Schedules a tenant (children stay attached on their parent's node, as upstream, and get
    /// secondaries; the optimiser spreads them later with prewarmed migrations; aborted parents
    /// get their secondaries back), reconciles what differs, waits a while, tells compute.
    async fn schedule_and_reconcile(&self, tenant: TenantId) {
        match self.schedule(&BTreeSet::from([tenant])).await {
            Ok(s) if !s.unschedulable.is_empty() => {
                tracing::warn!(%tenant, unplaced = s.unschedulable.len(), "shards without a full placement for now");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%tenant, error = %e, "scheduling the children failed"),
        }
        let shards: Vec<TenantShardId> = self
            .state
            .read()
            .tenant_shards(tenant)
            .map(|s| s.id)
            .collect();
        self.reconcile_if_dirty(shards.iter().copied());
        let deadline = Instant::now() + RECONCILE_WAIT;
        if !self.wait_reconciles(shards, deadline).await {
            tracing::warn!(%tenant, "shards not reconciled yet; the background pass retries");
        }
        self.notify_compute(tenant).await;
    }

    /// The background end of a split whose commit landed but whose finishing step failed:
    /// leftover parents are detached, the children scheduled and reconciled.
    async fn finish_split_quietly(&self, tenant: TenantId) {
        self.hook.mark_pending(tenant);
        let observed = lock(&self.observed).shard_ids();
        let leftovers: Vec<TenantShardId> = {
            let state = self.state.read();
            observed
                .into_iter()
                .filter(|id| id.tenant_id == tenant && !state.knows_shard(id))
                .collect()
        };
        for id in leftovers {
            self.reconciles.push(id);
        }
        self.schedule_and_reconcile(tenant).await;
    }

    /// Commits `AbortSplit`, retrying until it commits or this leader stops. `None` when there
    /// was nothing to abort (never begun, already aborted, or completed).
    async fn commit_abort(&self, tenant: TenantId) -> Option<SplitRecord> {
        loop {
            match self
                .propose(Command::AbortSplit { tenant_id: tenant })
                .await
            {
                Ok(Response::SplitAborted(record)) => {
                    tracing::info!(%tenant, "split aborted");
                    return Some(record);
                }
                Ok(_) | Err(ProposeError::Rejected(_)) => return None,
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "abort not committed yet; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return None,
                        _ = tokio::time::sleep(ABORT_RETRY) => {}
                    }
                }
            }
        }
    }

    /// Rolls a split back: commit the abort, detach the children where their nodes are
    /// reachable, let the parents be reconciled and their secondaries restored. Holds the
    /// tenant's lock throughout, so a retried split starts from the rolled-back tenant.
    async fn abort_split(self: Arc<Self>, tenant: TenantId, _guard: OwnedRwLockWriteGuard<()>) {
        let Some(record) = self.commit_abort(tenant).await else {
            if !self.cancel.is_cancelled() {
                // A commit we had no answer for may have landed: detach whatever it left.
                self.finish_split_quietly(tenant).await;
            }
            return;
        };
        self.detach_children(&record).await;
        self.schedule_and_reconcile(tenant).await;
    }

    /// Detaches an aborted split's children on every reachable parent node, a few attempts
    /// each (as upstream). A node that is not Active is skipped: its activation check detaches
    /// whatever the controller does not know. A child left after the attempts stays in the
    /// observed state as a location of an unknown shard, which the background pass detaches.
    async fn detach_children(&self, record: &SplitRecord) {
        for p in &record.parents {
            for child in &p.children {
                for attempt in 1..=DETACH_ATTEMPTS {
                    let Some(node) = self.node_if_active(p.node) else {
                        break;
                    };
                    let detached = LocationConfig::detached_unknown(*child);
                    match self.put(&node, *child, &detached).await {
                        Ok(()) => break,
                        Err(e) if attempt == DETACH_ATTEMPTS => {
                            tracing::warn!(%child, node = %p.node, error = %e, "child not detached; the background pass retries");
                        }
                        Err(e) => {
                            tracing::warn!(%child, node = %p.node, error = %e, "child not detached; retrying");
                            tokio::select! {
                                _ = self.cancel.cancelled() => return,
                                _ = tokio::time::sleep(ABORT_RETRY) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// A new leader's first step, before it lists the pageservers: abort every split the
    /// previous leader left recorded. The children it may have created are then unknown
    /// locations, which the activation check detaches.
    pub(super) async fn abort_recorded_splits(&self) {
        let tenants: Vec<TenantId> = self
            .state
            .read()
            .split_records()
            .map(|r| r.tenant_id)
            .collect();
        for tenant in tenants {
            tracing::info!(%tenant, "a split was in flight at the leadership change; aborting it");
            self.commit_abort(tenant).await;
        }
    }
}
