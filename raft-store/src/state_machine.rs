//! `RaftStateMachine` on redb, with the applied state mirrored in memory for readers.
//!
//! Guarantees: one `apply` batch is one redb transaction (rows, `last_applied`, membership), so
//! the durable state machine is always a prefix of the log. Applies commit with
//! `Durability::None` (see the crate docs). `install_snapshot` replaces every row, the metadata
//! and the stored snapshot in one Immediate transaction. The in-memory [`State`] is only changed
//! by applied entries or an installed snapshot, and only after their transaction has committed
//! (persist before publish): readers never see a state that disk does not hold.
//!
//! How an apply batch is published without cloning the state each time: the store keeps a
//! private twin of the published state (`staging`), equal to it between batches. A batch is
//! applied to the twin while the rows are written; after the commit the twin and the published
//! state swap places (readers wait only for a pointer swap), and the previous published state
//! is brought level by copying the records the batch changed. If the transaction fails, nothing
//! of the batch reached disk and the twin is reset from the published state (a clone, on the
//! failure path only). The price is a second copy of the state in memory.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::ReadableTable;
use state_machine::{Mutation, Response, State};

use crate::codec;
use crate::db::{Db, SM_META, SM_ROWS, get_json, put_json};
use crate::error::StoreError;
use crate::metrics::{self, STORE_METRICS};
use crate::snapshot::{FORMAT_VERSION, SnapshotBlob, StoredSnapshot};
use crate::types::TypeConfig;
use state_machine::ReplicaId;

pub(crate) const LAST_APPLIED: &str = "last_applied";
pub(crate) const MEMBERSHIP: &str = "membership";
pub(crate) const SNAPSHOT: &str = "snapshot";

type Membership = StoredMembership<ReplicaId, BasicNode>;

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

    /// Publishes `next` and hands back the state it replaces. Readers wait for a swap only.
    fn swap(&self, next: &mut State) {
        std::mem::swap(
            &mut *self.0.write().unwrap_or_else(|p| p.into_inner()),
            next,
        );
    }
}

#[derive(Clone)]
pub struct StateMachineStore {
    db: Db,
    state: SharedState,
    /// The private twin of `state` that apply batches are applied to before they commit (see
    /// the module docs). Equal to `state` whenever no batch is in flight.
    staging: Arc<Mutex<State>>,
    /// Test hook: fail the next apply batch after it was applied to `staging`, as a failed
    /// commit would.
    #[cfg(test)]
    fail_next_apply: Arc<std::sync::atomic::AtomicBool>,
}

/// The staging twin, locked. After a panic mid-batch it may hold half a batch: it is reset
/// from the published state, which is the last committed one.
fn lock_staging<'a>(staging: &'a Mutex<State>, published: &SharedState) -> MutexGuard<'a, State> {
    match staging.lock() {
        Ok(guard) => guard,
        Err(poisoned) => {
            let mut guard = poisoned.into_inner();
            *guard = published.read().clone();
            staging.clear_poison();
            guard
        }
    }
}

