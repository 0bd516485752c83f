//! Raft storage and transport for storcon: openraft 0.9 on one redb file per replica.
//!
//! What this crate owns: the openraft type configuration, the log store and state machine on
//! redb ([`LogStore`], [`StateMachineStore`]), snapshots, the Raft network client over HTTP, the
//! on-disk marker used while a pristine cluster forms, and [`client`]: the one way to propose a
//! command and to read the applied state linearizably, for the controller and HTTP alike; and
//! [`metrics`], what the store measures (fsync, proposal and snapshot timings) for the binary
//! to register.
//!
//! Durability contract (see `db.rs` for the table layout):
//! - vote, log appends, truncation and purge commit with `Durability::Immediate` before openraft
//!   is told they are done;
//! - state-machine applies commit with `Durability::None` in the same file; the next Immediate
//!   commit (log append, vote, snapshot) makes them durable, and after a crash the state machine
//!   rolls back atomically with its `last_applied`, so openraft re-applies from the log;
//! - snapshots are built from one read transaction and stored Immediate before they are returned,
//!   so `purged <= snapshot <= applied` holds on disk;
//! - redb is only called from blocking threads (`Db::run`), never on a tokio worker.

pub mod backup;
pub mod client;
pub mod codec;
pub mod contact;
mod db;
mod error;
mod formation;
mod log_store;
mod log_tail;
pub mod metrics;
mod network;
pub mod seed;
mod snapshot;
mod state_machine;
mod types;

pub use client::{ProposeError, ReadError};
pub use db::{Db, OpenError};
pub use error::StoreError;
pub use formation::{FORMATION_PATH, FormationMarker, FormationStatus};
pub use log_store::LogStore;
pub use network::{
    HttpNetworkFactory, NOT_A_MEMBER, PeerScheme, REMOVED_FROM_CLUSTER, Refusal, Refusals,
    TARGET_NODE_HEADER, raft_paths,
};
pub use snapshot::{FORMAT_VERSION, SnapshotBlob};
pub use state_machine::{SharedState, StateAudit, StateMachineStore};
pub use types::{Raft, TypeConfig};
