//! Row encoding of the state: each record is one key -> JSON value, so a store persists only the
//! rows a command changed. Keys sort so that a table scan visits records in id order.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::node::NodeId;

pub(crate) const NODE_PREFIX: &str = "node/";
pub(crate) const SHARD_PREFIX: &str = "shard/";
pub(crate) const LEADER_KEY: &str = "meta/leader";
pub(crate) const SPLIT_PREFIX: &str = "split/";
pub(crate) const MIGRATION_PREFIX: &str = "migration/";
pub(crate) const NODE_OPERATION_KEY: &str = "meta/node_operation";
pub(crate) const TOMBSTONE_PREFIX: &str = "tombstone/";
/// The last restore or recovery of this state (see `restore.rs`).
pub(crate) const RESTORED_FROM_KEY: &str = "meta/restored_from";
pub(crate) const REMOVED_REPLICA_PREFIX: &str = "replica_removed/";

/// A change to one row: `value: None` deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("row {key}: {source}")]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown row key {0}")]
    UnknownKey(String),
}

pub(crate) fn node_key(id: NodeId) -> String {
    format!("{NODE_PREFIX}{id:020}")
}

pub(crate) fn shard_key(id: &crate::ids::TenantShardId) -> String {
    format!("{SHARD_PREFIX}{id}")
}

pub(crate) fn split_key(tenant: crate::ids::TenantId) -> String {
    format!("{SPLIT_PREFIX}{tenant}")
}

pub(crate) fn migration_key(id: &crate::ids::TenantShardId) -> String {
    format!("{MIGRATION_PREFIX}{id}")
}

pub(crate) fn tombstone_key(id: NodeId) -> String {
    format!("{TOMBSTONE_PREFIX}{id:020}")
}

pub(crate) fn removed_replica_key(id: crate::ReplicaId) -> String {
    format!("{REMOVED_REPLICA_PREFIX}{:020}", id.0)
}

pub(crate) fn delete(key: String) -> Mutation {
    Mutation { key, value: None }
}

pub(crate) fn put<T: Serialize>(key: String, value: &T) -> Mutation {
    // Serializing plain data structs to JSON cannot fail (no maps with non-string keys).
    let value = serde_json::to_vec(value).unwrap_or_default();
    Mutation {
        key,
        value: Some(value),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|source| DecodeError::Json {
        key: key.to_string(),
        source,
    })
}
