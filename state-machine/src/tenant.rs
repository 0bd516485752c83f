//! Tenant shard records: the replicated part of upstream's `TenantShard`, plus the intent.
//!
//! Invariants:
//! - a shard's generation never decreases; `generation_pageserver` names the node the latest
//!   generation was issued to;
//! - `intent.attached` is never also in `intent.secondaries`, and secondaries hold no duplicates;
//! - all shards of one tenant share shard count, stripe size, placement, config and preferred AZ.

use serde::{Deserialize, Serialize};

use crate::ids::{TenantId, TenantShardId};
use crate::node::NodeId;
use storcon_api::tenant_config::{HumanDuration, TenantConfig};
pub use storcon_api::types::{Generation, PlacementPolicy, ShardSchedulingPolicy};
use storcon_api::wire::{LocationConfig, LocationConfigMode, SecondaryConfig};

pub use storcon_api::types::DEFAULT_STRIPE_SIZE;

/// The heatmap upload period sent to a shard with secondaries whose config sets none
/// (upstream's 60 s).
pub const DEFAULT_HEATMAP_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Where the controller wants a shard's locations. Replicated, so a new leader starts from the
/// old leader's decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Intent {
    pub attached: Option<NodeId>,
    pub secondaries: Vec<NodeId>,
}

impl Intent {
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.attached
            .iter()
            .copied()
            .chain(self.secondaries.iter().copied())
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.nodes().any(|n| n == node)
    }

    /// Drops duplicates and an attached node listed as secondary, keeping order.
    pub fn normalized(mut self) -> Intent {
        let attached = self.attached;
        let mut seen = Vec::new();
        self.secondaries.retain(|n| {
            let keep = Some(*n) != attached && !seen.contains(n);
            seen.push(*n);
            keep
        });
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantShard {
    pub id: TenantShardId,
    pub stripe_size: u32,
    pub generation: Option<Generation>,
    pub generation_pageserver: Option<NodeId>,
    pub placement: PlacementPolicy,
    /// Upstream's `TenantConfig` as a JSON object: the canonical encoding of the typed config
    /// the API admitted (older log entries may hold anything within the limits). Pageservers
    /// get it typed, as `tenant_conf` (see [`TenantShard::tenant_conf`]).
    pub config: serde_json::Value,
    pub scheduling: ShardSchedulingPolicy,
    pub preferred_az: Option<String>,
    pub intent: Intent,
    pub splitting: bool,
}

impl TenantShard {
    pub fn tenant_id(&self) -> TenantId {
        self.id.tenant_id
    }
}

/// Parameters of a tenant creation, decided by the leader before proposing (the AZ choice
/// needs node state, the rest comes from the request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTenant {
    pub tenant_id: TenantId,
    /// 0 = legacy unsharded.
    pub shard_count: u8,
    pub stripe_size: u32,
    pub placement: PlacementPolicy,
    pub config: serde_json::Value,
    pub preferred_az: Option<String>,
    pub generation: Option<Generation>,
}

/// The locations the controller sends to pageservers for this shard.
impl TenantShard {
    /// The config pageservers get: the stored one read as the typed config, so that a field a
    /// pageserver would refuse (stored before configs were typed) is left out.
    pub fn tenant_conf(&self) -> TenantConfig {
        TenantConfig::from_stored(&self.config)
    }

    /// Whether the shard has, or its policy asks for, secondary locations.
    pub fn has_secondaries(&self) -> bool {
        !self.intent.secondaries.is_empty()
            || matches!(self.placement, PlacementPolicy::Attached(n) if n > 0)
    }

    /// Upstream's HA-aware config: a location of a shard with secondaries uploads heatmaps
    /// (without a `heatmap_period` a pageserver uploads none, and a secondary has nothing to
    /// download), every [`DEFAULT_HEATMAP_PERIOD`] unless the tenant chose a period; without
    /// secondaries, nobody reads them, so none is uploaded.
    fn ha_aware_conf(&self, has_secondaries: bool) -> TenantConfig {
        let mut conf = self.tenant_conf();
        if has_secondaries {
            conf.heatmap_period
                .get_or_insert(HumanDuration(DEFAULT_HEATMAP_PERIOD));
        } else {
            conf.heatmap_period = None;
        }
        conf
    }

    fn location(&self, mode: LocationConfigMode) -> LocationConfig {
        // A secondary's own config always has heatmaps on, ready for when it is promoted.
        let has_secondaries = mode == LocationConfigMode::Secondary || self.has_secondaries();
        LocationConfig {
            mode,
            generation: None,
            secondary_conf: None,
            shard_number: self.id.shard_number,
            shard_count: self.id.shard_count.0,
            shard_stripe_size: self.stripe_size,
            tenant_conf: self.ha_aware_conf(has_secondaries).into(),
        }
    }

    /// What the controller wants on the attached node.
    pub fn attached_location(&self, generation: Generation) -> LocationConfig {
        LocationConfig {
            generation: Some(generation),
            ..self.location(LocationConfigMode::AttachedSingle)
        }
    }

    pub fn secondary_location(&self) -> LocationConfig {
        LocationConfig {
            secondary_conf: Some(SecondaryConfig { warm: true }),
            ..self.location(LocationConfigMode::Secondary)
        }
    }

    pub fn detached_location(&self) -> LocationConfig {
        self.location(LocationConfigMode::Detached)
    }
}
