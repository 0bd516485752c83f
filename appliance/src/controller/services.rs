//! The controller as HTTP handlers see it (`storcon_http::LeaderServices`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use state_machine::ids::{TenantId, TenantShardId};
use state_machine::scheduler::Scheduler;
use state_machine::wire::LocationConfigMode;
use state_machine::{Generation, NodeAvailability, NodeId};
use storcon_http::{ApiError, LeaderServices, ShardStatus};
use tracing::Instrument;

use super::nodes::{self, Avail};
use super::{Controller, lock};

/// Handle given to the HTTP layer.
pub struct Services(pub Arc<Controller>);

impl LeaderServices for Services {
    fn ready(&self) -> bool {
        self.0.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn availability(&self, node: NodeId) -> NodeAvailability {
        lock(&self.0.nodes)
            .get(&node)
            .map_or(NodeAvailability::Offline, |n| n.wire())
    }

    fn choose_az(&self) -> Option<String> {
        let state = self.0.state.read();
        let views = nodes::views(&state, &lock(&self.0.nodes));
        Scheduler::new(&state, views).choose_az()
    }

    fn schedule_tenant(&self, tenant: TenantId) -> BoxFuture<'_, Result<(), ApiError>> {
        async move {
            let ctl = &self.0;
            let scheduled = ctl
                .schedule(&BTreeSet::from([tenant]))
                .await
                .map_err(|e| ApiError::Unavailable(format!("cannot commit schedule: {e}")))?;
            let ids: Vec<TenantShardId> = ctl
                .state
                .read()
                .tenant_shards(tenant)
                .map(|s| s.id)
                .collect();
            ctl.reconcile_if_dirty(ids);
            // Upstream answers 409 and keeps what it stored; the background pass retries.
            if let Some((shard, e)) = scheduled.unschedulable.first() {
                return Err(ApiError::Conflict(format!(
                    "Scheduling error: {shard}: {e} ({} shard(s) not placed)",
                    scheduled.unschedulable.len()
                )));
            }
            Ok(())
        }
        .boxed()
    }

