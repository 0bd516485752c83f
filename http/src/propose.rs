//! The two ways a handler touches replicated state: propose a command, or read linearizably.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use state_machine::{Command, Response, State};

use crate::app::AppState;
use crate::error::ApiError;

/// How long a handler waits for a write to commit or a read to be confirmed. A leader cut off
/// from its quorum would otherwise hold the request forever.
const QUORUM_WAIT: Duration = Duration::from_secs(5);

/// Proposes `command` through Raft and returns what `apply` answered. A rejection by the state
/// machine becomes the matching 4xx. On timeout the outcome is unknown: the write may still
/// commit, so every command is safe to retry.
pub async fn propose(app: &AppState, command: Command) -> Result<Response, ApiError> {
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
/// reflects every write acknowledged before the read began.
pub async fn read_linearizable<T>(
    app: &AppState,
    read: impl FnOnce(&State) -> T,
) -> Result<T, ApiError> {
    app.raft.ensure_linearizable().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "cannot confirm leadership for a consistent read: {e}; retry"
        ))
    })?;
    Ok(read(&app.state.read()))
}

/// Reads this replica's applied state as it is (for `x-storcon-read-local`).
pub fn read_local<T>(app: &AppState, read: impl FnOnce(&State) -> T) -> T {
    read(&app.state.read())
}
