//! The background optimiser (upstream section 5.5): graceful moves towards better placements,
//! decided by `state_machine::optimise::plan` (AZ first, then the tenant's spread, then
//! balance; why it cannot oscillate is written there).
//!
//! One pass, run by the leader's background loop and by `POST /debug/v1/reconcile_all`:
//! 1. Only when quiescent: `max_optimisations_per_pass > 0`, no reconcile queued or running,
//!    no migration warming up, no node operation, no split in flight. (The scheduler's own
//!    work, failovers and new secondaries, always comes first.)
//! 2. Plan on the committed state and this leader's view of the nodes, under the scheduling
//!    lock, so no scheduling pass interleaves.
//! 3. Failpoint `optimise-before-apply`.
//! 4. Each move: an attachment by a prewarmed migration (`begin_migration`: the destination
//!    becomes a secondary and warms up, then the live migration), a secondary by one
//!    `SetIntents` that replaces it, if the shard's intent is still the one planned on.
//!
//! Returns how many moves began.

use std::sync::Arc;

use state_machine::optimise::{self, Optimisation};
use state_machine::{Command, StartMigration};
use storcon_api::migrate::MigrationConfig;
use storcon_http::OperationError;

use super::Wait;
use super::migrate::millis;
use crate::controller::Controller;

impl Controller {
    /// Whether nothing is pending that the optimiser must not race with.
    fn quiescent(&self) -> bool {
        let state = self.state.read();
        self.reconciles.is_idle()
            && state.migrations().next().is_none()
            && state.node_operation().is_none()
            && state.split_records().next().is_none()
    }

    pub(crate) async fn optimise(self: &Arc<Self>) -> Result<usize, OperationError> {
        let max = self.cfg.max_optimisations_per_pass;
        if max == 0 || !self.quiescent() {
            return Ok(0);
        }
        let planned = {
            let _one_at_a_time = self.locks.schedule().await;
            let state = self.state.read();
            optimise::plan(&state, &self.node_views(), max)
        };
        if planned.is_empty() {
            return Ok(0);
        }
        self.failpoints
            .hit("optimise-before-apply")
            .await
            .map_err(|e| OperationError::Internal(e.to_string()))?;
        let mut begun = 0;
        for o in planned {
            tracing::info!(optimisation = ?o, "optimising");
            match self.apply_optimisation(&o).await {
                Ok(()) => begun += 1,
                // A shard that changed meanwhile is planned again next pass.
                Err(e) => tracing::info!(optimisation = ?o, error = %e, "optimisation skipped"),
            }
        }
        storcon_http::metrics::optimisations(begun);
        Ok(begun)
    }

    async fn apply_optimisation(self: &Arc<Self>, o: &Optimisation) -> Result<(), OperationError> {
        let shard = o.shard();
        match *o {
            Optimisation::MigrateAttachment {
                origin,
                destination,
                ..
            } => {
                let config = MigrationConfig::default();
                let start = StartMigration {
                    shard,
                    origin,
                    destination,
                    prewarm: true,
                    warmup_timeout_ms: millis(config.warmup_timeout()),
                    download_request_timeout_ms: millis(config.download_request_timeout()),
                };
                // StartMigration itself checks that the shard is still attached on `origin`.
                self.begin_migration(start, Wait::Queued).await
            }
            Optimisation::ReplaceSecondary { old, .. } => {
                let intent = {
                    let state = self.state.read();
                    let s = state
                        .shard(&shard)
                        .filter(|s| s.intent.secondaries.contains(&old));
                    let s = s.ok_or_else(|| {
                        OperationError::Conflict(format!("{shard} changed since it was planned"))
                    })?;
                    o.intent_after(s)
                };
                self.propose_and_reconcile(
                    shard.tenant_id,
                    Command::SetIntents(vec![(shard, intent)]),
                    Wait::Queued,
                )
                .await
                .map(|_| ())
            }
        }
    }
}
