//! The in-memory replicated state and its deterministic `apply`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Rejection, Response};
use crate::ids::{TenantId, TenantShardId};
use crate::migration::MigrationRecord;
use crate::node::{NodeId, NodeRecord, NodeRegisterRequest, RegisterOutcome};
use crate::node_operation::NodeOperation;
use crate::replicas::RemovedReplica;
use crate::restore::RestoreRecord;
use crate::rows::{
    self, DecodeError, LEADER_KEY, MIGRATION_PREFIX, Mutation, NODE_PREFIX, SHARD_PREFIX,
    SPLIT_PREFIX,
};
use crate::rows::{
    NODE_OPERATION_KEY, REMOVED_REPLICA_PREFIX, RESTORED_FROM_KEY, TOMBSTONE_PREFIX,
};
use crate::split::SplitRecord;
use crate::tenant::TenantShard;
use crate::{ReplicaId, Term};

/// Who leads, as recorded by the leader itself through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub node_id: ReplicaId,
    pub term: Term,
    pub address: String,
    pub started_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub(crate) nodes: BTreeMap<NodeId, NodeRecord>,
    pub(crate) shards: crate::shards::Shards,
    pub(crate) splits: BTreeMap<TenantId, SplitRecord>,
    pub(crate) migrations: BTreeMap<TenantShardId, MigrationRecord>,
    pub(crate) node_operation: Option<NodeOperation>,
    /// Deleted nodes, by id: the id may not come back until the tombstone is removed.
    pub(crate) tombstones: BTreeMap<NodeId, NodeRecord>,
    leader: Option<LeaderRecord>,
    /// Set by a restore or recovery; raises the generations shards count from.
    pub(crate) restored_from: Option<RestoreRecord>,
    /// Replica ids removed from the Raft membership (see `replicas.rs`).
    pub(crate) removed_replicas: BTreeMap<ReplicaId, RemovedReplica>,
}

impl State {
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeRecord> {
        self.nodes.get(&id)
    }

    pub fn shards(&self) -> impl Iterator<Item = &TenantShard> {
        self.shards.values()
    }

    /// The shards whose intent names `node`, and those whose generation was issued to it,
    /// from the shard table's index (no pass over every shard).
    pub fn shards_on(&self, node: NodeId) -> &crate::shards::NodeShards {
        self.shards.on_node(node)
    }

    pub fn shard(&self, id: &TenantShardId) -> Option<&TenantShard> {
        self.shards.get(id)
    }

    pub fn leader(&self) -> Option<&LeaderRecord> {
        self.leader.as_ref()
    }

    /// Applies one command. Returns the response and the rows it changed (empty on rejection).
    pub fn apply(&mut self, command: &Command) -> (Response, Vec<Mutation>) {
        let result = match command {
            Command::Batch(commands) => return self.apply_batch(commands),
            Command::RegisterNode(req) => self.register_node(req),
            Command::RecordLeader {
                node_id,
                term,
                address,
                started_at,
            } => self.record_leader(LeaderRecord {
                node_id: *node_id,
                term: *term,
                address: address.clone(),
                started_at: started_at.clone(),
            }),
            Command::SetNodeScheduling { node_id, policy } => {
                self.set_node_scheduling(*node_id, *policy)
            }
            Command::CreateTenant(c) => self.create_tenant(c),
            Command::DeleteTenant { tenant_id } => self.delete_tenant(*tenant_id),
            Command::SetTenantPolicy {
                tenant_id,
                placement,
                scheduling,
            } => self.set_tenant_policy(*tenant_id, *placement, *scheduling),
            Command::SetTenantConfig { tenant_id, config } => {
                self.set_tenant_config(*tenant_id, config)
            }
            Command::PatchTenantConfig { tenant_id, patch } => {
                self.patch_tenant_config(*tenant_id, patch)
            }
            Command::OnboardTenant {
                tenant_id,
                placement,
                config,
                generation,
            } => self.onboard_tenant(*tenant_id, *placement, config, *generation),
            Command::AdoptGeneration {
                tenant_id,
                generation,
            } => self.adopt_generation(*tenant_id, *generation),
            Command::SetIntents(intents) => self.set_intents(intents),
            Command::IncrementGeneration { shard, node_id } => {
                self.increment_generation(*shard, *node_id)
            }
            Command::ReAttach { node_id } => self.re_attach(*node_id),
            Command::BeginSplit {
                tenant_id,
                new_shard_count,
                new_stripe_size,
                term,
            } => self.begin_split(*tenant_id, *new_shard_count, *new_stripe_size, *term),
            Command::CompleteSplit { tenant_id, term } => self.complete_split(*tenant_id, *term),
            Command::AbortSplit { tenant_id } => self.abort_split(*tenant_id),
            Command::AttachHook {
                shard,
                node_id,
                generation_override,
                config,
            } => self.attach_hook(*shard, *node_id, *generation_override, config.as_ref()),
            Command::SetPreferredAzs(azs) => self.set_preferred_azs(azs),
            Command::StartMigration(m) => self.start_migration(m),
            Command::CutoverMigration { shard, destination } => {
                self.cutover_migration(*shard, *destination)
            }
            Command::CancelMigration { shard } => self.cancel_migration(*shard),
            Command::StartNodeOperation(op) => self.start_node_operation(*op),
            Command::FinishNodeOperation {
                operation,
                cancelled,
            } => self.finish_node_operation(*operation, *cancelled),
            Command::DeleteNode { node_id } => self.delete_node(*node_id),
            Command::DeleteTombstone { node_id } => self.delete_tombstone(*node_id),
            Command::DropTenant { tenant_id } => self.drop_tenant(*tenant_id),
            Command::DropNode { node_id } => self.drop_node(*node_id),
        };
        let applied = match result {
            Ok((response, mut muts)) => {
                // A change that ended a migration's preconditions ends the migration with it.
                muts.extend(self.prune_migrations());
                muts.extend(self.prune_node_operation());
                (response, muts)
            }
            Err(rejection) => (Response::Rejected(rejection), Vec::new()),
        };
        // Executable invariants: a command that breaks one is a bug, caught where it happens.
        #[cfg(debug_assertions)]
        if let Err(e) = self.validate() {
            panic!("{e} after applying {command:?}");
        }
        applied
    }

