//! A fleet of `pageserver-sim` processes on 127.0.0.1, owned by one test. The binary is found
//! by [`pageserver_sim_binary`] (`$PAGESERVER_SIM_BIN`, else next to the running executable).
//!
//! Layout of the fleet's temporary directory: `remote/` (the simulated remote storage they all
//! share), `sim-<node>/` (data dir: `locations.json`,
//! `history.jsonl`) and `sim-<node>.log` (stderr of every start of that simulator).
//!
//! A simulator re-attaches to its controller URL (any replica: followers forward) before it
//! listens, so [`Sims::start`] returns once every simulator serves, which means the controller
//! has registered it and answered its re-attach.
//!
//! Dropping [`Sims`] SIGKILLs and reaps every simulator on every exit path, including panics
//! (then the log tails are printed); `CLUSTER_TESTS_KEEP` keeps the directory as for
//! [`crate::Cluster`]. On Linux a simulator also dies with the thread that spawned it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::binary::pageserver_sim_binary;
use crate::certs::CertFiles;
use crate::client::http_client;
use crate::cluster::KEEP_ENV;
use crate::config::free_ports;
use crate::history::{self, Event};
use crate::storage_api::StorageApi;
use crate::wait::wait_until;

const START_MARKER: &str = "==== cluster-tests: starting pageserver-sim";

/// One location as a simulator lists it (`GET /v1/location_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimLocation {
    pub mode: String,
    pub generation: Option<u32>,
    #[serde(default)]
    pub secondary_conf: Option<Value>,
    pub shard_number: u8,
    pub shard_count: u8,
    pub shard_stripe_size: u32,
    #[serde(default)]
    pub tenant_conf: Value,
}

#[derive(Deserialize)]
struct LocationList {
    tenant_shards: Vec<(String, Option<SimLocation>)>,
}

#[derive(Default)]
struct ProcState {
    child: Option<Child>,
    starts: u32,
    exited_on_its_own: Option<ExitStatus>,
    /// Stopped with SIGSTOP: the process exists but answers nothing.
    paused: bool,
}

struct Sim {
    node_id: u64,
    az: String,
    addr: SocketAddr,
    data_dir: PathBuf,
    /// Shared by the whole fleet, as one bucket is.
    remote_dir: PathBuf,
    log_path: PathBuf,
    controller: Mutex<String>,
    /// `--https-port` and the TLS settings, if the fleet serves HTTPS too.
    https: Option<(u16, SimTls)>,
    state: Mutex<ProcState>,
}

impl Sim {
    fn state(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self, bin: &Path, rust_log: &str) -> anyhow::Result<()> {
        let mut state = self.state();
        if let Some(child) = state.child.as_mut()
            && child.try_wait()?.is_none()
        {
            bail!("pageserver-sim {} is already running", self.node_id);
        }
        state.starts += 1;
        let controller = self
            .controller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(
            log,
            "{START_MARKER} {} (start #{}, controller {controller}) ====",
            self.node_id, state.starts
        )?;
        let stderr = log.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.arg("--node-id")
            .arg(self.node_id.to_string())
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--remote-storage")
            .arg(&self.remote_dir)
            .arg("--controller")
            .arg(&controller)
            .arg("--az")
            .arg(&self.az);
        if let Some((port, tls)) = &self.https {
            cmd.arg("--https-port")
                .arg(port.to_string())
                .arg("--tls-cert")
                .arg(&tls.identity.cert)
                .arg("--tls-key")
                .arg(&tls.identity.key)
                .arg("--controller-ca")
                .arg(&tls.ca_file);
        }
        cmd.env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        crate::process::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} for sim {}", bin.display(), self.node_id))?;
        state.child = Some(child);
        state.exited_on_its_own = None;
        state.paused = false;
        Ok(())
    }

    /// Sends `signal` to the running child.
    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let state = self.state();
        let child = state
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("pageserver-sim {} is not running", self.node_id))?;
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill(2) with the pid of a child this process has not reaped yet.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("signal {signal} to pageserver-sim {}", self.node_id));
        }
        Ok(())
    }

    fn kill(&self) {
        let mut state = self.state();
        state.paused = false;
        if let Some(mut child) = state.child.take() {
            let _ = child.kill();
            if let Err(e) = child.wait() {
                eprintln!(
                    "cluster-tests: waiting for sim {} failed: {e}",
                    self.node_id
                );
            }
        }
    }

    fn is_running(&self) -> bool {
        let mut state = self.state();
        let Some(child) = state.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                state.child = None;
                state.exited_on_its_own = Some(status);
                false
            }
            Err(_) => false,
        }
    }

    fn exited_on_its_own(&self) -> Option<ExitStatus> {
        self.is_running();
        self.state().exited_on_its_own
    }

    fn log_tail(&self, lines: usize) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("<cannot read {}: {e}>", self.log_path.display()),
        }
    }
}

