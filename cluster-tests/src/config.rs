//! Cluster options and the per-replica `storcon` TOML config they turn into.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::Serialize;

use crate::certs::{CertFiles, TestCa};

/// A TCP port on 127.0.0.1 that was free a moment ago: bind port 0, read the port, close.
///
/// Another process could take it before storcon binds it; the kernel hands out ephemeral ports
/// round-robin, so that is unlikely in practice. Allocate all ports of a cluster before writing
/// any config so the same port is not handed to two replicas.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("binding 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// `n` distinct free ports: all listeners are held until the last port is chosen, so the kernel
/// cannot hand out the same port twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)).expect("binding 127.0.0.1:0 for a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("local_addr of a bound listener")
                .port()
        })
        .collect()
}

/// Optional `[raft]` settings; `None` leaves the binary's default.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RaftOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub election_timeout_min_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub election_timeout_max_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_threshold: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_keep_logs: Option<u64>,
}

impl RaftOptions {
    /// Timings for tests on a small, noisy machine running debug builds: heartbeats often enough
    /// for a quick failover, election timeouts long enough that a slow scheduler tick does not
    /// depose a healthy leader.
    pub fn test_defaults() -> Self {
        RaftOptions {
            heartbeat_interval_ms: Some(100),
            election_timeout_min_ms: Some(600),
            election_timeout_max_ms: Some(1200),
            snapshot_threshold: None,
            snapshot_keep_logs: None,
        }
    }
}

/// Optional `[controller]` settings (timings of the leader-only services); `None` leaves the
/// binary's default. A cluster started without them gets no `[controller]` section at all.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControllerOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_offline_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_warming_up_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background_reconcile_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciler_concurrency: Option<usize>,
    /// Control plane base URL for compute notifications (`PUT {url}/notify-attach`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_hook_url: Option<String>,
    /// File holding the token sent on compute notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_hook_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_request_timeout_ms: Option<u64>,
    /// The background optimiser's moves per pass; 0 turns it off (the binary's default is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_optimisations_per_pass: Option<usize>,
    /// The chaos injector's period (off when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos_interval_ms: Option<u64>,
    /// Auto-split thresholds (bytes) and shard counts, upstream's names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_threshold: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_split_shards: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_split_threshold: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_split_shards: Option<u8>,
    /// Call pageservers over HTTPS at their `listen_https_port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_https_pageserver_api: Option<bool>,
    /// CA bundle that pageservers' certificates are verified against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pageserver_ca_file: Option<PathBuf>,
    /// Renders `[testing] failpoints = true` (not part of `[controller]`).
    #[serde(skip)]
    pub failpoints: bool,
}

impl ControllerOptions {
    /// Timings for tests with simulated pageservers: heartbeats every 200 ms, a node without a
    /// heartbeat for 2 s is Offline (its attachments fail over), a background pass every second,
    /// a pageserver split call times out after 10 s; failpoints enabled.
    pub fn test_defaults() -> Self {
        ControllerOptions {
            heartbeat_interval_ms: Some(200),
            max_offline_ms: Some(2000),
            max_warming_up_ms: Some(10_000),
            background_reconcile_ms: Some(1000),
            reconciler_concurrency: None,
            compute_hook_url: None,
            compute_hook_token_file: None,
            split_request_timeout_ms: Some(10_000),
            max_optimisations_per_pass: None,
            chaos_interval_ms: None,
            split_threshold: None,
            max_split_shards: None,
            initial_split_threshold: None,
            initial_split_shards: None,
            use_https_pageserver_api: None,
            pageserver_ca_file: None,
            failpoints: true,
        }
    }

    /// [`Self::test_defaults`] with the background optimiser off, for tests that check exact
    /// placements or count generations: each optimiser move is a new placement and generation.
    pub fn without_optimiser() -> Self {
        ControllerOptions {
            max_optimisations_per_pass: Some(0),
            ..Self::test_defaults()
        }
    }
}

/// `[auth]` for every replica of a cluster (instead of `insecure_no_auth = true`). The test writes
/// the files; the cluster's own clients send `client_token`, so give it an admin token for the
/// harness's status polls and registrations to pass.
#[derive(Clone, Debug)]
pub struct AuthOptions {
    pub public_key_file: PathBuf,
    pub peer_token_file: Option<PathBuf>,
    pub pageserver_token_file: Option<PathBuf>,
    pub client_token: String,
}

#[derive(Serialize)]
struct AuthSection<'a> {
    public_key_file: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_token_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pageserver_token_file: Option<&'a Path>,
}