    fn wait_reconciled(&self, tenant: TenantId, timeout: Duration) -> BoxFuture<'_, bool> {
        async move {
            let ctl = &self.0;
            let deadline = tokio::time::Instant::now() + timeout;
            let mut ids: Vec<TenantShardId> = ctl
                .state
                .read()
                .tenant_shards(tenant)
                .map(|s| s.id)
                .collect();
            // Shards of a deleted tenant still being detached.
            ids.extend(
                lock(&ctl.observed)
                    .shard_ids()
                    .into_iter()
                    .filter(|s| s.tenant_id == tenant),
            );
            ctl.wait_reconciles(ids, deadline).await
        }
        .boxed()
    }

    fn split_tenant(
        &self,
        tenant: TenantId,
        new_shard_count: u8,
        new_stripe_size: Option<u32>,
    ) -> BoxFuture<'_, Result<Vec<TenantShardId>, ApiError>> {
        // In its own task: a client that hangs up must not cancel a split half-way, which
        // would leave it recorded with nobody to finish or abort it.
        let ctl = self.0.clone();
        async move {
            let span = tracing::info_span!("split", %tenant, new_shard_count);
            tokio::spawn(
                async move {
                    ctl.split_tenant(tenant, new_shard_count, new_stripe_size)
                        .await
                }
                .instrument(span),
            )
            .await
            .map_err(|e| ApiError::Internal(format!("split task failed: {e}")))?
        }
        .boxed()
    }

    fn node_re_attached(&self, node: NodeId, issued: &[(TenantShardId, Generation)]) {
        let ctl = &self.0;
        if let Some(n) = lock(&ctl.nodes).get_mut(&node) {
            n.avail = Avail::WarmingUp {
                since: Instant::now(),
            };
        } else {
            lock(&ctl.nodes).insert(
                node,
                nodes::NodeState {
                    avail: Avail::WarmingUp {
                        since: Instant::now(),
                    },
                    last_seen: None,
                    utilization_score: 1_000_000,
                },
            );
        }
        // Calls in flight to it answer for its previous life; abandon them.
        ctl.cancel_node_calls(node);
        // Until the activation check lists the node, what it holds is uncertain.
        let mut obs = lock(&ctl.observed);
        obs.mark_node_unknown(node);
        for (id, _) in issued {
            obs.set(*id, node, None);
        }
    }

    fn set_availability(
        &self,
        node: NodeId,
        availability: NodeAvailability,
    ) -> BoxFuture<'_, Result<(), ApiError>> {
        async move {
            let ctl = &self.0;
            let record = ctl
                .state
                .read()
                .node(node)
                .cloned()
                .ok_or_else(|| ApiError::NotFound(format!("Node {node} not registered")))?;
            match availability {
                NodeAvailability::Offline => ctl.node_offline(node).await,
                NodeAvailability::Active => ctl.activate(&record).await.map_err(|e| {
                    ApiError::PreconditionFailed(format!("cannot activate node {node}: {e}"))
                })?,
                NodeAvailability::WarmingUp => {
                    if let Some(n) = lock(&ctl.nodes).get_mut(&node) {
                        n.avail = Avail::WarmingUp {
                            since: Instant::now(),
                        };
                    }
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn shard_status(&self, shard: TenantShardId) -> ShardStatus {
        ShardStatus {
            is_reconciling: self.0.reconciles.is_running(&shard),
            last_error: lock(&self.0.last_errors)
                .get(&shard)
                .cloned()
                .unwrap_or_default(),
            pending_compute_notification: self.0.hook.is_pending(shard.tenant_id),
        }
    }

    fn observed_on(&self, node: NodeId) -> Vec<(TenantShardId, Option<bool>)> {
        lock(&self.0.observed)
            .on_node(node)
            .into_iter()
            .map(|(id, conf)| (id, conf.map(|c| c.mode == LocationConfigMode::Secondary)))
            .collect()
    }

    fn reconcile_all(&self) -> usize {
        self.0.reconcile_all_dirty()
    }

    fn consistency_check(&self) -> BoxFuture<'_, Result<(), ApiError>> {
        async move {
            let mut problems = self.0.consistency_problems();
            match self.0.audit.memory_matches_disk().await {
                Ok(true) => {}
                Ok(false) => problems.push("in-memory state differs from the rows on disk".into()),
                Err(e) => problems.push(format!("cannot read the rows on disk: {e}")),
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(ApiError::Internal(format!(
                    "consistency check failed: {}",
                    problems.join("; ")
                )))
            }
        }
        .boxed()
    }

    fn forget_tenant(&self, tenant: TenantId) {
        lock(&self.0.last_errors).retain(|id, _| id.tenant_id != tenant);
        self.0.hook.forget(tenant);
        self.0.reconciles.forget_tenant(tenant);
        self.0.forget_tenant_op(tenant);
    }
}

impl Controller {
    /// Replicated intents checked against registered nodes, and the leader's observed view
    /// against the intents (for shards not being reconciled right now).
    fn consistency_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let shard_ids: Vec<TenantShardId> = {
            let state = self.state.read();
            for s in state.shards() {
                if let Some(a) = s.intent.attached
                    && s.intent.secondaries.contains(&a)
                {
                    problems.push(format!("{}: node {a} both attached and secondary", s.id));
                }
                for n in s.intent.nodes() {
                    if state.node(n).is_none() {
                        problems.push(format!("{}: intent names unknown node {n}", s.id));
                    }
                }
                if let Some(g) = s.generation_pageserver
                    && state.node(g).is_none()
                {
                    problems.push(format!("{}: generation issued to unknown node {g}", s.id));
                }
            }
            state.shards().map(|s| s.id).collect()
        };
        for id in shard_ids {
            if !self.reconciles.is_running(&id) && self.is_dirty(&id) {
                problems.push(format!(
                    "{id}: observed state differs from intent and no reconcile runs"
                ));
            }
        }
        problems
    }
}
