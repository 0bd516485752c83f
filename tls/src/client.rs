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
        if is_rustls(c) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `e` is a rustls error, or I/O errors wrapped around one (an `io::Error`'s `source` skips
/// the error it wraps, so they are unwrapped here).
fn is_rustls(mut e: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}

/// An error and its causes on one line (reqwest's own message hides the TLS reason).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
