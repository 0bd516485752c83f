//! What a replica finds on disk after it is closed and opened again.

use std::io::Cursor;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StoredMembership, Vote,
};
use raft_store::{Db, LogStore, StateMachineStore, TypeConfig};
use state_machine::{Command, NodeId, ReplicaId};

mod common;
use common::register;

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, ReplicaId(1)), index),
        payload: EntryPayload::Normal(cmd),
    }
}

#[tokio::test]
async fn applied_state_and_vote_survive_reopen() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    {
        let db = Db::open(dir.path(), ReplicaId(7)).expect("open");
        assert!(db.is_pristine_blocking().expect("pristine check"));
        let mut log = LogStore::new(db.clone());
        log.save_vote(&Vote::new(1, ReplicaId(1)))
            .await
            .expect("vote");
        let mut sm = StateMachineStore::open(db.clone()).expect("sm");
        sm.apply((1..=3).map(|i| entry(i, register(i))))
            .await
            .expect("apply");
        // Make the None-durability applies durable the way openraft would: by a snapshot.
        sm.build_snapshot().await.expect("snapshot");
        assert!(!db.is_pristine_blocking().expect("pristine check"));
    }
    let db = Db::open(dir.path(), ReplicaId(7)).expect("reopen");
    let mut log = LogStore::new(db.clone());
    assert_eq!(
        log.read_vote().await.expect("vote"),
        Some(Vote::new(1, ReplicaId(1)))
    );
    let mut sm = StateMachineStore::open(db).expect("sm");
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(3));
    assert_eq!(sm.shared_state().read().nodes().count(), 3);
}

#[test]
fn data_dir_of_another_node_is_refused() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    drop(Db::open(dir.path(), ReplicaId(1)).expect("open"));
    let err = Db::open(dir.path(), ReplicaId(2))
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("node 1"), "{err}");
}

#[tokio::test]
async fn installed_snapshot_replaces_state() {
    let src_dir = tempfile::TempDir::new().expect("tempdir");
    let dst_dir = tempfile::TempDir::new().expect("tempdir");
    let mut src =
        StateMachineStore::open(Db::open(src_dir.path(), ReplicaId(1)).expect("open")).expect("sm");
    src.apply((1..=5).map(|i| entry(i, register(i))))
        .await
        .expect("apply");
    let snap = src.build_snapshot().await.expect("snapshot");

    let dst_db = Db::open(dst_dir.path(), ReplicaId(2)).expect("open");
    let mut dst = StateMachineStore::open(dst_db.clone()).expect("sm");
    dst.apply([entry(1, register(99))]).await.expect("apply");
    let data = snap.snapshot.into_inner();
    dst.install_snapshot(&snap.meta, Box::new(Cursor::new(data)))
        .await
        .expect("install");
    let ids: Vec<NodeId> = dst.shared_state().read().nodes().map(|n| n.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5].map(NodeId));
    let (applied, membership) = dst.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(5));
    assert_eq!(membership, StoredMembership::default());
    drop(dst);
    drop(dst_db);
    let reopened = StateMachineStore::open(Db::open(dst_dir.path(), ReplicaId(2)).expect("reopen"))
        .expect("sm");
    assert_eq!(reopened.shared_state().read().nodes().count(), 5);
}
