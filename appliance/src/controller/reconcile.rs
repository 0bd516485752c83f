//! Reconciling one shard: the executor of `state_machine::reconcile_plan`, which decides the
//! steps (read back, attach in a new or the current generation, make secondary, detach) in
//! upstream's order. Here they are carried out:
//!
//! 1. A read-back first, then the shard is planned again from what was read.
//! 2. An attach in a new generation commits `IncrementGeneration` through Raft first (a deposed
//!    leader cannot), then `PUT location_config` AttachedSingle in it; compute is notified of a
//!    new attachment before anything is detached.
//! 3. A live migration (origin stale, destination multi, catch-up, destination single) runs its
//!    steps in order (`live_migration.rs`); a failed one ends the pass there.
//! 4. Secondaries and detaches: one `PUT` each; a failure is reported and the rest carry on.
//!
//! Only Active nodes are called; others are skipped and handled when they come back. Before a
//! call the observed entry becomes uncertain, and only a success makes it certain again.
//! At most one reconcile per shard runs at a time; a request while one runs queues another
//! pass after it. Requests carry sequence numbers, so an API call waits for the pass that
//! covers its own request, not for the shard to be quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use state_machine::ids::TenantShardId;
use state_machine::reconcile_plan::{self, Step};
use state_machine::{Generation, NodeId, NodeRecord};
use storcon_api::wire::LocationConfig;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::nodes::Avail;
use super::observed::ObservedLocation;
use super::pageserver::PsError;
use super::{Controller, lock};
use raft_store::ProposeError;
use storcon_http::metrics::{self, ReconcileOutcome};

/// Why one reconcile pass of a shard failed (the first failure; later steps still ran).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{call} on node {node}: {error}")]
    Pageserver {
        call: &'static str,
        node: NodeId,
        error: PsError,
    },
    /// The node re-attached or went Offline while a call to it was in flight: what it holds
    /// now is unknown.
    #[error("node {node} changed while location_config was in flight")]
    NodeChanged { node: NodeId },
    #[error("cannot issue a generation: {0}")]
    Generation(ProposeError),
    #[error("unexpected answer to IncrementGeneration: {0}")]
    UnexpectedAnswer(String),
    #[error("shard deleted")]
    ShardGone,
    #[error("node {node} did not catch up with the origin's LSNs within {waited:?}")]
    CatchUp {
        node: NodeId,
        waited: std::time::Duration,
    },
    #[error("failpoint: {0}")]
    Failpoint(String),
}

/// Per-shard bookkeeping of reconcile passes. Every request gets a sequence number; a pass
/// covers every request made before it started, and waiters wait for the pass covering theirs.
#[derive(Default)]
struct Running {
    next_seq: u64,
    requested: BTreeMap<TenantShardId, u64>,
    /// Running passes and the sequence each covers.
    in_flight: BTreeMap<TenantShardId, u64>,
    /// Requested again while running: run once more afterwards.
    again: BTreeSet<TenantShardId>,
    /// The last finished pass: the sequence it covered and whether it succeeded.
    completed: BTreeMap<TenantShardId, (u64, bool)>,
    /// Sent to the dispatcher and not yet received: a further request needs no new message,
    /// the pass that starts will cover it.
    queued: BTreeSet<TenantShardId>,
}

/// The reconcile queue: requests, the passes running, and each shard's last error.
///
/// Invariants: at most one pass per shard runs at a time; a pass covers every request made
/// before it started; a shard's last error is cleared by its next successful pass.
pub struct Queue {
    tx: mpsc::UnboundedSender<TenantShardId>,
    /// Taken once by the dispatcher when the controller starts.
    rx: Mutex<Option<mpsc::UnboundedReceiver<TenantShardId>>>,
    running: Mutex<Running>,
    finished: Notify,
    /// Why the last pass (or the last scheduling of the shard) failed, for describe.
    errors: Mutex<BTreeMap<TenantShardId, String>>,
}

impl Queue {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Queue {
            tx,
            rx: Mutex::new(Some(rx)),
            running: Mutex::new(Running::default()),
            finished: Notify::new(),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<TenantShardId>> {
        lock(&self.rx).take()
    }

