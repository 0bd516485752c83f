//! The backup document: a consistent copy of the applied state, at one point of the log, that
//! `storcon restore` seeds a new cluster from.
//!
//! Taken the way a Raft snapshot is built ([`crate::state_machine::read_blob`]): one redb read
//! transaction gives the rows, `last_applied` and the membership together, so the document is
//! the state after exactly the entries up to `taken_at_log_id`. Taking it reads and encodes on
//! a blocking thread (`Db::run`), never on a tokio worker.
//!
//! Format (JSON, version [`BACKUP_FORMAT_VERSION`]): `format_version`, `taken_at_log_id`,
//! `membership`, `taken_at_unix_ms` (the leader's wall clock, informational only),
//! `taken_by`, `payload` (`row_format` and the state rows as `[key, JSON text]` pairs) and
//! `checksum`, `sha256:<hex>` over the payload's canonical encoding (serde_json of the typed
//! payload), so it holds however the file is re-indented and fails on any change of a row.
//!
//! Versioning: a reader refuses a `format_version` or `row_format` it does not know, with both
//! numbers in the message; a later format must bump the number and keep reading this one.

use std::collections::BTreeMap;

use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};
use state_machine::{ReplicaId, State};

use crate::db::Db;
use crate::error::StoreError;
use crate::snapshot::FORMAT_VERSION;
use crate::state_machine::read_blob;

