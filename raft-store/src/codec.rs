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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{
        BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership,
    };
    use state_machine::ids::TenantId;
    use state_machine::{Command, Generation, NodeId, ReplicaId, Term};

    use super::*;

    fn entry(payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(4, ReplicaId(2)), 17),
            payload,
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8")
    }

    /// Replica ids, pageserver ids, generations and terms are bare numbers in log entries and
    /// snapshots, as they were before they became distinct types: logs and snapshots written
    /// either way read the same.
    #[test]
    fn ids_and_terms_are_bare_numbers_on_disk() {
        let cases = [
            (
                Command::RecordLeader {
                    node_id: ReplicaId(2),
                    term: Term(4),
                    address: "http://a/".into(),
                    started_at: "t".into(),
                },
                r#"{"RecordLeader":{"node_id":2,"term":4,"address":"http://a/","started_at":"t"}}"#,
            ),
            (
                Command::CompleteSplit {
                    tenant_id: TenantId([1; 16]),
                    term: Term(4),
                },
                r#"{"CompleteSplit":{"tenant_id":"01010101010101010101010101010101","term":4}}"#,
            ),
            (
                Command::AttachHook {
                    shard: "01010101010101010101010101010101".parse().expect("id"),
                    node_id: Some(NodeId(3)),
                    generation_override: Some(Generation(9)),
                    config: None,
                },
                r#"{"AttachHook":{"shard":"01010101010101010101010101010101","node_id":3,"generation_override":9,"config":null}}"#,
            ),
            (
                Command::DropTenant {
                    tenant_id: TenantId([1; 16]),
                },
                r#"{"DropTenant":{"tenant_id":"01010101010101010101010101010101"}}"#,
            ),
            (
                Command::DropNode { node_id: NodeId(3) },
                r#"{"DropNode":{"node_id":3}}"#,
            ),
        ];
        for (command, payload) in cases {
            let encoded =
                text(encode_entry(&entry(EntryPayload::Normal(command.clone()))).unwrap());
            assert_eq!(
                encoded,
                format!(
                    r#"{{"log_id":{{"leader_id":{{"term":4,"node_id":2}},"index":17}},"payload":{{"Normal":{payload}}}}}"#
                )
            );
            let decoded = decode_entry(encoded.as_bytes()).unwrap();
            assert_eq!(decoded.payload, EntryPayload::Normal(command));
        }

        let nodes: BTreeMap<ReplicaId, BasicNode> = [
            (ReplicaId(1), BasicNode::new("a:1")),
            (ReplicaId(2), BasicNode::new("b:2")),
        ]
        .into();
        let voters = BTreeSet::from([ReplicaId(1), ReplicaId(2)]);
        let membership = Membership::new(vec![voters], nodes);
        let encoded =
            text(encode_entry(&entry(EntryPayload::Membership(membership.clone()))).unwrap());
        assert!(
            encoded.contains(
                r#""Membership":{"configs":[[1,2]],"nodes":{"1":{"addr":"a:1"},"2":{"addr":"b:2"}}}"#
            ),
            "{encoded}"
        );
        assert_eq!(
            decode_entry(encoded.as_bytes()).unwrap().payload,
            EntryPayload::Membership(membership.clone())
        );

        let blob = SnapshotBlob {
            version: 1,
            last_applied: Some(LogId::new(CommittedLeaderId::new(4, ReplicaId(2)), 17)),
            membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(1, ReplicaId(1)), 1)),
                membership,
            ),
            rows: vec![],
        };
        let encoded = text(encode_snapshot(&blob).unwrap());
        assert_eq!(
            encoded,
            r#"{"version":1,"last_applied":{"leader_id":{"term":4,"node_id":2},"index":17},"membership":{"log_id":{"leader_id":{"term":1,"node_id":1},"index":1},"membership":{"configs":[[1,2]],"nodes":{"1":{"addr":"a:1"},"2":{"addr":"b:2"}}}},"rows":[]}"#
        );
        let decoded = decode_snapshot(encoded.as_bytes()).unwrap();
        assert_eq!(decoded.last_applied, blob.last_applied);
        assert_eq!(decoded.membership, blob.membership);
    }
}
