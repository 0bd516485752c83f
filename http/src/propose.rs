//! The two ways a handler touches replicated state: propose a command, or read linearizably.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use state_machine::{Command, Response, State};

use crate::app::AppState;
use crate::error::ApiError;

/// How long a handler waits for a write to commit or a read to be confirmed. A leader cut off
/// from its quorum would otherwise hold the request forever.
const QUORUM_WAIT: Duration = Duration::from_secs(5);
const QUORUM_RETRY: Duration = Duration::from_millis(50);

/// Proposes `command` through Raft and returns what `apply` answered. A rejection by the state
/// machine becomes the matching 4xx. On timeout the outcome is unknown: the write may still
/// commit, so every command is safe to retry.
pub async fn propose(app: &AppState, command: Command) -> Result<Response, ApiError> {
    // Every replica must be able to decode the entry, forever: refuse what it could not.
    command.check_admissible()?;
    let written = tokio::time::timeout(QUORUM_WAIT, app.raft.client_write(command))
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "write not committed within {QUORUM_WAIT:?} (no quorum?); its outcome is unknown, retry"
            ))
        })?;
    match written {
        Ok(written) => match written.data {
            Response::Rejected(r) => Err(r.into()),
            other => Ok(other),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ApiError::Unavailable(format!(
                "leadership moved (leader now {:?}) before the write was accepted; retry",
                f.leader_id
            )))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => Err(ApiError::Unavailable(format!("raft stopped: {e}"))),
    }
}

/// Reads the applied state after confirming leadership with a quorum (ReadIndex), so the answer
/// reflects every write acknowledged before the read began. A quorum round that falls short
/// (a slow peer on a busy machine) is retried within the same budget; losing leadership is not.
pub async fn read_linearizable<T>(
    app: &AppState,
    read: impl FnOnce(&State) -> T,
) -> Result<T, ApiError> {
    let deadline = tokio::time::Instant::now() + QUORUM_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let outcome = tokio::time::timeout(left, app.raft.ensure_linearizable()).await;
        match outcome {
            Ok(Ok(_)) => return Ok(read(&app.state.read())),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))))
                if tokio::time::Instant::now() + QUORUM_RETRY < deadline =>
            {
                tracing::debug!(error = %e, "read quorum fell short; retrying");
                tokio::time::sleep(QUORUM_RETRY).await;
            }
            Ok(Err(e)) => {
                return Err(ApiError::Unavailable(format!(
                    "cannot confirm leadership for a consistent read: {e}; retry"
                )));
            }
            Err(_) => {
                return Err(ApiError::Unavailable(format!(
                    "leadership not confirmed by a quorum within {QUORUM_WAIT:?}; retry"
                )));
            }
        }
    }
}

/// Reads this replica's applied state as it is (for `x-storcon-read-local`).
pub fn read_local<T>(app: &AppState, read: impl FnOnce(&State) -> T) -> T {
    read(&app.state.read())
}