    pub fn record_error(&self, id: TenantShardId, error: String) {
        lock(&self.errors).insert(id, error);
    }

    pub fn clear_error(&self, id: &TenantShardId) {
        lock(&self.errors).remove(id);
    }

    pub fn last_error(&self, id: &TenantShardId) -> String {
        lock(&self.errors).get(id).cloned().unwrap_or_default()
    }

    /// Requests a reconcile of `id`; returns the sequence a waiter for it should wait for.
    pub fn push(&self, id: TenantShardId) -> u64 {
        let (seq, send) = {
            let mut r = lock(&self.running);
            r.next_seq += 1;
            let seq = r.next_seq;
            r.requested.insert(id, seq);
            (seq, r.queued.insert(id))
        };
        if send {
            let _ = self.tx.send(id);
        }
        seq
    }

    /// The latest sequence requested for `id`, if any.
    pub fn requested(&self, id: &TenantShardId) -> Option<u64> {
        lock(&self.running).requested.get(id).copied()
    }

    /// A pass is running, or requested and not yet finished.
    pub fn is_running(&self, id: &TenantShardId) -> bool {
        let r = lock(&self.running);
        let requested = r.requested.get(id).copied().unwrap_or(0);
        let completed = r.completed.get(id).map_or(0, |(seq, _)| *seq);
        r.in_flight.contains_key(id) || requested > completed
    }

    /// Nothing queued or running: the optimiser may propose moves.
    pub fn is_idle(&self) -> bool {
        let r = lock(&self.running);
        r.in_flight.is_empty() && r.queued.is_empty() && r.again.is_empty()
    }

    /// The last finished pass failed and no other is requested: worth a retry even if the
    /// shard now looks settled (its error would otherwise stay on show).
    pub fn last_failed(&self, id: &TenantShardId) -> bool {
        let r = lock(&self.running);
        let failed = r.completed.get(id).is_some_and(|(_, ok)| !ok);
        failed && !r.in_flight.contains_key(id) && !r.queued.contains(id)
    }

    /// The last finished pass of `id` failed.
    pub fn failed(&self, id: &TenantShardId) -> bool {
        lock(&self.running)
            .completed
            .get(id)
            .is_some_and(|(_, ok)| !ok)
    }

