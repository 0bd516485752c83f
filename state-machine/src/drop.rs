//! Upstream's debug drops as commands: forget a tenant, or a node, in the replicated state
//! alone. Neither calls a pageserver nor places anything; each is one command, so no replica
//! ever holds half of a drop.
//!
//! - `DropTenant`: every shard of the tenant and its split record (if a split is in flight)
//!   go; NotFound when the tenant has no shard.
//! - `DropNode`: the node record goes, and with it every reference to the node: it leaves
//!   each intent (attached or secondary) and stops being the holder of a generation (the
//!   generation itself stays: the next attach issues a higher one). NotFound for an unknown
//!   node; Conflict while a split record names the node, because completing that split would
//!   attach children on it.
//!
//! A dropped node leaves no tombstone (upstream's debug drop neither): it may register again.
//! A *deleted* node does (`DeleteNode`, the end of a node delete): its record is kept under
//! `tombstone/<id>`, and the id cannot register or re-attach until `DeleteTombstone`.

use crate::command::{Rejection, Response};
use crate::ids::TenantId;
use crate::node::NodeId;
use crate::rows::{self, Mutation};
use crate::state::State;

type Applied = Result<(Response, Vec<Mutation>), Rejection>;

impl State {
    pub(crate) fn drop_tenant(&mut self, tenant_id: TenantId) -> Applied {
        let ids: Vec<_> = self.tenant_shards(tenant_id).map(|s| s.id).collect();
        if ids.is_empty() {
            return Err(Rejection::NotFound(format!("Tenant {tenant_id} not found")));
        }
        let mut muts = Vec::with_capacity(ids.len() + 1);
        for id in ids {
            self.shards.remove(&id);
            muts.push(rows::delete(rows::shard_key(&id)));
        }
        if self.splits.remove(&tenant_id).is_some() {
            muts.push(rows::delete(rows::split_key(tenant_id)));
        }
        Ok((Response::Done, muts))
    }

    /// The end of a node delete: the drop, a tombstone, and the operation's record gone.
    pub(crate) fn delete_node(&mut self, node_id: NodeId) -> Applied {
        let record = self
            .nodes
            .get(&node_id)
            .cloned()
            .ok_or_else(|| Rejection::NotFound(format!("Node {node_id} not registered")))?;
        let (response, mut muts) = self.drop_node(node_id)?;
        muts.push(rows::put(rows::tombstone_key(node_id), &record));
        self.tombstones.insert(node_id, record);
        if self.node_operation.is_some_and(|op| op.node == node_id) {
            self.node_operation = None;
            muts.push(rows::delete(rows::NODE_OPERATION_KEY.to_string()));
        }
        Ok((response, muts))
    }

    pub(crate) fn delete_tombstone(&mut self, node_id: NodeId) -> Applied {
        if self.nodes.contains_key(&node_id) {
            return Err(Rejection::Conflict(format!("Node {node_id} is in use")));
        }
        if self.tombstones.remove(&node_id).is_none() {
            return Err(Rejection::NotFound(format!(
                "Node {node_id} has no tombstone"
            )));
        }
        Ok((
            Response::Done,
            vec![rows::delete(rows::tombstone_key(node_id))],
        ))
    }

    pub fn tombstones(&self) -> impl Iterator<Item = &crate::node::NodeRecord> {
        self.tombstones.values()
    }

    pub fn is_tombstoned(&self, node_id: NodeId) -> bool {
        self.tombstones.contains_key(&node_id)
    }

    pub(crate) fn drop_node(&mut self, node_id: NodeId) -> Applied {
        if !self.nodes.contains_key(&node_id) {
            return Err(Rejection::NotFound(format!(
                "Node {node_id} not registered"
            )));
        }
        if let Some(record) = self
            .split_records()
            .find(|r| r.parents.iter().any(|p| p.node == node_id))
        {
            return Err(Rejection::Conflict(format!(
                "Node {node_id} holds a shard of tenant {} being split; retry when the split is done",
                record.tenant_id
            )));
        }
        let on = self.shards_on(node_id);
        let ids: std::collections::BTreeSet<_> = on.intended.union(&on.issued).copied().collect();
        let touched: Vec<_> = ids
            .iter()
            .filter_map(|id| self.shard(id))
            .cloned()
            .collect();
        let mut muts = Vec::with_capacity(touched.len() + 1);
        for mut shard in touched {
            if shard.intent.attached == Some(node_id) {
                shard.intent.attached = None;
            }
            shard.intent.secondaries.retain(|n| *n != node_id);
            if shard.generation_pageserver == Some(node_id) {
                shard.generation_pageserver = None;
            }
            muts.push(self.put_shard(shard));
        }
        self.nodes.remove(&node_id);
        muts.push(rows::delete(rows::node_key(node_id)));
        Ok((Response::Done, muts))
    }
}
