//! The leader's operations API (`storcon_http::Operations`): one method per operation, each a
//! whole workflow in a file of its own here (split's lives in `controller/split.rs`).
//!
//! - `tenant_create`, `tenant_delete`, `tenant_change` (policy, config), `tenant_read`
//!   (describe, list, config), `onboarding` (`location_config`);
//! - `upcalls` (re-attach, validate), `nodes` (register, configure, shards);
//! - `timelines` (create, delete, describe) and `passthrough` (timeline calls, the GET proxy),
//!   both through `shard_calls` (attached locations, fan-out, moved-attachment checks);
//! - `secondary_download` (warm-up of secondaries) and `time_travel` (remote storage rewind);
//! - `debug` (attach-hook, inspect, reconcile_all, consistency_check), `debug_dump` (tenant
//!   and scheduler dumps, locate), `drop` (tenant and node drops).
//!
//! Every write goes through [`Controller::propose_and_reconcile`] (or, for a change that places
//! nothing, [`Controller::propose_request`]), so each operation proposes, schedules and waits
//! the same way, fenced by this controller's term.

mod debug;
mod debug_dump;
mod drop;
mod migrate;
mod node_delete;
mod node_drain;
mod node_fill;
mod node_operation;
mod nodes;
mod onboarding;
mod optimise;
mod passthrough;
mod preferred_azs;
mod secondary_download;
mod shard_calls;
mod tenant_change;
mod tenant_create;
mod tenant_delete;
mod tenant_read;
mod time_travel;
mod timelines;
mod upcalls;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use raft_store::ProposeError;
use state_machine::ids::{TenantId, TenantShardId};
use state_machine::node_operation::{NodeOperation, NodeOperationKind};
use state_machine::{Command, NodeAvailability, NodeId, NodeRegisterRequest, Response};
use storcon_api::ids::TimelineId;
use storcon_api::migrate::{TenantShardMigrateRequest, TenantShardMigrateResponse};
use storcon_api::secondary::{
    DownloadStatus, SecondaryProgress, TimeTravelQuery, TimeTravelRequest,
};
use storcon_api::timeline::{
    Relayed, TenantTimelineDescribeResponse, TimelineCall, TimelineCreateRequest,
    TimelineCreateResponse,
};
use storcon_api::wire::{
    AttachHookRequest, AttachHookResponse, InspectRequest, InspectResponse, LocationConfig,
    LocationConfigResponse, NodeConfigureRequest, NodeShardResponse, ReAttachRequest,
    ReAttachResponse, TenantConfigRequest, TenantConfigResponse, TenantCreateRequest,
    TenantCreateResponse, TenantDescribeResponse, TenantPolicyRequest, TenantShardSplitRequest,
    TenantShardSplitResponse, ValidateRequest, ValidateResponse,
};
use storcon_http::{Op, OperationError, TenantDeletion, TenantPage};
use tracing::Instrument;

use super::{Controller, lock};

/// How long a request's proposal may take to commit (a leader cut off from its quorum would
/// otherwise hold the request), and a read to be confirmed.
const REQUEST_QUORUM_WAIT: Duration = storcon_http::QUORUM_WAIT;

/// How long an operation waits for the reconciles its change started.
#[derive(Debug, Clone)]
pub(crate) enum Wait {
    /// Answer once the intents are committed and the reconciles queued.
    Queued,
    /// Wait up to this long; a reconcile still running is not an error (upstream answers).
    AtMost(Duration),
    /// Wait up to this long; one still running fails the operation with `unfinished`, and the
    /// same request may be retried.
    Required {
        within: Duration,
        unfinished: String,
    },
}

impl Controller {
    /// Proposes a command on behalf of a request, with the request's bound on the wait.
    pub(super) async fn propose_request(&self, command: Command) -> Result<Response, ProposeError> {
        self.propose_within(command, REQUEST_QUORUM_WAIT).await
    }

