//! The snapshot format: every state-machine row plus the Raft metadata it was taken at.
//!
//! A snapshot is built from one redb read transaction, so rows, `last_applied` and membership are
//! one consistent view. The blob is versioned so a later format can still read older snapshots.

use openraft::{LogId, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use state_machine::ReplicaId;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotBlob {
    pub version: u32,
    pub last_applied: Option<LogId<ReplicaId>>,
    pub membership: StoredMembership<ReplicaId, openraft::BasicNode>,
    pub rows: Vec<(String, Vec<u8>)>,
}

/// What `sm_meta.snapshot` holds: the current snapshot's metadata and its bytes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub meta: SnapshotMeta<ReplicaId, openraft::BasicNode>,
    pub data: Vec<u8>,
}
