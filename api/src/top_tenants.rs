//! `POST /v1/top_tenants` on a pageserver (upstream's `TopTenantShardsRequest`), which the
//! controller's auto-split asks for its candidates.

use serde::{Deserialize, Serialize};

use crate::ids::TenantShardId;

/// Which size the answer is ordered (and `where_gt` filtered) by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopTenantShardsOrder {
    ResidentSize,
    MaxLogicalSize,
    MaxLogicalSizePerShard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopTenantShardsRequest {
    pub order_by: TopTenantShardsOrder,
    pub limit: usize,
    /// Only shards of tenants with fewer shards than this.
    pub where_shards_lt: Option<u8>,
    /// Only shards whose `order_by` size is greater than this.
    pub where_gt: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopTenantShardItem {
    pub id: TenantShardId,
    pub resident_size: u64,
    pub physical_size: u64,
    /// The largest timeline's logical size (the tenant's, on every shard).
    pub max_logical_size: u64,
    pub max_logical_size_per_shard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopTenantShardsResponse {
    pub shards: Vec<TopTenantShardItem>,
}
