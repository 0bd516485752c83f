//! Persist before publish: the state readers see is never ahead of the rows on disk, and after
//! every apply or snapshot install returns, memory and disk hold the same state.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use raft_store::{Db, StateMachineStore, TypeConfig};
use state_machine::{Command, NodeId, NodeSchedulingPolicy, ReplicaId, Response, Term};

mod common;
use common::register_on as register;

fn leader(term: u64) -> Command {
    Command::RecordLeader {
        node_id: ReplicaId(1),
        term: Term(term),
        address: "leader".into(),
        started_at: format!("t{term}"),
    }
}

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, ReplicaId(1)), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn blank(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, ReplicaId(1)), index),
        payload: EntryPayload::Blank,
    }
}

/// A reader that looks at memory and then at disk must never find more on the first: the
/// in-memory state is published only after the transaction that holds it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_state_that_is_not_on_disk() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let db = Db::open(dir.path(), ReplicaId(1)).expect("open");
    let mut sm = StateMachineStore::open(db.clone()).expect("sm");
    let shared = sm.shared_state();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while !done.load(Ordering::SeqCst) {
                let in_memory = shared.read().nodes().count();
                let on_disk = StateMachineStore::open(db.clone())
                    .expect("load from disk")
                    .shared_state()
                    .read()
                    .nodes()
                    .count();
                assert!(
                    in_memory <= on_disk,
                    "memory shows {in_memory} nodes, disk holds {on_disk}"
                );
                checks += 1;
            }
            checks
        })
    };
    for i in 1..=300u64 {
        sm.apply([entry(i, register(i, i as u16))])
            .await
            .expect("apply");
    }
    done.store(true, Ordering::SeqCst);
    let checks = reader.join().expect("reader");
    assert!(checks > 0);
    assert!(sm.audit().memory_matches_disk().await.expect("audit"));
}

/// Batches mixing accepted, rejected and blank entries, and a snapshot installed in between:
/// after each call returns, memory equals what the rows on disk rebuild.
#[tokio::test]
async fn memory_matches_disk_after_every_apply_and_install() {
    let src_dir = tempfile::TempDir::new().expect("tempdir");
    let dst_dir = tempfile::TempDir::new().expect("tempdir");
    let mut src =
        StateMachineStore::open(Db::open(src_dir.path(), ReplicaId(1)).expect("open")).expect("sm");
    let mut dst =
        StateMachineStore::open(Db::open(dst_dir.path(), ReplicaId(2)).expect("open")).expect("sm");

    let responses = src
        .apply([
            entry(1, register(1, 1)),
            blank(2),
            entry(3, leader(5)),
            // Same id, another address: rejected, changes nothing.
            entry(4, register(1, 999)),
            // An older leader's late record: rejected.
            entry(5, leader(4)),
            entry(
                6,
                Command::SetNodeScheduling {
                    node_id: NodeId(1),
                    policy: NodeSchedulingPolicy::Pause,
                },
            ),
        ])
        .await
        .expect("apply");
    let rejected: Vec<bool> = responses
        .iter()
        .map(|r| matches!(r, Response::Rejected(_)))
        .collect();
    assert_eq!(rejected, vec![false, false, false, true, true, false]);
    assert!(src.audit().memory_matches_disk().await.expect("audit"));
    assert_eq!(
        src.shared_state().read().leader().map(|l| l.term),
        Some(Term(5))
    );

    // The replica that receives the snapshot had state of its own before.
    dst.apply([entry(1, register(42, 42))])
        .await
        .expect("apply");
    let snap = src.build_snapshot().await.expect("snapshot");
    dst.install_snapshot(
        &snap.meta,
        Box::new(Cursor::new(snap.snapshot.into_inner())),
    )
    .await
    .expect("install");
    assert!(dst.audit().memory_matches_disk().await.expect("audit"));

    // Applies after the install build on the installed state, not on what came before it.
    for (store, first) in [(&mut src, 7u64), (&mut dst, 7u64)] {
        store
            .apply([
                entry(first, register(2, 2)),
                entry(first + 1, register(42, 42)),
                entry(first + 2, leader(6)),
            ])
            .await
            .expect("apply");
        assert!(store.audit().memory_matches_disk().await.expect("audit"));
    }
    let ids = |s: &StateMachineStore| -> Vec<NodeId> {
        s.shared_state().read().nodes().map(|n| n.id).collect()
    };
    assert_eq!(ids(&src), [1, 2, 42].map(NodeId));
    assert_eq!(ids(&dst), [1, 2, 42].map(NodeId));
    assert_eq!(*src.shared_state().read(), *dst.shared_state().read());
}
