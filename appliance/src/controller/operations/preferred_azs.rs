//! `PUT /control/v1/preferred_azs` (upstream's `ShardsPreferredAzsRequest`): set or clear the
//! preferred AZ of shards.
//!
//! 1. 400 for more shards than one command may carry (`MAX_INTENTS_PER_COMMAND`).
//! 2. Commit `SetPreferredAzs`: all or nothing; 404 for an unknown shard, 400 for an AZ where
//!    no pageserver is registered (a typo would otherwise leave shards nowhere at home).
//! 3. Answer the shards that changed. Nothing moves here: the optimiser's next quiet pass
//!    migrates attachments into their AZ, prewarmed, and secondaries out of it.

use state_machine::Command;
use state_machine::Response;
use state_machine::limits::MAX_INTENTS_PER_COMMAND;
use storcon_api::migrate::{ShardsPreferredAzsRequest, ShardsPreferredAzsResponse};
use storcon_http::OperationError;

use crate::controller::Controller;

impl Controller {
    pub(super) async fn preferred_azs(
        &self,
        req: ShardsPreferredAzsRequest,
    ) -> Result<ShardsPreferredAzsResponse, OperationError> {
        let azs: Vec<_> = req.preferred_az_ids.into_iter().collect();
        if azs.len() > MAX_INTENTS_PER_COMMAND {
            return Err(OperationError::Invalid(format!(
                "{} shards in one request; at most {MAX_INTENTS_PER_COMMAND}",
                azs.len()
            )));
        }
        match self.propose_request(Command::SetPreferredAzs(azs)).await? {
            Response::PreferredAzsSet(updated) => {
                tracing::info!(updated = updated.len(), "preferred AZs set");
                Ok(ShardsPreferredAzsResponse { updated })
            }
            other => Err(OperationError::Internal(format!(
                "unexpected answer to SetPreferredAzs: {other:?}"
            ))),
        }
    }
}
