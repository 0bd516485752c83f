//! A three-member etcd on 127.0.0.1, the peer `storcon-bench compare` measures storcon against.
//!
//! Only when an `etcd` binary is installed (Debian's `etcd-server` package, or `$ETCD_BIN`);
//! nothing in the default suite needs it. Members keep their default durability (the WAL is
//! fsynced before a put is acknowledged, as storcon's log is); each has its own data dir in a
//! temporary directory. Dropping [`Etcd`] SIGKILLs and reaps every member.
//!
//! Clients use etcd's JSON gateway (`POST /v3/kv/put` with base64 keys and values), so both
//! systems are driven over HTTP/1.1 with JSON bodies by the same client library.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::config::free_ports;
use crate::process::die_with_parent;
use crate::wait::wait_until;

const MEMBERS: usize = 3;

/// The `etcd` binary to use: `$ETCD_BIN`, else `etcd` on the `PATH`. `None` when neither exists.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
}

pub struct Etcd {
    children: Vec<Child>,
    client_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts three members and waits until they have elected a leader.
    pub async fn start(bin: &Path) -> anyhow::Result<Etcd> {
        let dir = tempfile::Builder::new().prefix("storcon-etcd").tempdir()?;
        let ports = free_ports(2 * MEMBERS);
        let (client_ports, peer_ports) = ports.split_at(MEMBERS);
        let initial_cluster = (0..MEMBERS)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peer_ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            children: Vec::new(),
            client_urls: client_ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            _dir: dir,
        };
        for (i, (peer_port, client)) in peer_ports.iter().zip(&etcd.client_urls).enumerate() {
            let data = etcd._dir.path().join(format!("m{i}"));
            let log = File::create(etcd._dir.path().join(format!("m{i}.log")))?;
            let peer = format!("http://127.0.0.1:{peer_port}");
            let mut cmd = Command::new(bin);
            cmd.arg(format!("--name=m{i}"))
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=storcon-bench")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log));
            die_with_parent(&mut cmd);
            etcd.children.push(
                cmd.spawn()
                    .with_context(|| format!("spawning {}", bin.display()))?,
            );
        }
        let http = crate::client::http_client(Duration::from_secs(2));
        wait_until(
            "etcd elected a leader",
            Duration::from_secs(60),
            async || etcd.leader_url(&http).await.map(|_| ()),
        )
        .await?;
        Ok(etcd)
    }

    /// The client URL of the member that leads now.
    pub async fn leader_url(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        #[derive(Deserialize)]
        struct Header {
            member_id: String,
        }
        #[derive(Deserialize)]
        struct Status {
            header: Header,
            leader: Option<String>,
        }
        for url in &self.client_urls {
            let Ok(resp) = http
                .post(format!("{url}/v3/maintenance/status"))
                .body("{}")
                .send()
                .await
            else {
                continue;
            };
            let Ok(status) = resp.json::<Status>().await else {
                continue;
            };
            if status.leader.as_deref() == Some(status.header.member_id.as_str()) {
                return Ok(url.clone());
            }
        }
        bail!("no etcd member says it leads")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a put of `value` at `key` for the JSON gateway.
pub fn put_body(key: &[u8], value: &[u8]) -> String {
    format!(r#"{{"key":"{}","value":"{}"}}"#, base64(key), base64(value))
}

/// Standard base64 with padding (what the gateway expects for `bytes` fields).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        // RFC 4648 section 10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }
}
