//! The HTTPS side: a rustls server config over a [`ReloadingIdentity`], and a listener that
//! runs each handshake in its own task (a slow or silent client never holds up the others) and
//! hands axum only the connections whose handshake succeeded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{ReloadingIdentity, TlsError};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for axum to take them.
const QUEUE: usize = 64;
/// A refused handshake is logged once per client address and reason in this period (a peer
/// with a wrong certificate retries several times a second); the repeats go to debug.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// When each (client address, reason) was last logged at warn level.
#[derive(Default)]
struct RefusalLog(std::sync::Mutex<HashMap<(IpAddr, String), Instant>>);

impl RefusalLog {
    fn refused(&self, peer: SocketAddr, reason: String) {
        let now = Instant::now();
        let loud = {
            let mut seen = match self.0.lock() {
                Ok(seen) => seen,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Bounded: forget everything if many distinct clients were refused.
            if seen.len() > 1024 {
                seen.clear();
            }
            let key = (peer.ip(), reason.clone());
            match seen.get(&key) {
                Some(at) if now.duration_since(*at) < REFUSAL_LOG_PERIOD => false,
                _ => {
                    seen.insert(key, now);
                    true
                }
            }
        };
        if loud {
            tracing::warn!(%peer, error = %reason, "TLS handshake refused");
        } else {
            tracing::debug!(%peer, error = %reason, "TLS handshake refused");
        }
    }
}

/// The server config: `identity` is presented; with `client_ca`, every client must present a
/// certificate that chains to it.
pub fn server_config(
    identity: Arc<ReloadingIdentity>,
    client_ca: Option<Arc<RootCertStore>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = crate::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(format!("client CA: {e}")))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(identity);
    // axum serves HTTP/1.1 here; clients must not negotiate h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An [`axum::serve::Listener`] that accepts TLS connections on a bound TCP listener.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `tcp` (the task stops once the listener is dropped). A failed
    /// handshake is logged with the client's address and rustls's reason: that is where a
    /// peer with a wrong certificate, or a plain-HTTP client, shows up.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(QUEUE);
        let acceptor = TlsAcceptor::from(config);
        let refusals = Arc::new(RefusalLog::default());
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, as axum does.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx, refusals) = (acceptor.clone(), tx.clone(), refusals.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => refusals.refused(peer, e.to_string()),
                        Err(_) => refusals.refused(peer, "handshake timed out".into()),
                    }
                });
            }
        });
        Ok(TlsListener { local_addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends once this listener is gone, so this is never reached
            // while anyone waits here.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
