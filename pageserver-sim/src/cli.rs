//! Command line. The split fault switches can also come from the environment
//! (`PAGESERVER_SIM_FAIL_SPLIT=1`, `PAGESERVER_SIM_STALL_SPLIT_MS=N`) so a harness can set them
//! without changing how it builds the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::wire::{SimBehaviour, SplitBehaviour};

const FAIL_SPLIT_ENV: &str = "PAGESERVER_SIM_FAIL_SPLIT";
const STALL_SPLIT_ENV: &str = "PAGESERVER_SIM_STALL_SPLIT_MS";

/// A simulated Neon pageserver: keeps its locations in a JSON file, re-attaches to the storage
/// controller on start and serves the pageserver management API the controller uses.
#[derive(Parser, Debug, Clone)]
#[command(name = "pageserver-sim")]
pub struct Args {
    #[arg(long)]
    pub node_id: u64,
    /// HTTP address to serve on; the port must be fixed because it is registered before binding.
    #[arg(long)]
    pub listen: SocketAddr,
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Controller base URL, e.g. http://127.0.0.1:7001 (upcalls go to /upcall/v1/...).
    #[arg(long)]
    pub controller: String,
    #[arg(long)]
    pub az: String,
    /// Also serve the API over HTTPS on this port (same address as `--listen`), and register it
    /// as `listen_https_port`. Needs `--tls-cert` and `--tls-key`.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub https_port: Option<u16>,
    /// PEM certificate chain served on `--https-port` (reloaded when the file changes), and
    /// presented as the client certificate on upcalls to an `https://` controller.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that an `https://` controller's certificate is verified against.
    #[arg(long)]
    pub controller_ca: Option<PathBuf>,
    /// Registered postgres port; nothing listens there. Defaults to the HTTP port.
    #[arg(long)]
    pub pg_port: Option<u16>,
    /// Bearer token for upcalls.
    #[arg(long)]
    pub token: Option<String>,
    /// Answer every shard split with 500.
    #[arg(long)]
    pub fail_split: bool,
    /// Delay every shard split answer by this many milliseconds.
    #[arg(long)]
    pub stall_split_ms: Option<u64>,
    /// The simulated remote storage (shared by the simulators of one fleet); default
    /// `DATA_DIR/remote`.
    #[arg(long)]
    pub remote_storage: Option<PathBuf>,
    /// How long a tenant or timeline deletion keeps running after its 202.
    #[arg(long, default_value_t = 0)]
    pub delete_delay_ms: u64,
    /// Secondary download rate, milliseconds per layer (10 layers of 1 MiB per timeline).
    #[arg(long, default_value_t = 20)]
    pub download_ms_per_layer: u64,
    /// How long a new attachment takes to catch up with the WAL (`wait_lsn` is 202 till then).
    #[arg(long, default_value_t = 0)]
    pub catch_up_ms: u64,
    /// Start with secondary downloads making no progress (`secondary_downloads_paused`).
    #[arg(long)]
    pub secondary_downloads_paused: bool,
}

impl Args {
    pub fn behaviour(&self) -> SimBehaviour {
        SimBehaviour {
            delete_delay_ms: self.delete_delay_ms,
            download_ms_per_layer: self.download_ms_per_layer,
            catch_up_ms: self.catch_up_ms,
            secondary_downloads_paused: self.secondary_downloads_paused,
        }
    }

    pub fn remote_storage(&self) -> PathBuf {
        self.remote_storage
            .clone()
            .unwrap_or_else(|| self.data_dir.join("remote"))
    }

    pub fn split_behaviour(&self) -> anyhow::Result<SplitBehaviour> {
        let env_fail = std::env::var(FAIL_SPLIT_ENV)
            .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
            .unwrap_or(false);
        let env_stall = match std::env::var(STALL_SPLIT_ENV) {
            Ok(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| anyhow::anyhow!("{STALL_SPLIT_ENV}={v:?} is not a number"))?,
            ),
            Err(_) => None,
        };
        Ok(SplitBehaviour {
            fail: self.fail_split || env_fail,
            stall_ms: self.stall_split_ms.or(env_stall).unwrap_or(0),
        })
    }
}