    /// Each command in order, as if each were an entry of its own: its own answer, its own
    /// rows (a later command of the batch sees an earlier one's effects, and its rows follow).
    fn apply_batch(&mut self, commands: &[Command]) -> (Response, Vec<Mutation>) {
        let mut answers = Vec::with_capacity(commands.len());
        let mut muts = Vec::new();
        for command in commands {
            if matches!(command, Command::Batch(_)) {
                let nested = Rejection::BadRequest("batches do not nest".into());
                answers.push(Response::Rejected(nested));
                continue;
            }
            let (answer, rows) = self.apply(command);
            answers.push(answer);
            muts.extend(rows);
        }
        (Response::Batch(answers), muts)
    }

    fn register_node(
        &mut self,
        req: &NodeRegisterRequest,
    ) -> Result<(Response, Vec<Mutation>), Rejection> {
        req.validate()?;
        if self.tombstones.contains_key(&req.node_id) {
            return Err(Rejection::Conflict(format!(
                "Node {} was deleted: its id is tombstoned (DELETE /debug/v1/tombstone/{} frees it)",
                req.node_id, req.node_id
            )));
        }
        let wanted = NodeRecord::from_request(req);
        let outcome = match self.nodes.get(&req.node_id) {
            None => RegisterOutcome::Created,
            Some(existing) if !existing.identity_matches(req) => {
                return Err(Rejection::Conflict(format!(
                    "Node {} is already registered with different address",
                    req.node_id
                )));
            }
            Some(existing)
                if existing.listen_https_port == wanted.listen_https_port
                    && existing.listen_grpc_addr == wanted.listen_grpc_addr
                    && existing.listen_grpc_port == wanted.listen_grpc_port =>
            {
                return Ok((Response::NodeRegistered(RegisterOutcome::Unchanged), vec![]));
            }
            Some(_) => RegisterOutcome::Updated,
        };
        // An update keeps the replicated scheduling policy; only endpoints change.
        let record = match self.nodes.get(&req.node_id) {
            Some(existing) => NodeRecord {
                scheduling: existing.scheduling,
                ..wanted
            },
            None => wanted,
        };
        let mutation = rows::put(rows::node_key(record.id), &record);
        self.nodes.insert(record.id, record);
        Ok((Response::NodeRegistered(outcome), vec![mutation]))
    }

    fn record_leader(
        &mut self,
        record: LeaderRecord,
    ) -> Result<(Response, Vec<Mutation>), Rejection> {
        // Terms only grow; an older leader's late record must not overwrite a newer one.
        if let Some(current) = &self.leader
            && current.term > record.term
        {
            return Err(Rejection::Conflict(format!(
                "leader of term {} already recorded",
                current.term
            )));
        }
        let mutation = rows::put(LEADER_KEY.to_string(), &record);
        self.leader = Some(record);
        Ok((Response::LeaderRecorded, vec![mutation]))
    }

