//! `RaftStateMachine` on redb, with the applied state mirrored in memory for readers.
//!
//! Guarantees: one `apply` batch is one redb transaction (rows, `last_applied`, membership), so
//! the durable state machine is always a prefix of the log. Applies commit with
//! `Durability::None` (see the crate docs). `install_snapshot` replaces every row, the metadata
//! and the stored snapshot in one Immediate transaction. The in-memory [`State`] is only changed
//! by applied entries or an installed snapshot.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::ReadableTable;
use state_machine::{Response, State};

use crate::db::{Db, SM_META, SM_ROWS, get_json, put_json};
use crate::error::StoreError;
use crate::snapshot::{FORMAT_VERSION, SnapshotBlob, StoredSnapshot};
use crate::types::{NodeId, TypeConfig};

const LAST_APPLIED: &str = "last_applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT: &str = "snapshot";

type Membership = StoredMembership<NodeId, BasicNode>;

/// Read access to the applied controller state, shared with the HTTP layer.
#[derive(Clone, Default)]
pub struct SharedState(Arc<RwLock<State>>);

impl SharedState {
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A poisoned lock means a panic while applying; the data is still the last full apply.
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn replace(&self, state: State) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    fn apply(&self, cmd: &state_machine::Command) -> (Response, Vec<state_machine::Mutation>) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).apply(cmd)
    }
}

#[derive(Clone)]
pub struct StateMachineStore {
    db: Db,
    state: SharedState,
}

fn load_state(db: &Db) -> Result<State, StoreError> {
    let tx = db.read()?;
    let table = tx.open_table(SM_ROWS)?;
    let mut rows = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        rows.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(State::from_rows(
        rows.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
    )?)
}

impl StateMachineStore {
    /// Loads the applied state from disk. Blocking; call before serving.
    pub fn open(db: Db) -> Result<Self, StoreError> {
        let state = SharedState::default();
        state.replace(load_state(&db)?);
        Ok(StateMachineStore { db, state })
    }

    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    /// A handle that compares the in-memory state with the rows on disk.
    pub fn audit(&self) -> StateAudit {
        StateAudit {
            db: self.db.clone(),
            state: self.state.clone(),
        }
    }
}

/// Checks that the state readers see equals the state the redb rows rebuild (a row mutation
/// that `apply` forgot to persist would make them differ).
#[derive(Clone)]
pub struct StateAudit {
    db: Db,
    state: SharedState,
}

impl StateAudit {
    /// `Ok(true)` when memory and disk agree. An apply batch in flight can make them differ for
    /// a moment, so a mismatch is re-checked a few times before it is reported.
    pub async fn memory_matches_disk(&self) -> Result<bool, StoreError> {
        for attempt in 0..5u64 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            let state = self.state.clone();
            let same = self
                .db
                .run(move |db| {
                    let on_disk = load_state(db)?;
                    Ok(*state.read() == on_disk)
                })
                .await?;
            if same {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn build_snapshot_blocking(db: &Db) -> Result<Snapshot<TypeConfig>, StoreError> {
    // One read transaction: rows, last_applied and membership are one consistent view.
    let blob = {
        let tx = db.read()?;
        let meta = tx.open_table(SM_META)?;
        let mut rows = Vec::new();
        for item in tx.open_table(SM_ROWS)?.iter()? {
            let (k, v) = item?;
            rows.push((k.value().to_string(), v.value().to_vec()));
        }
        SnapshotBlob {
            version: FORMAT_VERSION,
            last_applied: get_json(&meta, LAST_APPLIED)?.flatten(),
            membership: get_json(&meta, MEMBERSHIP)?.unwrap_or_default(),
            rows,
        }
    };
    let data = serde_json::to_vec(&blob)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let snapshot_id = match blob.last_applied {
        Some(l) => format!("{}-{}-{nanos:x}", l.leader_id.term, l.index),
        None => format!("none-{nanos:x}"),
    };
    let meta = SnapshotMeta {
        last_log_id: blob.last_applied,
        last_membership: blob.membership,
        snapshot_id,
    };
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data: data.clone(),
    };
    // Immediate: the snapshot, and every earlier None-durability apply, is on disk before
    // openraft may purge the log behind it.
    db.write_blocking(true, |tx| put_json(tx, SM_META, SNAPSHOT, &stored))?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        self.db
            .run(build_snapshot_blocking)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        self.db
            .run(|db| {
                let tx = db.read()?;
                let meta = tx.open_table(SM_META)?;
                let applied: Option<LogId<NodeId>> = get_json(&meta, LAST_APPLIED)?.flatten();
                let membership: Membership = get_json(&meta, MEMBERSHIP)?.unwrap_or_default();
                Ok((applied, membership))
            })
            .await
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let state = self.state.clone();
        self.db
            .run(move |db| {
                db.write_blocking(false, |tx| {
                    let mut responses = Vec::with_capacity(entries.len());
                    let mut last_applied = None;
                    let mut membership = None;
                    {
                        let mut rows = tx.open_table(SM_ROWS)?;
                        for entry in &entries {
                            last_applied = Some(entry.log_id);
                            let response = match &entry.payload {
                                EntryPayload::Blank => Response::None,
                                EntryPayload::Membership(m) => {
                                    membership =
                                        Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                                    Response::None
                                }
                                EntryPayload::Normal(cmd) => {
                                    let (response, mutations) = state.apply(cmd);
                                    for m in mutations {
                                        match m.value {
                                            Some(v) => {
                                                rows.insert(m.key.as_str(), v.as_slice())?;
                                            }
                                            None => {
                                                rows.remove(m.key.as_str())?;
                                            }
                                        }
                                    }
                                    response
                                }
                            };
                            responses.push(response);
                        }
                    }
                    if let Some(applied) = last_applied {
                        put_json(tx, SM_META, LAST_APPLIED, &Some(applied))?;
                    }
                    if let Some(m) = membership {
                        put_json(tx, SM_META, MEMBERSHIP, &m)?;
                    }
                    Ok(responses)
                })
            })
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let meta = meta.clone();
        let data = snapshot.into_inner();
        let state = self.state.clone();
        let signature = meta.signature();
        let index = meta.last_log_id.map(|l| l.index);
        self.db
            .run(move |db| {
                let blob: SnapshotBlob = serde_json::from_slice(&data)?;
                let new_state =
                    State::from_rows(blob.rows.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
                db.write_blocking(true, |tx| {
                    {
                        let mut rows = tx.open_table(SM_ROWS)?;
                        rows.retain(|_, _| false)?;
                        for (k, v) in &blob.rows {
                            rows.insert(k.as_str(), v.as_slice())?;
                        }
                    }
                    put_json(tx, SM_META, LAST_APPLIED, &meta.last_log_id)?;
                    put_json(tx, SM_META, MEMBERSHIP, &meta.last_membership)?;
                    let stored = StoredSnapshot {
                        meta: meta.clone(),
                        data: data.clone(),
                    };
                    put_json(tx, SM_META, SNAPSHOT, &stored)
                })?;
                // Publish only after the install is durable.
                state.replace(new_state);
                Ok(())
            })
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        tracing::info!(last_index = ?index, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let stored: Option<StoredSnapshot> = self
            .db
            .run(|db| db.get_json_blocking(SM_META, SNAPSHOT))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
