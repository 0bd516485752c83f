//! `POST /v1/tenant/:tenant_shard_id/secondary/download[?wait_ms=N]`: warms the secondary
//! locations of a shard, or of every shard for the unsharded id (upstream's fan-out).
//!
//! 1. Hold the tenant's lock shared (no split renames the shards meanwhile). Unknown → 404.
//! 2. The targets: every secondary location the intent names for the shards asked about. None
//!    → 404 (the tenant has no secondaries).
//! 3. On each, concurrently, the pageserver's `secondary/download?wait_ms=N`, each call allowed
//!    `wait_ms` beyond the usual call timeout.
//! 4. Sum the progress (layers, bytes; the newest heatmap). 200 when every location answered
//!    200, 202 when one is still downloading or did not answer; with no answer at all, the
//!    first failure is the answer (a pageserver's refusal with its status).

use std::time::Duration;

use futures::future::join_all;
use state_machine::NodeRecord;
use state_machine::ids::TenantShardId;
use storcon_api::secondary::{DownloadStatus, SecondaryProgress};
use storcon_http::OperationError;

use super::shard_calls::{CALL_TIMEOUT, json_body_of, refused_by};
use crate::controller::Controller;

impl Controller {
    pub(super) async fn secondary_download(
        &self,
        shard: TenantShardId,
        wait_ms: Option<u64>,
    ) -> Result<(DownloadStatus, SecondaryProgress), OperationError> {
        let tenant = shard.tenant_id;
        let _shared = self.locks.tenant_shared(tenant).await;
        let targets = self.secondary_targets(shard)?;
        let path = match wait_ms {
            Some(ms) => format!("/secondary/download?wait_ms={ms}"),
            None => "/secondary/download".to_owned(),
        };
        let timeout = CALL_TIMEOUT + Duration::from_millis(wait_ms.unwrap_or(0));
        let answers = join_all(targets.iter().map(|(shard, node)| {
            self.call_node(node, *shard, reqwest::Method::POST, &path, None, timeout)
        }))
        .await;

        let mut total = SecondaryProgress::default();
        let mut status = DownloadStatus::Complete;
        let mut answered = 0;
        let mut first_failure = None;
        for ((shard, node), answer) in targets.iter().zip(answers) {
            let failure = match answer {
                Ok(r) if r.status == 200 || r.status == 202 => {
                    let progress: SecondaryProgress =
                        serde_json::from_value(json_body_of(node, *shard, &r)?).map_err(|e| {
                            OperationError::Internal(format!(
                                "pageserver {}'s progress for {shard} is malformed: {e}",
                                node.id
                            ))
                        })?;
                    total.add(&progress);
                    answered += 1;
                    if r.status == 202 {
                        status = DownloadStatus::InProgress;
                    }
                    continue;
                }
                Ok(r) => refused_by(node, &r),
                Err(e) => e,
            };
            tracing::warn!(%shard, node = %node.id, "secondary download: {failure}");
            status = DownloadStatus::InProgress;
            first_failure.get_or_insert(failure);
        }
        match first_failure {
            Some(e) if answered == 0 => Err(e),
            _ => Ok((status, total)),
        }
    }

    /// Every (shard, node) where the intent places a secondary of the shards `shard` names.
    fn secondary_targets(
        &self,
        shard: TenantShardId,
    ) -> Result<Vec<(TenantShardId, NodeRecord)>, OperationError> {
        let tenant = shard.tenant_id;
        let state = self.state.read();
        let shards: Vec<_> = state
            .tenant_shards(tenant)
            .filter(|s| shard.shard_count.0 == 0 || s.id == shard)
            .collect();
        if shards.is_empty() {
            return Err(if state.tenant_shards(tenant).next().is_none() {
                OperationError::TenantNotFound(tenant)
            } else {
                OperationError::NotFound(format!("tenant {tenant} has no shard {shard}"))
            });
        }
        let targets: Vec<_> = shards
            .iter()
            .flat_map(|s| {
                s.intent
                    .secondaries
                    .iter()
                    .filter_map(|n| state.node(*n).cloned())
                    .map(|node| (s.id, node))
            })
            .collect();
        if targets.is_empty() {
            return Err(OperationError::NotFound(format!(
                "tenant {tenant} has no secondary locations"
            )));
        }
        Ok(targets)
    }
}
