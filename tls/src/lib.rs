//! TLS for storcon's listener and its clients, with rustls (aws-lc-rs, the provider reqwest
//! already uses here).
//!
//! - [`pem`]: certificates, keys and CA bundles from PEM files, with errors that name the file.
//! - [`identity`]: a certificate and key that reload when their files change, serving both as
//!   the server's certificate and as the client certificate presented to peers.
//! - [`server`]: the rustls server config and [`server::TlsListener`], an
//!   [`axum::serve::Listener`] that hands axum connections whose handshake succeeded.
//! - [`client`]: rustls client configs and reqwest clients that verify against a CA bundle.

pub mod client;
pub mod identity;
pub mod pem;
pub mod server;

/// The rustls this crate builds its configs with, for callers that hold them.
pub use rustls;

pub use identity::ReloadingIdentity;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: {reason}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The one crypto provider every config here is built with.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