    /// The one way an operation changes a tenant: propose `command`, schedule the tenant and
    /// commit its intents, queue reconciles for its shards, then wait as `wait` says.
    /// A tenant whose shards cannot all be placed keeps what was stored and answers
    /// [`OperationError::Unschedulable`] (upstream's 409); the background pass retries.
    pub(super) async fn propose_and_reconcile(
        &self,
        tenant: TenantId,
        command: Command,
        wait: Wait,
    ) -> Result<Response, OperationError> {
        let response = self.propose_request(command).await?;
        self.schedule_and_queue(tenant).await?;
        match wait {
            Wait::Queued => {}
            Wait::AtMost(within) => {
                if !self.wait_tenant_reconciled(tenant, within).await {
                    tracing::info!(%tenant, "change stored; reconciles still running");
                }
            }
            Wait::Required { within, unfinished } => {
                if !self.wait_tenant_reconciled(tenant, within).await {
                    return Err(OperationError::NotYet(unfinished));
                }
            }
        }
        Ok(response)
    }

    async fn schedule_and_queue(&self, tenant: TenantId) -> Result<(), OperationError> {
        let scheduled = self.schedule(&BTreeSet::from([tenant])).await?;
        let ids: Vec<TenantShardId> = self
            .state
            .read()
            .tenant_shards(tenant)
            .map(|s| s.id)
            .collect();
        self.reconcile_if_dirty(ids);
        match scheduled.unschedulable.first() {
            Some((shard, e)) => Err(OperationError::Unschedulable {
                shard: *shard,
                reason: e.to_string(),
                count: scheduled.unschedulable.len(),
            }),
            None => Ok(()),
        }
    }

    /// Waits until every shard of the tenant, and every observed location of a deleted one,
    /// matches its intent; false on timeout.
    async fn wait_tenant_reconciled(&self, tenant: TenantId, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut ids: Vec<TenantShardId> = self
            .state
            .read()
            .tenant_shards(tenant)
            .map(|s| s.id)
            .collect();
        ids.extend(
            lock(&self.observed)
                .shard_ids()
                .into_iter()
                .filter(|s| s.tenant_id == tenant),
        );
        self.wait_reconciles(ids, deadline).await
    }

    /// Reads the applied state once a quorum confirms this replica still leads.
    pub(super) async fn read_confirmed<T>(
        &self,
        read: impl FnOnce(&state_machine::State) -> T,
    ) -> Result<T, OperationError> {
        Ok(raft_store::client::read_linearizable(
            &self.raft,
            &self.state,
            REQUEST_QUORUM_WAIT,
            read,
        )
        .await?)
    }
}

/// The handle the HTTP layer holds while this controller leads.
pub struct Operations(pub Arc<Controller>);

impl storcon_http::Operations for Operations {
    fn ready(&self) -> bool {
        self.0.started.load(Ordering::SeqCst)
    }

    fn availability(&self, node: NodeId) -> NodeAvailability {
        self.0
            .nodes
            .states()
            .get(&node)
            .map_or(NodeAvailability::Offline, |n| n.wire())
    }

