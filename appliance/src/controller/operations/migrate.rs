//! Moving one shard by hand (upstream section 5.4): `migrate`, `migrate_secondary` and
//! `cancel_reconcile` on `/control/v1/tenant/:tenant_shard_id/`.
//!
//! Migrate (`TenantShardMigrateRequest`):
//! 1. Check against the state: 404 unknown shard; 400 unknown node or a policy that attaches
//!    nothing; 412 `origin_node_id` not where the shard is attached. The destination already
//!    attached: nothing to do but wait for its reconcile.
//! 2. Unless `override_scheduler`: 412 if the destination is not Active, or scores worse by
//!    the optimiser's key than the origin (outside the preferred AZ, more of the tenant there,
//!    more attachments there), so the optimiser would move it back, as upstream refuses. An
//!    overridden move may be undone by the optimiser (upstream pins it with `preferred_node`;
//!    storcon does not yet).
//! 3. Commit `StartMigration`: with `prewarm` the destination becomes a secondary and the
//!    migration is recorded; without, the intent cuts over at once.
//! 4. Wait up to 30 s for the reconcile it started (the secondary's creation, or the live
//!    migration itself), then answer `{}`. With `prewarm`, the warm-up runs on in the
//!    background.
//!
//! Preview (`?dry_run=true`): steps 1 and 2, then the move step 3 would commit, as a
//! `DryRunResponse` (no moves when the destination is attached already); nothing is proposed.
//!
//! Warm-up (one task per recorded migration; a new leader starts one for each record it finds):
//! a. Failpoint `migration-before-warmup`.
//! b. The destination's `secondary/download?wait_ms=<request timeout>` until 200, logging
//!    layers and bytes, up to the warm-up timeout. Errors and the timeout go on to the
//!    cut-over with a cold cache, as upstream does.
//! c. Failpoint `migration-before-cutover`.
//! d. Commit `CutoverMigration`, and reconcile: the live migration (`live_migration.rs`).
//!
//! `migrate_secondary` replaces every secondary of the shard with the node named, as upstream.
//! `cancel_reconcile` ends a migration that has not cut over (its warm-up stops, a secondary
//! added for it goes) and answers once that is committed; a live migration already cut over is
//! not undone: the attachment's intent has moved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use state_machine::ids::TenantShardId;
use state_machine::{Command, Intent, MigrationRecord, NodeId, StartMigration};
use storcon_api::dry_run::{DryRunResponse, PlannedMove};
use storcon_api::migrate::{TenantShardMigrateRequest, TenantShardMigrateResponse};
use storcon_api::secondary::SecondaryProgress;
use storcon_http::OperationError;
use tokio::time::Instant;

use super::Wait;
use super::shard_calls::json_body_of;
use crate::controller::nodes::{self, Avail};
use crate::controller::{Controller, lock};

const RECONCILE_WAIT: Duration = Duration::from_secs(30);

/// Tells a warm-up task whether the slot it leaves is still its own (a newer one replaced it).
static NEXT_WARM_UP: AtomicU64 = AtomicU64::new(0);

