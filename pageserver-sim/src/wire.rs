//! JSON shapes of the pageserver API and of the controller upcalls, as this simulator reads the
//! reference (`neon-storage-controller.md` sections 1.6, 2.2 and 3). Own types on purpose: this
//! crate depends on no workspace crate and talks to the controller over HTTP only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::ids::TenantShardId;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    AttachedSingle,
    AttachedMulti,
    AttachedStale,
    Secondary,
    Detached,
}

impl Mode {
    pub fn is_attached(self) -> bool {
        matches!(
            self,
            Mode::AttachedSingle | Mode::AttachedMulti | Mode::AttachedStale
        )
    }
}

/// Body of `PUT /v1/tenant/:tsid/location_config` and element of the location listing.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct LocationConfig {
    pub mode: Mode,
    #[serde(default)]
    pub generation: Option<u32>,
    #[serde(default)]
    pub secondary_conf: Option<Value>,
    pub shard_number: u8,
    pub shard_count: u8,
    #[serde(default)]
    pub shard_stripe_size: u32,
    #[serde(default)]
    pub tenant_conf: Value,
}

#[derive(Serialize, Debug)]
pub struct TenantShardLocation {
    pub shard_id: TenantShardId,
    pub node_id: u64,
}

#[derive(Serialize, Debug)]
pub struct LocationConfigResponse {
    pub shards: Vec<TenantShardLocation>,
    pub stripe_size: Option<u32>,
}

