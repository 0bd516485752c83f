//! The replica's TOML config file. Unknown keys are errors that name the key, so a typo never
//! silently falls back to a default.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use state_machine::ReplicaId;
use storcon_http::auth::{BearerToken, JwtVerifier, Scope};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node_id: ReplicaId,
    /// host:port for the HTTP API and Raft RPCs.
    pub listen_addr: String,
    pub data_dir: PathBuf,
    /// Must be `true` when there is no `[auth]` section: running without auth is a choice.
    #[serde(default)]
    pub insecure_no_auth: bool,
    pub auth: Option<AuthConfig>,
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub raft: RaftTimings,
    #[serde(default)]
    pub controller: ControllerConfig,
    #[serde(default)]
    pub testing: TestingConfig,
    /// HTTPS for the listener and for every call to a peer; plain HTTP without it.
    pub tls: Option<crate::tls::TlsConfig>,
    /// What `[auth]` points at, read and checked by [`Config::load`].
    #[serde(skip)]
    pub loaded_auth: Option<Arc<LoadedAuth>>,
    /// What `[tls]` and the controller's CA files point at, read by [`Config::load`].
    #[serde(skip)]
    pub loaded_tls: crate::tls::LoadedTls,
}

/// Timings of the leader-only services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// How often the leader polls every pageserver's `/v1/utilization`.
    pub heartbeat_interval_ms: u64,
    /// A node without a successful heartbeat for this long goes Offline and fails over.
    pub max_offline_ms: u64,
    /// Grace period for a node that re-attached and has not answered a heartbeat yet.
    pub max_warming_up_ms: u64,
    /// Period of the background pass that schedules and reconciles whatever drifted.
    pub background_reconcile_ms: u64,
    /// Reconciles running at once.
    pub reconciler_concurrency: usize,
    /// Control plane base URL for compute notifications (`PUT {url}/notify-attach`); none
    /// disables them.
    pub compute_hook_url: Option<String>,
    /// Token sent as `Authorization: Bearer` on compute notifications (upstream's
    /// `control_plane_jwt_token`); independent of `[auth]`.
    pub compute_hook_token_file: Option<PathBuf>,
    /// Timeout of one pageserver `shard_split` call; a split that takes longer is aborted.
    pub split_request_timeout_ms: u64,
    /// Moves the background optimiser may begin in one pass (each a prewarmed migration or a
    /// replaced secondary); 0 turns it off.
    pub max_optimisations_per_pass: usize,
    /// Auto-split (upstream's knobs, sizes in bytes): off unless a threshold is set. A tenant
    /// whose largest timeline's logical size per shard passes `split_threshold` splits to the
    /// power of two that brings it under, at most `max_split_shards` (≤ 1: never).
    pub split_threshold: Option<u64>,
    pub max_split_shards: u8,
    /// An unsharded tenant larger than this splits at once into `initial_split_shards`
    /// (≤ 1: never).
    pub initial_split_threshold: Option<u64>,
    pub initial_split_shards: u8,
    /// Every this long, migrate one random shard gracefully within its AZ (upstream's chaos
    /// injector, for soaking the migration path); off when unset.
    pub chaos_interval_ms: Option<u64>,
    /// Call pageservers at `https://{listen_http_addr}:{listen_https_port}` (upstream's flag);
    /// a node registering without `listen_https_port` is then refused.
    pub use_https_pageserver_api: bool,
    /// CA bundle (PEM) that pageservers' certificates are verified against; without it, the
    /// system's trust store.
    pub pageserver_ca_file: Option<PathBuf>,
    /// CA bundle (PEM) that an `https` compute hook URL's certificate is verified against;
    /// without it, the system's trust store.
    pub compute_hook_ca_file: Option<PathBuf>,
    /// What `compute_hook_token_file` holds, read by [`Config::load`].
    #[serde(skip)]
    pub compute_hook_token: Option<BearerToken>,
}

/// Switches for tests only; leave the section out in production.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Serve `PUT /debug/v1/failpoints`, so a test can inject errors and pauses.
    pub failpoints: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            heartbeat_interval_ms: 1000,
            max_offline_ms: 10_000,
            max_warming_up_ms: 30_000,
            background_reconcile_ms: 20_000,
            reconciler_concurrency: 128,
            compute_hook_url: None,
            compute_hook_token_file: None,
            split_request_timeout_ms: 120_000,
            max_optimisations_per_pass: 16,
            split_threshold: None,
            max_split_shards: 16,
            initial_split_threshold: None,
            initial_split_shards: 2,
            chaos_interval_ms: None,
            use_https_pageserver_api: false,
            pageserver_ca_file: None,
            compute_hook_ca_file: None,
            compute_hook_token: None,
        }
    }
}

