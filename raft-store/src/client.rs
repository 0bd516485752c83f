//! The two ways anything above Raft touches replicated state: propose a command, or read the
//! applied state linearizably. Every proposal in the binary goes through [`propose`], so each
//! one is checked for admissibility and bounded in time the same way.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use state_machine::limits::MAX_COMMAND_BYTES;
use state_machine::{Command, Rejection, ReplicaId, Response, State};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Raft, SharedState};

const QUORUM_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// The state machine (or the admission check before proposing) refused the command; nothing
    /// changed.
    #[error("{0}")]
    Rejected(Rejection),
    /// Not committed in time: the write may still commit, so its outcome is unknown.
    #[error("write not committed within {within:?} (no quorum?); its outcome is unknown, retry")]
    NotCommitted { within: Duration },
    #[error("leadership moved (leader now {leader:?}) before the write was accepted; retry")]
    LeadershipMoved { leader: Option<ReplicaId> },
    /// The caller's leadership term ended; it may not write any more.
    #[error("leadership of this term was lost")]
    TermEnded,
    #[error("{0}")]
    Membership(String),
    #[error("raft stopped: {0}")]
    Stopped(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("cannot confirm leadership for a consistent read: {0}; retry")]
    NotLeader(String),
    #[error("leadership not confirmed by a quorum within {within:?}; retry")]
    NoQuorum { within: Duration },
}

/// Proposes `command` and returns what `apply` answered; a rejection is an error. On timeout the
/// outcome is unknown: every command is safe to retry.
pub async fn propose(
    proposer: &Proposer,
    command: Command,
    within: Duration,
) -> Result<Response, ProposeError> {
    // Every replica must be able to decode the entry, forever: refuse what it could not.
    let size = command.admissible_size().map_err(ProposeError::Rejected)?;
    let started = std::time::Instant::now();
    let written = tokio::time::timeout(within, proposer.write(command, size)).await;
    crate::metrics::observe(
        &crate::metrics::STORE_METRICS.proposal_latency,
        started.elapsed(),
    );
    match written.map_err(|_| ProposeError::NotCommitted { within })? {
        Ok(Response::Rejected(r)) => Err(ProposeError::Rejected(r)),
        other => other,
    }
}

/// Group commit at the proposer: openraft 0.9 fsyncs the leader's log once per client write,
/// and its core waits for that fsync before it takes the next write, so concurrent writes
/// proposed one by one are serialized on the disk. The proposer queues them instead and sends
/// what has queued as one [`Command::Batch`] entry (one fsync on each replica, one replication
/// round), at most [`MAX_IN_FLIGHT`] entries at a time. A write that finds nothing else queued
/// goes alone and unwrapped, so a single client waits for nothing.
///
/// Order: writes enter openraft in the order they were queued; a batch is one entry, applied
/// command by command exactly as separate entries would be. A batch commits whole or not at
/// all, and every caller gets its own command's answer.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    queue: Option<mpsc::UnboundedSender<Queued>>,
}

/// Entries the proposer has handed to openraft and not had answered: one being fsynced on the
/// leader while the previous one replicates. Measured with `storcon-bench gen-commit`.
pub const MAX_IN_FLIGHT: usize = 2;
/// Commands in one batch entry.
pub const MAX_BATCH: usize = 512;
/// What a batch adds around its commands when encoded (the tag and brackets), generously, and
/// between two of them (a comma).
const BATCH_OVERHEAD: usize = 64;
const SEPARATOR: usize = 1;

struct Queued {
    command: Command,
    size: usize,
    reply: oneshot::Sender<Result<Response, ProposeError>>,
}

impl Proposer {
    /// A proposer for `raft`; with `batching` off every write is its own entry (for a cluster
    /// that still has replicas of a version that cannot read [`Command::Batch`]). Spawns the
    /// batcher on the current runtime.
    pub fn new(raft: Raft, batching: bool) -> Proposer {
        let queue = batching.then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batcher(raft.clone(), rx));
            tx
        });
        Proposer { raft, queue }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    async fn write(&self, command: Command, size: usize) -> Result<Response, ProposeError> {
        let Some(queue) = &self.queue else {
            return match self.raft.client_write(command).await {
                Ok(written) => Ok(written.data),
                Err(e) => Err(write_error(e)),
            };
        };
        let (reply, answer) = oneshot::channel();
        queue
            .send(Queued {
                command,
                size,
                reply,
            })
            .map_err(|_| ProposeError::Stopped("the proposer stopped".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(ProposeError::Stopped("the proposer stopped".into())))
    }
}

