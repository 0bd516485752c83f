//! The wire formats of storcon: identifiers, request and response bodies of the controller's API
//! and of the pageserver API it calls, shared by `http`, the controller's pageserver client and
//! the replicated model (`state-machine`), which stores some of them.
//!
//! What this crate owns: shapes and their serde names (upstream's), plus checks that need no
//! state. It holds no behaviour: no state, no I/O, no Raft.

pub mod dry_run;
pub mod ids;
pub mod migrate;
pub mod node;
pub mod secondary;
pub mod tenant_config;
pub mod timeline;
pub mod top_tenants;
pub mod types;
pub mod wire;

/// A request that is well-formed JSON but not a valid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);
