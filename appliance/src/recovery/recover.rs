//! `storcon recover --config FILE --force [--generation-gap N]` (offline): the analogue of
//! etcd's `--force-new-cluster`, after quorum loss, on a surviving replica's data dir.
//!
//! Steps:
//! 1. refuse without `--force`; with it, warn loudly on stderr and in the log;
//! 2. read the survivor's store: its applied rows, then every log entry beyond them applied in
//!    order (committed or not: a lost majority may have committed them, as etcd assumes);
//! 3. seed the data dir as a one-member cluster of this replica holding that state with every
//!    generation raised by the gap ([`super::seed_one_member`]); the previous store file is
//!    kept beside it as `raft.redb.before-recover-<unix ms>`, the rest of the dir untouched.
//!
//! The replica must be stopped: redb locks its file, so a running replica's store cannot be
//! opened and recover fails without changing anything. The other old members must not come
//! back with their old data dirs (as with etcd): add replicas back with new ids and empty dirs.

use std::path::Path;

use raft_store::seed::{STORE_FILE, Seed};
use state_machine::RestoreKind;

use super::{RecoveryError, print_seeded, seed_one_member};
use crate::config::Config;

const WARNING: &str = "\
WARNING: storcon recover --force rewrites this replica's data dir into a ONE-MEMBER cluster.
WARNING: Use it only after quorum loss, when the other replicas are gone for good. Any write
WARNING: they committed that this replica never received is LOST. The old members must never
WARNING: be started again with their old data dirs; add replicas back with new node ids.";

pub fn run(
    config: &Config,
    config_path: &Path,
    force: bool,
    gap: u32,
) -> Result<(), RecoveryError> {
    let dir = &config.data_dir;
    if !force {
        return Err(RecoveryError::Refused(format!(
            "refusing to recover {} without --force: recover turns this replica into a \
             one-member cluster and drops the others from it; it is meant only for quorum loss. \
             Run `storcon recover --config {} --force` if that is what you want.",
            dir.display(),
            config_path.display()
        )));
    }
    eprintln!("{WARNING}");
    tracing::warn!(
        data_dir = %dir.display(),
        node_id = %config.node_id,
        "FORCED RECOVERY: rewriting this replica into a one-member cluster"
    );
    if !dir.join(STORE_FILE).exists() {
        return Err(RecoveryError::Refused(format!(
            "refusing to recover {}: it holds no {STORE_FILE}, so there is no surviving state. \
             Restore from a backup with `storcon restore` instead.",
            dir.display()
        )));
    }
    let (seed, report) = Seed::from_survivor(dir, config.node_id)?;
    eprintln!(
        "WARNING: node {} applied up to log index {:?}; {} more entries from its log are applied \
         now; old voters {:?} are dropped from the membership",
        config.node_id,
        report.last_applied.map(|l| l.index),
        report.applied_from_log,
        report.old_voters
    );
    let addr = config.advertised_addr();
    let (seed, previous) =
        seed_one_member(seed, RestoreKind::Recover, gap, dir, config.node_id, &addr)?;
    tracing::warn!(
        log_index = seed.last_log_id().index,
        gap,
        previous = ?previous,
        "recovered as a one-member cluster"
    );
    if let Some(p) = previous {
        println!("the previous store is kept as {}", p.display());
    }
    print_seeded("recovered", &seed, config.node_id, &addr, config_path);
    Ok(())
}