/// Applies a batch to `staging` and writes its rows, `last_applied` and membership in `tx`.
/// Returns the responses and, per normal or membership entry, the rows it changed.
fn apply_batch(
    tx: &redb::WriteTransaction,
    staging: &mut State,
    entries: &[Entry<TypeConfig>],
) -> Result<(Vec<Response>, Vec<Vec<Mutation>>), StoreError> {
    let mut responses = Vec::with_capacity(entries.len());
    let mut changed = Vec::new();
    let mut last_applied = None;
    let mut membership: Option<Membership> = None;
    // The nodes of the membership in force before this batch: a membership entry that leaves
    // one out records it as removed.
    let mut members_before: BTreeSet<ReplicaId> = {
        let meta = tx.open_table(SM_META)?;
        let stored: Option<Membership> = get_json(&meta, MEMBERSHIP)?;
        stored.map(|m| node_ids(&m)).unwrap_or_default()
    };
    {
        let mut rows = tx.open_table(SM_ROWS)?;
        let mut write = |mutations: &[Mutation]| -> Result<(), StoreError> {
            for m in mutations {
                match &m.value {
                    Some(v) => {
                        rows.insert(m.key.as_str(), v.as_slice())?;
                    }
                    None => {
                        rows.remove(m.key.as_str())?;
                    }
                }
            }
            Ok(())
        };
        for entry in entries {
            last_applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    let after = node_ids(&stored);
                    let mutations =
                        staging.record_membership(&members_before, &after, entry.log_id.index);
                    write(&mutations)?;
                    changed.push(mutations);
                    members_before = after;
                    membership = Some(stored);
                    Response::None
                }
                EntryPayload::Normal(cmd) => {
                    let (response, mutations) = staging.apply(cmd);
                    write(&mutations)?;
                    changed.push(mutations);
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
    Ok((responses, changed))
}

fn node_ids(m: &Membership) -> BTreeSet<ReplicaId> {
    m.membership().nodes().map(|(id, _)| *id).collect()
}

/// Publishes a committed batch: `staging` (the batch applied) becomes the published state, and
/// the previous published state, now in `staging`, is brought level by copying the records the
/// batch changed (cheaper than applying it again: no rows are serialized twice).
fn publish(published: &SharedState, staging: &mut State, changed: &[Vec<Mutation>]) {
    published.swap(staging);
    let current = published.read();
    let keys = changed.iter().flatten().map(|m| m.key.as_str());
    if let Err(e) = staging.copy_rows(&current, keys) {
        // Only a key `apply` never writes gets here; the twin is then not trusted, and the
        // published state, which is what was committed, is copied whole.
        tracing::error!(error = %e, "cannot copy changed rows; resetting the staging state");
        *staging = current.clone();
    }
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
        let loaded = load_state(&db)?;
        let staging = Arc::new(Mutex::new(loaded.clone()));
        let state = SharedState::default();
        state.replace(loaded);
        Ok(StateMachineStore {
            db,
            state,
            staging,
            #[cfg(test)]
            fail_next_apply: Default::default(),
        })
    }

    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    /// Takes backup documents of this replica's applied state (see `backup.rs`).
    pub fn backup_source(&self, node_id: ReplicaId) -> crate::backup::BackupSource {
        crate::backup::BackupSource::new(self.db.clone(), node_id)
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

/// The applied state at one point of the log: rows, `last_applied` and membership from one
/// read transaction, so they are one consistent view. Snapshots and backups both read this.
pub(crate) fn read_blob(db: &Db) -> Result<SnapshotBlob, StoreError> {
    let tx = db.read()?;
    let meta = tx.open_table(SM_META)?;
    let mut rows = Vec::new();
    for item in tx.open_table(SM_ROWS)?.iter()? {
        let (k, v) = item?;
        rows.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(SnapshotBlob {
        version: FORMAT_VERSION,
        last_applied: get_json(&meta, LAST_APPLIED)?.flatten(),
        membership: get_json(&meta, MEMBERSHIP)?.unwrap_or_default(),
        rows,
    })
}

fn build_snapshot_blocking(db: &Db) -> Result<Snapshot<TypeConfig>, StoreError> {
    let started = std::time::Instant::now();
    let blob = read_blob(db)?;
    let data = codec::encode_snapshot(&blob)?;
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
    // Encoded before the write transaction: redb has one writer, and log appends wait for it.
    // At 100,000 shards the encoding takes seconds; holding the writer that long stalled every
    // replica's log at once and cost elections.
    let stored = serde_json::to_vec(&stored)?;
    // Immediate: the snapshot, and every earlier None-durability apply, is on disk before
    // openraft may purge the log behind it.
    db.write_blocking(true, |tx| {
        tx.open_table(SM_META)?
            .insert(SNAPSHOT, stored.as_slice())?;
        Ok(())
    })?;
    metrics::observe(&STORE_METRICS.snapshot_build, started.elapsed());
    STORE_METRICS
        .snapshot_bytes
        .set(i64::try_from(data.len()).unwrap_or(i64::MAX));
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<ReplicaId>> {
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
    ) -> Result<(Option<LogId<ReplicaId>>, Membership), StorageError<ReplicaId>> {
        self.db
            .run(|db| {
                let tx = db.read()?;
                let meta = tx.open_table(SM_META)?;
                let applied: Option<LogId<ReplicaId>> = get_json(&meta, LAST_APPLIED)?.flatten();
                let membership: Membership = get_json(&meta, MEMBERSHIP)?.unwrap_or_default();
                Ok((applied, membership))
            })
            .await
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<ReplicaId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let state = self.state.clone();
        let staging = self.staging.clone();
        #[cfg(test)]
        let fail = self
            .fail_next_apply
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        self.db
            .run(move |db| {
                let mut staging = lock_staging(&staging, &state);
                let written = db.write_blocking(false, |tx| {
                    let batch = apply_batch(tx, &mut staging, &entries)?;
                    #[cfg(test)]
                    if fail {
                        return Err(StoreError::Join("injected failure".into()));
                    }
                    Ok(batch)
                });
                match written {
                    Ok((responses, changed)) => {
                        publish(&state, &mut staging, &changed);
                        Ok(responses)
                    }
                    Err(e) => {
                        // Nothing of the batch is on disk, so nothing of it may stay in memory.
                        *staging = state.read().clone();
                        Err(e)
                    }
                }
            })
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<ReplicaId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<ReplicaId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<ReplicaId>> {
        let meta = meta.clone();
        let data = snapshot.into_inner();
        let state = self.state.clone();
        let staging = self.staging.clone();
        let signature = meta.signature();
        let index = meta.last_log_id.map(|l| l.index);
        self.db
            .run(move |db| {
                let blob = codec::decode_snapshot(&data)?;
                let new_state =
                    State::from_rows(blob.rows.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
                // Encoded outside the write transaction, as in `build_snapshot_blocking`.
                let stored = serde_json::to_vec(&StoredSnapshot {
                    meta: meta.clone(),
                    data,
                })?;
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
                    tx.open_table(SM_META)?
                        .insert(SNAPSHOT, stored.as_slice())?;
                    Ok(())
                })?;
                // Publish only after the install is durable.
                *lock_staging(&staging, &state) = new_state.clone();
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
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<ReplicaId>> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use state_machine::{Command, NodeId, NodeRegisterRequest};

    use super::*;

    fn register(id: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, ReplicaId(1)), id),
            payload: EntryPayload::Normal(Command::RegisterNode(NodeRegisterRequest {
                node_id: NodeId(id),
                listen_pg_addr: "ps".into(),
                listen_pg_port: 1,
                listen_grpc_addr: None,
                listen_grpc_port: None,
                listen_http_addr: "ps".into(),
                listen_http_port: id as u16,
                listen_https_port: None,
                availability_zone_id: "az".into(),
                node_ip_addr: None,
            })),
        }
    }

    fn node_ids(state: &State) -> Vec<NodeId> {
        state.nodes().map(|n| n.id).collect()
    }

    #[tokio::test]
    async fn a_failed_batch_is_neither_published_nor_kept_in_staging() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let mut sm =
            StateMachineStore::open(Db::open(dir.path(), ReplicaId(1)).expect("open")).expect("sm");
        sm.apply((1..=2).map(register)).await.expect("apply");

        sm.fail_next_apply.store(true, Ordering::SeqCst);
        sm.apply((3..=4).map(register))
            .await
            .expect_err("injected failure");
        assert_eq!(node_ids(&sm.shared_state().read()), [1, 2].map(NodeId));
        assert_eq!(*sm.staging.lock().expect("staging"), *sm.state.read());
        let (applied, _) = sm.applied_state().await.expect("applied");
        assert_eq!(applied.map(|l| l.index), Some(2));

        // openraft would re-apply the same entries; they must answer as the first time.
        let responses = sm.apply((3..=4).map(register)).await.expect("apply");
        assert!(
            responses
                .iter()
                .all(|r| matches!(r, Response::NodeRegistered(_))),
            "{responses:?}"
        );
        assert_eq!(
            node_ids(&sm.shared_state().read()),
            [1, 2, 3, 4].map(NodeId)
        );
        assert_eq!(*sm.staging.lock().expect("staging"), *sm.state.read());
        assert!(sm.audit().memory_matches_disk().await.expect("audit"));
    }
}
