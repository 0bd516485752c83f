//! The one place where replicated data is encoded and decoded: log entries, Raft RPC bodies and
//! snapshots, with the bounds that keep every entry the API admits decodable (issue 8).
//!
//! Guarantees:
//! - a command that passed [`state_machine::Command::check_admissible`] encodes to a log entry
//!   that [`decode_entry`] reads back, and any [`MAX_PAYLOAD_ENTRIES`] such entries fit one
//!   AppendEntries body of at most [`RAFT_BODY_LIMIT`] bytes, which [`decode_rpc`] reads back;
//! - the envelopes (entry, payload, RPC body) add far fewer levels of nesting than
//!   [`state_machine::limits::DECODER_DEPTH_MARGIN`], so serde_json's recursion limit is never
//!   reached by an admitted command.

use openraft::Entry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use state_machine::limits::MAX_COMMAND_BYTES;

use crate::error::StoreError;
use crate::snapshot::SnapshotBlob;
use crate::types::TypeConfig;

/// Entries per AppendEntries RPC (openraft's `max_payload_entries`). With
/// [`MAX_COMMAND_BYTES`] per entry, one RPC stays within [`RAFT_BODY_LIMIT`].
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;
/// Snapshot chunks are up to 3 MiB (about 12 MiB as a JSON array of bytes).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 3 << 20;
/// The largest Raft RPC body a replica reads.
pub const RAFT_BODY_LIMIT: usize = 80 << 20;
/// What one entry adds around its command (log id, payload tag), generously.
const ENTRY_OVERHEAD: usize = 1 << 10;

const _: () = assert!(
    (MAX_PAYLOAD_ENTRIES as usize) * (MAX_COMMAND_BYTES + ENTRY_OVERHEAD) * 2 <= RAFT_BODY_LIMIT
);
const _: () = assert!((SNAPSHOT_CHUNK_BYTES as usize) * 5 <= RAFT_BODY_LIMIT);

pub fn encode_entry(entry: &Entry<TypeConfig>) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(entry)?)
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

pub fn encode_snapshot(blob: &SnapshotBlob) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(blob)?)
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotBlob, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Encodes a Raft RPC request or response body.
pub fn encode_rpc<T: Serialize>(rpc: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(rpc)
}

/// Decodes a Raft RPC request or response body.
pub fn decode_rpc<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}
