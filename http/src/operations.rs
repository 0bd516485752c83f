//! The leader-side operations API: one method per operation the API offers. `http` declares it
//! and the binary's controller implements it, so http never imports the controller, and a
//! handler is three lines: parse, call, map the error.
//!
//! A new route adds a method here (request and response types in `storcon_api::wire`), its
//! workflow in one file under the controller's `operations/`, and a handler that calls it.

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use raft_store::{ProposeError, ReadError};
use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{NodeAvailability, NodeId, NodeRegisterRequest, Rejection};
use storcon_api::wire::{
    AttachHookRequest, AttachHookResponse, InspectRequest, InspectResponse, LocationConfig,
    LocationConfigResponse, NodeConfigureRequest, NodeShardResponse, ReAttachRequest,
    ReAttachResponse, TenantConfigRequest, TenantConfigResponse, TenantCreateRequest,
    TenantCreateResponse, TenantDescribeResponse, TenantPolicyRequest, TenantShardSplitRequest,
    TenantShardSplitResponse, ValidateRequest, ValidateResponse,
};

use state_machine::node_operation::NodeOperationKind;
use storcon_api::ids::TimelineId;
use storcon_api::migrate::{TenantShardMigrateRequest, TenantShardMigrateResponse};
use storcon_api::secondary::{
    DownloadStatus, SecondaryProgress, TimeTravelQuery, TimeTravelRequest,
};
use storcon_api::timeline::{
    Relayed, TenantTimelineDescribeResponse, TimelineCall, TimelineCreateRequest,
    TimelineCreateResponse,
};

use crate::error::ApiError;

/// How far a tenant delete got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantDeletion {
    /// Deleted and forgotten (upstream's 200).
    Done,
    /// Another delete of this tenant is running, or this one ran out of time (upstream's 202).
    InProgress,
}

/// What an operation answers, some time later.
pub type Op<'a, T> = BoxFuture<'a, Result<T, OperationError>>;

/// Why an operation failed. Each variant maps to one status in [`ApiError`]; the messages are
/// upstream's where upstream has one.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The request is well-formed JSON but not a valid request for this operation.
    #[error("{0}")]
    Invalid(String),
    #[error("Tenant {0} not found")]
    TenantNotFound(TenantId),
    #[error("Node {0} not registered")]
    NodeNotFound(NodeId),
    /// The request does not hold for the current state (upstream's 412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// What the request names exists, but not what it asks about (a tenant with no
    /// secondaries, for a secondary download).
    #[error("{0}")]
    NotFound(String),
    /// A proposal failed: refused by the state machine (4xx), or not known to have committed.
    #[error("{0}")]
    Proposal(#[from] ProposeError),
    #[error("{0}")]
    Read(#[from] ReadError),
    /// What was stored stands, but some shards have no placement yet (upstream's 409).
    #[error("Scheduling error: {shard}: {reason} ({count} shard(s) not placed)")]
    Unschedulable {
        shard: TenantShardId,
        reason: String,
        count: usize,
    },
    /// The operation conflicts with the state of the tenant or a pageserver.
    #[error("{0}")]
    Conflict(String),
    /// A node cannot be made Active: its activation check failed.
    #[error("cannot activate node {node}: {reason}")]
    Activation { node: NodeId, reason: String },
    /// Not done yet; what was done stands and the same request may be retried.
    #[error("{0}")]
    NotYet(String),
    /// Leader services are not running on this replica (starting, or leadership lost).
    #[error("{0}")]
    NotLeading(String),
    /// Not done within the request's deadline; what was done stands (504).
    #[error("{0}")]
    Timeout(String),
    #[error("consistency check failed: {}", .0.join("; "))]
    Inconsistent(Vec<String>),
    #[error("{0}")]
    Internal(String),
    /// A pageserver refused a relayed call; its status is the answer (upstream's passthrough).
    #[error("pageserver {node} answered {status}: {msg}")]
    Pageserver {
        node: NodeId,
        status: u16,
        msg: String,
    },
}

impl From<storcon_api::InvalidRequest> for OperationError {
    fn from(e: storcon_api::InvalidRequest) -> Self {
        OperationError::Invalid(e.0)
    }
}

impl From<Rejection> for OperationError {
    fn from(r: Rejection) -> Self {
        OperationError::Proposal(ProposeError::Rejected(r))
    }
}

impl From<OperationError> for ApiError {
    fn from(e: OperationError) -> Self {
        let msg = e.to_string();
        match e {
            OperationError::Invalid(_) => ApiError::BadRequest(msg),
            OperationError::TenantNotFound(_)
            | OperationError::NodeNotFound(_)
            | OperationError::NotFound(_) => ApiError::NotFound(msg),
            OperationError::Proposal(ProposeError::Rejected(r)) => r.into(),
            OperationError::Proposal(ProposeError::Membership(_)) => ApiError::Conflict(msg),
            OperationError::Proposal(_) | OperationError::Read(_) => ApiError::Unavailable(msg),
            OperationError::Unschedulable { .. } | OperationError::Conflict(_) => {
                ApiError::Conflict(msg)
            }
            OperationError::Activation { .. } | OperationError::PreconditionFailed(_) => {
                ApiError::PreconditionFailed(msg)
            }
            OperationError::NotYet(_) | OperationError::NotLeading(_) => ApiError::Unavailable(msg),
            OperationError::Timeout(_) => ApiError::Timeout(msg),
            OperationError::Inconsistent(_) | OperationError::Internal(_) => {
                ApiError::Internal(msg)
            }
            OperationError::Pageserver { status, .. } => ApiError::Relayed {
                status: axum::http::StatusCode::from_u16(status)
                    .ok()
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                msg,
            },
        }
    }
}

/// One page of `GET /control/v1/tenant`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantPage {
    pub start_after: Option<TenantId>,
    pub limit: Option<usize>,
}

