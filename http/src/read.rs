//! Reads a handler may make itself: the applied state, confirmed with a quorum or as this
//! replica has it. Writes are operations ([`crate::operations`]).

use std::time::Duration;

use state_machine::State;

use crate::app::AppState;
use crate::error::ApiError;

/// How long a read waits for a quorum to confirm leadership.
pub const QUORUM_WAIT: Duration = Duration::from_secs(5);

/// The applied state after a ReadIndex round (every write acknowledged before is visible).
pub async fn read_linearizable<T>(
    app: &AppState,
    read: impl FnOnce(&State) -> T,
) -> Result<T, ApiError> {
    raft_store::client::read_linearizable(&app.raft, &app.state, QUORUM_WAIT, read)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// This replica's applied state as it is (for `x-storcon-read-local`).
pub fn read_local<T>(app: &AppState, read: impl FnOnce(&State) -> T) -> T {
    read(&app.state.read())
}
