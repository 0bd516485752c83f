//! A certificate and key that follow their files: each handshake looks at the files' metadata
//! (two `stat` calls) and reloads them when it changed. A new pair that does not load (half
//! written, key not matching yet) keeps the old one in use, is logged, and is tried again once
//! the files change or a second has passed, so a cert and key replaced one after the other are
//! picked up once both are in place. Replacing the files by rename is atomic and best.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{SignatureScheme, pki_types::CertificateDer};

use crate::{TlsError, pem};

/// How soon a pair that failed to load is tried again though its files look unchanged (their
/// mtime may not have moved between a partial and a complete write).
const RETRY_FAILED: Duration = Duration::from_secs(1);

/// What identifies one version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let ino = 0;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino,
        })
    }
}

type Stamps = (Option<Stamp>, Option<Stamp>);

struct Current {
    key: Arc<CertifiedKey>,
    loaded: Stamps,
    /// The stamps of the last pair that failed to load, and when.
    failed: Option<(Stamps, Instant)>,
}

pub struct ReloadingIdentity {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Mutex<Current>,
}

impl fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingIdentity")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingIdentity {
    /// Loads the pair now; an error here is a configuration error.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ReloadingIdentity>, TlsError> {
        let loaded = (Stamp::of(cert_path), Stamp::of(key_path));
        let key = pem::certified_key(cert_path, key_path)?;
        Ok(Arc::new(ReloadingIdentity {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: Mutex::new(Current {
                key,
                loaded,
                failed: None,
            }),
        }))
    }

    /// The pair to present now, reloaded first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (Stamp::of(&self.cert_path), Stamp::of(&self.key_path));
        let mut current = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if stamps == current.loaded {
            return current.key.clone();
        }
        if let Some((failed, at)) = current.failed
            && failed == stamps
            && at.elapsed() < RETRY_FAILED
        {
            return current.key.clone();
        }
        match pem::certified_key(&self.cert_path, &self.key_path) {
            Ok(key) => {
                tracing::info!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    "TLS certificate reloaded"
                );
                current.key = key;
                current.loaded = stamps;
                current.failed = None;
            }
            Err(e) => {
                if current.failed.is_none_or(|(failed, _)| failed != stamps) {
                    tracing::error!(
                        error = %e,
                        "TLS certificate files changed but do not load; still using the previous certificate"
                    );
                }
                current.failed = Some((stamps, Instant::now()));
            }
        }
        current.key.clone()
    }

    /// The leaf certificate presented now.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current().cert.first().cloned()
    }
}

impl ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let key = self.current();
        key.key.choose_scheme(sigschemes).is_some().then_some(key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}
