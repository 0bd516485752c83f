//! What the store measures about itself, for the binary to register in its registry.
//!
//! The store cannot know the controller's registry (it must not depend on it), so it owns these
//! handles, records into them at the few points below, and [`register`] hands them to whatever
//! registry the binary keeps. Until registered they are recorded and never read, at no cost worth
//! counting (an atomic add per observation).
//!
//! Recording points: `LogStore::append` (the Immediate commit of the entries: the fsync a
//! follower's acknowledgment and the leader's commit wait for), `LogStore::save_committed`,
//! `build_snapshot` (duration and size), and `client::propose` (from `client_write` to its
//! answer).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct StoreMetrics {
    pub log_append_fsync: Histogram,
    pub proposal_latency: Histogram,
    pub snapshot_build: Histogram,
    pub snapshot_bytes: Gauge,
    pub commit_index: Gauge,
}

/// One per process: a process runs one store.
pub static STORE_METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| StoreMetrics {
    // 50 µs .. ~1.6 s: a local NVMe fsync is tens of µs, a busy disk hundreds of ms.
    log_append_fsync: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
    // 1 ms .. ~16 s: a commit is a network round trip plus an fsync on a majority.
    proposal_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
    snapshot_build: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
    snapshot_bytes: Gauge::default(),
    commit_index: Gauge::default(),
});

pub(crate) fn observe(histogram: &Histogram, elapsed: Duration) {
    histogram.observe(elapsed.as_secs_f64());
}

/// Adds the store's metrics to `registry` under their `storcon_raft_*` names.
pub fn register(registry: &mut Registry) {
    let m = &*STORE_METRICS;
    registry.register(
        "storcon_raft_log_append_fsync_seconds",
        "Time to write and fsync (redb Immediate commit) one batch of appended log entries",
        m.log_append_fsync.clone(),
    );
    registry.register(
        "storcon_raft_proposal_latency_seconds",
        "Time from client_write to its answer (committed and applied, or refused) on this replica",
        m.proposal_latency.clone(),
    );
    registry.register(
        "storcon_raft_snapshot_build_seconds",
        "Time to build and durably store one state-machine snapshot",
        m.snapshot_build.clone(),
    );
    registry.register(
        "storcon_raft_snapshot_bytes",
        "Encoded size of the last snapshot this replica built",
        m.snapshot_bytes.clone(),
    );
    registry.register(
        "storcon_raft_commit_index",
        "Highest log index this replica knows to be committed (as openraft saved it)",
        m.commit_index.clone(),
    );
}