/// The version of the backup document this build writes and reads.
pub const BACKUP_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupPayload {
    /// The row format of the state (the snapshot format version).
    pub row_format: u32,
    /// Every state-machine row: key and its JSON value, as text.
    pub rows: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupDocument {
    pub format_version: u32,
    /// The last log entry the state includes; `None` for a cluster that applied nothing.
    pub taken_at_log_id: Option<LogId<ReplicaId>>,
    /// The membership the old cluster had at that point (informational: a restore seeds a
    /// one-member cluster).
    pub membership: StoredMembership<ReplicaId, BasicNode>,
    /// Wall clock of the replica that took it; informational only.
    pub taken_at_unix_ms: u64,
    pub taken_by: ReplicaId,
    pub payload: BackupPayload,
    /// `sha256:<hex>` of the payload's canonical encoding.
    pub checksum: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a storcon backup document: {0}")]
    NotADocument(serde_json::Error),
    #[error(
        "backup format version {found} is not supported by this storcon (it reads version \
         {supported}); use the storcon release that wrote it, or a newer one"
    )]
    Version { found: u32, supported: u32 },
    #[error("backup row format {found} is not supported (this storcon reads {supported})")]
    RowFormat { found: u32, supported: u32 },
    #[error(
        "backup checksum mismatch: the document says {recorded}, its payload hashes to \
         {computed}; the file is corrupted or was edited, refusing it"
    )]
    Checksum { recorded: String, computed: String },
    #[error("backup payload does not decode to a controller state: {0}")]
    Rows(#[from] state_machine::DecodeError),
    #[error("backup payload row {0} is not UTF-8 JSON text")]
    RowText(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl BackupPayload {
    pub fn checksum(&self) -> Result<String, BackupError> {
        let bytes = serde_json::to_vec(self).map_err(StoreError::from)?;
        Ok(sha256_hex(&bytes))
    }

    /// The rows as a store holds them (key -> JSON bytes).
    pub fn row_map(&self) -> BTreeMap<String, Vec<u8>> {
        self.rows
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()
    }

    /// The controller state the rows hold.
    pub fn state(&self) -> Result<State, BackupError> {
        Ok(State::from_rows(
            self.rows.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        )?)
    }
}

impl BackupDocument {
    /// Reads and verifies a document: format versions known, checksum matching, rows decoding
    /// to a state. The state is returned so callers decode it once.
    pub fn decode_verified(bytes: &[u8]) -> Result<(BackupDocument, State), BackupError> {
        // The version first, so a later format is refused as such rather than as malformed.
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let version: VersionOnly =
            serde_json::from_slice(bytes).map_err(BackupError::NotADocument)?;
        if version.format_version != BACKUP_FORMAT_VERSION {
            return Err(BackupError::Version {
                found: version.format_version,
                supported: BACKUP_FORMAT_VERSION,
            });
        }
        let doc: BackupDocument =
            serde_json::from_slice(bytes).map_err(BackupError::NotADocument)?;
        if doc.payload.row_format != FORMAT_VERSION {
            return Err(BackupError::RowFormat {
                found: doc.payload.row_format,
                supported: FORMAT_VERSION,
            });
        }
        let computed = doc.payload.checksum()?;
        if computed != doc.checksum {
            return Err(BackupError::Checksum {
                recorded: doc.checksum.clone(),
                computed,
            });
        }
        let state = doc.payload.state()?;
        Ok((doc, state))
    }
}

/// Takes backups of this replica's applied state.
#[derive(Clone)]
pub struct BackupSource {
    db: Db,
    node_id: ReplicaId,
}

impl BackupSource {
    pub(crate) fn new(db: Db, node_id: ReplicaId) -> Self {
        BackupSource { db, node_id }
    }

    /// The encoded document of the applied state as it is now, read, encoded and hashed on a
    /// blocking thread. `taken_at_unix_ms` is the caller's wall clock.
    pub async fn take(&self, taken_at_unix_ms: u64) -> Result<Vec<u8>, BackupError> {
        let node_id = self.node_id;
        self.db
            .run(move |db| {
                let blob = read_blob(db)?;
                let mut rows = Vec::with_capacity(blob.rows.len());
                for (k, v) in blob.rows {
                    match String::from_utf8(v) {
                        Ok(text) => rows.push((k, text)),
                        // `apply` writes serde_json output, which is UTF-8.
                        Err(_) => {
                            return Err(StoreError::Join(format!(
                                "state row {k} is not UTF-8 JSON"
                            )));
                        }
                    }
                }
                let payload = BackupPayload {
                    row_format: blob.version,
                    rows,
                };
                let checksum = sha256_hex(&serde_json::to_vec(&payload)?);
                let doc = BackupDocument {
                    format_version: BACKUP_FORMAT_VERSION,
                    taken_at_log_id: blob.last_applied,
                    membership: blob.membership,
                    taken_at_unix_ms,
                    taken_by: node_id,
                    payload,
                    checksum,
                };
                Ok(serde_json::to_vec(&doc)?)
            })
            .await
            .map_err(BackupError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> BackupDocument {
        let payload = BackupPayload {
            row_format: FORMAT_VERSION,
            rows: vec![],
        };
        BackupDocument {
            format_version: BACKUP_FORMAT_VERSION,
            taken_at_log_id: None,
            membership: Default::default(),
            taken_at_unix_ms: 1,
            taken_by: ReplicaId(1),
            checksum: payload.checksum().unwrap(),
            payload,
        }
    }

    #[test]
    fn sha256_of_a_known_text() {
        assert_eq!(
            sha256_hex(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_document_round_trips_and_a_changed_row_is_refused() {
        let mut d = doc();
        d.payload.rows.push(("meta/x".into(), "1".into()));
        d.checksum = d.payload.checksum().unwrap();
        let bytes = serde_json::to_vec_pretty(&d).unwrap();
        // Rows that are not a state are refused after the checksum passed.
        let err = BackupDocument::decode_verified(&bytes).unwrap_err();
        assert!(matches!(err, BackupError::Rows(_)), "{err}");

        let d = doc();
        let bytes = serde_json::to_vec_pretty(&d).unwrap();
        let (back, _) = BackupDocument::decode_verified(&bytes).unwrap();
        assert_eq!(back, d);

        let mut edited = d.clone();
        edited
            .payload
            .rows
            .push(("meta/leader".into(), "{}".into()));
        let err =
            BackupDocument::decode_verified(&serde_json::to_vec(&edited).unwrap()).unwrap_err();
        assert!(matches!(err, BackupError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn other_versions_and_garbage_are_refused_by_name() {
        let mut d = doc();
        d.format_version = 2;
        let err = BackupDocument::decode_verified(&serde_json::to_vec(&d).unwrap()).unwrap_err();
        assert!(err.to_string().contains("format version 2"), "{err}");
        let err = BackupDocument::decode_verified(b"{\"format_version\":1").unwrap_err();
        assert!(err.to_string().starts_with("not a storcon backup"), "{err}");
        let mut d = doc();
        d.payload.row_format = 9;
        d.checksum = d.payload.checksum().unwrap();
        let err = BackupDocument::decode_verified(&serde_json::to_vec(&d).unwrap()).unwrap_err();
        assert!(
            matches!(err, BackupError::RowFormat { found: 9, .. }),
            "{err}"
        );
    }
}