/// Takes what has queued (up to [`MAX_BATCH`] commands and [`MAX_COMMAND_BYTES`]) once an
/// in-flight slot is free, and hands it to openraft as one entry.
async fn batcher(raft: Raft, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match queue.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        // Waiting for a slot is what lets the next batch fill up.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.size + BATCH_OVERHEAD;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(q) if bytes + q.size + SEPARATOR <= MAX_COMMAND_BYTES => {
                    bytes += q.size + SEPARATOR;
                    batch.push(q);
                }
                Ok(q) => {
                    carried = Some(q);
                    break;
                }
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|q| (q.command, q.reply)).unzip();
        let entry = match <[Command; 1]>::try_from(commands) {
            Ok([one]) => one,
            Err(many) => Command::Batch(many),
        };
        let answer = match raft.client_write_ff(entry).await {
            Ok(answer) => answer,
            Err(fatal) => {
                let e = ProposeError::Stopped(fatal.to_string());
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
                continue;
            }
        };
        tokio::spawn(async move {
            let _slot = slot;
            let results = match answer.await {
                Ok(Ok(written)) => split_answer(written.data, replies.len()),
                Ok(Err(e)) => vec![Err(api_write_error(e)); replies.len()],
                Err(_) => {
                    vec![Err(ProposeError::Stopped("raft dropped the write".into())); replies.len()]
                }
            };
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that timed out has gone; its command's outcome stands regardless.
                let _ = reply.send(result);
            }
        });
    }
}

/// One answer per command of the entry: a batch's own, or the single command's.
fn split_answer(data: Response, commands: usize) -> Vec<Result<Response, ProposeError>> {
    match data {
        Response::Batch(answers) if commands > 1 && answers.len() == commands => {
            answers.into_iter().map(Ok).collect()
        }
        one if commands == 1 => vec![Ok(one)],
        other => {
            // Only a state machine of another version could answer so; nobody may assume success.
            let e = ProposeError::Stopped(format!(
                "a batch of {commands} commands was answered with {other:?}"
            ));
            vec![Err(e); commands]
        }
    }
}

/// A membership change (`add_learner` or `change_membership`) bounded by `within`, its errors
/// spelled as a proposal's: a change refused because another is in flight is
/// [`ProposeError::Membership`].
pub async fn change_membership(
    raft: &Raft,
    change: MembershipChange,
    within: Duration,
) -> Result<(), ProposeError> {
    let written = match change {
        MembershipChange::AddLearner { id, addr } => {
            // Not blocking: the caller waits for the catch-up itself, with its own deadline.
            tokio::time::timeout(
                within,
                raft.add_learner(id, openraft::BasicNode::new(addr), false),
            )
            .await
        }
        MembershipChange::Members(members) => {
            tokio::time::timeout(within, raft.change_membership(members, false)).await
        }
    };
    match written.map_err(|_| ProposeError::NotCommitted { within })? {
        Ok(_) => Ok(()),
        Err(e) => Err(write_error(e)),
    }
}

/// What [`change_membership`] changes.
#[derive(Debug, Clone)]
pub enum MembershipChange {
    AddLearner {
        id: ReplicaId,
        addr: String,
    },
    /// Voters or nodes added or removed; nodes left out are dropped, not kept as learners.
    Members(openraft::ChangeMembers<ReplicaId, openraft::BasicNode>),
}

fn write_error(
    e: RaftError<ReplicaId, ClientWriteError<ReplicaId, openraft::BasicNode>>,
) -> ProposeError {
    match e {
        RaftError::APIError(e) => api_write_error(e),
        RaftError::Fatal(e) => ProposeError::Stopped(e.to_string()),
    }
}

fn api_write_error(e: ClientWriteError<ReplicaId, openraft::BasicNode>) -> ProposeError {
    match e {
        ClientWriteError::ForwardToLeader(f) => ProposeError::LeadershipMoved {
            leader: f.leader_id,
        },
        ClientWriteError::ChangeMembershipError(e) => ProposeError::Membership(e.to_string()),
    }
}

/// Reads the applied state after confirming leadership with a quorum (ReadIndex), so the answer
/// reflects every write acknowledged before the read began. A quorum round that falls short (a
/// slow peer on a busy machine) is retried within the same budget; losing leadership is not.
pub async fn read_linearizable<T>(
    raft: &Raft,
    state: &SharedState,
    within: Duration,
    read: impl FnOnce(&State) -> T,
) -> Result<T, ReadError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, raft.ensure_linearizable()).await {
            Ok(Ok(_)) => return Ok(read(&state.read())),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))))
                if tokio::time::Instant::now() + QUORUM_RETRY < deadline =>
            {
                tracing::debug!(error = %e, "read quorum fell short; retrying");
                tokio::time::sleep(QUORUM_RETRY).await;
            }
            Ok(Err(e)) => return Err(ReadError::NotLeader(e.to_string())),
            Err(_) => return Err(ReadError::NoQuorum { within }),
        }
    }
}
