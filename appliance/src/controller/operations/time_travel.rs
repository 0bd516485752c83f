//! `PUT /v1/tenant/:tenant_id/time_travel_remote_storage?travel_to=&done_if_after=`: rewinds
//! the tenant's remote storage, for recovery (upstream's S3 time travel).
//!
//! 1. Hold the tenant's lock exclusively: nothing attaches, splits or creates meanwhile.
//!    Unknown → 404.
//! 2. The tenant must be detached: every shard's policy `Detached` and no location observed on
//!    any pageserver (a pageserver would otherwise be using what is rewound). Else 409.
//! 3. The shard ids of every shard count in the request and of the present one (count 0 is the
//!    unsharded id): a split since `travel_to` left data under each.
//! 4. On one available pageserver, the time travel of each id, one after another. A refusal is
//!    the answer with its status; the client retries the whole call, which is idempotent.

use state_machine::PlacementPolicy;
use state_machine::ids::{ShardCount, TenantId, TenantShardId};
use storcon_api::secondary::{TimeTravelQuery, TimeTravelRequest};
use storcon_http::OperationError;

use super::shard_calls::{CALL_TIMEOUT, is_success, refused_by};
use crate::controller::{Controller, lock};

impl Controller {
    pub(super) async fn time_travel(
        &self,
        tenant: TenantId,
        query: TimeTravelQuery,
        req: TimeTravelRequest,
    ) -> Result<(), OperationError> {
        let _exclusive = self.locks.tenant_exclusive(tenant).await;
        let present = self.detached_shard_count(tenant)?;
        let mut counts = req.shard_counts.clone();
        counts.push(present);
        counts.sort_unstable();
        counts.dedup();
        let node = self.any_active_node()?;
        let path = format!(
            "/time_travel_remote_storage?travel_to={}&done_if_after={}",
            query_value(&query.travel_to),
            query_value(&query.done_if_after)
        );
        for count in counts {
            for shard in shard_ids(tenant, count) {
                let r = self
                    .call_node(
                        &node,
                        shard,
                        reqwest::Method::PUT,
                        &path,
                        None,
                        CALL_TIMEOUT,
                    )
                    .await?;
                if !is_success(&r) {
                    return Err(refused_by(&node, &r));
                }
            }
        }
        Ok(())
    }

    /// The tenant's shard count, if it is detached everywhere.
    fn detached_shard_count(&self, tenant: TenantId) -> Result<u8, OperationError> {
        let state = self.state.read();
        let observed = lock(&self.observed);
        let mut count = None;
        for s in state.tenant_shards(tenant) {
            count = Some(s.id.shard_count.0);
            if s.placement != PlacementPolicy::Detached {
                return Err(OperationError::Conflict(format!(
                    "tenant {tenant} must be detached before time travel (its policy is {:?})",
                    s.placement
                )));
            }
            if !observed.locations(&s.id).is_empty() {
                return Err(OperationError::Conflict(format!(
                    "tenant {tenant} must be detached before time travel: {} still has locations",
                    s.id
                )));
            }
        }
        count.ok_or(OperationError::TenantNotFound(tenant))
    }
}

/// Every shard id of a tenant with `count` shards.
fn shard_ids(tenant: TenantId, count: u8) -> Vec<TenantShardId> {
    if count == 0 {
        return vec![TenantShardId::unsharded(tenant)];
    }
    (0..count)
        .map(|number| TenantShardId {
            tenant_id: tenant,
            shard_number: number,
            shard_count: ShardCount(count),
        })
        .collect()
}

/// A timestamp as a query value: RFC 3339's `+` must be encoded, or it reads as a space.
fn query_value(s: &str) -> String {
    s.replace('+', "%2B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_of_each_count() {
        let tenant: TenantId = "0123456789abcdef0123456789abcdef".parse().expect("id");
        let ids: Vec<String> = [0, 2]
            .into_iter()
            .flat_map(|c| shard_ids(tenant, c))
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            ids,
            [
                "0123456789abcdef0123456789abcdef",
                "0123456789abcdef0123456789abcdef-0002",
                "0123456789abcdef0123456789abcdef-0102",
            ]
        );
        assert_eq!(
            query_value("2026-12-02T10:00:00+01:00"),
            "2026-12-02T10:00:00%2B01:00"
        );
    }
}
