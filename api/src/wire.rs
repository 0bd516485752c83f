//! Upstream wire types that cross the controller's API and the pageserver API.

use serde::{Deserialize, Serialize};

use crate::ids::{TenantId, TenantShardId};
use crate::node::NodeRegisterRequest;
use crate::tenant_config::{CanonicalConfig, TenantConfig, TenantConfigPatch};
use crate::types::{
    DEFAULT_STRIPE_SIZE, Generation, NodeAvailability, NodeId, NodeSchedulingPolicy,
    PlacementPolicy, ShardSchedulingPolicy,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocationConfigMode {
    AttachedSingle,
    AttachedMulti,
    AttachedStale,
    Secondary,
    Detached,
}

impl LocationConfigMode {
    pub fn is_attached(self) -> bool {
        matches!(
            self,
            LocationConfigMode::AttachedSingle
                | LocationConfigMode::AttachedMulti
                | LocationConfigMode::AttachedStale
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondaryConfig {
    pub warm: bool,
}

/// A pageserver location (upstream `LocationConfig`), as the controller sends it and a
/// pageserver reports it. A reported `tenant_conf` is read leniently (what does not decode is
/// dropped), so an odd config on a pageserver never hides its locations; requests use
/// [`TenantLocationConfigRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationConfig {
    pub mode: LocationConfigMode,
    #[serde(default)]
    pub generation: Option<Generation>,
    #[serde(default)]
    pub secondary_conf: Option<SecondaryConfig>,
    #[serde(default)]
    pub shard_number: u8,
    #[serde(default)]
    pub shard_count: u8,
    #[serde(default)]
    pub shard_stripe_size: u32,
    #[serde(default)]
    pub tenant_conf: CanonicalConfig,
}

/// The body of `PUT /v1/tenant/:tenant_shard_id/location_config` (upstream
/// `TenantLocationConfigRequest`): a [`LocationConfig`] whose `tenant_conf` is required and
/// typed, with unknown keys refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLocationConfigRequest {
    pub mode: LocationConfigMode,
    #[serde(default)]
    pub generation: Option<Generation>,
    #[serde(default)]
    pub secondary_conf: Option<SecondaryConfig>,
    #[serde(default)]
    pub shard_number: u8,
    #[serde(default)]
    pub shard_count: u8,
    #[serde(default)]
    pub shard_stripe_size: u32,
    pub tenant_conf: TenantConfig,
}

impl From<TenantLocationConfigRequest> for LocationConfig {
    fn from(r: TenantLocationConfigRequest) -> Self {
        LocationConfig {
            mode: r.mode,
            generation: r.generation,
            secondary_conf: r.secondary_conf,
            shard_number: r.shard_number,
            shard_count: r.shard_count,
            shard_stripe_size: r.shard_stripe_size,
            tenant_conf: r.tenant_conf.into(),
        }
    }
}

impl LocationConfig {
    /// Detaching a location the controller holds no record of (a deleted shard, an aborted
    /// split's child, a leftover found on a pageserver).
    pub fn detached_unknown(id: TenantShardId) -> LocationConfig {
        LocationConfig {
            mode: LocationConfigMode::Detached,
            generation: None,
            secondary_conf: None,
            shard_number: id.shard_number,
            shard_count: id.shard_count.0,
            shard_stripe_size: 0,
            tenant_conf: CanonicalConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReAttachRequest {
    pub node_id: NodeId,
    #[serde(default)]
    pub register: Option<NodeRegisterRequest>,
    #[serde(default)]
    pub empty_local_disk: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReAttachResponseTenant {
    pub id: TenantShardId,
    pub r#gen: Option<Generation>,
    pub mode: LocationConfigMode,
    pub stripe_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReAttachResponse {
    pub tenants: Vec<ReAttachResponseTenant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateRequestTenant {
    pub id: TenantShardId,
    pub r#gen: Generation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateRequest {
    pub tenants: Vec<ValidateRequestTenant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateResponseTenant {
    pub id: TenantShardId,
    pub valid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateResponse {
    pub tenants: Vec<ValidateResponseTenant>,
}

/// How a new tenant is sharded. Both fields are required when the object is given, and unknown
/// keys are refused, as upstream; an absent object is 0 shards (unsharded) of the default stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardParameters {
    pub count: u8,
    pub stripe_size: u32,
}

impl Default for ShardParameters {
    fn default() -> Self {
        ShardParameters {
            count: 0,
            stripe_size: DEFAULT_STRIPE_SIZE,
        }
    }
}

/// `PUT /control/v1/tenant/:tenant_id/shard_split`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantShardSplitRequest {
    pub new_shard_count: u8,
    #[serde(default)]
    pub new_stripe_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantShardSplitResponse {
    pub new_shards: Vec<TenantShardId>,
}

/// `POST /v1/tenant`. Tenant config fields sit at the top level (flattened) as upstream; any
/// other key is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreateRequest {
    pub new_tenant_id: TenantShardId,
    #[serde(default)]
    pub generation: Option<Generation>,
    #[serde(default)]
    pub shard_parameters: ShardParameters,
    #[serde(default)]
    pub placement_policy: Option<PlacementPolicy>,
    #[serde(flatten)]
    pub config: TenantConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreateResponseShard {
    pub shard_id: TenantShardId,
    pub node_id: NodeId,
    pub generation: Generation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreateResponse {
    pub shards: Vec<TenantCreateResponseShard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDescribeResponseShard {
    pub tenant_shard_id: TenantShardId,
    pub node_attached: Option<NodeId>,
    pub node_secondary: Vec<NodeId>,
    pub last_error: String,
    pub is_reconciling: bool,
    pub is_pending_compute_notification: bool,
    pub is_splitting: bool,
    pub is_importing: bool,
    pub scheduling_policy: ShardSchedulingPolicy,
    pub preferred_az_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDescribeResponse {
    pub tenant_id: TenantId,
    pub stripe_size: u32,
    pub policy: PlacementPolicy,
    pub config: serde_json::Value,
    pub shards: Vec<TenantDescribeResponseShard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageserverUtilization {
    #[serde(default)]
    pub disk_usage_bytes: u64,
    #[serde(default)]
    pub free_space_bytes: u64,
    #[serde(default)]
    pub disk_wanted_bytes: u64,
    #[serde(default)]
    pub disk_usable_pct: u64,
    #[serde(default)]
    pub shard_count: u32,
    #[serde(default)]
    pub max_shard_count: u32,
    #[serde(default)]
    pub utilization_score: Option<u64>,
    #[serde(default)]
    pub captured_at: Option<String>,
}

/// `GET /v1/location_config` on a pageserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationConfigListResponse {
    pub tenant_shards: Vec<(TenantShardId, Option<LocationConfig>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShard {
    pub tenant_shard_id: TenantShardId,
    pub is_intended_secondary: Option<bool>,
    pub is_observed_secondary: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShardResponse {
    pub node_id: NodeId,
    pub shards: Vec<NodeShard>,
}

/// `PUT /control/v1/node/:node_id/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfigureRequest {
    pub node_id: NodeId,
    #[serde(default)]
    pub availability: Option<NodeAvailability>,
    #[serde(default)]
    pub scheduling: Option<NodeSchedulingPolicy>,
}

/// `PUT /control/v1/tenant/:tenant_id/policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicyRequest {
    #[serde(default)]
    pub placement: Option<PlacementPolicy>,
    #[serde(default)]
    pub scheduling: Option<ShardSchedulingPolicy>,
}

/// The body of `PUT /v1/tenant/config`: config fields at the top level, as upstream; any other
/// key is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfigRequest {
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub config: TenantConfig,
}

/// The body of `PATCH /v1/tenant/config`: per field, absent keeps, `null` removes, a value
/// sets; any other key is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfigPatchRequest {
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub config: TenantConfigPatch,
}

/// `GET /v1/tenant/:tenant_id/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantConfigResponse {
    pub tenant_specific_overrides: serde_json::Value,
    pub effective_config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationConfigResponseShard {
    pub shard_id: TenantShardId,
    pub node_id: NodeId,
}

/// The controller's answer to `PUT /v1/tenant/:tenant_shard_id/location_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationConfigResponse {
    pub shards: Vec<LocationConfigResponseShard>,
    pub stripe_size: Option<u32>,
}

/// `POST /debug/v1/inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectRequest {
    pub tenant_shard_id: TenantShardId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectResponse {
    /// `[generation, node_id]` of the latest generation issued, or `null`.
    pub attachment: Option<(Generation, NodeId)>,
}

/// `POST /debug/v1/attach-hook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachHookRequest {
    pub tenant_shard_id: TenantShardId,
    #[serde(default)]
    pub node_id: Option<NodeId>,
    #[serde(default)]
    pub generation_override: Option<i32>,
    #[serde(default)]
    pub config: Option<TenantConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachHookResponse {
    #[serde(rename = "gen")]
    pub generation: Option<Generation>,
}

// ---------------------------------------------------------------------------------------------
// Debug routes (issue 10, item 7): `GET /debug/v1/tenant`, `GET /debug/v1/tenant/:id/locate`,
// `GET /debug/v1/scheduler`. The drops and `reconcile_all` have no bodies of their own.
// ---------------------------------------------------------------------------------------------

/// One element of `GET /debug/v1/tenant`, in shard id order: the replicated record of a shard
/// joined with the leader's soft state. Upstream serializes its in-memory `TenantShard`; these
/// are its field names where it has the field. `generation_pageserver` is storcon's (upstream
/// keeps it in its database only). Left out: upstream's `sequence`, `importing`,
/// `delayed_reconcile`, `consecutive_reconciles_count` and `preferred_node`, which storcon has
/// no equivalent of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantShardDump {
    pub tenant_shard_id: TenantShardId,
    pub shard: ShardIdentityDump,
    pub generation: Option<Generation>,
    /// The node the latest generation was issued to.
    pub generation_pageserver: Option<NodeId>,
    pub policy: PlacementPolicy,
    pub intent: IntentStateDump,
    pub observed: ObservedStateDump,
    pub config: serde_json::Value,
    pub splitting: SplitState,
    pub scheduling_policy: ShardSchedulingPolicy,
    pub pending_compute_notification: bool,
    /// Why the last reconcile (or scheduling) of the shard failed; `""` when it did not.
    pub last_error: String,
}

/// Upstream `ShardIdentity`: `layout` is always 1 (upstream's only layout, `LAYOUT_V1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIdentityDump {
    pub number: u8,
    pub count: u8,
    pub stripe_size: u32,
    pub layout: u8,
}

/// Upstream `IntentState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentStateDump {
    pub attached: Option<NodeId>,
    pub secondary: Vec<NodeId>,
    pub preferred_az_id: Option<String>,
}

/// Upstream `ObservedState`: node id (a JSON object key, so a string) -> location. A node
/// missing from the map certainly holds nothing of the shard.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObservedStateDump {
    pub locations: std::collections::BTreeMap<NodeId, ObservedStateLocationDump>,
}

/// Upstream `ObservedStateLocation`: `conf: null` means the node may hold something the
/// leader does not know (a call in flight or failed, a node lost): it is read back first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedStateLocationDump {
    pub conf: Option<LocationConfig>,
}

/// Upstream `SplitState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitState {
    Idle,
    Splitting,
}

/// One shard of `GET /debug/v1/tenant/:tenant_id/locate`: where it is attached (by intent) and
/// that node's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLocateResponseShard {
    pub shard_id: TenantShardId,
    pub node_id: NodeId,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    pub listen_grpc_addr: Option<String>,
    pub listen_grpc_port: Option<u16>,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    pub listen_https_port: Option<u16>,
}

/// `GET /debug/v1/tenant/:tenant_id/locate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLocateResponse {
    pub shards: Vec<TenantLocateResponseShard>,
    pub shard_params: ShardParameters,
}

/// `GET /debug/v1/scheduler`: the scheduler as the leader would build it now, per registered
/// node (a JSON object keyed by node id). Upstream serializes its `Scheduler` as
/// `{"nodes": {id: SchedulerNode}}`; the field names are its own where it has the field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SchedulerDump {
    pub nodes: std::collections::BTreeMap<NodeId, SchedulerNodeDump>,
}

/// Upstream `SchedulerNode`, counted from every shard's intent. `secondary_shard_count` and
/// `available` are storcon's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerNodeDump {
    /// Shards with a location on this node (attached or secondary).
    pub shard_count: usize,
    pub attached_shard_count: usize,
    pub secondary_shard_count: usize,
    /// Shards with a location on this node whose preferred AZ is the node's.
    pub home_shard_count: usize,
    pub az: String,
    /// Whether new shards may be placed here (Active and a scheduling policy that accepts
    /// work), with the utilization the scheduler compares.
    pub may_schedule: MaySchedule,
    /// Heartbeats succeed (not Offline): an unavailable node's attachments fail over.
    pub available: bool,
}

/// Upstream `MaySchedule`: `"No"`, or `{"Yes": {...}}`. Upstream carries the node's whole
/// last `PageserverUtilization`; storcon carries the score its scheduler compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaySchedule {
    Yes(SchedulerUtilization),
    No,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerUtilization {
    /// From the last heartbeat (`/v1/utilization`); 1 000 000 ("full") before the first one.
    pub utilization_score: u64,
}
