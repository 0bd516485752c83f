//! What the leader last knew to be configured on each pageserver, per shard.
//!
//! Conservative by construction: an entry `None` means "uncertain" (a call in flight or failed,
//! a node lost) and forces a re-read or re-apply; no entry means "certainly nothing there".
//! Rebuilt from the pageservers on every leadership start; never replicated.

use std::collections::BTreeMap;

use state_machine::NodeId;
use state_machine::ids::TenantShardId;
use state_machine::wire::LocationConfig;

pub use state_machine::reconcile_plan::Locations;

#[derive(Default)]
pub struct Observed {
    shards: BTreeMap<TenantShardId, Locations>,
}

impl Observed {
    pub fn locations(&self, shard: &TenantShardId) -> Locations {
        self.shards.get(shard).cloned().unwrap_or_default()
    }

    pub fn set(&mut self, shard: TenantShardId, node: NodeId, conf: Option<LocationConfig>) {
        self.shards.entry(shard).or_default().insert(node, conf);
    }

    pub fn remove(&mut self, shard: &TenantShardId, node: NodeId) {
        if let Some(l) = self.shards.get_mut(shard) {
            l.remove(&node);
            if l.is_empty() {
                self.shards.remove(shard);
            }
        }
    }

    /// Replaces everything known about one node with what it reported.
    pub fn replace_node(
        &mut self,
        node: NodeId,
        reported: &[(TenantShardId, Option<LocationConfig>)],
    ) {
        for l in self.shards.values_mut() {
            l.remove(&node);
        }
        self.shards.retain(|_, l| !l.is_empty());
        for (shard, conf) in reported {
            self.set(*shard, node, conf.clone());
        }
    }

    /// A node was lost: everything on it becomes uncertain.
    pub fn mark_node_unknown(&mut self, node: NodeId) {
        for l in self.shards.values_mut() {
            if let Some(c) = l.get_mut(&node) {
                *c = None;
            }
        }
    }

    pub fn on_node(&self, node: NodeId) -> Vec<(TenantShardId, Option<LocationConfig>)> {
        self.shards
            .iter()
            .filter_map(|(s, l)| l.get(&node).map(|c| (*s, c.clone())))
            .collect()
    }

    pub fn shard_ids(&self) -> Vec<TenantShardId> {
        self.shards.keys().copied().collect()
    }
}
