//! `RaftLogStorage` on redb.
//!
//! Guarantees: `save_vote`, `append`, `truncate` and `purge` commit Immediate (fsync) before they
//! return, and `append` calls its flush callback only after that commit. `save_committed` only
//! records the id; the next of those commits writes it (openraft calls it on every commit, and
//! it is advisory: a restart that finds an older one re-applies a little more of the log).
//! Reads of the newest entries are served from memory (`log_tail.rs`). `purge` records
//! `last_purged` in the same transaction that deletes the entries, so a restart never finds a
//! gap between the purge pointer and the first entry. Calls commit in call order under redb's
//! single writer, so vote and log I/O are never reordered.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use redb::ReadableTable;

use crate::codec;
use crate::db::{Db, LOG, RAFT_META, get_json, put_json};
use crate::error::StoreError;
use crate::log_tail::LogTail;
use crate::metrics::{self, STORE_METRICS};
use crate::types::TypeConfig;
use state_machine::ReplicaId;

pub(crate) const VOTE: &str = "vote";
pub(crate) const COMMITTED: &str = "committed";
pub(crate) const LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Db,
    /// The newest entries, for the reads that follow an append (see `log_tail.rs`).
    tail: Arc<Mutex<LogTail>>,
    /// The committed log id openraft reported last, not yet written: the next durable commit
    /// of the log (append, vote, truncate, purge) writes it, so reporting it costs no I/O.
    committed: Arc<Mutex<Option<Option<LogId<ReplicaId>>>>>,
}

impl LogStore {
    pub fn new(db: Db) -> Self {
        LogStore {
            db,
            tail: Arc::default(),
            committed: Arc::default(),
        }
    }

    fn tail(&self) -> MutexGuard<'_, LogTail> {
        lock_tail(&self.tail)
    }

    /// Writes the committed log id reported since the last durable commit into `tx`.
    fn write_committed(
        committed: &Mutex<Option<Option<LogId<ReplicaId>>>>,
        tx: &redb::WriteTransaction,
    ) -> Result<(), StoreError> {
        let pending = lock_committed(committed).take();
        match pending {
            Some(c) => put_json(tx, RAFT_META, COMMITTED, &c),
            None => Ok(()),
        }
    }

    /// One durable commit of `f`'s changes, carrying the committed log id reported since the
    /// last one.
    fn commit_durable(
        db: &Db,
        committed: &Mutex<Option<Option<LogId<ReplicaId>>>>,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        db.write_blocking(true, |tx| {
            f(tx)?;
            Self::write_committed(committed, tx)
        })
    }
}

/// The tail, locked. A panic while it was held may have left it half changed: it is cleared,
/// so nothing half done is served (reads then go to disk).
fn lock_tail(tail: &Mutex<LogTail>) -> MutexGuard<'_, LogTail> {
    tail.lock().unwrap_or_else(|p| {
        let mut t = p.into_inner();
        t.clear();
        t
    })
}

/// The committed id awaiting its write; a plain value, usable after a panic elsewhere.
fn lock_committed(
    committed: &Mutex<Option<Option<LogId<ReplicaId>>>>,
) -> MutexGuard<'_, Option<Option<LogId<ReplicaId>>>> {
    committed.lock().unwrap_or_else(|p| p.into_inner())
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