    fn tenant_create(&self, req: TenantCreateRequest) -> Op<'_, TenantCreateResponse> {
        self.0.tenant_create(req).boxed()
    }

    fn tenant_delete(&self, tenant: TenantId) -> Op<'_, TenantDeletion> {
        // In its own task: a client that hangs up must not stop a delete between its steps.
        let ctl = self.0.clone();
        async move {
            let span = tracing::info_span!("tenant_delete", %tenant);
            tokio::spawn(async move { ctl.tenant_delete(tenant).await }.instrument(span))
                .await
                .map_err(|e| OperationError::Internal(format!("delete task failed: {e}")))?
        }
        .boxed()
    }

    fn tenant_describe(&self, tenant: TenantId) -> Op<'_, TenantDescribeResponse> {
        self.0.tenant_describe(tenant).boxed()
    }

    fn tenant_list(&self, page: TenantPage) -> Op<'_, Vec<TenantDescribeResponse>> {
        self.0.tenant_list(page).boxed()
    }

    fn tenant_policy(&self, tenant: TenantId, req: TenantPolicyRequest) -> Op<'_, ()> {
        self.0.tenant_policy(tenant, req).boxed()
    }

    fn tenant_config_set(&self, req: TenantConfigRequest) -> Op<'_, ()> {
        self.0.tenant_config_set(req).boxed()
    }

    fn tenant_config_patch(&self, req: storcon_api::wire::TenantConfigPatchRequest) -> Op<'_, ()> {
        self.0.tenant_config_patch(req).boxed()
    }

    fn tenant_config_get(&self, tenant: TenantId) -> Op<'_, TenantConfigResponse> {
        self.0.tenant_config_get(tenant).boxed()
    }

    fn location_config(
        &self,
        shard: TenantShardId,
        conf: LocationConfig,
    ) -> Op<'_, LocationConfigResponse> {
        self.0.location_config(shard, conf).boxed()
    }

    fn tenant_split(
        &self,
        tenant: TenantId,
        req: TenantShardSplitRequest,
    ) -> Op<'_, TenantShardSplitResponse> {
        // In its own task: a client that hangs up must not cancel a split half-way, which
        // would leave it recorded with nobody to finish or abort it.
        let ctl = self.0.clone();
        async move {
            let span = tracing::info_span!("split", %tenant, req.new_shard_count);
            let new_shards = tokio::spawn(
                async move {
                    ctl.split_tenant(tenant, req.new_shard_count, req.new_stripe_size)
                        .await
                }
                .instrument(span),
            )
            .await
            .map_err(|e| OperationError::Internal(format!("split task failed: {e}")))??;
            Ok(TenantShardSplitResponse { new_shards })
        }
        .boxed()
    }

    fn timeline_create(
        &self,
        tenant: TenantId,
        req: TimelineCreateRequest,
    ) -> Op<'_, TimelineCreateResponse> {
        // In its own task, like a split: the re-check after the calls must run even if the
        // client hangs up, or a racing migration could lose the timeline.
        let ctl = self.0.clone();
        async move {
            let span =
                tracing::info_span!("timeline_create", %tenant, timeline = %req.new_timeline_id);
            tokio::spawn(async move { ctl.timeline_create(tenant, req).await }.instrument(span))
                .await
                .map_err(|e| OperationError::Internal(format!("create task failed: {e}")))?
        }
        .boxed()
    }

    fn timeline_delete(&self, tenant: TenantId, timeline: TimelineId) -> Op<'_, ()> {
        self.0.timeline_delete(tenant, timeline).boxed()
    }

    fn timeline_describe(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Op<'_, TenantTimelineDescribeResponse> {
        self.0.timeline_describe(tenant, timeline).boxed()
    }

    fn timeline_call(
        &self,
        shard: TenantShardId,
        timeline: TimelineId,
        call: TimelineCall,
    ) -> Op<'_, serde_json::Value> {
        self.0.timeline_call(shard, timeline, call).boxed()
    }

    fn tenant_get(&self, shard: TenantShardId, rest: String) -> Op<'_, Relayed> {
        self.0.tenant_get(shard, rest).boxed()
    }

    fn node_operation(
        &self,
        node: NodeId,
        kind: NodeOperationKind,
        start: bool,
        force: bool,
    ) -> Op<'_, ()> {
        let ctl = self.0.clone();
        let operation = NodeOperation { node, kind, force };
        async move {
            if start {
                ctl.start_node_operation(operation).await
            } else {
                ctl.cancel_node_operation(operation).await
            }
        }
        .boxed()
    }

    fn node_operation_preview(
        &self,
        node: NodeId,
        kind: NodeOperationKind,
    ) -> Op<'_, storcon_api::dry_run::DryRunResponse> {
        let operation = NodeOperation {
            node,
            kind,
            force: false,
        };
        let ctl = self.0.clone();
        async move { ctl.preview_node_operation(operation) }.boxed()
    }

    fn tenant_shard_migrate_preview(
        &self,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Op<'_, storcon_api::dry_run::DryRunResponse> {
        let ctl = self.0.clone();
        async move { ctl.preview_migrate(shard, &req) }.boxed()
    }

    fn tenant_split_preview(
        &self,
        tenant: TenantId,
        req: TenantShardSplitRequest,
    ) -> Op<'_, storcon_api::dry_run::DryRunResponse> {
        let ctl = self.0.clone();
        async move {
            let plan =
                ctl.state
                    .read()
                    .plan_split(tenant, req.new_shard_count, req.new_stripe_size)?;
            Ok(storcon_api::dry_run::DryRunResponse::new(
                state_machine::preview::split(&plan),
            ))
        }
        .boxed()
    }

    fn node_delete_now(&self, node: NodeId) -> Op<'_, ()> {
        self.0.node_delete_now(node).boxed()
    }

    fn tombstones(&self) -> Op<'_, Vec<state_machine::NodeDescribeResponse>> {
        let ctl = self.0.clone();
        async move {
            let state = ctl.state.read();
            Ok(state
                .tombstones()
                .map(|n| n.describe(NodeAvailability::Offline))
                .collect())
        }
        .boxed()
    }

    fn tombstone_delete(&self, node: NodeId) -> Op<'_, ()> {
        self.0.tombstone_delete(node).boxed()
    }

    fn tenant_shard_migrate(
        &self,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Op<'_, TenantShardMigrateResponse> {
        let ctl = self.0.clone();
        async move { ctl.migrate(shard, req).await }.boxed()
    }

    fn tenant_shard_migrate_secondary(
        &self,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Op<'_, TenantShardMigrateResponse> {
        self.0.migrate_secondary(shard, req).boxed()
    }

    fn preferred_azs(
        &self,
        req: storcon_api::migrate::ShardsPreferredAzsRequest,
    ) -> Op<'_, storcon_api::migrate::ShardsPreferredAzsResponse> {
        self.0.preferred_azs(req).boxed()
    }

    fn tenant_shard_cancel_reconcile(&self, shard: TenantShardId) -> Op<'_, ()> {
        self.0.cancel_reconcile(shard).boxed()
    }

    fn secondary_download(
        &self,
        shard: TenantShardId,
        wait_ms: Option<u64>,
    ) -> Op<'_, (DownloadStatus, SecondaryProgress)> {
        self.0.secondary_download(shard, wait_ms).boxed()
    }

    fn time_travel(
        &self,
        tenant: TenantId,
        query: TimeTravelQuery,
        req: TimeTravelRequest,
    ) -> Op<'_, ()> {
        self.0.time_travel(tenant, query, req).boxed()
    }

    fn re_attach(&self, req: ReAttachRequest) -> Op<'_, ReAttachResponse> {
        self.0.re_attach(req).boxed()
    }

    fn validate(&self, req: ValidateRequest) -> Op<'_, ValidateResponse> {
        self.0.validate(req).boxed()
    }

    fn node_register(&self, req: NodeRegisterRequest) -> Op<'_, ()> {
        self.0.node_register(req).boxed()
    }

    fn node_configure(&self, node: NodeId, req: NodeConfigureRequest) -> Op<'_, ()> {
        self.0.node_configure(node, req).boxed()
    }

    fn node_shards(&self, node: NodeId) -> Op<'_, NodeShardResponse> {
        self.0.node_shards(node).boxed()
    }

    fn attach_hook(&self, req: AttachHookRequest) -> Op<'_, AttachHookResponse> {
        self.0.attach_hook(req).boxed()
    }

    fn inspect(&self, req: InspectRequest) -> Op<'_, InspectResponse> {
        self.0.inspect(req).boxed()
    }

    fn reconcile_all(&self) -> Op<'_, usize> {
        self.0.reconcile_all().boxed()
    }

    fn consistency_check(&self) -> Op<'_, ()> {
        self.0.consistency_check().boxed()
    }

    fn tenants_dump(&self) -> Op<'_, Vec<storcon_api::wire::TenantShardDump>> {
        self.0.tenants_dump().boxed()
    }

    fn tenant_locate(&self, tenant: TenantId) -> Op<'_, storcon_api::wire::TenantLocateResponse> {
        self.0.tenant_locate(tenant).boxed()
    }

    fn scheduler_dump(&self) -> Op<'_, storcon_api::wire::SchedulerDump> {
        self.0.scheduler_dump().boxed()
    }

    fn tenant_drop(&self, tenant: TenantId) -> Op<'_, ()> {
        // In its own task: once `DropTenant` has committed, the soft state must be forgotten
        // too, even if the client hangs up.
        let ctl = self.0.clone();
        async move {
            tokio::spawn(async move { ctl.tenant_drop(tenant).await })
                .await
                .map_err(|e| OperationError::Internal(format!("drop task failed: {e}")))?
        }
        .boxed()
    }

    fn node_drop(&self, node: NodeId) -> Op<'_, ()> {
        let ctl = self.0.clone();
        async move {
            tokio::spawn(async move { ctl.node_drop(node).await })
                .await
                .map_err(|e| OperationError::Internal(format!("drop task failed: {e}")))?
        }
        .boxed()
    }
}
