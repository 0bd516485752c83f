//! The HTTP surface of a storcon replica: controller API, Raft RPC endpoints, probes, cluster
//! status, and forwarding of leader-only requests.
//!
//! What this crate owns: routing, request parsing and admission, auth, forwarding, and the
//! mapping of errors to statuses. It declares the leader's [`Operations`] and holds no workflow:
//! a handler parses its request, makes one call, and maps the typed error; the only state it
//! touches itself is a read of the applied state (node listings, cluster status).
//!
//! Invariants:
//! - probes, cluster status, the leader record and Raft RPCs are always answered by the replica
//!   asked; everything else is served by the leader, and a follower proxies it exactly once;
//! - every error is a 4xx/5xx with a `{"msg": ...}` body, and a rejected request changes nothing;
//! - with a verifier configured, every request but the probes is checked against one table
//!   ([`auth::required_access`]) on the replica that receives it, before any forwarding.

mod app;
pub mod auth;
mod backup;
mod cluster;
mod debug;
mod error;
pub mod extract;
pub mod failpoints;
mod forward;
mod guard;
pub mod members;
pub mod metrics;
mod migrate;
mod nodes;
mod onboarding;
mod operations;
mod probes;
pub mod raft_rpc;
mod read;
mod secondary;
pub mod strict_json;
pub mod tenant_config;
mod tenants;
mod timelines;
mod trace;
mod upcalls;

pub use app::{API_BODY_LIMIT, AppState, FormationProbe, router};
pub use auth::{BearerToken, HttpAuth, JwtVerifier, Scope};
pub use error::ApiError;
pub use forward::{FORWARDED_HEADER, READ_LOCAL_HEADER};
pub use operations::{LeaderSlot, Op, OperationError, Operations, TenantDeletion, TenantPage};
pub use raft_rpc::FROM_NODE_HEADER;
pub use read::QUORUM_WAIT;
