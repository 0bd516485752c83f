//! The replicated data model of storcon and its deterministic `apply`.
//!
//! What this crate owns: the controller state that every replica holds identically (pageserver
//! nodes, tenant shards with their generations and intents, the record of which replica leads),
//! the [`Command`]s that change it, the pure [`scheduler`] and reconcile planner. Wire formats
//! live in `storcon_api`; the ids and policies it defines are re-exported here.
//!
//! Invariants:
//! - `apply` is a pure function of (state, command): no I/O, no clock, no randomness, no
//!   iteration over hash maps. Time and ids arrive inside the command.
//! - Every change `apply` makes to [`State`] is also returned as a [`Mutation`] of a keyed row, so
//!   a store can persist exactly what changed, and [`State::from_rows`] rebuilds the same state
//!   from those rows (snapshots and restarts rely on this).
//! - A rejected command (conflict, bad request) changes nothing.

mod attach_hook;
mod command;
mod debug_views;
mod drop;
pub mod limits;
mod migration;
mod node;
pub mod node_operation;
pub mod optimise;
pub mod preview;
pub mod reconcile_plan;
mod replicas;
mod restore;
mod rows;
pub mod scheduler;
pub mod shards;
mod split;
mod state;
mod tenant;
mod tenants;
mod validate;

pub use command::{Command, Rejection, Response};
pub use debug_views::LocateError;
pub use migration::{MigrationRecord, StartMigration, cut_over};
pub use node::{
    NodeAvailability, NodeDescribeResponse, NodeId, NodeRecord, NodeRegisterRequest,
    NodeSchedulingPolicy, RegisterOutcome,
};
pub use replicas::RemovedReplica;
pub use restore::{DEFAULT_GENERATION_GAP, GapError, LogPoint, RestoreKind, RestoreRecord};
pub use rows::{DecodeError, Mutation};
pub use split::{SplitParent, SplitPlan, SplitRecord};
pub use state::{LeaderRecord, State};
/// Identifiers are wire formats; the model is keyed by them.
pub use storcon_api::ids;
pub use storcon_api::types::{ReplicaId, Term};
pub use tenant::{
    CreateTenant, DEFAULT_STRIPE_SIZE, Generation, Intent, PlacementPolicy, ShardSchedulingPolicy,
    TenantShard,
};
pub use validate::InvariantViolation;
