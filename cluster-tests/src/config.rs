//! Cluster options and the per-replica `storcon` TOML config they turn into.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use serde::Serialize;

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

/// How to start a [`crate::Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of replicas, with ids `1..=replicas`.
    pub replicas: u64,
    pub raft: RaftOptions,
    /// `RUST_LOG` for the replicas. Defaults to the test process's `RUST_LOG`, else `info`.
    pub rust_log: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 3,
            raft: RaftOptions::test_defaults(),
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
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
    let listen_addr = members
        .iter()
        .find(|(id, _)| *id == node_id)
        .map(|(_, addr)| addr.to_string())
        .expect("node_id is one of the members");
    let file = ConfigFile {
        node_id,
        listen_addr,
        data_dir,
        insecure_no_auth: true,
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
    };
    toml::to_string(&file).expect("the config types always serialize to TOML")
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
    }
}
