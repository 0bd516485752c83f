//! The passthroughs: timeline calls relayed to the shards upstream sends them to, and the GET
//! proxy under `/v1/tenant/:id`. Both hold the tenant's lock shared.
//!
//! Timeline calls:
//! 1. Find the attached locations (409 not attached by policy, 503 not yet).
//! 2. Send the call to its shards concurrently: every shard, or shard zero (`mark_invisible`),
//!    or the named shard (`download_heatmap_layers` with a shard id).
//! 3. The first refusal is the answer, with its status. Otherwise merge: a lease answers the
//!    earliest `valid_until`; a detach needs every shard to answer the same; the rest answer
//!    shard zero's body.
//! 4. If an attachment moved while the calls ran, 503 "Tenant attachment changed, please
//!    retry" (the call may have reached a location in a stale generation).
//!
//! GET proxy: the path's tenant id becomes shard zero's id (or stays the named shard's), the
//! pageserver's status and body come back as they are. A 404 while the shard's attachment is
//! moving (a reconcile pending or the location changed) is 503, as upstream: the client
//! retries rather than concluding the tenant is gone.

use state_machine::ids::{TenantShardId, TimelineId};
use storcon_api::timeline::{LsnLease, Relayed, TimelineCall};
use storcon_http::OperationError;

use super::shard_calls::{AttachedShard, is_success, json_body, refused};
use crate::controller::Controller;

impl Controller {
    pub(super) async fn timeline_call(
        &self,
        shard: TenantShardId,
        timeline: TimelineId,
        call: TimelineCall,
    ) -> Result<serde_json::Value, OperationError> {
        let tenant = shard.tenant_id;
        let _shared = self.locks.tenant_shared(tenant).await;
        let all = self.attached_shards(tenant)?;
        let targets: Vec<AttachedShard> = match &call {
            TimelineCall::MarkInvisible(_) => all.into_iter().take(1).collect(),
            TimelineCall::DownloadHeatmapLayers(_) if shard.shard_count.0 != 0 => {
                let one: Vec<_> = all.into_iter().filter(|a| a.shard == shard).collect();
                if one.is_empty() {
                    return Err(OperationError::Invalid(format!(
                        "tenant {tenant} has no shard {shard}"
                    )));
                }
                one
            }
            _ => all,
        };
        let (method, tail, query) = call.route();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| OperationError::Internal(e.to_string()))?;
        let path = format!("/timeline/{timeline}{tail}{query}");
        let answers = self
            .call_shards(&targets, method, &path, call.body().as_ref())
            .await;
        let mut bodies = Vec::new();
        for (at, answer) in targets.iter().zip(answers) {
            let r = answer?;
            if !is_success(&r) {
                return Err(refused(at, &r));
            }
            bodies.push(json_body(at, &r)?);
        }
        if !self.moved(&targets)?.is_empty() {
            return Err(OperationError::NotYet(
                "Tenant attachment changed, please retry".into(),
            ));
        }
        merge(&call, bodies)
    }

    pub(super) async fn tenant_get(
        &self,
        shard: TenantShardId,
        rest: String,
    ) -> Result<Relayed, OperationError> {
        let tenant = shard.tenant_id;
        let _shared = self.locks.tenant_shared(tenant).await;
        let all = self.attached_shards(tenant)?;
        let at = if shard.shard_count.0 == 0 {
            all.into_iter().next()
        } else {
            all.into_iter().find(|a| a.shard == shard)
        }
        .ok_or_else(|| OperationError::Invalid(format!("tenant {tenant} has no shard {shard}")))?;
        let r = self.passthrough_get(&at, &rest).await?;
        if r.status == 404 {
            let moving = self.is_dirty(&at.shard)
                || self.reconciles.is_running(&at.shard)
                || !self.moved(std::slice::from_ref(&at))?.is_empty();
            if moving {
                return Err(OperationError::NotYet(format!(
                    "tenant {tenant}: pageserver answered 404 during an ongoing migration, retry later"
                )));
            }
        }
        Ok(r)
    }
}

fn merge(
    call: &TimelineCall,
    bodies: Vec<serde_json::Value>,
) -> Result<serde_json::Value, OperationError> {
    match call {
        TimelineCall::LsnLease(_) => {
            let mut earliest: Option<(chrono::DateTime<chrono::FixedOffset>, LsnLease)> = None;
            for body in bodies {
                let lease: LsnLease = serde_json::from_value(body).map_err(|e| {
                    OperationError::Internal(format!("pageserver's lease is malformed: {e}"))
                })?;
                let at = chrono::DateTime::parse_from_rfc3339(&lease.valid_until).map_err(|e| {
                    OperationError::Internal(format!(
                        "pageserver's lease valid_until {:?} is not RFC 3339: {e}",
                        lease.valid_until
                    ))
                })?;
                if earliest.as_ref().is_none_or(|(t, _)| at < *t) {
                    earliest = Some((at, lease));
                }
            }
            let (_, lease) = earliest
                .ok_or_else(|| OperationError::Internal("no shard answered the lease".into()))?;
            serde_json::to_value(lease).map_err(|e| OperationError::Internal(e.to_string()))
        }
        TimelineCall::DetachAncestor(_) => {
            let mut bodies = bodies.into_iter();
            let first = bodies.next().unwrap_or(serde_json::Value::Null);
            if bodies.any(|b| b != first) {
                return Err(OperationError::Internal(
                    "shards answered the ancestor detach differently".into(),
                ));
            }
            Ok(first)
        }
        _ => Ok(bodies.into_iter().next().unwrap_or(serde_json::Value::Null)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use storcon_api::timeline::LsnLeaseRequest;

    #[test]
    fn a_lease_answers_the_earliest_expiry_across_offsets() {
        let call = TimelineCall::LsnLease(LsnLeaseRequest {
            lsn: state_machine::ids::Lsn(1),
        });
        let merged = merge(
            &call,
            vec![
                json!({"valid_until": "2026-12-02T10:00:05.000Z"}),
                json!({"valid_until": "2026-12-02T11:00:01.000+01:00"}),
                json!({"valid_until": "2026-12-02T10:00:03.500Z"}),
            ],
        )
        .expect("merged");
        assert_eq!(
            merged,
            json!({"valid_until": "2026-12-02T11:00:01.000+01:00"})
        );
        assert!(merge(&call, vec![json!({"valid_until": "soon"})]).is_err());
    }

    #[test]
    fn a_detach_needs_every_shard_to_agree() {
        let call = TimelineCall::DetachAncestor(None);
        let same = json!({"reparented_timelines": []});
        assert_eq!(
            merge(&call, vec![same.clone(), same.clone()]).expect("same"),
            same
        );
        let other = json!({"reparented_timelines": ["de200bd42b49cc1814412c7e592dd6e9"]});
        assert!(merge(&call, vec![same, other]).is_err());
    }
}