#[derive(Serialize, Debug)]
pub struct LocationConfigList {
    pub tenant_shards: Vec<(TenantShardId, Option<LocationConfig>)>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct NodeRegisterRequest {
    pub node_id: u64,
    pub listen_pg_addr: String,
    pub listen_pg_port: u16,
    pub listen_grpc_addr: Option<String>,
    pub listen_grpc_port: Option<u16>,
    pub listen_http_addr: String,
    pub listen_http_port: u16,
    pub listen_https_port: Option<u16>,
    pub availability_zone_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ReAttachRequest {
    pub node_id: u64,
    pub register: Option<NodeRegisterRequest>,
    pub empty_local_disk: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ReAttachResponseTenant {
    pub id: TenantShardId,
    #[serde(default)]
    pub r#gen: Option<u32>,
    pub mode: Mode,
    /// Optional here although upstream always sends it: absent keeps the local stripe size.
    #[serde(default)]
    pub stripe_size: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ReAttachResponse {
    pub tenants: Vec<ReAttachResponseTenant>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ValidateRequestTenant {
    pub id: TenantShardId,
    pub r#gen: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ValidateRequest {
    pub tenants: Vec<ValidateRequestTenant>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ValidateResponseTenant {
    pub id: TenantShardId,
    pub valid: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ValidateResponse {
    pub tenants: Vec<ValidateResponseTenant>,
}

#[derive(Serialize, Debug)]
pub struct PageserverUtilization {
    pub disk_usage_bytes: u64,
    pub free_space_bytes: u64,
    pub disk_wanted_bytes: u64,
    pub disk_usable_pct: u8,
    pub shard_count: u32,
    pub max_shard_count: u32,
    pub utilization_score: Option<u64>,
    pub captured_at: String,
}

#[derive(Serialize, Debug)]
pub struct SecondaryProgress {
    pub heatmap_mtime: Option<String>,
    pub layers_downloaded: u64,
    pub layers_total: u64,
    pub bytes_downloaded: u64,
    pub bytes_total: u64,
}

/// Only the field the simulator needs; the rest of the upstream request is accepted and ignored.
#[derive(Deserialize, Debug)]
pub struct TimelineCreateRequest {
    pub new_timeline_id: String,
}

#[derive(Serialize, Debug)]
pub struct TimelineInfo {
    pub tenant_id: TenantShardId,
    pub timeline_id: String,
    pub ancestor_timeline_id: Option<String>,
    pub last_record_lsn: Lsn,
    pub disk_consistent_lsn: Lsn,
    pub remote_consistent_lsn: Lsn,
    pub state: &'static str,
    pub is_archived: Option<bool>,
    pub is_invisible: Option<bool>,
}

/// `GET /v1/tenant/:tenant_shard_id` (upstream's `TenantInfo`).
#[derive(Serialize, Debug)]
pub struct TenantInfo {
    pub id: TenantShardId,
    /// `{"slug": "Active"}`: upstream's tagged `TenantState`.
    pub state: Value,
    pub current_physical_size: Option<u64>,
    /// `{"slug": "attached"}`.
    pub attachment_status: Value,
    pub generation: u32,
    /// Why GC is blocked, if it is (`null` when no timeline blocks it).
    pub gc_blocking: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ArchivalConfigRequest {
    pub state: ArchivalState,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchivalState {
    Archived,
    Unarchived,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct LsnLeaseRequest {
    pub lsn: Lsn,
}

#[derive(Serialize, Debug)]
pub struct LsnLease {
    pub valid_until: String,
}

/// `PUT .../mark_invisible`: an optional body `{"is_visible": bool}` (absent: invisible).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TimelineVisibility {
    #[serde(default)]
    pub is_visible: Option<bool>,
}

#[derive(Serialize, Debug)]
pub struct AncestorDetached {
    pub reparented_timelines: Vec<String>,
}

#[derive(Deserialize, Debug)]
pub struct ShardSplitRequest {
    pub new_shard_count: u8,
    #[serde(default)]
    pub new_stripe_size: Option<u32>,
}

#[derive(Serialize, Debug)]
pub struct ShardSplitResponse {
    pub new_shards: Vec<TenantShardId>,
}

/// What `POST /v1/top_tenants` orders by (and filters with `where_gt`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TopTenantsOrder {
    ResidentSize,
    MaxLogicalSize,
    MaxLogicalSizePerShard,
}

/// Body of `POST /v1/top_tenants` (upstream's `TopTenantShardsRequest`).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopTenantShardsRequest {
    pub order_by: TopTenantsOrder,
    pub limit: usize,
    /// Only shards of tenants with fewer shards than this.
    #[serde(default)]
    pub where_shards_lt: Option<u8>,
    /// Only shards whose `order_by` size is greater than this.
    #[serde(default)]
    pub where_gt: Option<u64>,
}

/// One shard in the answer of `POST /v1/top_tenants` (upstream's `TopTenantShardItem`); sizes
/// in bytes.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct TopTenantShardItem {
    pub id: TenantShardId,
    pub resident_size: u64,
    pub physical_size: u64,
    /// The largest timeline's logical size, tenant-wide (the same on every shard).
    pub max_logical_size: u64,
    /// `max_logical_size` divided by the shard count (an unsharded tenant's is 1), rounded up.
    pub max_logical_size_per_shard: u64,
}

impl TopTenantShardItem {
    pub fn size(&self, order: TopTenantsOrder) -> u64 {
        match order {
            TopTenantsOrder::ResidentSize => self.resident_size,
            TopTenantsOrder::MaxLogicalSize => self.max_logical_size,
            TopTenantsOrder::MaxLogicalSizePerShard => self.max_logical_size_per_shard,
        }
    }
}

#[derive(Serialize, Debug)]
pub struct TopTenantShardsResponse {
    pub shards: Vec<TopTenantShardItem>,
}

/// Body of `PUT /debug/sim/tenant/:tenant_id/logical_size`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct LogicalSizeRequest {
    /// One timeline; absent or null: every timeline.
    #[serde(default)]
    pub timeline_id: Option<String>,
    pub bytes: u64,
}

#[derive(Serialize, Debug)]
pub struct LogicalSizeResponse {
    /// The local shards whose timelines were changed.
    pub shards: Vec<TenantShardId>,
}

/// Runtime switch for split fault injection (`PUT /debug/sim/split_behaviour`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitBehaviour {
    #[serde(default)]
    pub fail: bool,
    #[serde(default)]
    pub stall_ms: u64,
}

/// Runtime knobs for the delete and download protocols (`PUT /debug/sim/behaviour`), also
/// set from the command line.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimBehaviour {
    /// How long a tenant or timeline deletion runs after its 202 (0: done before the 202).
    #[serde(default)]
    pub delete_delay_ms: u64,
    /// A secondary's download rate (0: instant).
    #[serde(default)]
    pub download_ms_per_layer: u64,
    /// How long after an attach its timelines take to catch up with the WAL: `wait_lsn`
    /// answers 202 until then (0: at once).
    #[serde(default)]
    pub catch_up_ms: u64,
    /// Secondary downloads on this pageserver make no progress while set (a pageserver whose
    /// downloads are stuck or starved): `secondary/download` and `secondary/status` report the
    /// layers held when it was set, and a download waits out its whole `wait_ms` and answers
    /// 202. Progress resumes where it stopped once it is cleared.
    #[serde(default)]
    pub secondary_downloads_paused: bool,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct ErrorBody {
    pub msg: String,
}

/// A WAL position, `X/Y` in hex on the wire (upper and lower 32 bits).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Where a freshly bootstrapped timeline starts in this simulator.
    pub const INITDB: Lsn = Lsn(0x016B_5A50);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid lsn {s:?}");
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(p, 16).ok()
        };
        let (hi, lo) = (part(hi).ok_or_else(bad)?, part(lo).ok_or_else(bad)?);
        Ok(Lsn((hi << 32) | lo))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        assert_eq!(Lsn::INITDB.to_string(), "0/16B5A50");
        let lsn: Lsn = "1/16B5A50".parse().expect("valid");
        assert_eq!(lsn.0, (1 << 32) | 0x016B_5A50);
        assert_eq!(lsn.to_string(), "1/16B5A50");
        assert!("16B5A50".parse::<Lsn>().is_err());
        assert!("0/+1".parse::<Lsn>().is_err());
    }

    #[test]
    fn location_config_defaults() {
        let conf: LocationConfig = serde_json::from_str(
            r#"{"mode":"Detached","generation":null,"shard_number":0,"shard_count":0}"#,
        )
        .expect("minimal detach body");
        assert_eq!(conf.mode, Mode::Detached);
        assert_eq!(conf.shard_stripe_size, 0);
        assert!(serde_json::from_str::<LocationConfig>(r#"{"mode":"Nope"}"#).is_err());
    }
}
