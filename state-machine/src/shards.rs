//! The shard table with its per-node indexes, kept in step on every insert and removal.
//!
//! What a node holds is asked on hot paths: the scheduler's load per node (every tenant
//! creation, every metrics scrape), re-attach (the shards whose generation was issued to the
//! node), and its answer (the node's secondaries). Scanning every shard for each of those made
//! them cost O(all shards); with these indexes they cost O(the node's shards).
//!
//! Invariant: for every node, `intended` holds exactly the shards whose intent names it, with
//! `attached` and `by_preferred_az` counted from them, and `issued` exactly the shards whose
//! `generation_pageserver` is it. Reads go to the map through `Deref`; the only ways to change
//! it are [`Shards::insert`] and [`Shards::remove`], which update the indexes. The indexes are
//! derived, never stored in rows; `State::validate` checks them against a rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use crate::ids::TenantShardId;
use crate::node::NodeId;
use crate::tenant::TenantShard;

/// What the shard table says about one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeShards {
    /// Shards whose intent names the node (attached or secondary).
    pub intended: BTreeSet<TenantShardId>,
    /// How many of `intended` are attached there.
    pub attached: usize,
    /// `intended`, counted by the shards' preferred AZ.
    pub by_preferred_az: BTreeMap<Option<String>, usize>,
    /// Shards whose current generation was issued to the node.
    pub issued: BTreeSet<TenantShardId>,
}

impl NodeShards {
    /// How many of the node's shards prefer `az`: its home shards when `az` is its own.
    pub fn preferring(&self, az: &str) -> usize {
        self.by_preferred_az
            .get(&Some(az.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.intended.is_empty() && self.issued.is_empty()
    }
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Shards {
    map: BTreeMap<TenantShardId, TenantShard>,
    nodes: BTreeMap<NodeId, NodeShards>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The indexes follow from the map; printing them would only repeat it.
        self.map.fmt(f)
    }
}

impl Deref for Shards {
    type Target = BTreeMap<TenantShardId, TenantShard>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Shards {
    pub fn insert(&mut self, id: TenantShardId, shard: TenantShard) -> Option<TenantShard> {
        debug_assert_eq!(id, shard.id);
        // The old entries first: the new record may name the same nodes.
        let old = self.remove(&id);
        index(&mut self.nodes, &shard, true);
        self.map.insert(id, shard);
        old
    }

    pub fn remove(&mut self, id: &TenantShardId) -> Option<TenantShard> {
        let old = self.map.remove(id);
        if let Some(old) = &old {
            index(&mut self.nodes, old, false);
        }
        old
    }

    /// Changes one shard in place (its index entries follow); `false` if there is none.
    pub fn update(&mut self, id: &TenantShardId, f: impl FnOnce(&mut TenantShard)) -> bool {
        let Some(mut shard) = self.remove(id) else {
            return false;
        };
        f(&mut shard);
        self.insert(*id, shard);
        true
    }

    /// What the table says about `node` (empty for a node it does not name).
    pub fn on_node(&self, node: NodeId) -> &NodeShards {
        static NONE: std::sync::LazyLock<NodeShards> =
            std::sync::LazyLock::new(NodeShards::default);
        self.nodes.get(&node).unwrap_or(&NONE)
    }

    /// Every node the table names, with what it says about it.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &NodeShards)> {
        self.nodes.iter().map(|(n, s)| (*n, s))
    }

    /// Whether the indexes are what a rebuild from the map gives (for `State::validate`).
    pub fn indexes_agree(&self) -> bool {
        let mut rebuilt = BTreeMap::new();
        for s in self.map.values() {
            index(&mut rebuilt, s, true);
        }
        rebuilt == self.nodes
    }
}

/// Adds (`add`) or removes `shard`'s entries in the per-node indexes.
fn index(nodes: &mut BTreeMap<NodeId, NodeShards>, shard: &TenantShard, add: bool) {
    let mut touch = |node: NodeId, f: &mut dyn FnMut(&mut NodeShards)| {
        let entry = nodes.entry(node).or_default();
        f(entry);
        if entry.is_empty() {
            nodes.remove(&node);
        }
    };
    let step = |v: &mut usize| {
        if add {
            *v += 1;
        } else {
            *v = v.saturating_sub(1);
        }
    };
    let intended = shard
        .intent
        .attached
        .map(|a| (a, true))
        .into_iter()
        .chain(shard.intent.secondaries.iter().map(|s| (*s, false)));
    for (node, attached) in intended {
        touch(node, &mut |n| {
            if add {
                n.intended.insert(shard.id);
            } else {
                n.intended.remove(&shard.id);
            }
            if attached {
                step(&mut n.attached);
            }
            let az = n
                .by_preferred_az
                .entry(shard.preferred_az.clone())
                .or_default();
            step(az);
            if *az == 0 {
                n.by_preferred_az.remove(&shard.preferred_az);
            }
        });
    }
    if let Some(holder) = shard.generation_pageserver {
        touch(holder, &mut |n| {
            if add {
                n.issued.insert(shard.id);
            } else {
                n.issued.remove(&shard.id);
            }
        });
    }
}
