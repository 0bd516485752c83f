//! Drain of a node (`PUT /control/v1/node/:id/drain`, run by `node_operation.rs`), upstream's
//! graceful restart preparation:
//!
//! 1. The shards attached on the node by intent, scheduling Active, in id order
//!    (`state_machine::node_operation::drain_candidates`).
//! 2. Each goes to its secondary, if that secondary is warm enough: its `secondary/status` must
//!    report a heatmap and no more than `MAX_SECONDARY_LAG_BYTES` left to download, else the
//!    shard is skipped and stays (upstream's lag check; a later drain moves it). A shard with
//!    no secondary goes where `drain_fallback` says (a cold move).
//! 3. Each move is live (`move_attachment`); before each, the drain must still be recorded.
//!    Up to `DRAIN_PASSES` passes, until a pass finds nothing new to move: the drain's start
//!    ends migrations warming up towards the node, but one that cut over just before the start
//!    leaves its shard here.
//! 4. Done: the node is left `PauseForRestart` (by `FinishNodeOperation`).

use std::collections::BTreeSet;

use state_machine::NodeId;
use state_machine::ids::TenantShardId;
use state_machine::node_operation::{NodeOperation, drain_candidates, drain_fallback};
use storcon_api::secondary::SecondaryProgress;
use storcon_http::OperationError;

use super::shard_calls::{CALL_TIMEOUT, json_body_of};
use crate::controller::Controller;

/// Passes over the node's shards: a shard can arrive during a pass (a migration that cut over
/// just before the drain began ended its warm-up); the next pass takes it.
const DRAIN_PASSES: u32 = 3;

/// Upstream's `--max-secondary-lag-bytes` default: 256 MiB.
const MAX_SECONDARY_LAG_BYTES: u64 = 256 << 20;

impl Controller {
    /// `true` when the drain ran to its end, `false` when it was cancelled or ended meanwhile.
    pub(super) async fn drain(&self, operation: NodeOperation) -> Result<bool, OperationError> {
        let mut skipped = BTreeSet::new();
        for pass in 1..=DRAIN_PASSES {
            let candidates: Vec<_> = {
                let views = self.node_views();
                drain_candidates(&self.state.read(), operation.node, &views)
                    .into_iter()
                    .filter(|(shard, _)| !skipped.contains(shard))
                    .collect()
            };
            if candidates.is_empty() {
                break;
            }
            tracing::info!(pass, candidates = candidates.len(), "drain pass");
            if !self.drain_pass(operation, candidates, &mut skipped).await {
                return Ok(false);
            }
        }
        tracing::info!(node = %operation.node, skipped = skipped.len(), "drain done");
        Ok(self.still_running(operation))
    }

    /// Moves each candidate; false when the drain stopped being the recorded operation.
    async fn drain_pass(
        &self,
        operation: NodeOperation,
        candidates: Vec<(TenantShardId, Option<NodeId>)>,
        skipped: &mut BTreeSet<TenantShardId>,
    ) -> bool {
        let node = operation.node;
        for (shard, secondary) in candidates {
            if !self.still_running(operation) {
                return false;
            }
            let to = match secondary {
                Some(s) => match self.secondary_lag(shard, s).await {
                    Some(lag) if lag <= MAX_SECONDARY_LAG_BYTES => Some(s),
                    lag => {
                        tracing::info!(%shard, secondary = %s, ?lag, "secondary lags; skipped");
                        skipped.insert(shard);
                        None
                    }
                },
                None => {
                    let views = self.node_views();
                    let state = self.state.read();
                    state
                        .shard(&shard)
                        .and_then(|s| drain_fallback(&state, s, node, &views))
                }
            };
            if let Some(to) = to
                && let Err(e) = self.move_attachment(shard, node, to).await
            {
                tracing::warn!(%shard, error = %e, "move failed; skipped");
                skipped.insert(shard);
            }
        }
        true
    }

    /// Bytes `node`'s secondary of `shard` still has to download, if it reports a heatmap.
    async fn secondary_lag(&self, shard: TenantShardId, node: NodeId) -> Option<u64> {
        let record = self.node_if_active(node)?;
        let r = self
            .call_node(
                &record,
                shard,
                reqwest::Method::GET,
                "/secondary/status",
                None,
                CALL_TIMEOUT,
            )
            .await
            .ok()
            .filter(|r| r.status == 200)?;
        let progress: SecondaryProgress =
            serde_json::from_value(json_body_of(&record, shard, &r).ok()?).ok()?;
        progress.heatmap_mtime.as_ref()?;
        Some(
            progress
                .bytes_total
                .saturating_sub(progress.bytes_downloaded),
        )
    }
}
