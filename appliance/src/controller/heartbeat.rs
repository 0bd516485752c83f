//! Heartbeats: poll `GET /v1/utilization` on every node, apply availability transitions.
//!
//! - ToActive: first the activation check: list the node's locations, detach what the
//!   controller does not know, take the rest as observed; only then is the node Active and its
//!   shards reconciled. If the check fails the node stays inactive and is tried next round.
//! - ToOffline: everything on the node becomes uncertain, its tenants are rescheduled (the
//!   scheduler fails attachments over unless no other node could take them) and reconciled.
//!
//! A round only polls (each poll has its own short timeout) and decides transitions; the
//! activation check or offline handling of a node runs in a task of its own, so a slow or
//! stalled node does not delay the next heartbeat of the others. At most one such task runs per
//! node: while it does, the node's later transitions are not acted on. That loses nothing: a
//! transition is derived every round from the node's availability and the poll's outcome, so a
//! skipped one is derived again by a round after the task ended, if it still applies. A ToOffline
//! decided while an activation still runs abandons the node's calls, so the activation ends soon
//! and the offline handling follows a round later. The startup round (the observed-state scan)
//! waits for its tasks, because startup scheduling depends on them. Tasks stop when the
//! controller is cancelled.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{NodeId, NodeRecord};
use storcon_api::wire::LocationConfig;

use super::nodes::{Avail, NodeState, Transition, on_heartbeat};
use super::pageserver::PsError;
use super::{Controller, lock};

/// What a node's task does.
enum NodeWork {
    Activate(NodeRecord),
    Offline(NodeId),
}

/// A node's claim on its one task slot, released when dropped (on completion, cancellation or
/// panic).
struct NodeTask {
    ctl: Arc<Controller>,
    node: NodeId,
}

impl NodeTask {
    /// The slot of `node`, unless a task of the node still holds it.
    fn claim(ctl: &Arc<Controller>, node: NodeId) -> Option<NodeTask> {
        ctl.nodes.start_task(node).then(|| NodeTask {
            ctl: ctl.clone(),
            node,
        })
    }

    async fn run(self, work: NodeWork) {
        let ctl = &self.ctl;
        let handle = async {
            match work {
                NodeWork::Activate(node) => {
                    if let Err(e) = ctl.activate(&node).await {
                        tracing::warn!(node = %node.id, error = %e, "activation failed; node stays inactive");
                    }
                }
                NodeWork::Offline(node) => ctl.node_offline(node).await,
            }
        };
        tokio::select! {
            biased;
            _ = ctl.cancel.cancelled() => {}
            _ = handle => {}
        }
    }
}

impl Drop for NodeTask {
    fn drop(&mut self) {
        self.ctl.nodes.end_task(self.node);
    }
}

/// Why a node could not be made Active; it stays inactive and the next heartbeat tries again.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("listing locations: {0}")]
    List(PsError),
    #[error("detaching unknown shard {shard}: {error}")]
    DetachUnknown {
        shard: TenantShardId,
        error: PsError,
    },
    #[error("the node re-attached, went offline or left the registry during activation")]
    NodeChanged,
}

