//! The redb file of one replica and the rule that every call to it runs off the tokio workers.
//!
//! Tables (all in `raft.redb`):
//! - `raft_log`:  log index (u64) -> JSON `Entry<TypeConfig>`
//! - `raft_meta`: `vote`, `committed`, `last_purged`, `node_id` -> JSON
//! - `sm_rows`:   state-machine rows, key -> JSON value (see `state_machine::Mutation`)
//! - `sm_meta`:   `last_applied`, `membership`, `snapshot` -> JSON
//!
//! Invariant: the Raft log, the vote and the state machine live in this one file, which is what
//! lets applies commit with `Durability::None` (see the crate docs).

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use state_machine::ReplicaId;

use crate::error::StoreError;

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const SM_ROWS: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_rows");
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

const NODE_ID_KEY: &str = "node_id";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: StoreError },
    #[error(
        "data dir belongs to node {found}, but this replica is configured as node {configured}; \
         refusing to start (a data dir must never move between node ids)"
    )]
    WrongNode {
        found: ReplicaId,
        configured: ReplicaId,
    },
}

/// Shared handle to the replica's database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Database>,
}

impl Db {
    /// Opens (or creates) `raft.redb` in `dir` for `node_id`, refusing a file of another node.
    /// Blocking: call it before the runtime starts serving, or from `spawn_blocking`.
    pub fn open(dir: &Path, node_id: ReplicaId) -> Result<Db, OpenError> {
        Db::open_file(&dir.join(crate::seed::STORE_FILE), node_id)
    }

    /// [`Db::open`] on a file of any name (a store being seeded is built beside the real one).
    pub(crate) fn open_file(path: &Path, node_id: ReplicaId) -> Result<Db, OpenError> {
        let path = path.to_path_buf();
        let open_err = |source: StoreError| OpenError::Open {
            path: path.display().to_string(),
            source,
        };
        let database = Database::builder()
            .set_cache_size(64 << 20)
            .create(&path)
            .map_err(|e| open_err(StoreError::from(e)))?;
        let db = Db {
            inner: Arc::new(database),
        };
        let stored: Option<ReplicaId> = db
            .get_json_blocking(RAFT_META, NODE_ID_KEY)
            .map_err(open_err)?;
        match stored {
            Some(found) if found != node_id => {
                return Err(OpenError::WrongNode {
                    found,
                    configured: node_id,
                });
            }
            Some(_) => {}
            None => db
                .write_blocking(true, |tx| put_json(tx, RAFT_META, NODE_ID_KEY, &node_id))
                .map_err(open_err)?,
        }
        db.create_tables().map_err(open_err)?;
        Ok(db)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        self.write_blocking(true, |tx| {
            tx.open_table(LOG)?;
            tx.open_table(RAFT_META)?;
            tx.open_table(SM_ROWS)?;
            tx.open_table(SM_META)?;
            Ok(())
        })
    }

    /// True when this replica holds no Raft state at all: no vote, no log, no snapshot. Only a
    /// pristine replica may take part in forming a cluster.
    pub fn is_pristine_blocking(&self) -> Result<bool, StoreError> {
        let tx = self.inner.begin_read()?;
        let log_empty = tx.open_table(LOG)?.is_empty()?;
        let meta = tx.open_table(RAFT_META)?;
        let no_vote = meta.get("vote")?.is_none() && meta.get("last_purged")?.is_none();
        let no_snapshot = tx.open_table(SM_META)?.get("snapshot")?.is_none();
        Ok(log_empty && no_vote && no_snapshot)
    }

    /// Runs `f` on a blocking thread. Every redb call from async code goes through here.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    pub(crate) fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.inner.begin_read()?)
    }

    /// One write transaction; `durable` selects Immediate (fsync on commit) or None.
    pub(crate) fn write_blocking<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut tx = self.inner.begin_write()?;
        let durability = if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        tx.set_durability(durability)?;
        match f(&tx) {
            Ok(r) => {
                tx.commit()?;
                Ok(r)
            }
            Err(e) => {
                // Leave nothing half-written; the caller reports the error.
                let _ = tx.abort();
                Err(e)
            }
        }
    }

    pub(crate) fn get_json_blocking<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.read()?;
        let table = match tx.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        get_json(&table, key)
    }
}

pub(crate) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn put_json<T: Serialize>(
    tx: &redb::WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value)?;
    tx.open_table(table)?.insert(key, bytes.as_slice())?;
    Ok(())
}