    /// Makes the records named by `keys` (row keys, as in [`Mutation::key`]) equal to those in
    /// `from`: copied if `from` has them, removed if not. Brings a copy of the state level with
    /// another that applied commands changing those rows, without applying them again.
    pub fn copy_rows<'a>(
        &mut self,
        from: &State,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), DecodeError> {
        fn sync<K: Ord + Copy, V: Clone>(to: &mut BTreeMap<K, V>, from: &BTreeMap<K, V>, key: K) {
            match from.get(&key) {
                Some(v) => to.insert(key, v.clone()),
                None => to.remove(&key),
            };
        }
        let bad = |key: &str| DecodeError::UnknownKey(key.to_string());
        for key in keys {
            if let Some(id) = key.strip_prefix(NODE_PREFIX) {
                let id: NodeId = id.parse().map_err(|_| bad(key))?;
                sync(&mut self.nodes, &from.nodes, id);
            } else if let Some(id) = key.strip_prefix(SHARD_PREFIX) {
                let id: TenantShardId = id.parse().map_err(|_| bad(key))?;
                match from.shards.get(&id) {
                    Some(s) => self.shards.insert(id, s.clone()),
                    None => self.shards.remove(&id),
                };
            } else if let Some(id) = key.strip_prefix(SPLIT_PREFIX) {
                let id: TenantId = id.parse().map_err(|_| bad(key))?;
                sync(&mut self.splits, &from.splits, id);
            } else if let Some(id) = key.strip_prefix(MIGRATION_PREFIX) {
                let id: TenantShardId = id.parse().map_err(|_| bad(key))?;
                sync(&mut self.migrations, &from.migrations, id);
            } else if key == NODE_OPERATION_KEY {
                self.node_operation = from.node_operation;
            } else if let Some(id) = key.strip_prefix(TOMBSTONE_PREFIX) {
                let id: NodeId = id.parse().map_err(|_| bad(key))?;
                sync(&mut self.tombstones, &from.tombstones, id);
            } else if key == LEADER_KEY {
                self.leader = from.leader.clone();
            } else if key == RESTORED_FROM_KEY {
                self.restored_from = from.restored_from.clone();
            } else if let Some(id) = key.strip_prefix(REMOVED_REPLICA_PREFIX) {
                let id: u64 = id.parse().map_err(|_| bad(key))?;
                sync(
                    &mut self.removed_replicas,
                    &from.removed_replicas,
                    ReplicaId(id),
                );
            } else {
                return Err(bad(key));
            }
        }
        Ok(())
    }

    /// Rebuilds the state from its rows, as written by the mutations `apply` returned.
    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<State, DecodeError> {
        let mut state = State::default();
        for (key, value) in rows {
            if key.starts_with(NODE_PREFIX) {
                let node: NodeRecord = rows::decode(key, value)?;
                state.nodes.insert(node.id, node);
            } else if key.starts_with(SHARD_PREFIX) {
                let shard: TenantShard = rows::decode(key, value)?;
                state.shards.insert(shard.id, shard);
            } else if key.starts_with(SPLIT_PREFIX) {
                let record: SplitRecord = rows::decode(key, value)?;
                state.splits.insert(record.tenant_id, record);
            } else if key.starts_with(MIGRATION_PREFIX) {
                let record: MigrationRecord = rows::decode(key, value)?;
                state.migrations.insert(record.shard, record);
            } else if key == NODE_OPERATION_KEY {
                state.node_operation = Some(rows::decode(key, value)?);
            } else if key.starts_with(TOMBSTONE_PREFIX) {
                let node: NodeRecord = rows::decode(key, value)?;
                state.tombstones.insert(node.id, node);
            } else if key == LEADER_KEY {
                state.leader = Some(rows::decode(key, value)?);
            } else if key == RESTORED_FROM_KEY {
                state.restored_from = Some(rows::decode(key, value)?);
            } else if key.starts_with(REMOVED_REPLICA_PREFIX) {
                let record: RemovedReplica = rows::decode(key, value)?;
                state.removed_replicas.insert(record.id, record);
            } else {
                return Err(DecodeError::UnknownKey(key.to_string()));
            }
        }
        Ok(state)
    }
}
