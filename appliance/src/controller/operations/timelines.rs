//! Timelines: create, delete and describe, fanned out to every shard of a tenant.
//!
//! All hold the tenant's lock shared, so no split (which holds it exclusively) interleaves.
//!
//! Create (`POST /v1/tenant/:tenant_id/timeline`):
//! 1. Find each shard's attached location (409 not attached by policy, 503 not yet).
//! 2. Failpoint `timeline-create-before-calls`.
//! 3. Create on shard zero; its refusal is the answer, with the pageserver's status.
//! 4. Create on the other shards concurrently, branching at the LSN shard zero chose.
//! 5. Re-read the attachments. A shard whose attachment moved meanwhile (a migration, a
//!    failover) gets the create again at its new location, once its reconcile is done, so a
//!    racing migration cannot lose the timeline; a refusal from a location the shard has left
//!    counts as moved, not as the answer. Up to `RECHECK_ROUNDS` rounds, then 503.
//! 6. Answer 201 with shard zero's `TimelineInfo`. The same request again is 201 again: the
//!    pageserver treats an identical create as done.
//!
//! Delete (`DELETE /v1/tenant/:tenant_id/timeline/:timeline_id`), upstream's 202-then-404:
//! 1. Find the attached locations.
//! 2. Delete on every shard but zero, concurrently, until all answer 404 (gone), polling.
//! 3. Then delete on shard zero until it answers 404, so that reads routed to shard zero show
//!    the timeline until it is gone everywhere.
//! 4. 200 when gone; 409 if still deleting after `DELETE_WAIT`; a pageserver's 412 ("tenant is
//!    missing": attachment moving) is 503.
//!
//! Describe (`GET /control/v1/tenant/:tenant_id/timeline/:timeline_id`): the timeline's
//! `TimelineInfo` from every shard, and the lowest `image_consistent_lsn`.

use std::time::Duration;

use state_machine::ids::{Lsn, TenantId, TimelineId};
use storcon_api::timeline::{
    Relayed, TenantTimelineDescribeResponse, TimelineCreateRequest, TimelineCreateResponse,
    TimelineInfo,
};
use storcon_http::OperationError;

use futures::future::join_all;
use state_machine::NodeRecord;
use state_machine::ids::TenantShardId;

use super::shard_calls::{AttachedShard, CALL_TIMEOUT, is_success, json_body, refused, refused_by};
use crate::controller::Controller;

const RECHECK_ROUNDS: usize = 3;
const REATTACH_WAIT: Duration = Duration::from_secs(30);
pub(super) const DELETE_WAIT: Duration = Duration::from_secs(25);

impl Controller {
    pub(super) async fn timeline_create(
        &self,
        tenant: TenantId,
        req: TimelineCreateRequest,
    ) -> Result<TimelineCreateResponse, OperationError> {
        let _shared = self.locks.tenant_shared(tenant).await;
        let targets = self.attached_shards(tenant)?;
        self.failpoints
            .hit("timeline-create-before-calls")
            .await
            .map_err(|e| OperationError::Internal(e.to_string()))?;
        let body = serde_json::to_value(&req)
            .map_err(|e| OperationError::Internal(format!("cannot encode the request: {e}")))?;

        let (zero, others) = targets
            .split_first()
            .ok_or(OperationError::TenantNotFound(tenant))?;
        let mut failed = Vec::new();
        // A refusal from shard zero is the answer, unless its attachment moved meanwhile: then
        // the round below repeats it at the new location.
        let mut info = match self.create_on(zero, &body).await {
            Ok(info) => info,
            Err(e) if self.moved(std::slice::from_ref(zero))?.is_empty() => return Err(e),
            Err(e) => {
                failed.push((zero.clone(), e));
                TimelineInfo::default()
            }
        };
        let others_body = serde_json::to_value(req.for_other_shards(&info))
            .map_err(|e| OperationError::Internal(format!("cannot encode the request: {e}")))?;
        let answers = self
            .call_shards(
                others,
                reqwest::Method::POST,
                "/timeline",
                Some(&others_body),
            )
            .await;
        for (at, answer) in others.iter().zip(answers) {
            match answer {
                Ok(r) if is_success(&r) => {}
                Ok(r) => failed.push((at.clone(), refused(at, &r))),
                Err(e) => failed.push((at.clone(), e)),
            }
        }

        let mut placed = targets.clone();
        for _round in 0..RECHECK_ROUNDS {
            let moved = self.moved(&placed)?;
            // A refusal stands unless the shard has left the location that refused.
            if let Some(at) = failed
                .iter()
                .position(|(at, _)| !moved.iter().any(|m| m.shard == at.shard))
            {
                return Err(failed.swap_remove(at).1);
            }
            if moved.is_empty() {
                return Ok(TimelineCreateResponse {
                    timeline_info: info,
                    safekeepers: None,
                });
            }
            tracing::info!(%tenant, moved = moved.len(), "attachments moved during the create; repeating it there");
            let deadline = tokio::time::Instant::now() + REATTACH_WAIT;
            let shards: Vec<_> = moved.iter().map(|m| m.shard).collect();
            self.wait_reconciles(shards, deadline).await;
            failed.clear();
            for at in &moved {
                let body = if at.shard.shard_number == 0 {
                    &body
                } else {
                    &others_body
                };
                match self.create_on(at, body).await {
                    Ok(created) if at.shard.shard_number == 0 => info = created,
                    Ok(_) => {}
                    Err(e) => failed.push((at.clone(), e)),
                }
                if let Some(p) = placed.iter_mut().find(|p| p.shard == at.shard) {
                    *p = at.clone();
                }
            }
        }
        Err(OperationError::NotYet(
            "Tenant attachment changed, please retry".into(),
        ))
    }

