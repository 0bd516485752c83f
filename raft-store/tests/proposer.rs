//! The proposer's group commit on a one-member cluster: concurrent writes share log entries,
//! every caller gets its own command's answer, and a refused command refuses only itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use raft_store::client::{Proposer, propose};
use raft_store::{Db, HttpNetworkFactory, LogStore, ProposeError, Raft, StateMachineStore};
use state_machine::{Command, NodeId, NodeSchedulingPolicy, ReplicaId, Response};

mod common;
use common::register;

async fn one_member(dir: &std::path::Path) -> (Raft, raft_store::SharedState) {
    let db = Db::open(dir, ReplicaId(1)).expect("open");
    let sm = StateMachineStore::open(db.clone()).expect("sm");
    let state = sm.shared_state();
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    let raft = Raft::new(
        ReplicaId(1),
        Arc::new(config.validate().expect("config")),
        HttpNetworkFactory::new(reqwest::Client::new()),
        LogStore::new(db),
        sm,
    )
    .await
    .expect("raft");
    raft.initialize(BTreeMap::from([(
        ReplicaId(1),
        BasicNode::new("127.0.0.1:1"),
    )]))
    .await
    .expect("initialize");
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(ReplicaId(1), "leads its one-member cluster")
        .await
        .expect("leader");
    (raft, state)
}

fn last_log_index(raft: &Raft) -> u64 {
    raft.metrics().borrow().last_log_index.unwrap_or(0)
}

/// 40 registrations and a refused command, all proposed at once.
fn writes() -> Vec<Command> {
    let mut cmds: Vec<Command> = (1..=40).map(register).collect();
    cmds.insert(
        20,
        Command::SetNodeScheduling {
            node_id: NodeId(99),
            policy: NodeSchedulingPolicy::Pause,
        },
    );
    cmds
}

async fn propose_all(
    proposer: &Proposer,
    cmds: Vec<Command>,
) -> Vec<Result<Response, ProposeError>> {
    let within = Duration::from_secs(10);
    futures::future::join_all(cmds.into_iter().map(|c| propose(proposer, c, within))).await
}

fn check_answers(answers: &[Result<Response, ProposeError>], state: &raft_store::SharedState) {
    assert_eq!(answers.len(), 41);
    for (i, a) in answers.iter().enumerate() {
        if i == 20 {
            assert!(
                matches!(a, Err(ProposeError::Rejected(_))),
                "the unknown node's command: {a:?}"
            );
        } else {
            assert!(
                matches!(a, Ok(Response::NodeRegistered(_))),
                "write {i}: {a:?}"
            );
        }
    }
    assert_eq!(state.read().nodes().count(), 40);
}

// One thread: every write is queued before the batcher first runs, so the batches are known.
#[tokio::test]
async fn concurrent_writes_share_entries_and_keep_their_own_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let (raft, state) = one_member(dir.path()).await;
    let proposer = Proposer::new(raft.clone(), true);
    let before = last_log_index(&raft);
    let answers = propose_all(&proposer, writes()).await;
    check_answers(&answers, &state);
    let entries = last_log_index(&raft) - before;
    assert_eq!(entries, 1, "41 writes queued together are one entry");

    // A write alone is an entry of its own, not a batch of one.
    let before = last_log_index(&raft);
    let alone = propose(&proposer, register(41), Duration::from_secs(10)).await;
    assert!(
        matches!(alone, Ok(Response::NodeRegistered(_))),
        "{alone:?}"
    );
    assert_eq!(last_log_index(&raft) - before, 1);

    // A batch is never taken from a caller.
    let refused = propose(
        &proposer,
        Command::Batch(vec![register(42)]),
        Duration::from_secs(1),
    )
    .await;
    assert!(
        matches!(refused, Err(ProposeError::Rejected(_))),
        "{refused:?}"
    );
    raft.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn without_batching_every_write_is_its_own_entry() {
    let dir = tempfile::tempdir().expect("tmp");
    let (raft, state) = one_member(dir.path()).await;
    let proposer = Proposer::new(raft.clone(), false);
    let before = last_log_index(&raft);
    let answers = propose_all(&proposer, writes()).await;
    check_answers(&answers, &state);
    assert_eq!(last_log_index(&raft) - before, 41);
    raft.shutdown().await.expect("shutdown");
}
