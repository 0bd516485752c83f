//! The invariants the module headers state, as code: [`State::validate`] checks them on the
//! whole state. `apply` runs it after every command in debug builds, and the property tests run
//! it after every step, so a command that breaks one is caught where it happens.
//!
//! Checked:
//! - one shard count and one stripe size per tenant, and shard numbers below the count;
//! - an intent never lists its attached node as a secondary, nor a secondary twice, and names
//!   only registered nodes;
//! - a generation was issued before a node is named as its holder, and that node is registered;
//! - split records and splitting markers agree: a tenant has splitting shards exactly when it has
//!   a record, the record's parents are its current shards, and their children are at the new
//!   count.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ShardCount, TenantId};
use crate::state::State;

/// Which invariant is broken, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken: {0}")]
pub struct InvariantViolation(pub String);

fn broken(what: String) -> Result<(), InvariantViolation> {
    Err(InvariantViolation(what))
}

impl State {
    pub fn validate(&self) -> Result<(), InvariantViolation> {
        if !self.shards.indexes_agree() {
            return broken("the per-node shard indexes disagree with the shard table".into());
        }
        let mut tenants: BTreeMap<TenantId, (ShardCount, u32)> = BTreeMap::new();
        let mut splitting: BTreeSet<TenantId> = BTreeSet::new();
        for s in self.shards() {
            let id = s.id;
            let (count, stripe) = *tenants
                .entry(id.tenant_id)
                .or_insert((id.shard_count, s.stripe_size));
            if count != id.shard_count {
                return broken(format!(
                    "tenant {} has shards at counts {} and {}",
                    id.tenant_id, count.0, id.shard_count.0
                ));
            }
            if stripe != s.stripe_size {
                return broken(format!(
                    "tenant {} has stripe sizes {stripe} and {}",
                    id.tenant_id, s.stripe_size
                ));
            }
            if id.shard_number >= id.shard_count.count() {
                return broken(format!("{id}: shard number beyond the count"));
            }
            let intent = &s.intent;
            if let Some(a) = intent.attached
                && intent.secondaries.contains(&a)
            {
                return broken(format!("{id}: node {a} is attached and secondary"));
            }
            let distinct: BTreeSet<_> = intent.secondaries.iter().collect();
            if distinct.len() != intent.secondaries.len() {
                return broken(format!("{id}: a secondary is listed twice"));
            }
            if let Some(n) = intent.nodes().find(|n| self.node(*n).is_none()) {
                return broken(format!("{id}: intent names unregistered node {n}"));
            }
            if let Some(holder) = s.generation_pageserver {
                if s.generation.is_none() {
                    return broken(format!("{id}: held by node {holder} without a generation"));
                }
                if self.node(holder).is_none() {
                    return broken(format!("{id}: held by unregistered node {holder}"));
                }
            }
            if s.splitting {
                splitting.insert(id.tenant_id);
            }
        }
        let recorded: BTreeSet<TenantId> = self.split_records().map(|r| r.tenant_id).collect();
        if let Some(t) = splitting.symmetric_difference(&recorded).next() {
            return broken(format!(
                "tenant {t}: splitting markers and split record disagree"
            ));
        }
        for record in self.split_records() {
            let current: BTreeSet<_> = self.tenant_shards(record.tenant_id).map(|s| s.id).collect();
            let parents: BTreeSet<_> = record.parents.iter().map(|p| p.id).collect();
            if current != parents {
                return broken(format!(
                    "tenant {}: split parents {parents:?} are not its shards {current:?}",
                    record.tenant_id
                ));
            }
            if let Some(c) = record
                .children()
                .find(|c| c.shard_count.0 != record.new_shard_count)
            {
                return broken(format!(
                    "tenant {}: split child {c} is not at count {}",
                    record.tenant_id, record.new_shard_count
                ));
            }
            if self.tenant_shards(record.tenant_id).any(|s| !s.splitting) {
                return broken(format!(
                    "tenant {}: a shard under a split is not marked splitting",
                    record.tenant_id
                ));
            }
        }
        if let Some(n) = self.tombstones().find(|n| self.node(n.id).is_some()) {
            return broken(format!("node {} is both registered and tombstoned", n.id));
        }
        if let Some(op) = self.node_operation()
            && !self.node_operation_fits(op)
        {
            return broken(format!(
                "node operation {op:?} does not match the node's scheduling policy"
            ));
        }
        for record in self.migrations() {
            if !self.migration_fits(record) {
                return broken(format!(
                    "{}: migration from {} to {} does not fit its intent",
                    record.shard, record.origin, record.destination
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::ids::TenantShardId;
    use crate::node::{NodeId, NodeRegisterRequest};
    use crate::tenant::{CreateTenant, Intent, PlacementPolicy};

    fn state() -> (State, TenantShardId) {
        let mut state = State::default();
        state.apply(&Command::RegisterNode(NodeRegisterRequest {
            node_id: NodeId(1),
            listen_pg_addr: "ps1".into(),
            listen_pg_port: 1,
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: "ps1".into(),
            listen_http_port: 1,
            listen_https_port: None,
            availability_zone_id: "az".into(),
            node_ip_addr: None,
        }));
        let tenant_id = "1f359dd625e519a1a4e8d7509690f6fc".parse().expect("id");
        state.apply(&Command::CreateTenant(CreateTenant {
            tenant_id,
            shard_count: 2,
            stripe_size: 8,
            placement: PlacementPolicy::Attached(0),
            config: serde_json::json!({}),
            preferred_az: None,
            generation: None,
        }));
        let first = state.tenant_shards(tenant_id).next().expect("shard").id;
        assert_eq!(state.validate(), Ok(()));
        (state, first)
    }

    /// Each corruption is caught, with a message naming it.
    #[test]
    fn broken_states_are_caught() {
        type Corrupt = fn(&mut State, TenantShardId);
        let cases: [(Corrupt, &str); 6] = [
            (
                |s, id| {
                    s.shards.update(&id, |shard| {
                        shard.intent = Intent {
                            attached: Some(NodeId(1)),
                            secondaries: vec![NodeId(1)],
                        }
                    });
                },
                "attached and secondary",
            ),
            (
                |s, id| {
                    s.shards
                        .update(&id, |sh| sh.intent.attached = Some(NodeId(9)));
                },
                "unregistered node 9",
            ),
            (
                |s, id| {
                    s.shards.update(&id, |shard| {
                        shard.generation = None;
                        shard.generation_pageserver = Some(NodeId(1));
                    });
                },
                "without a generation",
            ),
            (
                |s, id| {
                    s.shards.update(&id, |sh| sh.stripe_size = 16);
                },
                "stripe sizes",
            ),
            (
                |s, id| {
                    s.shards.update(&id, |sh| sh.splitting = true);
                },
                "split record disagree",
            ),
            (
                |s, id| {
                    let mut other = s.shards.get(&id).expect("shard").clone();
                    other.id.shard_count = crate::ids::ShardCount(4);
                    s.shards.insert(other.id, other);
                },
                "counts",
            ),
        ];
        for (corrupt, expected) in cases {
            let (mut s, id) = state();
            corrupt(&mut s, id);
            let e = s.validate().expect_err(expected);
            assert!(e.to_string().contains(expected), "{e}");
        }
    }
}
