//! `storcon backup --api URL [--token T] --out FILE`: fetch a backup from any replica (a
//! follower forwards it to the leader), verify its checksum, write it atomically.
//!
//! Steps:
//! 1. `GET {api}/control/v1/backup` with the bearer token; a non-2xx answer is an error with
//!    the server's `msg`;
//! 2. verify the document (format version, checksum, rows decode) before anything is written;
//! 3. write `FILE` atomically: a temp file beside it, fsync, rename, fsync the directory;
//! 4. return a summary (tenants, shards, nodes, log index, checksum) for the caller to print.
//!
//! [`fetch_and_write`] is the logic; the CLI's global `--api`/`--token` can call it directly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft_store::backup::BackupDocument;

use super::{RecoveryError, StateSummary};

/// A backup of a large state can take a while to read and send.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

pub struct BackupSummary {
    pub out: PathBuf,
    pub bytes: usize,
    pub state: StateSummary,
    pub log_index: Option<u64>,
    pub log_term: Option<u64>,
    pub checksum: String,
}

impl std::fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match (self.log_index, self.log_term) {
            (Some(i), Some(t)) => format!("log index {i} (term {t})"),
            _ => "no log entry".to_string(),
        };
        write!(
            f,
            "backup written to {}: {}, {at}, {}, {} bytes",
            self.out.display(),
            self.state,
            self.checksum,
            self.bytes
        )
    }
}

/// The `msg` of an error body, or the body itself.
fn server_msg(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string())
}

pub async fn fetch_and_write(
    client: &reqwest::Client,
    api: &str,
    token: Option<&str>,
    out: &Path,
) -> Result<BackupSummary, RecoveryError> {
    let url = format!("{}/control/v1/backup", api.trim_end_matches('/'));
    let mut request = client.get(&url).timeout(FETCH_TIMEOUT);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request
        .send()
        .await
        .map_err(|e| RecoveryError::Failed(format!("cannot reach {url}: {e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| RecoveryError::Failed(format!("answer from {url} was cut off: {e}")))?;
    if !status.is_success() {
        return Err(RecoveryError::Failed(format!(
            "{url} answered {status}: {}",
            server_msg(&String::from_utf8_lossy(&body))
        )));
    }
    let (doc, state) = BackupDocument::decode_verified(&body).map_err(|e| {
        RecoveryError::Failed(format!("the backup {url} sent does not verify: {e}"))
    })?;
    let owned = out.to_path_buf();
    let bytes = body.to_vec();
    tokio::task::spawn_blocking(move || write_atomically(&owned, &bytes))
        .await
        .map_err(|e| RecoveryError::Failed(format!("write task failed: {e}")))??;
    Ok(BackupSummary {
        out: out.to_path_buf(),
        bytes: body.len(),
        state: StateSummary::of(&state),
        log_index: doc.taken_at_log_id.map(|l| l.index),
        log_term: doc.taken_at_log_id.map(|l| l.leader_id.term),
        checksum: doc.checksum,
    })
}

/// Temp file beside `out`, fsync, rename over `out`, fsync the directory: `out` is either the
/// old file or the whole new one, also after a crash.
fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), RecoveryError> {
    let fail = |what: &str, e: std::io::Error| {
        RecoveryError::Failed(format!("cannot {what} {}: {e}", out.display()))
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| RecoveryError::Failed(format!("{} is not a file name", out.display())))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&temp).map_err(|e| fail("create a temp file for", e))?;
    f.write_all(bytes).map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("fsync", e))?;
    drop(f);
    std::fs::rename(&temp, out).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        fail("rename the temp file to", e)
    })?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("fsync the directory of", e))?;
    Ok(())
}
