//! Multi-process tests and benchmarks for `storcon`.
//!
//! This crate owns nothing the shipped binary links: it starts the built `storcon` binary as real
//! processes on 127.0.0.1 (one config file and data dir per replica, in a temporary directory) and
//! talks to them over HTTP like an operator or a pageserver would. It deliberately does not depend
//! on the other workspace crates; [`api`] is its own reading of the wire contract.
//!
//! - [`Cluster`]: start, SIGKILL, restart and wipe replicas; wait for leaders and convergence.
//!   Dropping it kills every replica, also when a test panics (and then prints their log tails).
//! - [`Client`]: one request per call, typed answers, [`ClientError`] telling apart "no response",
//!   "error status" and "body does not match the contract".
//! - [`wait_until`]: condition polling with a deadline; tests never sleep to synchronize.
//! - [`Sims`]: a fleet of `pageserver-sim` processes re-attaching to the cluster, killed on drop
//!   like the replicas; [`storage_api::StorageApi`]: typed tenant, node-shard, upcall and debug
//!   calls; [`placement`]: the controller's intent checked against what the simulators hold;
//!   [`history`]: the simulators' history files and the generation-safety checker.
//! - [`prom`]: a strict parser of the `/metrics` text and a scrape of one replica.
//! - [`auth`]: test-only JWTs and an `[auth]` section that trusts their key.
//! - [`raw_http`]: one HTTP/1.1 request with its target sent verbatim (dot segments and other
//!   paths an HTTP client library would normalize).
//!
//! The binaries are found by [`binary`]: `$STORCON_BIN` and `$PAGESERVER_SIM_BIN`, else `storcon`
//! and `pageserver-sim` in the same cargo profile directory as the running test or benchmark.
//! `cargo test` does not build them: run `cargo build -p storcon -p pageserver-sim` first (the
//! README's test command does).

pub mod api;
pub mod auth;
pub mod binary;
pub mod certs;
pub mod checks;
pub mod cli_run;
pub mod client;
pub mod cluster;
pub mod config;
pub mod etcd;
pub mod fixture;
pub mod history;
pub mod moves;
pub mod placement;
mod process;
pub mod prom;
pub mod raw_http;
pub mod sims;
pub mod splits;
pub mod stats;
pub mod storage_api;
pub mod wait;

pub use api::{ClusterStatus, NodeDescribeResponse, NodeRegisterRequest};
pub use client::{Client, ClientError, RawResponse, ReadMode};
pub use cluster::{Cluster, WriteOutcome};
pub use config::{ClusterOptions, ControllerOptions, RaftOptions, free_port, free_ports};
pub use sims::Sims;
pub use storage_api::StorageApi;
pub use wait::{deadline, wait_until};
