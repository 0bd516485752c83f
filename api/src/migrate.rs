//! Moving one shard by hand: `PUT /control/v1/tenant/:tenant_shard_id/migrate` and
//! `.../migrate_secondary` (upstream's `TenantShardMigrateRequest`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::TenantShardId;
use crate::tenant_config::HumanDuration;
use crate::types::NodeId;

/// Upstream's defaults: the whole warm-up, and each download request within it.
pub const DEFAULT_WARMUP_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_DOWNLOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantShardMigrateRequest {
    pub node_id: NodeId,
    /// Refuse (412) unless the shard is attached there now.
    #[serde(default)]
    pub origin_node_id: Option<NodeId>,
    #[serde(default)]
    pub migration_config: MigrationConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationConfig {
    /// Move to a node the scheduler considers worse, or one that is not available.
    #[serde(default)]
    pub override_scheduler: bool,
    /// Warm the destination up as a secondary first (graceful), else cut over at once.
    #[serde(default = "yes")]
    pub prewarm: bool,
    #[serde(default)]
    pub secondary_warmup_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub secondary_download_request_timeout: Option<HumanDuration>,
}

fn yes() -> bool {
    true
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            override_scheduler: false,
            prewarm: true,
            secondary_warmup_timeout: None,
            secondary_download_request_timeout: None,
        }
    }
}

impl MigrationConfig {
    pub fn warmup_timeout(&self) -> Duration {
        self.secondary_warmup_timeout
            .map_or(DEFAULT_WARMUP_TIMEOUT, |d| d.0)
    }

    pub fn download_request_timeout(&self) -> Duration {
        self.secondary_download_request_timeout
            .map_or(DEFAULT_DOWNLOAD_REQUEST_TIMEOUT, |d| d.0)
    }
}

/// Upstream answers an empty object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TenantShardMigrateResponse {}

/// `PUT /control/v1/preferred_azs`: a flat map of shard id to AZ, `null` clearing it
/// (upstream's `ShardsPreferredAzsRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsPreferredAzsRequest {
    #[serde(flatten)]
    pub preferred_az_ids: BTreeMap<TenantShardId, Option<String>>,
}

/// The shards whose preferred AZ changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsPreferredAzsResponse {
    pub updated: Vec<TenantShardId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_durations() {
        let minimal: TenantShardMigrateRequest =
            serde_json::from_str(r#"{"node_id": 2}"#).expect("minimal");
        assert!(minimal.migration_config.prewarm);
        assert!(!minimal.migration_config.override_scheduler);
        assert_eq!(
            minimal.migration_config.warmup_timeout(),
            DEFAULT_WARMUP_TIMEOUT
        );
        let full: TenantShardMigrateRequest = serde_json::from_str(
            r#"{"node_id": 2, "origin_node_id": 1, "migration_config":
                {"prewarm": false, "override_scheduler": true,
                 "secondary_warmup_timeout": "30s", "secondary_download_request_timeout": "2s"}}"#,
        )
        .expect("full");
        assert_eq!(full.origin_node_id, Some(NodeId(1)));
        assert!(!full.migration_config.prewarm);
        assert_eq!(
            full.migration_config.download_request_timeout(),
            Duration::from_secs(2)
        );
        assert!(
            serde_json::from_str::<TenantShardMigrateRequest>(
                r#"{"node_id": 2, "migration_config": {"secondary_warmup_timeout": "soon"}}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<TenantShardMigrateRequest>(r#"{"node_id": "two"}"#).is_err()
        );
    }
}