    /// Waits until a pass covering `seq` finished: `Some(succeeded)`, or `None` at the deadline.
    pub async fn wait(&self, id: TenantShardId, seq: u64, deadline: Instant) -> Option<bool> {
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            // Register before checking, so a pass finishing in between still wakes us.
            notified.as_mut().enable();
            if let Some((covered, ok)) = lock(&self.running).completed.get(&id)
                && *covered >= seq
            {
                return Some(*ok);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Shards waiting for a pass (queued, or requested again while one runs), and shards whose
    /// last pass failed: the `pending` and `stuck` gauges.
    pub fn counts(&self) -> (usize, usize) {
        let r = lock(&self.running);
        let waiting = r.queued.len() + r.again.iter().filter(|id| !r.queued.contains(id)).count();
        let failed = r.completed.values().filter(|(_, ok)| !ok).count();
        (waiting, failed)
    }

    /// Marks `id` running; false (and remembers to run again) when it already is.
    fn start(&self, id: TenantShardId) -> bool {
        let mut r = lock(&self.running);
        r.queued.remove(&id);
        if r.in_flight.contains_key(&id) {
            r.again.insert(id);
            return false;
        }
        let covers = r.requested.get(&id).copied().unwrap_or(0);
        r.in_flight.insert(id, covers);
        true
    }

    /// Drops the bookkeeping of a deleted tenant's shards that are not running.
    pub fn forget_tenant(&self, tenant: state_machine::ids::TenantId) {
        lock(&self.errors).retain(|id, _| id.tenant_id != tenant);
        let mut r = lock(&self.running);
        let keep_entry = |id: &TenantShardId, r: &Running| {
            id.tenant_id != tenant || r.in_flight.contains_key(id) || r.queued.contains(id)
        };
        let keep: BTreeSet<TenantShardId> = r
            .requested
            .keys()
            .copied()
            .filter(|id| keep_entry(id, &r))
            .collect();
        r.requested.retain(|id, _| keep.contains(id));
        r.completed
            .retain(|id, _| keep.contains(id) || id.tenant_id != tenant);
    }

    /// Marks `id` done; true when another pass was requested meanwhile.
    fn finish(&self, id: TenantShardId, ok: bool) -> bool {
        let again = {
            let mut r = lock(&self.running);
            let covered = r.in_flight.remove(&id).unwrap_or(0);
            r.completed.insert(id, (covered, ok));
            r.again.remove(&id)
        };
        self.finished.notify_waiters();
        again
    }
}

/// Upstream's default `--long-reconcile-threshold`: a pass running longer is logged and counted.
const LONG_RECONCILE: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs one pass; past [`LONG_RECONCILE`] it warns and counts it once, and lets it carry on.
async fn flag_long_running<F: std::future::Future>(pass: F) -> F::Output {
    tokio::pin!(pass);
    tokio::select! {
        out = &mut pass => return out,
        _ = tokio::time::sleep(LONG_RECONCILE) => {}
    }
    tracing::warn!(threshold = ?LONG_RECONCILE, "reconcile is running long");
    metrics::reconcile_long_running();
    pass.await
}

/// Receives shard ids and runs their reconciles with bounded concurrency.
pub async fn dispatch(ctl: Arc<Controller>, mut rx: mpsc::UnboundedReceiver<TenantShardId>) {
    let limit = Arc::new(Semaphore::new(ctl.cfg.reconciler_concurrency.max(1)));
    loop {
        let id = tokio::select! {
            _ = ctl.cancel.cancelled() => return,
            id = rx.recv() => match id { Some(id) => id, None => return },
        };
        if !ctl.reconciles.start(id) {
            continue;
        }
        let permit = tokio::select! {
            _ = ctl.cancel.cancelled() => return,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let ctl = ctl.clone();
        let span = tracing::info_span!("reconcile", shard = %id);
        tokio::spawn(
            async move {
                metrics::reconcile_spawned();
                let result = flag_long_running(ctl.reconcile_shard(id)).await;
                let outcome = match &result {
                    Ok(()) => {
                        ctl.reconciles.clear_error(&id);
                        ReconcileOutcome::Ok
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconcile failed");
                        ctl.reconciles.record_error(id, e.to_string());
                        if ctl.cancel.is_cancelled() {
                            ReconcileOutcome::Cancel
                        } else {
                            ReconcileOutcome::Error
                        }
                    }
                };
                metrics::reconcile_completed(outcome);
                drop(permit);
                if ctl.reconciles.finish(id, result.is_ok()) && !ctl.cancel.is_cancelled() {
                    ctl.reconciles.push(id);
                }
            }
            .instrument(span),
        );
    }
}

impl Controller {
    pub(super) fn node_if_active(&self, id: NodeId) -> Option<NodeRecord> {
        let active = self
            .nodes
            .states()
            .get(&id)
            .is_some_and(|n| n.avail == Avail::Active);
        if !active {
            return None;
        }
        self.state.read().node(id).cloned()
    }

    /// Queues a reconcile of each shard that needs one, or whose last pass failed (the
    /// background pass retries those); returns how many were queued.
    pub(super) fn reconcile_if_dirty(&self, ids: impl IntoIterator<Item = TenantShardId>) -> usize {
        let mut queued = 0;
        for id in ids {
            if self.is_dirty(&id) || self.reconciles.last_failed(&id) {
                self.reconciles.push(id);
                queued += 1;
            }
        }
        queued
    }

    /// Waits until the latest requested pass of each shard has finished: `Some(all succeeded)`,
    /// or `None` at the deadline.
    pub(super) async fn wait_passes(
        &self,
        ids: impl IntoIterator<Item = TenantShardId>,
        deadline: Instant,
    ) -> Option<bool> {
        let mut all_ok = true;
        for id in ids {
            let Some(seq) = self.reconciles.requested(&id) else {
                continue;
            };
            all_ok &= self.reconciles.wait(id, seq, deadline).await?;
        }
        Some(all_ok)
    }

    /// [`Controller::wait_passes`], true only when every pass succeeded in time.
    pub(super) async fn wait_reconciles(
        &self,
        ids: impl IntoIterator<Item = TenantShardId>,
        deadline: Instant,
    ) -> bool {
        self.wait_passes(ids, deadline).await == Some(true)
    }

    /// The planner's steps for one shard, from the applied state and what this leader observed.
    pub(super) fn plan_for(&self, id: &TenantShardId) -> Vec<Step> {
        let state = self.state.read();
        // Nodes before observed: an activation records a node's listing before it marks the
        // node Active, so a node seen Active here has its listing in the copy taken next. The
        // other order could pair a fresh Active with a stale copy (nothing listed there yet)
        // and attach in a new generation what the node already holds.
        let nodes = self.nodes.states();
        let observed = lock(&self.observed).locations(id);
        let active = |n: NodeId| nodes.get(&n).is_some_and(|s| s.avail == Avail::Active);
        let mut steps =
            reconcile_plan::plan(state.shard(id), state.knows_shard(id), &observed, active);
        // The node holding the current generation has not been heard from by this leader yet
        // (it is not Offline either): what it holds decides between a live and a cold move,
        // so the attachment waits for its first heartbeat rather than going cold.
        let holder_unheard = state
            .shard(id)
            .and_then(|s| {
                s.generation_pageserver
                    .filter(|h| s.intent.attached != Some(*h))
            })
            .and_then(|h| nodes.get(&h))
            .is_some_and(|n| matches!(n.avail, Avail::Unknown { .. } | Avail::WarmingUp { .. }));
        if holder_unheard {
            steps.retain(|step| !step.is_attach());
        }
        steps
    }

    /// Whether the shard's observed state differs from its intent on Active nodes: its plan is
    /// not empty.
    pub(super) fn is_dirty(&self, id: &TenantShardId) -> bool {
        !self.plan_for(id).is_empty()
    }

    pub(super) async fn put(
        &self,
        node: &NodeRecord,
        id: TenantShardId,
        conf: &LocationConfig,
    ) -> Result<(), ReconcileError> {
        lock(&self.observed).set(id, node.id, ObservedLocation::Unknown);
        let life = self.node_token(node.id);
        match self
            .ps
            .with_cancel(life.clone())
            .put_location(node, id, conf)
            .await
        {
            // The node re-attached or went Offline meanwhile: what it holds now is unknown.
            Ok(()) if life.is_cancelled() => Err(ReconcileError::NodeChanged { node: node.id }),
            Ok(()) => {
                let mut obs = lock(&self.observed);
                let now = if conf.mode == storcon_api::wire::LocationConfigMode::Detached {
                    ObservedLocation::Absent
                } else {
                    ObservedLocation::Known(conf.clone())
                };
                obs.set(id, node.id, now);
                Ok(())
            }
            Err(error) => Err(ReconcileError::Pageserver {
                call: "location_config",
                node: node.id,
                error,
            }),
        }
    }

    /// Runs the planner's steps for one shard (see the module docs for their order), planning
    /// again after each round.
    pub(super) async fn reconcile_shard(&self, id: TenantShardId) -> Result<(), ReconcileError> {
        // The planner holds back the demotion of what served before an attach is done: after a
        // round, plan again so that one pass finishes the job. Bounded, and a round that
        // changed nothing ends it.
        let mut last: Option<Vec<Step>> = None;
        for round in 0..3 {
            let plan = self.plan_for(&id);
            // The first round always runs: it also sends a pending compute notification.
            if round > 0 && (plan.is_empty() || last.as_ref() == Some(&plan)) {
                break;
            }
            self.reconcile_round(id).await?;
            last = Some(plan);
        }
        Ok(())
    }

    async fn reconcile_round(&self, id: TenantShardId) -> Result<(), ReconcileError> {
        let mut first_error = None;
        let mut steps = self.plan_for(&id);
        // A read-back changes what the plan is: do it, then plan again from what was read.
        if let Some(Step::ReadBack { node }) = steps.first().copied() {
            match self.read_back(id, node).await {
                Ok(()) => steps = self.plan_for(&id),
                Err(e) => {
                    first_error = Some(e);
                    steps.remove(0);
                }
            }
        }
        let shard = self.state.read().shard(&id).cloned();
        let mut attached_now = false;
        let mut notified = shard.is_none();
        for step in steps {
            let node = step.node();
            let is_attach = step.is_attach();
            // Compute must learn of a new attachment before anything is detached (upstream).
            if !is_attach && !notified {
                notified = true;
                if attached_now || self.hook.is_pending(id.tenant_id) {
                    self.notify_compute(id.tenant_id).await;
                }
            }
            let Some(record) = self.node_if_active(node) else {
                continue;
            };
            let done = match (step, &shard) {
                (Step::ReadBack { .. }, _) => Ok(()),
                (Step::AttachNewGeneration { .. }, Some(_)) => self.attach(id, &record, None).await,
                (Step::AttachCurrentGeneration { generation, .. }, Some(_)) => {
                    self.attach(id, &record, Some(generation)).await
                }
                (Step::MakeSecondary { .. }, Some(s)) => {
                    // Secondaries are never required for correctness; report, carry on.
                    self.put(&record, id, &s.secondary_location()).await
                }
                (Step::Detach { .. }, Some(s)) => {
                    self.put(&record, id, &s.detached_location()).await
                }
                (Step::Detach { .. }, None) => {
                    self.put(&record, id, &LocationConfig::detached_unknown(id))
                        .await
                }
                (Step::MakeStale { generation, .. }, Some(_)) => {
                    self.make_stale(id, &record, generation).await
                }
                (Step::AttachMulti { .. }, Some(_)) => self.attach_multi(id, &record).await,
                (Step::CatchUp { origin, .. }, Some(_)) => match self.node_if_active(origin) {
                    Some(origin) => self.catch_up(id, &record, &origin).await,
                    None => Ok(()),
                },
                (Step::Finalize { .. }, Some(_)) => self.finalize(id, &record).await,
                (_, None) => Ok(()),
            };
            match done {
                Ok(())
                    if matches!(step, Step::Finalize { .. })
                        || matches!(
                            step,
                            Step::AttachNewGeneration { .. } | Step::AttachCurrentGeneration { .. }
                        ) =>
                {
                    attached_now = true
                }
                Ok(()) => {}
                // A live migration is a sequence: a failed step stops it (the origin stays
                // stale and serving); the next pass resumes from what the pageservers hold.
                Err(e) if step.is_live_migration() => {
                    first_error.get_or_insert(e);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !notified && (attached_now || self.hook.is_pending(id.tenant_id)) {
            self.notify_compute(id.tenant_id).await;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Reads an uncertain location back from the pageserver and records what it holds.
    async fn read_back(&self, id: TenantShardId, node: NodeId) -> Result<(), ReconcileError> {
        let Some(record) = self.node_if_active(node) else {
            return Ok(());
        };
        let read = self
            .ps_for(node)
            .get_location(&record, id)
            .await
            .map_err(|error| ReconcileError::Pageserver {
                call: "reading location",
                node,
                error,
            })?;
        let mut observed = lock(&self.observed);
        let now = read.map_or(ObservedLocation::Absent, ObservedLocation::Known);
        observed.set(id, node, now);
        Ok(())
    }

    /// Attaches the shard on `node`: in `reuse` (the generation it already holds, a config-only
    /// change), or in a new generation committed through Raft first (a deposed leader cannot).
    async fn attach(
        &self,
        id: TenantShardId,
        node: &NodeRecord,
        reuse: Option<Generation>,
    ) -> Result<(), ReconcileError> {
        let generation = match reuse {
            Some(g) => g,
            None => self.new_generation(id, node).await?,
        };
        // Re-read: the config may have changed while the generation was committed.
        let shard = self
            .state
            .read()
            .shard(&id)
            .cloned()
            .ok_or(ReconcileError::ShardGone)?;
        tracing::info!(node = %node.id, %generation, "attaching");
        self.put(node, id, &shard.attached_location(generation))
            .await
    }
}
