//! The HTTPS client side: rustls client configs that trust one CA bundle (not the system's), and
//! reqwest clients built on them.

use std::sync::Arc;

use rustls::RootCertStore;

use crate::{ReloadingIdentity, TlsError};

/// Trusts `roots` only; with `identity`, presents it as the client certificate (re-read when its
/// files change, as the server side does).
pub fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<Arc<ReloadingIdentity>>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Puts `config` (see [`client_config`]) under a reqwest builder.
pub fn with_tls(
    builder: reqwest::ClientBuilder,
    config: rustls::ClientConfig,
) -> reqwest::ClientBuilder {
    builder.tls_backend_preconfigured(config)
}

/// Whether a request error came from TLS rather than from the network or HTTP: used to say
/// "this peer does not speak TLS (or its certificate is wrong)" instead of "unreachable".
pub fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        cause = c.source();
    }
    false
}
