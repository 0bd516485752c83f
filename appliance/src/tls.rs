//! `[tls]` and the controller's CA files: what the config names, loaded once at start.
//!
//! With `[tls]` the one listener (API and Raft RPCs) serves HTTPS only, and every call to a
//! peer (Raft RPCs, forwarding, formation probes, readiness) goes over HTTPS, verified against
//! `ca_file`. With `client_ca_file`, every client of the listener must present a certificate
//! that chains to it; replicas present their own `cert_file` when a peer asks. Members are
//! either all HTTPS (with `[tls]`) or all plain HTTP (without): a mix is refused here, and a
//! peer that answers plain HTTP fails its handshake, which formation reports by name.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use raft_store::PeerScheme;
use serde::Deserialize;
use storcon_tls::rustls::{ClientConfig, ServerConfig};
use storcon_tls::{ReloadingIdentity, client, pem, server};

use crate::config::{ControllerConfig, Member};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of this replica, served to clients and presented to peers;
    /// reloaded when the file changes.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`; reloaded with it.
    pub key_file: PathBuf,
    /// CA bundle (PEM) that peers' certificates are verified against. Required with more than
    /// one member.
    pub ca_file: Option<PathBuf>,
    /// CA bundle (PEM): when set, every client of the listener (peers, operators, pageservers'
    /// upcalls) must present a certificate signed by it.
    pub client_ca_file: Option<PathBuf>,
}

/// The loaded TLS settings; all `None` without `[tls]` and CA files.
#[derive(Clone, Default)]
pub struct LoadedTls {
    pub listener: Option<Arc<ServerConfig>>,
    pub identity: Option<Arc<ReloadingIdentity>>,
    /// For calls to peers.
    pub peers: Option<ClientConfig>,
    /// For calls to pageservers, when `use_https_pageserver_api` and `pageserver_ca_file`.
    pub pageservers: Option<ClientConfig>,
    /// For compute notifications, when `compute_hook_ca_file`.
    pub compute_hook: Option<ClientConfig>,
}

impl fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedTls")
            .field("listener", &self.listener.is_some())
            .field("identity", &self.identity)
            .field("pageservers", &self.pageservers.is_some())
            .field("compute_hook", &self.compute_hook.is_some())
            .finish()
    }
}

impl LoadedTls {
    /// Reads and checks every file, so that `check-config` catches a missing or bad one.
    pub fn load(
        tls: Option<&TlsConfig>,
        controller: &ControllerConfig,
        members: usize,
    ) -> anyhow::Result<LoadedTls> {
        let mut loaded = LoadedTls::default();
        if let Some(tls) = tls {
            let identity = ReloadingIdentity::load(&tls.cert_file, &tls.key_file)
                .context("[tls] cert_file / key_file")?;
            let client_ca = tls
                .client_ca_file
                .as_deref()
                .map(|p| pem::roots("[tls] client_ca_file", p))
                .transpose()?;
            loaded.listener = Some(server::server_config(identity.clone(), client_ca)?);
            loaded.peers = match &tls.ca_file {
                Some(ca) => Some(client::client_config(
                    pem::roots("[tls] ca_file", ca)?,
                    Some(identity.clone()),
                )?),
                None if members > 1 => bail!(
                    "[tls] needs ca_file: with more than one member, peers' certificates are \
                     verified against it"
                ),
                None => None,
            };
            loaded.identity = Some(identity);
        }
        if let Some(ca) = &controller.pageserver_ca_file {
            if !controller.use_https_pageserver_api {
                bail!(
                    "[controller] pageserver_ca_file is set but use_https_pageserver_api is not: \
                     pageservers would still be called over plain HTTP"
                );
            }
            loaded.pageservers = Some(client::client_config(
                pem::roots("[controller] pageserver_ca_file", ca)?,
                None,
            )?);
        }
        if let Some(ca) = &controller.compute_hook_ca_file {
            if controller
                .compute_hook_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"))
            {
                bail!("[controller] compute_hook_ca_file is set but compute_hook_url is not https");
            }
            loaded.compute_hook = Some(client::client_config(
                pem::roots("[controller] compute_hook_ca_file", ca)?,
                None,
            )?);
        }
        Ok(loaded)
    }

    pub fn peer_scheme(&self) -> PeerScheme {
        if self.listener.is_some() {
            PeerScheme::Https
        } else {
            PeerScheme::Http
        }
    }
}

/// Applies `tls` (if any) to a reqwest client under construction.
pub fn with_tls(
    builder: reqwest::ClientBuilder,
    tls: Option<&ClientConfig>,
) -> reqwest::ClientBuilder {
    match tls {
        Some(config) => client::with_tls(builder, config.clone()),
        None => builder,
    }
}

/// Members may carry a scheme; the members must agree with each other, then with `[tls]`.
/// Leaves each address as `host:port`.
pub fn strip_member_schemes(members: &mut [Member], tls: bool) -> anyhow::Result<()> {
    let mut schemes: Vec<(u64, &'static str)> = Vec::new();
    for m in members.iter() {
        match m.addr.split_once("://") {
            Some(("https", _)) => schemes.push((m.id.0, "https")),
            Some(("http", _)) => schemes.push((m.id.0, "http")),
            Some((other, _)) => bail!(
                "cluster.members: member {} has address {:?} with scheme {other:?}; use \
                 host:port (or https://host:port with [tls])",
                m.id,
                m.addr
            ),
            None => {}
        }
    }
    if let (Some((a, first)), Some((b, other))) = (
        schemes.first(),
        schemes
            .iter()
            .find(|(_, s)| Some(s) != schemes.first().map(|(_, f)| f)),
    ) {
        bail!(
            "cluster.members mixes HTTP and HTTPS: member {a} is {first}://, member {b} is \
             {other}://; every member must be called the same way"
        );
    }
    match schemes.first() {
        Some(&(id, "http")) if tls => bail!(
            "cluster.members: member {id} is http:// but [tls] is set; with [tls] every member \
             is called over HTTPS (mixing HTTP and HTTPS peers is refused)"
        ),
        Some(&(id, "https")) if !tls => bail!(
            "cluster.members: member {id} is https:// but there is no [tls] section; add one \
             so that this replica serves and calls peers over HTTPS"
        ),
        _ => {}
    }
    for m in members.iter_mut() {
        if let Some((_, rest)) = m.addr.split_once("://") {
            m.addr = rest.trim_end_matches('/').to_owned();
        }
    }
    Ok(())
}