/// `[tls]` for every replica of a cluster: the test makes the files (see [`crate::certs`]).
/// The cluster's own client then speaks HTTPS, trusts `ca_file` and presents `client_identity`.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Each replica's certificate and key, by replica id. A replica missing here gets no
    /// `[tls]` and serves plain HTTP (a misconfiguration, for tests of its refusal).
    pub identities: BTreeMap<u64, CertFiles>,
    /// What replicas verify peers against, and what the cluster's client trusts.
    pub ca_file: PathBuf,
    /// When set, the listener requires client certificates signed by this CA.
    pub client_ca_file: Option<PathBuf>,
    /// The certificate the cluster's client presents (needed with `client_ca_file`).
    pub client_identity: Option<CertFiles>,
}

impl TlsOptions {
    /// One certificate per replica `1..=replicas` (serial = the id), all signed by `ca`; with
    /// `require_client_certs`, the listener requires client certificates signed by `ca` too,
    /// and the cluster's client presents one (serial 1000).
    pub fn issued_by(
        ca: &TestCa,
        dir: &Path,
        replicas: u64,
        require_client_certs: bool,
    ) -> anyhow::Result<TlsOptions> {
        let mut identities = BTreeMap::new();
        for id in 1..=replicas {
            identities.insert(id, ca.issue(dir, &format!("replica-{id}"), id)?);
        }
        Ok(TlsOptions {
            identities,
            ca_file: ca.ca_file.clone(),
            client_ca_file: require_client_certs.then(|| ca.ca_file.clone()),
            client_identity: if require_client_certs {
                Some(ca.issue(dir, "test-client", 1000)?)
            } else {
                None
            },
        })
    }
}

#[derive(Serialize)]
struct TlsSection<'a> {
    cert_file: &'a Path,
    key_file: &'a Path,
    ca_file: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca_file: Option<&'a Path>,
}

/// The `[tls]` table of replica `node_id`, to append to its config (empty for a replica
/// without a certificate in `tls`).
pub fn render_tls_section(node_id: u64, tls: &TlsOptions) -> String {
    let Some(identity) = tls.identities.get(&node_id) else {
        return String::new();
    };
    #[derive(Serialize)]
    struct Wrapper<'a> {
        tls: TlsSection<'a>,
    }
    toml::to_string(&Wrapper {
        tls: TlsSection {
            cert_file: &identity.cert,
            key_file: &identity.key,
            ca_file: &tls.ca_file,
            client_ca_file: tls.client_ca_file.as_deref(),
        },
    })
    .expect("the config types always serialize to TOML")
}

/// How to start a [`crate::Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of replicas, with ids `1..=replicas`.
    pub replicas: u64,
    pub raft: RaftOptions,
    /// `RUST_LOG` for the replicas. Defaults to the test process's `RUST_LOG`, else `info`.
    pub rust_log: String,
    /// HTTPS for the listener and between replicas; plain HTTP when `None` (the default).
    pub tls: Option<TlsOptions>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 3,
            raft: RaftOptions::test_defaults(),
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            tls: None,
        }
    }
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    node_id: u64,
    listen_addr: String,
    data_dir: &'a Path,
    insecure_no_auth: bool,
    cluster: ClusterSection,
    raft: &'a RaftOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<&'a ControllerOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthSection<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    testing: Option<TestingSection>,
}

#[derive(Serialize)]
struct TestingSection {
    failpoints: bool,
}

#[derive(Serialize)]
struct ClusterSection {
    members: Vec<Member>,
}

#[derive(Serialize)]
struct Member {
    id: u64,
    addr: String,
}

/// Renders the TOML config of replica `node_id`; `members` holds every replica's id and address.
pub fn render_config(
    node_id: u64,
    members: &[(u64, SocketAddr)],
    data_dir: &Path,
    raft: &RaftOptions,
) -> String {
    render_config_with_controller(node_id, members, data_dir, raft, None)
}

/// [`render_config`] plus an optional `[controller]` section.
pub fn render_config_with_controller(
    node_id: u64,
    members: &[(u64, SocketAddr)],
    data_dir: &Path,
    raft: &RaftOptions,
    controller: Option<&ControllerOptions>,
) -> String {
    render_config_with_auth(node_id, members, data_dir, raft, controller, None)
}

/// [`render_config_with_controller`] plus an optional `[auth]` section; without one the config
/// says `insecure_no_auth = true`.
pub fn render_config_with_auth(
    node_id: u64,
    members: &[(u64, SocketAddr)],
    data_dir: &Path,
    raft: &RaftOptions,
    controller: Option<&ControllerOptions>,
    auth: Option<&AuthOptions>,
) -> String {
    let listen_addr = members
        .iter()
        .find(|(id, _)| *id == node_id)
        .map(|(_, addr)| addr.to_string())
        .expect("node_id is one of the members");
    let file = ConfigFile {
        node_id,
        listen_addr,
        data_dir,
        insecure_no_auth: auth.is_none(),
        cluster: ClusterSection {
            members: members
                .iter()
                .map(|(id, addr)| Member {
                    id: *id,
                    addr: addr.to_string(),
                })
                .collect(),
        },
        raft,
        controller,
        testing: controller
            .filter(|c| c.failpoints)
            .map(|_| TestingSection { failpoints: true }),
        auth: auth.map(|a| AuthSection {
            public_key_file: &a.public_key_file,
            peer_token_file: a.peer_token_file.as_deref(),
            pageserver_token_file: a.pageserver_token_file.as_deref(),
        }),
    };
    toml::to_string(&file).expect("the config types always serialize to TOML")
}

