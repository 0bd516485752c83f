//! Auto-split (upstream section 5.12), off unless `[controller] split_threshold` or
//! `initial_split_threshold` is set. Each background tick, in a task of its own (at most one):
//!
//! 1. `POST /v1/top_tenants` on every Active node: for the size split, shards ordered by
//!    `max_logical_size_per_shard` above `split_threshold` of tenants with fewer than
//!    `max_split_shards` shards; for the initial split, unsharded tenants ordered by
//!    `max_logical_size` above `initial_split_threshold`. Ten of each, as upstream.
//! 2. Keep tenants the controller knows with every shard `Attached`, scheduling `Active` and
//!    not splitting; order by `max_logical_size`, largest first.
//! 3. The first with a target shard count above its own ([`target_shard_count`], pure) is
//!    split to it (`split_tenant`, the same driver as the API; the stripe size unchanged, the
//!    default for an unsharded tenant). One split per tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use state_machine::ids::TenantId;
use state_machine::{PlacementPolicy, ShardSchedulingPolicy};
use storcon_api::top_tenants::{TopTenantShardsOrder, TopTenantShardsRequest};

use super::Controller;

/// Upstream asks for this many candidates of each kind.
const CANDIDATES: usize = 10;

/// The auto-split knobs, upstream's names (sizes in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoSplit {
    /// Split when the largest timeline's logical size per shard passes this.
    pub split_threshold: Option<u64>,
    /// Never split beyond this many shards; ≤ 1 turns splitting off.
    pub max_split_shards: u8,
    /// Split an unsharded tenant this large at once into `initial_split_shards`.
    pub initial_split_threshold: Option<u64>,
    /// ≤ 1 turns the initial split off.
    pub initial_split_shards: u8,
}

impl AutoSplit {
    pub fn enabled(&self) -> bool {
        self.max_split_shards > 1
            && (self.split_threshold.is_some_and(|t| t > 0)
                || self.initial_split_threshold.is_some() && self.initial_split_shards > 1)
    }
}

/// The shard count a tenant of `count` shards (1 if unsharded) whose largest timeline has
/// `max_logical_size` bytes should split to, if more than it has: the power of two that
/// brings each shard under `split_threshold`; at least `initial_split_shards` for an
/// unsharded tenant above `initial_split_threshold`; at most `max_split_shards`.
pub fn target_shard_count(cfg: &AutoSplit, count: u8, max_logical_size: u64) -> Option<u8> {
    if cfg.max_split_shards <= 1 {
        return None;
    }
    let mut want: u64 = 1;
    if let Some(t) = cfg.split_threshold.filter(|t| *t > 0) {
        want = max_logical_size.div_ceil(t).max(1).next_power_of_two();
    }
    if count <= 1
        && cfg.initial_split_shards > 1
        && cfg
            .initial_split_threshold
            .is_some_and(|t| max_logical_size > t)
    {
        want = want.max(u64::from(cfg.initial_split_shards));
    }
    let want = u8::try_from(want.min(u64::from(cfg.max_split_shards))).unwrap_or(u8::MAX);
    (want > count.max(1) && want.is_multiple_of(count.max(1))).then_some(want)
}