/// HTTPS for a fleet: the certificate each simulator serves (and presents to an `https://`
/// controller that asks for one), and the CA that such a controller's certificate is checked
/// against.
#[derive(Clone, Debug)]
pub struct SimTls {
    pub identity: CertFiles,
    pub ca_file: PathBuf,
}

/// The simulated pageservers of one test.
pub struct Sims {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    rust_log: String,
    sims: Vec<Sim>,
    http: reqwest::Client,
}

/// How long a simulator may take to re-attach and serve after it is spawned (it retries its
/// re-attach while the controller elects a leader).
pub const SERVE_DEADLINE: Duration = Duration::from_secs(60);

impl Sims {
    /// Spawns one simulator per `(node_id, az)`, all re-attaching to `controller` (a replica's
    /// base URL), and waits until every one serves.
    ///
    /// Panics with build instructions when there is no `pageserver-sim` binary.
    pub async fn start(controller: &str, specs: &[(u64, &str)]) -> anyhow::Result<Sims> {
        Sims::start_with_https(controller, specs, None).await
    }

    /// [`Sims::start`]; with `tls`, every simulator also serves HTTPS on a port of its own
    /// (registered as `listen_https_port`) and can re-attach to an `https://` controller.
    pub async fn start_with_https(
        controller: &str,
        specs: &[(u64, &str)],
        tls: Option<&SimTls>,
    ) -> anyhow::Result<Sims> {
        let bin = pageserver_sim_binary();
        let dir = tempfile::Builder::new()
            .prefix("storcon-sims-")
            .tempdir()
            .context("creating the simulators' directory")?;
        let ports = free_ports(specs.len() * 2);
        let (ports, https_ports) = ports.split_at(specs.len());
        let sims = specs
            .iter()
            .zip(ports.iter().copied())
            .zip(https_ports.iter().copied())
            .map(|(((node_id, az), port), https_port)| Sim {
                node_id: *node_id,
                az: (*az).to_owned(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                data_dir: dir.path().join(format!("sim-{node_id}")),
                remote_dir: dir.path().join("remote"),
                log_path: dir.path().join(format!("sim-{node_id}.log")),
                controller: Mutex::new(controller.to_owned()),
                https: tls.map(|t| (https_port, t.clone())),
                state: Mutex::new(ProcState::default()),
            })
            .collect();
        let fleet = Sims {
            dir: Some(dir),
            bin,
            rust_log: std::env::var("SIM_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            sims,
            http: http_client(Duration::from_secs(10)),
        };
        for sim in &fleet.sims {
            sim.spawn(&fleet.bin, &fleet.rust_log)?;
        }
        let ids = fleet.ids();
        let serving = join_all(ids.iter().map(|id| fleet.wait_serving(*id))).await;
        if let Some(e) = serving.into_iter().find_map(Result::err) {
            fleet.print_log_tails();
            return Err(e.context("starting the simulators"));
        }
        Ok(fleet)
    }

    fn sim(&self, node_id: u64) -> &Sim {
        self.sims
            .iter()
            .find(|s| s.node_id == node_id)
            .unwrap_or_else(|| panic!("no simulator {node_id} in this fleet"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }

    /// Every simulator's node id, running or not.
    /// The fleet's simulated remote storage.
    pub fn remote_dir(&self) -> PathBuf {
        self.dir().join("remote")
    }

    /// The shard ids (`<tenant>` or `<tenant>-NNCC`) that hold anything in remote storage for
    /// `tenant`, sorted.
    pub fn remote_shards(&self, tenant: &str) -> anyhow::Result<Vec<String>> {
        let dir = self.remote_dir().join("tenants");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with(tenant) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Sets the delete and download knobs (`PUT /debug/sim/behaviour`) on every running
    /// simulator, e.g. `{"delete_delay_ms": 2000, "download_ms_per_layer": 100}`.
    pub async fn set_behaviour(&self, behaviour: &Value) -> anyhow::Result<()> {
        for id in self.live_ids() {
            self.set_behaviour_of(id, behaviour).await?;
        }
        Ok(())
    }

    /// [`Sims::set_behaviour`] on one simulator: the whole set of knobs, unset ones default.
    pub async fn set_behaviour_of(&self, node_id: u64, behaviour: &Value) -> anyhow::Result<()> {
        let url = format!("{}/debug/sim/behaviour", self.url(node_id));
        let r = self.http.put(&url).json(behaviour).send().await?;
        ensure!(
            r.status().is_success(),
            "{url}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }

    pub fn ids(&self) -> Vec<u64> {
        self.sims.iter().map(|s| s.node_id).collect()
    }

    /// Node ids of the simulators whose process runs and is not paused.
    pub fn live_ids(&self) -> Vec<u64> {
        self.sims
            .iter()
            .filter(|s| s.is_running() && !s.state().paused)
            .map(|s| s.node_id)
            .collect()
    }

    pub fn az(&self, node_id: u64) -> &str {
        &self.sim(node_id).az
    }

    pub fn addr(&self, node_id: u64) -> SocketAddr {
        self.sim(node_id).addr
    }

    pub fn url(&self, node_id: u64) -> String {
        format!("http://{}", self.addr(node_id))
    }

    /// `https://127.0.0.1:<https port>` of simulator `node_id`, if the fleet serves HTTPS.
    pub fn https_url(&self, node_id: u64) -> Option<String> {
        let sim = self.sim(node_id);
        sim.https
            .as_ref()
            .map(|(port, _)| format!("https://{}:{port}", sim.addr.ip()))
    }

    pub fn data_dir(&self, node_id: u64) -> &Path {
        &self.sim(node_id).data_dir
    }

    pub fn is_running(&self, node_id: u64) -> bool {
        self.sim(node_id).is_running()
    }

    /// SIGKILLs simulator `node_id` and reaps it. Its data dir stays.
    pub fn kill(&self, node_id: u64) {
        self.sim(node_id).kill();
    }

    /// Stops simulator `node_id` with SIGSTOP: it keeps its sockets (connections are accepted by
    /// the kernel) but answers nothing until [`Sims::resume`]. Leaves [`Sims::live_ids`].
    pub fn pause(&self, node_id: u64) -> anyhow::Result<()> {
        let sim = self.sim(node_id);
        sim.signal(libc::SIGSTOP)?;
        sim.state().paused = true;
        Ok(())
    }

    /// Continues a simulator stopped by [`Sims::pause`] with SIGCONT.
    pub fn resume(&self, node_id: u64) -> anyhow::Result<()> {
        let sim = self.sim(node_id);
        sim.signal(libc::SIGCONT)?;
        sim.state().paused = false;
        Ok(())
    }

    /// Points later starts of `node_id` at another controller URL.
    pub fn set_controller(&self, node_id: u64, url: &str) {
        *self
            .sim(node_id)
            .controller
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = url.to_owned();
    }

    /// Starts the stopped simulator `node_id` again from its data dir and waits until it has
    /// re-attached and serves.
    pub async fn restart(&self, node_id: u64) -> anyhow::Result<()> {
        self.sim(node_id).spawn(&self.bin, &self.rust_log)?;
        self.wait_serving(node_id).await
    }

    /// Waits until `node_id` answers `GET /v1/utilization` (it listens only after re-attach).
    pub async fn wait_serving(&self, node_id: u64) -> anyhow::Result<()> {
        let sim = self.sim(node_id);
        wait_until(
            &format!("pageserver-sim {node_id} to serve"),
            SERVE_DEADLINE,
            async || {
                if let Some(status) = sim.exited_on_its_own() {
                    bail!("pageserver-sim {node_id} exited: {status}");
                }
                let url = format!("{}/v1/utilization", self.url(node_id));
                let status = self.http.get(&url).send().await?.status();
                ensure!(status.is_success(), "{url}: HTTP {status}");
                Ok(())
            },
        )
        .await
    }

    /// Fails if a simulator exited without the test killing it.
    pub fn check_no_crashes(&self) -> anyhow::Result<()> {
        let crashed: Vec<String> = self
            .sims
            .iter()
            .filter_map(|s| {
                s.exited_on_its_own()
                    .map(|status| format!("pageserver-sim {} exited: {status}", s.node_id))
            })
            .collect();
        ensure!(crashed.is_empty(), "{}", crashed.join("; "));
        Ok(())
    }

    async fn get_json(&self, node_id: u64, path: &str) -> anyhow::Result<(u16, Value)> {
        self.request(node_id, reqwest::Method::GET, path, None)
            .await
    }

    /// One request to the running simulator `node_id` (no controller term header): status and
    /// body (JSON, or the text as a JSON string).
    pub async fn request(
        &self,
        node_id: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.url(node_id));
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// What the running simulator `node_id` holds: shard id -> location.
    pub async fn locations(&self, node_id: u64) -> anyhow::Result<BTreeMap<String, SimLocation>> {
        let (status, body) = self.get_json(node_id, "/v1/location_config").await?;
        ensure!(
            status == 200,
            "sim {node_id} location list: HTTP {status}: {body}"
        );
        let list: LocationList = serde_json::from_value(body.clone())
            .with_context(|| format!("sim {node_id} location list {body}"))?;
        list.tenant_shards
            .into_iter()
            .map(|(id, loc)| {
                let loc =
                    loc.ok_or_else(|| anyhow!("sim {node_id}: {id} listed without config"))?;
                Ok((id, loc))
            })
            .collect()
    }

    /// Locations of every running simulator: shard id -> node -> location.
    pub async fn view(&self) -> anyhow::Result<BTreeMap<String, BTreeMap<u64, SimLocation>>> {
        let ids = self.live_ids();
        let lists = join_all(ids.iter().map(|id| self.locations(*id))).await;
        let mut view: BTreeMap<String, BTreeMap<u64, SimLocation>> = BTreeMap::new();
        for (id, list) in ids.into_iter().zip(lists) {
            for (shard, loc) in list? {
                view.entry(shard).or_default().insert(id, loc);
            }
        }
        Ok(view)
    }

    /// `GET /debug/sim/state` of the running simulator `node_id` (what `locations.json` holds).
    pub async fn state(&self, node_id: u64) -> anyhow::Result<Value> {
        let (status, body) = self.get_json(node_id, "/debug/sim/state").await?;
        ensure!(status == 200, "sim {node_id} state: HTTP {status}: {body}");
        Ok(body)
    }

    /// The history of `node_id` read from its file (also works while it is stopped).
    pub fn history(&self, node_id: u64) -> anyhow::Result<Vec<Event>> {
        history::read(&self.data_dir(node_id).join("history.jsonl"))
    }

    /// Every simulator's history, one after the other (each in its file order).
    pub fn all_history(&self) -> anyhow::Result<Vec<Event>> {
        let mut all = Vec::new();
        for id in self.ids() {
            all.extend(self.history(id)?);
        }
        Ok(all)
    }

    /// `location_config` calls every simulator received so far (accepted or refused).
    pub fn location_config_calls(&self) -> anyhow::Result<usize> {
        Ok(history::count_kind(&self.all_history()?, "location_config"))
    }

    /// Waits until the controller (through `api`) reports every node in `ids` as `Active`.
    pub async fn wait_active(
        &self,
        api: &StorageApi,
        ids: &[u64],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        wait_until("the simulators to be Active", timeout, async || {
            let nodes = api.nodes().await?;
            let not_active: Vec<String> = ids
                .iter()
                .map(|id| {
                    let availability = nodes
                        .iter()
                        .find(|n| n.id == *id)
                        .map_or("unregistered", |n| n.availability.as_str());
                    (id, availability)
                })
                .filter(|(_, a)| *a != "Active")
                .map(|(id, a)| format!("{id}: {a}"))
                .collect();
            ensure!(not_active.is_empty(), "not active: {not_active:?}");
            Ok(())
        })
        .await
    }

    /// Prints the last lines of every simulator's log.
    pub fn print_log_tails(&self) {
        for sim in &self.sims {
            eprintln!(
                "---- last 40 lines of {} ----\n{}",
                sim.log_path.display(),
                sim.log_tail(40)
            );
        }
    }
}

impl Drop for Sims {
    fn drop(&mut self) {
        for sim in &self.sims {
            sim.kill();
        }
        let keep = std::env::var(KEEP_ENV).ok();
        let panicking = std::thread::panicking();
        if panicking {
            self.print_log_tails();
        }
        if ((panicking && keep.is_some()) || keep.as_deref() == Some("always"))
            && let Some(dir) = self.dir.take()
        {
            eprintln!("cluster-tests: kept {}", dir.keep().display());
        }
    }
}