fn read_entries(
    db: &Db,
    start: u64,
    end: Option<u64>,
) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
    let tx = db.read()?;
    let table = tx.open_table(LOG)?;
    let iter = match end {
        Some(end) if end <= start => return Ok(Vec::new()),
        Some(end) => table.range(start..end)?,
        None => table.range(start..)?,
    };
    let mut out = Vec::new();
    for item in iter {
        let (_, v) = item?;
        out.push(codec::decode_entry(v.value())?);
    }
    Ok(out)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<ReplicaId>> {
        let (start, end) = bounds(&range);
        if let Some(entries) = self.tail().read(start, end) {
            return Ok(entries);
        }
        self.db
            .run(move |db| read_entries(db, start, end))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<ReplicaId>> {
        self.db
            .run(|db| {
                let tx = db.read()?;
                let last_purged: Option<LogId<ReplicaId>> =
                    get_json(&tx.open_table(RAFT_META)?, LAST_PURGED)?;
                let last = match tx.open_table(LOG)?.last()? {
                    Some((_, v)) => {
                        let e = codec::decode_entry(v.value())?;
                        Some(*e.get_log_id())
                    }
                    None => last_purged,
                };
                Ok(LogState {
                    last_purged_log_id: last_purged,
                    last_log_id: last,
                })
            })
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<ReplicaId>) -> Result<(), StorageError<ReplicaId>> {
        let vote = *vote;
        let committed = self.committed.clone();
        self.db
            .run(move |db| {
                Self::commit_durable(db, &committed, |tx| put_json(tx, RAFT_META, VOTE, &vote))
            })
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<ReplicaId>>, StorageError<ReplicaId>> {
        self.db
            .run(|db| db.get_json_blocking(RAFT_META, VOTE))
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<ReplicaId>>,
    ) -> Result<(), StorageError<ReplicaId>> {
        if let Some(c) = committed {
            STORE_METRICS
                .commit_index
                .set(i64::try_from(c.index).unwrap_or(i64::MAX));
        }
        // Written by the next durable commit of the log: losing it only means re-applying less
        // of the log after a restart, and it is on the path of every commit.
        *lock_committed(&self.committed) = Some(committed);
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<ReplicaId>>, StorageError<ReplicaId>> {
        if let Some(c) = *lock_committed(&self.committed) {
            return Ok(c);
        }
        self.db
            .run(|db| {
                Ok(db
                    .get_json_blocking::<Option<LogId<ReplicaId>>>(RAFT_META, COMMITTED)?
                    .flatten())
            })
            .await
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<ReplicaId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let (tail, committed) = (self.tail.clone(), self.committed.clone());
        let result = self
            .db
            .run(move |db| {
                let started = Instant::now();
                let mut sizes = Vec::with_capacity(entries.len());
                let written = Self::commit_durable(db, &committed, |tx| {
                    let mut table = tx.open_table(LOG)?;
                    for e in &entries {
                        let bytes = codec::encode_entry(e)?;
                        table.insert(e.get_log_id().index, bytes.as_slice())?;
                        sizes.push(bytes.len());
                    }
                    Ok(())
                });
                metrics::observe(&STORE_METRICS.log_append_fsync, started.elapsed());
                if written.is_ok() {
                    // Before `append` returns: readers of these entries come after it.
                    lock_tail(&tail).extend(entries.into_iter().zip(sizes));
                }
                written
            })
            .await;
        match result {
            Ok(()) => {
                // The commit above was Immediate: the entries are on disk now.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let io = std::io::Error::other(e.to_string());
                callback.log_io_completed(Err(io));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<ReplicaId>) -> Result<(), StorageError<ReplicaId>> {
        // Before the commit: a read must not find in the tail what the disk no longer holds.
        self.tail().remove_from(log_id.index);
        let committed = self.committed.clone();
        self.db
            .run(move |db| {
                Self::commit_durable(db, &committed, |tx| {
                    tx.open_table(LOG)?
                        .retain_in::<u64, _>(log_id.index.., |_, _| false)?;
                    Ok(())
                })
            })
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<ReplicaId>) -> Result<(), StorageError<ReplicaId>> {
        self.tail().remove_through(log_id.index);
        let committed = self.committed.clone();
        self.db
            .run(move |db| {
                Self::commit_durable(db, &committed, |tx| {
                    tx.open_table(LOG)?
                        .retain_in::<u64, _>(..=log_id.index, |_, _| false)?;
                    put_json(tx, RAFT_META, LAST_PURGED, &log_id)
                })
            })
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