impl Controller {
    /// Starts one auto-split pass unless one runs or it is off.
    pub(super) fn spawn_autosplit(self: &Arc<Self>) {
        let cfg = self.cfg.autosplit();
        if !cfg.enabled() || self.autosplit_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let ctl = self.clone();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                ctl.autosplit(&cfg).await;
                ctl.autosplit_running.store(false, Ordering::SeqCst);
            },
            tracing::info_span!("autosplit"),
        ));
    }

    async fn autosplit(self: &Arc<Self>, cfg: &AutoSplit) {
        let mut requests = Vec::new();
        if let Some(t) = cfg.split_threshold.filter(|_| cfg.max_split_shards > 1) {
            requests.push(TopTenantShardsRequest {
                order_by: TopTenantShardsOrder::MaxLogicalSizePerShard,
                limit: CANDIDATES,
                where_shards_lt: Some(cfg.max_split_shards),
                where_gt: Some(t),
            });
        }
        if let Some(t) = cfg
            .initial_split_threshold
            .filter(|_| cfg.initial_split_shards > 1)
        {
            requests.push(TopTenantShardsRequest {
                order_by: TopTenantShardsOrder::MaxLogicalSize,
                limit: CANDIDATES,
                where_shards_lt: Some(2),
                where_gt: Some(t),
            });
        }
        // The largest size any node reported for each tenant.
        let mut sizes: BTreeMap<TenantId, u64> = BTreeMap::new();
        let nodes: Vec<_> = self
            .state
            .read()
            .nodes()
            .map(|n| n.id)
            .filter_map(|id| self.node_if_active(id))
            .collect();
        for node in &nodes {
            for request in &requests {
                match self.ps_for(node.id).top_tenants(node, request).await {
                    Ok(answer) => {
                        for item in answer.shards {
                            let size = sizes.entry(item.id.tenant_id).or_default();
                            *size = (*size).max(item.max_logical_size);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(node = %node.id, error = %e, "top_tenants failed")
                    }
                }
            }
        }
        let mut candidates: Vec<(u64, TenantId, u8)> = {
            let state = self.state.read();
            sizes
                .into_iter()
                .filter_map(|(tenant, size)| {
                    let shards: Vec<_> = state.tenant_shards(tenant).collect();
                    let splittable = !shards.is_empty()
                        && shards.iter().all(|s| {
                            matches!(s.placement, PlacementPolicy::Attached(_))
                                && s.scheduling == ShardSchedulingPolicy::Active
                                && !s.splitting
                        });
                    let count = shards.first()?.id.shard_count.0;
                    splittable.then_some((size, tenant, count))
                })
                .collect()
        };
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (size, tenant, count) in candidates {
            let Some(target) = target_shard_count(cfg, count, size) else {
                continue;
            };
            tracing::info!(%tenant, size, from = count, to = target, "auto-splitting");
            match self.split_tenant(tenant, target, None).await {
                Ok(_) => tracing::info!(%tenant, to = target, "auto-split done"),
                Err(e) => tracing::warn!(%tenant, error = %e, "auto-split failed"),
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn cfg() -> AutoSplit {
        AutoSplit {
            split_threshold: Some(64 * GIB),
            max_split_shards: 16,
            initial_split_threshold: None,
            initial_split_shards: 2,
        }
    }

    #[test]
    fn size_split_goes_to_the_power_of_two_that_fits() {
        let c = cfg();
        assert_eq!(target_shard_count(&c, 0, 10 * GIB), None, "small");
        assert_eq!(
            target_shard_count(&c, 0, 64 * GIB),
            None,
            "at the threshold"
        );
        assert_eq!(target_shard_count(&c, 0, 65 * GIB), Some(2));
        assert_eq!(target_shard_count(&c, 0, 200 * GIB), Some(4));
        assert_eq!(target_shard_count(&c, 4, 200 * GIB), None, "already 4");
        assert_eq!(target_shard_count(&c, 4, 300 * GIB), Some(8));
        assert_eq!(target_shard_count(&c, 8, 10_000 * GIB), Some(16), "clamped");
        assert_eq!(
            target_shard_count(&c, 16, 10_000 * GIB),
            None,
            "at the maximum"
        );
    }

    #[test]
    fn initial_split_applies_to_unsharded_tenants_only() {
        let c = AutoSplit {
            initial_split_threshold: Some(GIB),
            initial_split_shards: 8,
            ..cfg()
        };
        assert_eq!(target_shard_count(&c, 0, GIB), None, "not above it");
        assert_eq!(target_shard_count(&c, 0, 2 * GIB), Some(8));
        assert_eq!(target_shard_count(&c, 1, 2 * GIB), Some(8));
        assert_eq!(target_shard_count(&c, 2, 2 * GIB), None, "sharded already");
        assert_eq!(target_shard_count(&c, 0, 600 * GIB), Some(16), "size wins");
    }

    #[test]
    fn switched_off() {
        let off = AutoSplit {
            max_split_shards: 1,
            ..cfg()
        };
        assert!(!off.enabled());
        assert_eq!(target_shard_count(&off, 0, 1 << 50), None);
        let none = AutoSplit {
            split_threshold: None,
            ..cfg()
        };
        assert!(!none.enabled());
        assert!(cfg().enabled());
        let count_not_a_divisor = AutoSplit {
            max_split_shards: 16,
            ..cfg()
        };
        assert_eq!(target_shard_count(&count_not_a_divisor, 3, 200 * GIB), None);
    }
}
