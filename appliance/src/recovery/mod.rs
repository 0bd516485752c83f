//! Backup, restore and forced recovery: `storcon backup`, `storcon restore`, `storcon recover`.
//!
//! - `backup` ([`backup`]) fetches `GET /control/v1/backup` from any replica, verifies it and
//!   writes it atomically.
//! - `restore` ([`restore`]) and `recover` ([`recover`]) are offline and share one mechanism
//!   ([`seed_one_member`]): build the state (from a backup, or from a survivor's store and the
//!   log entries it holds beyond what it applied), raise every generation by the gap, and seed
//!   the data dir as a one-member cluster (`raft_store::seed`). `storcon run` then starts that
//!   replica as the leader of a cluster of itself; the config's other members are only the
//!   initial membership of a pristine cluster and are not contacted by formation (the store is
//!   not pristine, so it is admitted as is). Members are added back with the membership API.
//!
//! Generations, the guarantee (also in `state_machine`'s `restore.rs` and the README): if the
//! old cluster issued at most `gap` generations per tenant shard after the log point the state
//! was taken at (for a recovery: after the survivor's last log entry, including those committed
//! by a majority it was not in), every generation the restored cluster issues is strictly above
//! every generation the old cluster issued. The default gap is 1,000,000; a gap that would take
//! any generation past `u32::MAX` is refused before anything is written.
//!
//! Terms: the seeded store starts at the old term plus the same gap, so pageservers that heard
//! the old cluster's later terms (`x-storcon-term`) accept the restored leader's calls.
//!
//! Exit statuses: 1 could not (bad backup file, I/O), 2 bad config or arguments, 3 refused to
//! protect data (a data dir that is not empty, `recover` without `--force`).

pub mod backup;
pub mod recover;
pub mod restore;

use std::collections::BTreeSet;
use std::path::Path;

use raft_store::seed::{Seed, SeedError};
use state_machine::{ReplicaId, RestoreKind, State};

use crate::run::EXIT_REFUSED;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Refused to protect data; exit status 3.
    #[error("{0}")]
    Refused(String),
    /// Could not be done; exit status 1.
    #[error("{0}")]
    Failed(String),
}

impl RecoveryError {
    pub fn exit_status(&self) -> i32 {
        match self {
            RecoveryError::Refused(_) => EXIT_REFUSED,
            RecoveryError::Failed(_) => 1,
        }
    }
}

impl From<SeedError> for RecoveryError {
    fn from(e: SeedError) -> Self {
        RecoveryError::Failed(e.to_string())
    }
}

/// What a state holds, for the summaries the subcommands print.
pub struct StateSummary {
    pub tenants: usize,
    pub shards: usize,
    pub nodes: usize,
    pub highest_generation: Option<u32>,
}

impl StateSummary {
    pub fn of(state: &State) -> Self {
        let tenants: BTreeSet<_> = state.shards().map(|s| s.tenant_id()).collect();
        StateSummary {
            tenants: tenants.len(),
            shards: state.shards().count(),
            nodes: state.nodes().count(),
            highest_generation: state
                .shards()
                .filter_map(|s| s.generation)
                .map(|g| g.0)
                .max(),
        }
    }
}

impl std::fmt::Display for StateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tenants, {} shards, {} nodes",
            self.tenants, self.shards, self.nodes
        )
    }
}

/// The one path of restore and recover from a built state to a seeded data dir: raise the
/// generations, write the one-member store. Returns the previous store file if one was kept.
/// Blocking.
pub fn seed_one_member(
    mut seed: Seed,
    kind: RestoreKind,
    gap: u32,
    data_dir: &Path,
    node_id: ReplicaId,
    addr: &str,
) -> Result<(Seed, Option<std::path::PathBuf>), RecoveryError> {
    seed.apply_gap(kind, gap)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let previous = seed.install(data_dir, node_id, addr, stamp)?;
    Ok((seed, previous))
}

/// Prints what was seeded and how to go on.
fn print_seeded(what: &str, seed: &Seed, node_id: ReplicaId, addr: &str, config: &Path) {
    let last = seed.last_log_id();
    let summary = StateSummary::of(seed.state());
    let record = seed.state().restored_from();
    println!(
        "{what}: node {node_id} ({addr}) seeded as a one-member cluster holding {summary}, \
         taken at log index {} (term {})",
        last.index, last.leader_id.term
    );
    if let Some(r) = record {
        println!(
            "generations raised by {} (floor now {}, highest now {}); restores so far: {}",
            r.generation_gap,
            r.generation_floor,
            summary
                .highest_generation
                .map_or("none".to_string(), |g| g.to_string()),
            r.restores
        );
    }
    println!(
        "start it with `storcon run --config {}`; it leads a cluster of itself. Add the other \
         replicas back with the membership API, each with an empty data dir and a new node id.",
        config.display()
    );
}