/// A rendered config with `join = true` in its `[cluster]` section (see `storcon`'s join mode).
pub fn with_join_mode(config: &str) -> String {
    let mut table: toml::Table = config.parse().expect("a rendered config is valid TOML");
    if let Some(cluster) = table.get_mut("cluster").and_then(|c| c.as_table_mut()) {
        cluster.insert("join".into(), toml::Value::Boolean(true));
    }
    toml::to_string(&table).expect("a TOML table serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_keys() {
        let members: Vec<(u64, SocketAddr)> = (1..=3)
            .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16))))
            .collect();
        let raft = RaftOptions {
            snapshot_threshold: Some(50),
            ..RaftOptions::default()
        };
        let text = render_config(2, &members, Path::new("/tmp/x"), &raft);
        let value: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(value["node_id"].as_integer(), Some(2));
        assert_eq!(value["listen_addr"].as_str(), Some("127.0.0.1:7002"));
        assert_eq!(value["data_dir"].as_str(), Some("/tmp/x"));
        assert_eq!(value["insecure_no_auth"].as_bool(), Some(true));
        let members = value["cluster"]["members"]
            .as_array()
            .expect("members array");
        assert_eq!(members.len(), 3);
        assert_eq!(members[2]["addr"].as_str(), Some("127.0.0.1:7003"));
        let raft = value["raft"].as_table().expect("raft table");
        assert_eq!(raft.len(), 1, "unset options are left out: {raft:?}");
        assert_eq!(raft["snapshot_threshold"].as_integer(), Some(50));
        assert!(
            value.get("controller").is_none(),
            "no [controller] unless asked for"
        );
    }

    #[test]
    fn renders_the_controller_section() {
        let members: Vec<(u64, SocketAddr)> = (1..=3)
            .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16))))
            .collect();
        let controller = ControllerOptions {
            reconciler_concurrency: Some(7),
            ..ControllerOptions::test_defaults()
        };
        let text = render_config_with_controller(
            1,
            &members,
            Path::new("/tmp/x"),
            &RaftOptions::default(),
            Some(&controller),
        );
        let value: toml::Table = text.parse().expect("valid TOML");
        let section = value["controller"].as_table().expect("controller table");
        assert_eq!(section["heartbeat_interval_ms"].as_integer(), Some(200));
        assert_eq!(section["max_offline_ms"].as_integer(), Some(2000));
        assert_eq!(section["max_warming_up_ms"].as_integer(), Some(10_000));
        assert_eq!(section["background_reconcile_ms"].as_integer(), Some(1000));
        assert_eq!(section["reconciler_concurrency"].as_integer(), Some(7));
        let sparse = render_config_with_controller(
            1,
            &members,
            Path::new("/tmp/x"),
            &RaftOptions::default(),
            Some(&ControllerOptions {
                max_offline_ms: Some(5),
                ..ControllerOptions::default()
            }),
        );
        let value: toml::Table = sparse.parse().expect("valid TOML");
        let section = value["controller"].as_table().expect("controller table");
        assert_eq!(section.len(), 1, "unset options are left out: {section:?}");
    }

    #[test]
    fn renders_the_auth_section() {
        let members: Vec<(u64, SocketAddr)> = (1..=3)
            .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16))))
            .collect();
        let auth = AuthOptions {
            public_key_file: PathBuf::from("/k/public.pem"),
            peer_token_file: Some(PathBuf::from("/k/peer.jwt")),
            pageserver_token_file: None,
            client_token: "t".into(),
        };
        let text = render_config_with_auth(
            1,
            &members,
            Path::new("/tmp/x"),
            &RaftOptions::default(),
            None,
            Some(&auth),
        );
        let value: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(value["insecure_no_auth"].as_bool(), Some(false));
        let section = value["auth"].as_table().expect("auth table");
        assert_eq!(section["public_key_file"].as_str(), Some("/k/public.pem"));
        assert_eq!(section["peer_token_file"].as_str(), Some("/k/peer.jwt"));
        assert!(section.get("pageserver_token_file").is_none());
        assert!(!text.contains("client_token"), "{text}");
    }
}