impl Controller {
    pub(super) async fn migrate(
        self: &Arc<Self>,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Result<TenantShardMigrateResponse, OperationError> {
        let tenant = shard.tenant_id;
        let destination = req.node_id;
        let config = &req.migration_config;
        let Some(origin) = self.check_migrate(shard, &req)? else {
            self.wait_tenant_reconciled(tenant, RECONCILE_WAIT).await;
            return Ok(TenantShardMigrateResponse {});
        };
        let start = StartMigration {
            shard,
            origin,
            destination,
            prewarm: config.prewarm,
            warmup_timeout_ms: millis(config.warmup_timeout()),
            download_request_timeout_ms: millis(config.download_request_timeout()),
        };
        tracing::info!(%shard, %origin, %destination, prewarm = config.prewarm, "migration requested");
        self.begin_migration(start, Wait::AtMost(RECONCILE_WAIT))
            .await?;
        Ok(TenantShardMigrateResponse {})
    }

    /// Step 1 and 2: the shard's origin, or `None` when it is attached at the destination
    /// already; the errors a migrate answers before it changes anything.
    fn check_migrate(
        &self,
        shard: TenantShardId,
        req: &TenantShardMigrateRequest,
    ) -> Result<Option<NodeId>, OperationError> {
        let destination = req.node_id;
        let state = self.state.read();
        let s = state
            .shard(&shard)
            .ok_or_else(|| OperationError::NotFound(format!("Tenant shard {shard} not found")))?;
        let origin = s.intent.attached;
        if let Some(expected) = req.origin_node_id
            && origin != Some(expected)
        {
            return Err(OperationError::PreconditionFailed(format!(
                "{shard} is attached on {origin:?}, not on node {expected}"
            )));
        }
        if origin == Some(destination) {
            Ok(None)
        } else {
            let origin = origin.ok_or_else(|| {
                OperationError::Invalid(format!("{shard} is not attached anywhere"))
            })?;
            state.check_migration(shard, origin, destination)?;
            if !req.migration_config.override_scheduler {
                self.check_destination(&state, s, destination)?;
            }
            Ok(Some(origin))
        }
    }

    /// `?dry_run=true`: the checks of a migrate, then the move it would make; nothing is
    /// proposed.
    pub(super) fn preview_migrate(
        &self,
        shard: TenantShardId,
        req: &TenantShardMigrateRequest,
    ) -> Result<DryRunResponse, OperationError> {
        let moves = self.check_migrate(shard, req)?.map(|origin| PlannedMove {
            tenant_shard_id: shard,
            from: Some(origin),
            to: Some(req.node_id),
            note: if req.migration_config.prewarm {
                "prewarmed: a secondary first, then the cut-over".into()
            } else {
                "cut over at once".into()
            },
        });
        Ok(DryRunResponse::new(moves.into_iter().collect()))
    }

    /// Commits `StartMigration` and, for a prewarmed one, starts its warm-up task: the one way
    /// a migration begins (the migrate API, the optimiser, the chaos injector).
    pub(crate) async fn begin_migration(
        self: &Arc<Self>,
        start: StartMigration,
        wait: Wait,
    ) -> Result<(), OperationError> {
        let shard = start.shard;
        let prewarm = start.prewarm;
        self.propose_and_reconcile(shard.tenant_id, Command::StartMigration(start), wait)
            .await?;
        if prewarm && let Some(record) = self.state.read().migration(&shard).cloned() {
            self.spawn_warm_up(record);
        }
        Ok(())
    }

    /// The scheduler's objections to `destination` (upstream's, without an override).
    fn check_destination(
        &self,
        state: &state_machine::State,
        shard: &state_machine::TenantShard,
        destination: NodeId,
    ) -> Result<(), OperationError> {
        let nodes = self.nodes.states();
        if !matches!(
            nodes.get(&destination).map(|n| n.avail),
            Some(Avail::Active)
        ) {
            return Err(OperationError::PreconditionFailed(format!(
                "Node {destination} is not available"
            )));
        }
        let views = nodes::views(state, &nodes);
        if state_machine::optimise::is_worse_attachment(state, &views, shard, destination) {
            return Err(OperationError::PreconditionFailed(
                "Migration to a worse-scoring node".into(),
            ));
        }
        Ok(())
    }

    pub(super) async fn migrate_secondary(
        &self,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Result<TenantShardMigrateResponse, OperationError> {
        let node = req.node_id;
        let intent = {
            let state = self.state.read();
            let s = state.shard(&shard).ok_or_else(|| {
                OperationError::NotFound(format!("Tenant shard {shard} not found"))
            })?;
            if state.node(node).is_none() {
                return Err(OperationError::Invalid(format!("Node {node} not found")));
            }
            if s.intent.attached == Some(node) {
                return Err(OperationError::Invalid(format!(
                    "{shard} is attached on node {node}; a secondary cannot be there too"
                )));
            }
            if !req.migration_config.override_scheduler
                && !matches!(
                    self.nodes.states().get(&node).map(|n| n.avail),
                    Some(Avail::Active)
                )
            {
                return Err(OperationError::PreconditionFailed(format!(
                    "Node {node} is not available"
                )));
            }
            Intent {
                attached: s.intent.attached,
                secondaries: vec![node],
            }
        };
        self.propose_and_reconcile(
            shard.tenant_id,
            Command::SetIntents(vec![(shard, intent)]),
            Wait::AtMost(RECONCILE_WAIT),
        )
        .await?;
        Ok(TenantShardMigrateResponse {})
    }

    pub(super) async fn cancel_reconcile(
        &self,
        shard: TenantShardId,
    ) -> Result<(), OperationError> {
        if self.state.read().shard(&shard).is_none() {
            return Err(OperationError::NotFound(format!(
                "Tenant shard {shard} not found"
            )));
        }
        if let Some((_, warm_up)) = lock(&self.warm_ups).remove(&shard) {
            warm_up.cancel();
        }
        self.propose_and_reconcile(
            shard.tenant_id,
            Command::CancelMigration { shard },
            Wait::AtMost(Duration::from_secs(5)),
        )
        .await?;
        Ok(())
    }

    /// Starts the warm-up of every recorded migration (a new leader carries them on).
    pub(crate) fn resume_migrations(self: &Arc<Self>) {
        let records: Vec<MigrationRecord> = self.state.read().migrations().cloned().collect();
        for record in records {
            tracing::info!(shard = %record.shard, destination = %record.destination, "resuming a migration's warm-up");
            self.spawn_warm_up(record);
        }
    }

    fn spawn_warm_up(self: &Arc<Self>, record: MigrationRecord) {
        let token = self.cancel.child_token();
        let id = NEXT_WARM_UP.fetch_add(1, Ordering::Relaxed);
        if let Some((_, previous)) = lock(&self.warm_ups).insert(record.shard, (id, token.clone()))
        {
            previous.cancel();
        }
        let ctl = self.clone();
        let span = tracing::info_span!("migration", shard = %record.shard, destination = %record.destination);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let shard = record.shard;
                tokio::select! {
                    _ = token.cancelled() => tracing::info!("warm-up cancelled"),
                    r = ctl.warm_up_and_cut_over(record) => {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "migration did not cut over");
                            ctl.reconciles.record_error(shard, format!("migration: {e}"));
                        }
                    }
                }
                let mut warm_ups = lock(&ctl.warm_ups);
                if warm_ups.get(&shard).is_some_and(|(mine, _)| *mine == id) {
                    warm_ups.remove(&shard);
                }
            },
            span,
        ));
    }

    async fn warm_up_and_cut_over(&self, record: MigrationRecord) -> Result<(), OperationError> {
        let fail = |e: storcon_failpoints::FailpointError| OperationError::Internal(e.to_string());
        self.failpoints
            .hit("migration-before-warmup")
            .await
            .map_err(fail)?;
        // The destination must hold the secondary before it can download.
        self.wait_tenant_reconciled(record.shard.tenant_id, RECONCILE_WAIT)
            .await;
        self.warm_up(&record).await;
        self.failpoints
            .hit("migration-before-cutover")
            .await
            .map_err(fail)?;
        let still = self
            .state
            .read()
            .migration(&record.shard)
            .is_some_and(|r| r == &record);
        if !still {
            return Ok(());
        }
        self.propose_and_reconcile(
            record.shard.tenant_id,
            Command::CutoverMigration {
                shard: record.shard,
                destination: record.destination,
            },
            Wait::AtMost(RECONCILE_WAIT),
        )
        .await?;
        tracing::info!("migration cut over");
        Ok(())
    }

    /// Downloads on the destination until complete or out of time; never fails (a cold cache
    /// is slower, not wrong).
    async fn warm_up(&self, record: &MigrationRecord) {
        let started = Instant::now();
        let total = Duration::from_millis(record.warmup_timeout_ms);
        let per_call = Duration::from_millis(record.download_request_timeout_ms);
        let path = format!("/secondary/download?wait_ms={}", per_call.as_millis());
        let mut pause = Duration::from_millis(100);
        while started.elapsed() < total {
            let Some(node) = self.node_if_active(record.destination) else {
                tracing::warn!("destination not active; waiting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            };
            let answer = self
                .call_node(
                    &node,
                    record.shard,
                    reqwest::Method::POST,
                    &path,
                    None,
                    per_call + Duration::from_secs(5),
                )
                .await;
            match answer {
                Ok(r) if r.status == 200 || r.status == 202 => {
                    let progress: Option<SecondaryProgress> = json_body_of(&node, record.shard, &r)
                        .ok()
                        .and_then(|v| serde_json::from_value(v).ok());
                    if let Some(p) = &progress {
                        tracing::info!(
                            layers = p.layers_downloaded,
                            layers_total = p.layers_total,
                            bytes = p.bytes_downloaded,
                            bytes_total = p.bytes_total,
                            "warm-up progress"
                        );
                    }
                    if r.status == 200 {
                        tracing::info!(elapsed_ms = millis(started.elapsed()), "warm-up complete");
                        return;
                    }
                }
                Ok(r) => {
                    tracing::warn!(status = r.status, "secondary download refused; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "secondary download failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        tracing::warn!(
            timeout_ms = record.warmup_timeout_ms,
            "warm-up timed out; cutting over with a cold cache"
        );
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
