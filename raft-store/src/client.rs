//! The two ways anything above Raft touches replicated state: propose a command, or read the
//! applied state linearizably. Every proposal in the binary goes through [`propose`], so each
//! one is checked for admissibility and bounded in time the same way.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use state_machine::{Command, Rejection, ReplicaId, Response, State};

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
    raft: &Raft,
    command: Command,
    within: Duration,
) -> Result<Response, ProposeError> {
    // Every replica must be able to decode the entry, forever: refuse what it could not.
    command.check_admissible().map_err(ProposeError::Rejected)?;
    let started = std::time::Instant::now();
    let written = tokio::time::timeout(within, raft.client_write(command)).await;
    crate::metrics::observe(
        &crate::metrics::STORE_METRICS.proposal_latency,
        started.elapsed(),
    );
    let written = written.map_err(|_| ProposeError::NotCommitted { within })?;
    match written {
        Ok(written) => match written.data {
            Response::Rejected(r) => Err(ProposeError::Rejected(r)),
            other => Ok(other),
        },
        Err(e) => Err(write_error(e)),
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
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ProposeError::LeadershipMoved {
                leader: f.leader_id,
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ProposeError::Membership(e.to_string())
        }
        RaftError::Fatal(e) => ProposeError::Stopped(e.to_string()),
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