impl ControllerConfig {
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(1))
    }
    pub fn max_offline(&self) -> Duration {
        Duration::from_millis(self.max_offline_ms)
    }
    pub fn max_warming_up(&self) -> Duration {
        Duration::from_millis(self.max_warming_up_ms)
    }
    pub fn background_reconcile_interval(&self) -> Duration {
        Duration::from_millis(self.background_reconcile_ms.max(1))
    }
    pub fn autosplit(&self) -> crate::controller::AutoSplit {
        crate::controller::AutoSplit {
            split_threshold: self.split_threshold,
            max_split_shards: self.max_split_shards,
            initial_split_threshold: self.initial_split_threshold,
            initial_split_shards: self.initial_split_shards,
        }
    }
    pub fn split_request_timeout(&self) -> Duration {
        Duration::from_millis(self.split_request_timeout_ms.max(1))
    }
}

/// JWT settings: with this section every route but the probes needs a bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// EdDSA (Ed25519) public key, PEM, used to verify bearer tokens; or the PEM text in
    /// `STORCON_PUBLIC_KEY` instead.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Token this replica presents to its peers (`controller_peer` scope). Required when the
    /// cluster has more than one member.
    pub peer_token_file: Option<PathBuf>,
    /// Token sent on calls to pageservers.
    pub pageserver_token_file: Option<PathBuf>,
}

/// The key and tokens of `[auth]`, read from their files at start-up.
#[derive(Debug)]
pub struct LoadedAuth {
    pub verifier: JwtVerifier,
    pub peer_token: Option<BearerToken>,
    pub pageserver_token: Option<BearerToken>,
}

impl AuthConfig {
    /// Reads and checks the files: the key must be an Ed25519 public key, the peer token must be
    /// one this key accepts with scope `controller_peer` (or `admin`), so a misconfigured replica
    /// stops here instead of failing every Raft RPC later.
    fn load(
        &self,
        members: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<LoadedAuth> {
        let key = Secret::read(
            "[auth] public_key_file",
            PUBLIC_KEY_ENV,
            self.public_key_file.as_deref(),
            env,
        )?
        .ok_or_else(|| {
            anyhow::anyhow!("[auth] needs public_key_file, or the key's PEM in {PUBLIC_KEY_ENV}")
        })?;
        let verifier =
            JwtVerifier::from_pem(key.text.as_bytes()).with_context(|| key.origin.clone())?;
        let peer_token = match Secret::read(
            "[auth] peer_token_file",
            PEER_TOKEN_ENV,
            self.peer_token_file.as_deref(),
            env,
        )? {
            None if members > 1 => bail!(
                "[auth] needs peer_token_file (or {PEER_TOKEN_ENV}): replicas authenticate to \
                 each other with a controller_peer token"
            ),
            None => None,
            Some(secret) => {
                let token = secret.token()?;
                let claims = verifier.verify(token.token()).with_context(|| {
                    format!(
                        "{}: the token is not accepted by {}",
                        secret.origin, key.origin
                    )
                })?;
                if !claims.scope.grants(Scope::ControllerPeer) {
                    bail!(
                        "{}: scope is '{}', peers need 'controller_peer'",
                        secret.origin,
                        claims.scope
                    );
                }
                Some(token)
            }
        };
        let pageserver_token = Secret::read(
            "[auth] pageserver_token_file",
            PAGESERVER_TOKEN_ENV,
            self.pageserver_token_file.as_deref(),
            env,
        )?
        .map(|s| s.token())
        .transpose()?;
        Ok(LoadedAuth {
            verifier,
            peer_token,
            pageserver_token,
        })
    }
}

/// Environment variables that may hold the secrets instead of their files (for secret stores
/// that inject the environment). Prefixed, so that a stray `PUBLIC_KEY` is never picked up.
pub const PUBLIC_KEY_ENV: &str = "STORCON_PUBLIC_KEY";
pub const PEER_TOKEN_ENV: &str = "STORCON_PEER_TOKEN";
pub const PAGESERVER_TOKEN_ENV: &str = "STORCON_PAGESERVER_TOKEN";
pub const COMPUTE_HOOK_TOKEN_ENV: &str = "STORCON_COMPUTE_HOOK_TOKEN";

/// A secret's text and where it came from (named in errors; the value never is).
struct Secret {
    text: String,
    origin: String,
}

impl Secret {
    /// From environment variable `var` if it is set and not empty, else from `file`; both set
    /// is refused, as it is unclear which one the operator meant.
    fn read(
        key: &str,
        var: &str,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Secret>> {
        let from_env = env(var).filter(|v| !v.trim().is_empty());
        match (from_env, file) {
            (Some(_), Some(path)) => bail!(
                "{key} {} and environment variable {var} are both set; pick one",
                path.display()
            ),
            (Some(text), None) => Ok(Some(Secret {
                text,
                origin: format!("environment variable {var}"),
            })),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {key} {}", path.display()))?;
                Ok(Some(Secret {
                    text,
                    origin: format!("{key} {}", path.display()),
                }))
            }
            (None, None) => Ok(None),
        }
    }