/// The operations only the leader performs. Each one is a whole workflow: a handler never
/// proposes, schedules or waits itself.
pub trait Operations: Send + Sync {
    /// The startup reconcile has run (nodes heard from, observed state scanned).
    fn ready(&self) -> bool;
    /// A node's availability from heartbeats (soft state; not replicated).
    fn availability(&self, node: NodeId) -> NodeAvailability;

    fn tenant_create(&self, req: TenantCreateRequest) -> Op<'_, TenantCreateResponse>;
    /// Deletes the tenant's data on its pageservers (shard zero last), detaches every location,
    /// then forgets the tenant. A delete already running answers `InProgress`.
    fn tenant_delete(&self, tenant: TenantId) -> Op<'_, TenantDeletion>;
    fn tenant_describe(&self, tenant: TenantId) -> Op<'_, TenantDescribeResponse>;
    fn tenant_list(&self, page: TenantPage) -> Op<'_, Vec<TenantDescribeResponse>>;
    fn tenant_policy(&self, tenant: TenantId, req: TenantPolicyRequest) -> Op<'_, ()>;
    fn tenant_config_set(&self, req: TenantConfigRequest) -> Op<'_, ()>;
    fn tenant_config_patch(&self, req: storcon_api::wire::TenantConfigPatchRequest) -> Op<'_, ()>;
    fn tenant_config_get(&self, tenant: TenantId) -> Op<'_, TenantConfigResponse>;
    /// Onboarding and placement changes through the pageserver's own API.
    fn location_config(
        &self,
        shard: TenantShardId,
        conf: LocationConfig,
    ) -> Op<'_, LocationConfigResponse>;
    fn tenant_split(
        &self,
        tenant: TenantId,
        req: TenantShardSplitRequest,
    ) -> Op<'_, TenantShardSplitResponse>;

