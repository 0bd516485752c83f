//! Fill of a node (`PUT /control/v1/node/:id/fill`, run by `node_operation.rs`): after a
//! restart, the node takes its share of attachments back from its secondaries.
//!
//! 1. The plan (`state_machine::node_operation::fill_plan`): shards with a secondary on the
//!    node, those whose home AZ is the node's first, then from the most loaded nodes, until the
//!    node holds `attached shards / nodes`, at most a fair number per donor and per tenant.
//! 2. Each moves live from where it is attached to the node (`move_attachment`); before each,
//!    the fill must still be recorded.
//! 3. Done: the node is `Active` again (by `FinishNodeOperation`).

use state_machine::node_operation::{NodeOperation, fill_plan};
use storcon_http::OperationError;

use crate::controller::Controller;

impl Controller {
    /// `true` when the fill ran to its end, `false` when it was cancelled or ended meanwhile.
    pub(super) async fn fill(&self, operation: NodeOperation) -> Result<bool, OperationError> {
        let node = operation.node;
        let plan = {
            let views = self.node_views();
            fill_plan(&self.state.read(), node, &views)
        };
        tracing::info!(%node, moves = plan.len(), "fill planned");
        for (shard, from) in plan {
            if !self.still_running(operation) {
                return Ok(false);
            }
            if let Err(e) = self.move_attachment(shard, from, node).await {
                tracing::warn!(%shard, error = %e, "move failed; skipped");
            }
        }
        Ok(self.still_running(operation))
    }
}