    fn token(&self) -> anyhow::Result<BearerToken> {
        BearerToken::parse(&self.text).with_context(|| self.origin.clone())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The initial membership: the cluster forms with these. After membership changes, Raft's
    /// replicated membership is the truth (addresses included); this list is then only used to
    /// find peers at start-up.
    pub members: Vec<Member>,
    /// Join mode, for a new replica id with an empty data dir: never take part in formation,
    /// wait to be added with `POST /control/v1/members`. Refused if the peers know the id as a
    /// voter or a removed replica.
    #[serde(default)]
    pub join: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: ReplicaId,
    /// `host:port`; may be written `https://host:port` (or `http://`), which must then agree
    /// with `[tls]`. [`Config::load`] strips the scheme.
    pub addr: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Log entries since the last snapshot that trigger a new one.
    pub snapshot_threshold: u64,
    /// Log entries kept behind a snapshot, for followers that are only a little behind.
    pub snapshot_keep_logs: u64,
    pub install_snapshot_timeout_ms: u64,
    /// Group commit: concurrent writes share one log entry (`raft_store::client::Proposer`).
    /// Off only while a cluster still has replicas of a version that cannot read batches.
    pub batch_proposals: bool,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            snapshot_threshold: 5000,
            snapshot_keep_logs: 1000,
            install_snapshot_timeout_ms: 5000,
            batch_proposals: true,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        crate::tls::strip_member_schemes(&mut config.cluster.members, config.tls.is_some())
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config.loaded_tls = crate::tls::LoadedTls::load(
            config.tls.as_ref(),
            &config.controller,
            config.cluster.members.len(),
        )
        .with_context(|| format!("invalid config file {}", path.display()))?;
        let env = |var: &str| std::env::var(var).ok();
        if let Some(auth) = &config.auth {
            let loaded = auth
                .load(config.cluster.members.len(), &env)
                .with_context(|| format!("invalid config file {}", path.display()))?;
            config.loaded_auth = Some(Arc::new(loaded));
        }
        config.controller.compute_hook_token = Secret::read(
            "[controller] compute_hook_token_file",
            COMPUTE_HOOK_TOKEN_ENV,
            config.controller.compute_hook_token_file.as_deref(),
            &env,
        )?
        .map(|s| s.token())
        .transpose()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        match (&self.auth, self.insecure_no_auth) {
            (None, false) => bail!(
                "no [auth] section: set `insecure_no_auth = true` to run without authentication"
            ),
            (Some(_), true) => bail!("both [auth] and `insecure_no_auth = true` are set; pick one"),
            (Some(_), false) | (None, true) => {}
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for m in &self.cluster.members {
            if !ids.insert(m.id) {
                bail!("cluster.members lists node id {} twice", m.id);
            }
            if !addrs.insert(m.addr.as_str()) {
                bail!("cluster.members lists address {} twice", m.addr);
            }
        }
        if !ids.contains(&self.node_id) {
            bail!(
                "node_id {} is not in cluster.members ({:?})",
                self.node_id,
                ids
            );
        }
        self.raft_config()?;
        Ok(())
    }

    pub fn members(&self) -> BTreeMap<ReplicaId, String> {
        self.cluster
            .members
            .iter()
            .map(|m| (m.id, m.addr.clone()))
            .collect()
    }

    /// The address peers and clients use for this replica (its entry in `cluster.members`).
    pub fn advertised_addr(&self) -> String {
        self.members()
            .remove(&self.node_id)
            .unwrap_or_else(|| self.listen_addr.clone())
    }

    pub fn raft_config(&self) -> anyhow::Result<openraft::Config> {
        let t = &self.raft;
        let config = openraft::Config {
            cluster_name: "storcon".into(),
            heartbeat_interval: t.heartbeat_interval_ms,
            election_timeout_min: t.election_timeout_min_ms,
            election_timeout_max: t.election_timeout_max_ms,
            install_snapshot_timeout: t.install_snapshot_timeout_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(t.snapshot_threshold),
            max_in_snapshot_log_to_keep: t.snapshot_keep_logs,
            // Bounded so that a batch of the largest entries fits a follower's RPC body limit.
            max_payload_entries: raft_store::codec::MAX_PAYLOAD_ENTRIES,
            snapshot_max_chunk_size: raft_store::codec::SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("[raft] timings: {e}"))
    }
}
