//! openraft's own storage compliance suite, run against the redb log store and state machine.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use raft_store::{Db, LogStore, StateMachineStore, TypeConfig};
use state_machine::ReplicaId;
use tempfile::TempDir;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<ReplicaId>> {
        let dir = TempDir::new().expect("tempdir");
        let db = Db::open(dir.path(), ReplicaId(1)).expect("open redb");
        let sm = StateMachineStore::open(db.clone()).expect("open state machine");
        Ok((dir, LogStore::new(db), sm))
    }
}

// The error type is openraft's own; its size is not ours to choose.
#[allow(clippy::result_large_err)]
#[test]
fn redb_store_passes_openraft_suite() -> Result<(), StorageError<ReplicaId>> {
    Suite::test_all(RedbBuilder)
}