impl Controller {
    pub(super) async fn heartbeat_round(self: &Arc<Self>) {
        // The first round of a leadership runs before the startup reconcile (see `run`).
        let startup = !self.started.load(Ordering::SeqCst);
        let records: Vec<NodeRecord> = self.state.read().nodes().cloned().collect();
        let polls = records.iter().map(|n| async move {
            let r = self.ps.utilization(n).await;
            if let Err(e @ (PsError::Tls(_) | PsError::NoHttpsPort(_))) = &r {
                // A misconfiguration, not a node that is down: say so every round.
                tracing::warn!(node = %n.id, error = %e, "heartbeat failed");
            }
            (n.clone(), r)
        });
        let results = futures::future::join_all(polls).await;
        // Between the polls and their results: where a node removal can race a round.
        if let Err(e) = self.failpoints.hit("heartbeat-after-poll").await {
            tracing::warn!(error = %e, "heartbeat round abandoned");
            return;
        }
        let now = Instant::now();
        let mut tasks = Vec::new();
        for (node, result) in results {
            let transition = {
                // Same lock order as the planner (state, then nodes). A node dropped or deleted
                // while its poll was out is not brought back: its answer is dropped here, and a
                // removal that commits after this point finds the entry and forgets it.
                let state = self.state.read();
                if state.node(node.id).is_none() {
                    continue;
                }
                let mut nodes = self.nodes.states();
                let entry = nodes.entry(node.id).or_insert_with(|| NodeState::new(now));
                let t = on_heartbeat(
                    entry,
                    result.is_ok(),
                    now,
                    self.cfg.max_offline(),
                    self.cfg.max_warming_up(),
                );
                if let Ok(u) = &result {
                    entry.last_seen = Some(now);
                    entry.utilization_score = u.utilization_score.unwrap_or(0);
                }
                t
            };
            let id = node.id;
            let work = match transition {
                Transition::ToActive => NodeWork::Activate(node),
                Transition::ToOffline => NodeWork::Offline(id),
                Transition::Unchanged => continue,
            };
            if self.cancel.is_cancelled() {
                return;
            }
            match NodeTask::claim(self, id) {
                // Activation checks list each node's locations: in parallel, so the startup
                // scan of a large fleet takes as long as its slowest node, not the sum.
                Some(task) => tasks.push(tokio::spawn(task.run(work))),
                None => {
                    if matches!(work, NodeWork::Offline(_)) {
                        // Most likely an activation stuck on the node: abandon its calls.
                        self.cancel_node_calls(id);
                    }
                    tracing::debug!(node = %id, ?transition, "previous transition still running");
                }
            }
        }
        if startup {
            for done in futures::future::join_all(tasks).await {
                if let Err(e) = done {
                    tracing::error!(error = %e, "node task failed");
                }
            }
        }
    }

    pub(super) async fn activate(&self, node: &NodeRecord) -> Result<(), ActivationError> {
        let life = self.node_token(node.id);
        let reported = self
            .ps_for(node.id)
            .list_locations(node)
            .await
            .map_err(ActivationError::List)?;
        let unknown: Vec<_> = {
            let state = self.state.read();
            if state.node(node.id).is_none() {
                // Dropped or deleted while the listing was out: not ours to touch any more.
                return Err(ActivationError::NodeChanged);
            }
            reported
                .iter()
                .filter(|(id, _)| !state.knows_shard(id))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in &unknown {
            self.ps_for(node.id)
                .put_location(node, *id, &LocationConfig::detached_unknown(*id))
                .await
                .map_err(|error| ActivationError::DetachUnknown { shard: *id, error })?;
            tracing::info!(node = %node.id, shard = %id, "detached a location the controller does not know");
        }
        let known: Vec<_> = reported
            .into_iter()
            .filter(|(id, _)| !unknown.contains(id))
            .collect();
        {
            // Under the state lock, so a node removal commits either before this check (and
            // nothing is recorded) or after the record (and its forget clears it).
            let state = self.state.read();
            if life.is_cancelled() || state.node(node.id).is_none() {
                return Err(ActivationError::NodeChanged);
            }
            lock(&self.observed).replace_node(node.id, &known);
        }
        if let Some(n) = self.nodes.states().get_mut(&node.id) {
            n.avail = Avail::Active;
        }
        tracing::info!(node = %node.id, locations = known.len(), "node active");
        self.reconcile_if_dirty(known.into_iter().map(|(id, _)| id));
        // Shards intended on this node but not there yet.
        let intended: Vec<_> = self
            .state
            .read()
            .shards()
            .filter(|s| s.intent.contains(node.id))
            .map(|s| s.id)
            .collect();
        self.reconcile_if_dirty(intended);
        Ok(())
    }

    pub(super) async fn node_offline(&self, node: NodeId) {
        if let Some(n) = self.nodes.states().get_mut(&node) {
            n.avail = Avail::Offline;
        }
        self.cancel_node_calls(node);
        lock(&self.observed).mark_node_unknown(node);
        tracing::warn!(%node, "node offline");
        let tenants: BTreeSet<TenantId> = self
            .state
            .read()
            .shards()
            .filter(|s| s.intent.contains(node))
            .map(|s| s.id.tenant_id)
            .collect();
        match self.schedule(&tenants).await {
            Ok(scheduled) => {
                for id in scheduled.changed {
                    self.reconciles.push(id);
                }
            }
            Err(e) => tracing::warn!(%node, error = %e, "cannot reschedule after node loss"),
        }
    }
}
