//! Background node operations (upstream section 5.11): drain and fill, at most one at a time
//! cluster-wide, recorded in the replicated state (`state_machine::node_operation`), run by one
//! task on the leader and resumed by a new leader from the record.
//!
//! Start (`PUT /control/v1/node/:id/drain|fill|delete`, 202; a delete 200 as upstream):
//! 1. 404 unknown node; 503 unless the node is Active; 412 when nothing could take the
//!    shards (no other node that may take work).
//! 2. Commit `StartNodeOperation` (412 another operation runs or the policy is not Active, 409
//!    the same one runs), then start its task and answer.
//!
//! Preview (`?dry_run=true` on a drain or fill start, 200): step 1 and the state machine's own
//! start checks, then the plan (`state_machine::preview`); nothing is proposed.
//!
//! Cancel (`DELETE` of the same path, 202): commit `FinishNodeOperation { cancelled }` (412 when
//! that operation is not running); the task sees the record gone before its next move and
//! stops. A move already under way finishes.
//!
//! The task moves shards one at a time, each a live migration (`StartMigration` without
//! prewarm, waited for up to `MOVE_WAIT`), and checks before each that its operation is still
//! the recorded one. Then it commits `FinishNodeOperation`. What each operation moves is in
//! `node_drain.rs` and `node_fill.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use state_machine::ids::TenantShardId;
use state_machine::node_operation::{NodeOperation, NodeOperationKind};
use state_machine::preview;
use state_machine::scheduler::NodeView;
use state_machine::{Command, NodeId, StartMigration};
use storcon_api::dry_run::DryRunResponse;
use storcon_http::OperationError;

use super::Wait;
use crate::controller::Controller;
use crate::controller::nodes::{self, Avail};

/// How long one move may take before the operation goes on to the next shard (the move itself
/// carries on in the reconciler).
const MOVE_WAIT: Duration = Duration::from_secs(60);

impl Controller {
    pub(super) async fn start_node_operation(
        self: &Arc<Self>,
        operation: NodeOperation,
    ) -> Result<(), OperationError> {
        self.check_start(operation)?;
        self.propose_request(Command::StartNodeOperation(operation))
            .await?;
        tracing::info!(node = %operation.node, kind = ?operation.kind, "node operation started");
        self.resume_node_operation();
        Ok(())
    }

    /// `?dry_run=true`: the same checks as a start (and the state machine's, which the start
    /// meets at apply), then the plan; nothing is proposed.
    pub(super) fn preview_node_operation(
        &self,
        operation: NodeOperation,
    ) -> Result<DryRunResponse, OperationError> {
        self.check_start(operation)?;
        let views = self.node_views();
        let state = self.state.read();
        state.check_start_node_operation(&operation)?;
        let moves = match operation.kind {
            NodeOperationKind::Drain => preview::drain(&state, operation.node, &views),
            NodeOperationKind::Fill => preview::fill(&state, operation.node, &views),
            NodeOperationKind::Delete => {
                return Err(OperationError::Invalid(
                    "a node delete has no dry run".into(),
                ));
            }
        };
        Ok(DryRunResponse::new(moves))
    }

    /// Step 1 of a start: 404, 503, 412.
    fn check_start(&self, operation: NodeOperation) -> Result<(), OperationError> {
        let node = operation.node;
        if self.state.read().node(node).is_none() {
            return Err(OperationError::NodeNotFound(node));
        }
        if !matches!(
            self.nodes.states().get(&node).map(|n| n.avail),
            Some(Avail::Active)
        ) {
            return Err(OperationError::NotYet(format!(
                "Node {node} is not available"
            )));
        }
        let others = self
            .node_views()
            .iter()
            .filter(|v| v.id != node && v.may_schedule)
            .count();
        if others == 0 {
            return Err(OperationError::PreconditionFailed(format!(
                "No other schedulable node for the {:?} of node {node}",
                operation.kind
            )));
        }
        Ok(())
    }

    pub(super) async fn cancel_node_operation(
        &self,
        operation: NodeOperation,
    ) -> Result<(), OperationError> {
        if self.state.read().node(operation.node).is_none() {
            return Err(OperationError::NodeNotFound(operation.node));
        }
        self.propose_request(Command::FinishNodeOperation {
            operation,
            cancelled: true,
        })
        .await?;
        tracing::info!(node = %operation.node, kind = ?operation.kind, "node operation cancelled");
        Ok(())
    }

    /// The recorded operation, started again by a new leader.
    pub(crate) fn resume_node_operation(self: &Arc<Self>) {
        let recorded = self.state.read().node_operation().copied();
        if let Some(operation) = recorded {
            tracing::info!(node = %operation.node, kind = ?operation.kind, "resuming node operation");
            self.spawn_node_operation(operation);
        }
    }

    fn spawn_node_operation(self: &Arc<Self>, operation: NodeOperation) {
        if self.node_operation_running.swap(true, Ordering::SeqCst) {
            // The running task picks up whatever is recorded when it finishes its own.
            return;
        }
        let ctl = self.clone();
        let span =
            tracing::info_span!("node_operation", node = %operation.node, kind = ?operation.kind);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut next = Some(operation);
                while let Some(op) = next {
                    let outcome = tokio::select! {
                        _ = ctl.cancel.cancelled() => return,
                        r = ctl.run_node_operation(op) => r,
                    };
                    if let Err(e) = outcome {
                        tracing::warn!(error = %e, "node operation stopped");
                    }
                    next = ctl
                        .state
                        .read()
                        .node_operation()
                        .copied()
                        .filter(|o| *o != op);
                }
                ctl.node_operation_running.store(false, Ordering::SeqCst);
            },
            span,
        ));
    }

    async fn run_node_operation(&self, operation: NodeOperation) -> Result<(), OperationError> {
        let finished = match operation.kind {
            NodeOperationKind::Drain => self.drain(operation).await?,
            NodeOperationKind::Fill => self.fill(operation).await?,
            NodeOperationKind::Delete => {
                if self.delete_node_off(operation).await? && self.still_running(operation) {
                    self.remove_node(operation.node).await?;
                }
                return Ok(());
            }
        };
        if finished && self.still_running(operation) {
            self.propose_request(Command::FinishNodeOperation {
                operation,
                cancelled: false,
            })
            .await?;
            tracing::info!("node operation done");
        }
        Ok(())
    }

    /// Whether `operation` is still the recorded one (not cancelled, not ended by a restart).
    pub(super) fn still_running(&self, operation: NodeOperation) -> bool {
        self.state.read().node_operation() == Some(&operation)
    }

    pub(crate) fn node_views(&self) -> Vec<NodeView> {
        let state = self.state.read();
        nodes::views(&state, &self.nodes.states())
    }

    /// One live move of `shard`'s attachment from `from` to `to`, waited for.
    pub(super) async fn move_attachment(
        &self,
        shard: TenantShardId,
        from: NodeId,
        to: NodeId,
    ) -> Result<(), OperationError> {
        tracing::info!(%shard, %from, %to, "moving");
        let start = StartMigration {
            shard,
            origin: from,
            destination: to,
            prewarm: false,
            warmup_timeout_ms: 0,
            download_request_timeout_ms: 0,
        };
        self.propose_and_reconcile(
            shard.tenant_id,
            Command::StartMigration(start),
            Wait::AtMost(MOVE_WAIT),
        )
        .await?;
        Ok(())
    }
}