    /// Creates a timeline on shard zero, then on the other shards.
    fn timeline_create(
        &self,
        tenant: TenantId,
        req: TimelineCreateRequest,
    ) -> Op<'_, TimelineCreateResponse>;
    /// Deletes a timeline everywhere, shard zero last; `NotYet` while it is still going.
    fn timeline_delete(&self, tenant: TenantId, timeline: TimelineId) -> Op<'_, ()>;
    fn timeline_describe(
        &self,
        tenant: TenantId,
        timeline: TimelineId,
    ) -> Op<'_, TenantTimelineDescribeResponse>;
    /// A timeline call relayed to the shards upstream sends it to; answers the merged body.
    fn timeline_call(
        &self,
        tenant: TenantShardId,
        timeline: TimelineId,
        call: TimelineCall,
    ) -> Op<'_, serde_json::Value>;
    /// `GET /v1/tenant/:id[/...]` relayed to the pageserver of shard zero, or of the named
    /// shard; `rest` is the path after the id, from its `/`, with the query.
    fn tenant_get(&self, shard: TenantShardId, rest: String) -> Op<'_, Relayed>;
    /// `PUT` (start) or `DELETE` (cancel) of `/control/v1/node/:id/drain|fill`.
    fn node_operation(
        &self,
        node: NodeId,
        kind: NodeOperationKind,
        start: bool,
        force: bool,
    ) -> Op<'_, ()>;
    /// `?dry_run=true` on a drain or fill start: the moves it would make; nothing changes.
    fn node_operation_preview(
        &self,
        node: NodeId,
        kind: NodeOperationKind,
    ) -> Op<'_, storcon_api::dry_run::DryRunResponse>;
    /// `?dry_run=true` on a migrate: the move it would make after its checks; nothing changes.
    fn tenant_shard_migrate_preview(
        &self,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Op<'_, storcon_api::dry_run::DryRunResponse>;
    /// `?dry_run=true` on a split: the children it would create, and where; nothing changes.
    fn tenant_split_preview(
        &self,
        tenant: TenantId,
        req: TenantShardSplitRequest,
    ) -> Op<'_, storcon_api::dry_run::DryRunResponse>;
    /// `DELETE /control/v1/node/:id`: the deprecated synchronous delete.
    fn node_delete_now(&self, node: NodeId) -> Op<'_, ()>;
    /// `GET /debug/v1/tombstone`: the deleted nodes.
    fn tombstones(&self) -> Op<'_, Vec<state_machine::NodeDescribeResponse>>;
    /// `DELETE /debug/v1/tombstone/:id`.
    fn tombstone_delete(&self, node: NodeId) -> Op<'_, ()>;
    /// `PUT /control/v1/tenant/:tenant_shard_id/migrate`: a graceful (or immediate)
    /// migration of the shard's attachment.
    fn tenant_shard_migrate(
        &self,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Op<'_, TenantShardMigrateResponse>;
    /// `PUT .../migrate_secondary`: the shard's secondaries replaced by the node named.
    fn tenant_shard_migrate_secondary(
        &self,
        shard: TenantShardId,
        req: TenantShardMigrateRequest,
    ) -> Op<'_, TenantShardMigrateResponse>;
    /// `PUT /control/v1/preferred_azs`: shards' preferred AZs, all or nothing.
    fn preferred_azs(
        &self,
        req: storcon_api::migrate::ShardsPreferredAzsRequest,
    ) -> Op<'_, storcon_api::migrate::ShardsPreferredAzsResponse>;
    /// `PUT .../cancel_reconcile`: ends a migration that has not cut over.
    fn tenant_shard_cancel_reconcile(&self, shard: TenantShardId) -> Op<'_, ()>;
    /// `POST /v1/tenant/:tenant_shard_id/secondary/download`: the download on every secondary
    /// location of the shard (or of every shard), the progress summed.
    fn secondary_download(
        &self,
        shard: TenantShardId,
        wait_ms: Option<u64>,
    ) -> Op<'_, (DownloadStatus, SecondaryProgress)>;
    /// `PUT /v1/tenant/:tenant_id/time_travel_remote_storage`, for every shard of every shard
    /// count named and of the present one; the tenant must be detached.
    fn time_travel(
        &self,
        tenant: TenantId,
        query: TimeTravelQuery,
        req: TimeTravelRequest,
    ) -> Op<'_, ()>;

    fn re_attach(&self, req: ReAttachRequest) -> Op<'_, ReAttachResponse>;
    fn validate(&self, req: ValidateRequest) -> Op<'_, ValidateResponse>;

    fn node_register(&self, req: NodeRegisterRequest) -> Op<'_, ()>;
    fn node_configure(&self, node: NodeId, req: NodeConfigureRequest) -> Op<'_, ()>;
    fn node_shards(&self, node: NodeId) -> Op<'_, NodeShardResponse>;

    fn attach_hook(&self, req: AttachHookRequest) -> Op<'_, AttachHookResponse>;
    fn inspect(&self, req: InspectRequest) -> Op<'_, InspectResponse>;
    /// Does what a background pass does (schedule every tenant, queue a reconcile for every
    /// shard that needs one), then waits up to 30 s for those and any already running; answers
    /// how many it waited for (0: quiescent).
    fn reconcile_all(&self) -> Op<'_, usize>;
    /// Cross-checks replicated state, the leader's views and the rows on disk.
    fn consistency_check(&self) -> Op<'_, ()>;

    // Debug routes (issue 10, item 7).
    /// `GET /debug/v1/tenant`: every shard's record with the leader's observed locations.
    fn tenants_dump(&self) -> Op<'_, Vec<storcon_api::wire::TenantShardDump>>;
    /// `GET /debug/v1/tenant/:tenant_id/locate`: each shard's attached node and its endpoints.
    fn tenant_locate(&self, tenant: TenantId) -> Op<'_, storcon_api::wire::TenantLocateResponse>;
    /// `GET /debug/v1/scheduler`: per-node counts as the scheduler would see them now.
    fn scheduler_dump(&self) -> Op<'_, storcon_api::wire::SchedulerDump>;
    /// Forgets the tenant in one command; no pageserver is called.
    fn tenant_drop(&self, tenant: TenantId) -> Op<'_, ()>;
    /// Removes the node and every reference to it in one command; nothing is rescheduled.
    fn node_drop(&self, node: NodeId) -> Op<'_, ()>;
}

/// Also what a follower answers to a leader-served route read locally (`x-storcon-read-local`):
/// only the leader runs these services.
fn not_running() -> ApiError {
    ApiError::Unavailable(
        "leader services are not running on this replica (they are starting, or it is not the \
         leader: leader-served routes are not read locally); retry"
            .into(),
    )
}

/// The running operations, present only while this replica leads.
#[derive(Default)]
pub struct LeaderSlot(RwLock<Option<Arc<dyn Operations>>>);

impl LeaderSlot {
    pub fn set(&self, operations: Option<Arc<dyn Operations>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = operations;
    }

    /// The operations once the startup reconcile has run.
    pub fn get(&self) -> Result<Arc<dyn Operations>, ApiError> {
        self.get_elected()
            .filter(|s| s.ready())
            .ok_or_else(not_running)
    }

    /// The operations while the startup reconcile may still run: for what needs only the
    /// replicated state (registering a node, validating generations).
    pub fn get_starting(&self) -> Result<Arc<dyn Operations>, ApiError> {
        self.get_elected().ok_or_else(not_running)
    }

    /// No leader services run on this replica.
    pub fn is_empty(&self) -> bool {
        self.get_elected().is_none()
    }

    fn get_elected(&self) -> Option<Arc<dyn Operations>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