    async fn create_on(
        &self,
        at: &AttachedShard,
        body: &serde_json::Value,
    ) -> Result<TimelineInfo, OperationError> {
        let r = self
            .call_shard(at, reqwest::Method::POST, "/timeline", Some(body))
            .await?;
        timeline_info(at, &r)
    }

    pub(super) async fn timeline_delete(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<(), OperationError> {
        let _shared = self.locks.tenant_shared(tenant).await;
        let targets = self.attached_shards(tenant)?;
        let deadline = tokio::time::Instant::now() + DELETE_WAIT;
        let path = format!("/timeline/{timeline}");
        let (zero, others) = targets
            .split_first()
            .ok_or(OperationError::TenantNotFound(tenant))?;
        for group in [others, std::slice::from_ref(zero)] {
            self.delete_until_gone(&placed(group), &path, deadline)
                .await
                .map_err(|e| match e {
                    DeleteError::StillRunning => OperationError::Conflict(format!(
                        "timeline {timeline} of tenant {tenant} is still being deleted; retry"
                    )),
                    DeleteError::Failed(e) => e,
                })?;
        }
        Ok(())
    }

    /// Upstream's delete protocol on `group` (each shard at the node asked): DELETE until
    /// every one answers 404. 202 and 409 mean "in progress"; 412 ("tenant is missing") is a
    /// location in motion.
    pub(super) async fn delete_until_gone(
        &self,
        group: &[(TenantShardId, NodeRecord)],
        path: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), DeleteError> {
        let mut pending: Vec<(TenantShardId, NodeRecord)> = group.to_vec();
        let mut pause = Duration::from_millis(50);
        loop {
            let answers = join_all(pending.iter().map(|(shard, node)| {
                self.call_node(
                    node,
                    *shard,
                    reqwest::Method::DELETE,
                    path,
                    None,
                    CALL_TIMEOUT,
                )
            }))
            .await;
            let mut still = Vec::new();
            for ((shard, node), answer) in pending.iter().zip(answers) {
                let r = answer.map_err(DeleteError::Failed)?;
                match r.status {
                    404 => {}
                    200..=299 | 409 => still.push((*shard, node.clone())),
                    412 => {
                        return Err(DeleteError::Failed(OperationError::NotYet(format!(
                            "pageserver {} does not hold {shard} now (attachment moving); retry",
                            node.id
                        ))));
                    }
                    _ => return Err(DeleteError::Failed(refused_by(node, &r))),
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            pending = still;
            if tokio::time::Instant::now() + pause > deadline {
                return Err(DeleteError::StillRunning);
            }
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    return Err(DeleteError::Failed(OperationError::NotLeading(
                        "leadership lost during the delete; retry".into(),
                    )));
                }
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    pub(super) async fn timeline_describe(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Result<TenantTimelineDescribeResponse, OperationError> {
        let _shared = self.locks.tenant_shared(tenant).await;
        let targets = self.attached_shards(tenant)?;
        let answers = self
            .call_shards(
                &targets,
                reqwest::Method::GET,
                &format!("/timeline/{timeline}"),
                None,
            )
            .await;
        let mut shards = Vec::new();
        for (at, answer) in targets.iter().zip(answers) {
            shards.push(timeline_info(at, &answer?)?);
        }
        let image_consistent_lsn = shards
            .iter()
            .map(|s| {
                s.0.get("image_consistent_lsn")
                    .and_then(|v| v.as_str())
                    .and_then(|v| v.parse::<Lsn>().ok())
            })
            .collect::<Option<Vec<Lsn>>>()
            .and_then(|lsns| lsns.into_iter().min());
        Ok(TenantTimelineDescribeResponse {
            shards,
            image_consistent_lsn,
        })
    }
}

/// A pageserver's `TimelineInfo` answer, or its refusal with its status.
fn timeline_info(at: &AttachedShard, r: &Relayed) -> Result<TimelineInfo, OperationError> {
    if !is_success(r) {
        return Err(refused(at, r));
    }
    serde_json::from_value(json_body(at, r)?).map_err(|e| {
        OperationError::Internal(format!("pageserver's TimelineInfo is not an object: {e}"))
    })
}

/// Each shard at its attached node.
pub(super) fn placed(group: &[AttachedShard]) -> Vec<(TenantShardId, NodeRecord)> {
    group.iter().map(|a| (a.shard, a.node.clone())).collect()
}

pub(super) enum DeleteError {
    /// Past the deadline with locations still deleting.
    StillRunning,
    Failed(OperationError),
}
