//! What the leader last knew to be configured on each pageserver, per shard.
//!
//! Conservative by construction: `Unknown` means "uncertain" (a call in flight or failed, a node
//! lost) and forces a re-read or re-apply; `Absent` means "certainly nothing there".
//! Rebuilt from the pageservers on every leadership start; never replicated.

use std::collections::BTreeMap;

use state_machine::NodeId;
use state_machine::ids::{TenantId, TenantShardId};
use storcon_api::wire::LocationConfig;

pub use state_machine::reconcile_plan::{Locations, ObservedLocation};

#[derive(Default)]
pub struct Observed {
    shards: BTreeMap<TenantShardId, Locations>,
}

impl Observed {
    pub fn locations(&self, shard: &TenantShardId) -> Locations {
        self.shards.get(shard).cloned().unwrap_or_default()
    }

    /// Records what `node` holds of `shard`; `Absent` forgets it.
    pub fn set(&mut self, shard: TenantShardId, node: NodeId, location: ObservedLocation) {
        let l = self.shards.entry(shard).or_default();
        l.set(node, location);
        if l.is_empty() {
            self.shards.remove(&shard);
        }
    }

    /// Replaces everything known about one node with what it reported.
    pub fn replace_node(
        &mut self,
        node: NodeId,
        reported: &[(TenantShardId, Option<LocationConfig>)],
    ) {
        for l in self.shards.values_mut() {
            l.set(node, ObservedLocation::Absent);
        }
        self.shards.retain(|_, l| !l.is_empty());
        for (shard, conf) in reported {
            self.set(*shard, node, ObservedLocation::listed(conf.clone()));
        }
    }

    /// A node was lost: everything on it becomes uncertain.
    pub fn mark_node_unknown(&mut self, node: NodeId) {
        for l in self.shards.values_mut() {
            l.mark_unknown(node);
        }
    }

    /// Every shard with something (or possibly something) on `node`.
    pub fn on_node(&self, node: NodeId) -> Vec<(TenantShardId, ObservedLocation)> {
        self.shards
            .iter()
            .map(|(s, l)| (*s, l.get(node).clone()))
            .filter(|(_, l)| *l != ObservedLocation::Absent)
            .collect()
    }

    /// Forgets everything observed of a tenant's shards (a dropped tenant: what pageservers
    /// hold of it is no longer the controller's business).
    pub fn forget_tenant(&mut self, tenant: TenantId) {
        self.shards.retain(|id, _| id.tenant_id != tenant);
    }

    /// Forgets everything observed on a node (a dropped node).
    pub fn forget_node(&mut self, node: NodeId) {
        for l in self.shards.values_mut() {
            l.set(node, ObservedLocation::Absent);
        }
        self.shards.retain(|_, l| !l.is_empty());
    }

    pub fn shard_ids(&self) -> Vec<TenantShardId> {
        self.shards.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(tenant: &str, n: u8) -> TenantShardId {
        format!("{tenant}-{n:02x}02").parse().expect("shard id")
    }

    #[test]
    fn forgetting_a_tenant_or_a_node_leaves_the_rest() {
        let (a, b) = (
            "1f359dd625e519a1a4e8d7509690f6fc",
            "2f359dd625e519a1a4e8d7509690f6fc",
        );
        let mut observed = Observed::default();
        for s in [shard(a, 0), shard(a, 1), shard(b, 0)] {
            observed.set(s, NodeId(1), ObservedLocation::Unknown);
            observed.set(s, NodeId(2), ObservedLocation::Unknown);
        }
        observed.set(shard(b, 1), NodeId(2), ObservedLocation::Unknown);
        observed.forget_tenant(a.parse().expect("tenant"));
        assert_eq!(observed.shard_ids(), vec![shard(b, 0), shard(b, 1)]);
        observed.forget_node(NodeId(2));
        // b-1 was only on node 2: no entry is left for it.
        assert_eq!(observed.shard_ids(), vec![shard(b, 0)]);
        assert!(observed.on_node(NodeId(2)).is_empty());
        assert_eq!(observed.on_node(NodeId(1)).len(), 1);
    }
}
