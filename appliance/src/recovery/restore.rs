//! `storcon restore --config FILE --from BACKUP [--generation-gap N]` (offline).
//!
//! Steps:
//! 1. read and verify the backup (format version, checksum, rows decode), before touching the
//!    data dir;
//! 2. refuse a data dir that exists and is not empty (a restore never overwrites a replica);
//! 3. seed it as a one-member cluster of this replica (the config's `node_id` and its address)
//!    holding the backup's state with every generation raised by the gap
//!    ([`super::seed_one_member`]).

use std::path::Path;

use raft_store::backup::BackupDocument;
use raft_store::seed::Seed;
use state_machine::RestoreKind;

use super::{RecoveryError, print_seeded, seed_one_member};
use crate::config::Config;

pub fn run(
    config: &Config,
    config_path: &Path,
    from: &Path,
    gap: u32,
) -> Result<(), RecoveryError> {
    let bytes = std::fs::read(from).map_err(|e| {
        RecoveryError::Failed(format!("cannot read backup {}: {e}", from.display()))
    })?;
    let (doc, state) = BackupDocument::decode_verified(&bytes).map_err(|e| {
        RecoveryError::Failed(format!("cannot restore from {}: {e}", from.display()))
    })?;
    let dir = &config.data_dir;
    refuse_unless_empty(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| {
        RecoveryError::Failed(format!("cannot create data dir {}: {e}", dir.display()))
    })?;
    let addr = config.advertised_addr();
    let seed = Seed::from_backup(&doc, state)?;
    let (seed, _) = seed_one_member(seed, RestoreKind::Restore, gap, dir, config.node_id, &addr)?;
    tracing::info!(
        from = %from.display(),
        checksum = %doc.checksum,
        log_index = seed.last_log_id().index,
        gap,
        "restored a backup as a one-member cluster"
    );
    print_seeded("restored", &seed, config.node_id, &addr, config_path);
    Ok(())
}

fn refuse_unless_empty(dir: &Path) -> Result<(), RecoveryError> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(RecoveryError::Failed(format!(
                "cannot read data dir {}: {e}",
                dir.display()
            )));
        }
    };
    if let Some(entry) = entries.next() {
        let name = entry
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(RecoveryError::Refused(format!(
            "refusing to restore into {}: the data dir is not empty (it holds {name:?}). A \
             restore seeds a new replica and never overwrites one; point data_dir at an empty \
             or missing directory. To turn a surviving replica into a one-member cluster, use \
             `storcon recover --force`.",
            dir.display()
        )));
    }
    Ok(())
}
