//! A cluster of `storcon run` processes on 127.0.0.1, owned by one test.
//!
//! Layout of the temporary directory: `node-<id>.toml` (config), `data-<id>/` (data dir, created by
//! storcon), `node-<id>.log` (stdout and stderr of every start of that replica).
//!
//! Dropping a [`Cluster`] SIGKILLs and reaps every replica, on every exit path including panics; a
//! panicking test also gets the tail of each replica's log printed. Set `CLUSTER_TESTS_KEEP=1` to
//! keep the directory of a failed test for inspection, `CLUSTER_TESTS_KEEP=always` to keep it
//! after every test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::future::join_all;

use crate::api::{ClusterStatus, NodeRegisterRequest};
use crate::binary::storcon_binary;
use crate::client::{Client, ClientError, RawResponse};
use crate::config::{
    AuthOptions, ClusterOptions, ControllerOptions, TlsOptions, free_ports,
    render_config_with_auth, render_tls_section,
};
use crate::process::Replica;
use crate::wait::{POLL_INTERVAL, deadline, wait_until};

/// Environment variable: keep the temporary directory of a failed test (any value) or of every
/// test (`always`).
pub const KEEP_ENV: &str = "CLUSTER_TESTS_KEEP";

/// Per-request timeout of the cluster's clients.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    rust_log: String,
    replicas: Vec<Replica>,
    http: reqwest::Client,
    /// `http` or `https` (with [`ClusterOptions::tls`]).
    scheme: &'static str,
    /// What every replica's config was rendered from, for replicas added later.
    raft: crate::config::RaftOptions,
    controller: Option<ControllerOptions>,
    auth: Option<AuthOptions>,
}

/// How a write that needed retries went.
#[derive(Clone, Debug, Default)]
pub struct WriteOutcome {
    /// Requests sent, including the successful one.
    pub attempts: u32,
    /// The failures retried, in order (status or transport error, shortened).
    pub retried: Vec<String>,
}

impl Cluster {
    /// Writes a config per replica and starts them all. Returns as soon as the processes are
    /// spawned; use [`Cluster::wait_for_leader`] or [`Cluster::wait_converged`] to wait for service.
    pub fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        Cluster::start_with_controller(opts, None)
    }

    /// [`Cluster::start`] with a `[controller]` section in every replica's config.
    pub fn start_with_controller(
        opts: ClusterOptions,
        controller: Option<ControllerOptions>,
    ) -> anyhow::Result<Cluster> {
        Cluster::start_with_auth(opts, controller, None)
    }

    /// [`Cluster::start_with_controller`] with an `[auth]` section in every replica's config; the
    /// cluster's clients then send `auth.client_token`.
    pub fn start_with_auth(
        opts: ClusterOptions,
        controller: Option<ControllerOptions>,
        auth: Option<AuthOptions>,
    ) -> anyhow::Result<Cluster> {
        let cluster = Cluster::configure(opts, controller, auth)?;
        // `cluster` already owns the replicas, so a failed spawn kills the ones started before it.
        for replica in &cluster.replicas {
            replica.spawn(&cluster.bin, &cluster.rust_log)?;
        }
        Ok(cluster)
    }

    /// Writes every replica's config and starts none: a test prepares data dirs first (a
    /// restore seeds one) and starts replicas with [`Cluster::restart`].
    pub fn configure(
        opts: ClusterOptions,
        controller: Option<ControllerOptions>,
        auth: Option<AuthOptions>,
    ) -> anyhow::Result<Cluster> {
        let bin = storcon_binary();
        let dir = tempfile::Builder::new()
            .prefix("storcon-cluster-")
            .tempdir()
            .context("creating the cluster directory")?;
        let ports = free_ports(usize::try_from(opts.replicas).expect("small replica count"));
        let members: Vec<(u64, SocketAddr)> = (1..=opts.replicas)
            .zip(ports)
            .map(|(id, port)| (id, SocketAddr::from(([127, 0, 0, 1], port))))
            .collect();
        let mut replicas = Vec::new();
        for (id, addr) in &members {
            let replica = Replica::new(*id, *addr, dir.path());
            let mut config = render_config_with_auth(
                *id,
                &members,
                &replica.data_dir,
                &opts.raft,
                controller.as_ref(),
                auth.as_ref(),
            );
            if let Some(tls) = &opts.tls {
                config.push_str(&render_tls_section(*id, tls));
            }
            std::fs::write(&replica.config_path, config)
                .with_context(|| format!("writing {}", replica.config_path.display()))?;
            replicas.push(replica);
        }
        Ok(Cluster {
            dir: Some(dir),
            bin,
            rust_log: opts.rust_log,
            replicas,
            http: cluster_client(
                auth.as_ref().map(|a| a.client_token.as_str()),
                opts.tls.as_ref(),
            )?,
            scheme: if opts.tls.is_some() { "https" } else { "http" },
            raft: opts.raft.clone(),
            controller,
            auth,
        })
    }

    /// [`Cluster::start`], then waits until a leader is elected and every replica has applied the
    /// same index. Returns the cluster and its leader. On failure the replicas' log tails are
    /// printed before the cluster is dropped.
    pub async fn start_formed(opts: ClusterOptions) -> anyhow::Result<(Cluster, u64)> {
        Cluster::start_formed_with_controller(opts, None).await
    }

    /// [`Cluster::start_formed`] with a `[controller]` section in every replica's config.
    pub async fn start_formed_with_controller(
        opts: ClusterOptions,
        controller: Option<ControllerOptions>,
    ) -> anyhow::Result<(Cluster, u64)> {
        Cluster::start_formed_with_auth(opts, controller, None).await
    }

    /// [`Cluster::start_formed_with_controller`] with an `[auth]` section (see
    /// [`Cluster::start_with_auth`]).
    pub async fn start_formed_with_auth(
        opts: ClusterOptions,
        controller: Option<ControllerOptions>,
        auth: Option<AuthOptions>,
    ) -> anyhow::Result<(Cluster, u64)> {
        let cluster = Cluster::start_with_auth(opts, controller, auth)?;
        let formed = async {
            let leader = cluster.wait_for_leader(deadline::STARTUP).await?;
            cluster.wait_converged(deadline::STARTUP).await?;
            anyhow::Ok(leader)
        }
        .await;
        match formed {
            Ok(leader) => Ok((cluster, leader)),
            Err(e) => {
                cluster.print_log_tails();
                Err(e.context("forming the cluster"))
            }
        }
    }

    /// Starts a new replica `id` in join mode (`[cluster] join = true`) with an empty data dir; its
    /// config lists every replica of this cluster and itself. It waits to be added with
    /// `POST /control/v1/members`. Returns its address.
    pub fn start_joining(&mut self, id: u64) -> anyhow::Result<SocketAddr> {
        let peers = self.ids();
        self.start_joining_peers(id, &peers)
    }

    /// [`Cluster::start_joining`] with only `peers` (and itself) in its config: join mode waits
    /// for a majority of the listed peers, so after a restore or a recovery (a one-member
    /// cluster) the operator lists the members there are, not the replicas there were.
    pub fn start_joining_peers(&mut self, id: u64, peers: &[u64]) -> anyhow::Result<SocketAddr> {
        if self.replicas.iter().any(|r| r.id == id) {
            bail!("replica {id} exists already");
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], crate::config::free_port()));
        let mut members: Vec<(u64, SocketAddr)> =
            peers.iter().map(|p| (*p, self.replica(*p).addr)).collect();
        members.push((id, addr));
        let replica = Replica::new(id, addr, self.dir());
        let config = render_config_with_auth(
            id,
            &members,
            &replica.data_dir,
            &self.raft,
            self.controller.as_ref(),
            self.auth.as_ref(),
        );
        let config = crate::config::with_join_mode(&config);
        std::fs::write(&replica.config_path, config)
            .with_context(|| format!("writing {}", replica.config_path.display()))?;
        self.replicas.push(replica);
        self.replica(id).spawn(&self.bin, &self.rust_log)?;
        Ok(addr)
    }

    fn replica(&self, id: u64) -> &Replica {
        self.replicas
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no replica {id} in this cluster"))
    }

    /// All replica ids, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.replicas.iter().map(|r| r.id).collect()
    }

    /// The lowest-numbered running replica other than `id`.
    pub fn live_other_than(&self, id: u64) -> u64 {
        self.live_ids()
            .into_iter()
            .find(|other| *other != id)
            .unwrap_or_else(|| panic!("no running replica other than {id}"))
    }

    /// Ids of replicas whose process is running.
    pub fn live_ids(&self) -> Vec<u64> {
        self.replicas
            .iter()
            .filter(|r| r.is_running())
            .map(|r| r.id)
            .collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("directory present until drop")
            .path()
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.replica(id).addr
    }

    /// `http://127.0.0.1:<port>` of replica `id` (`https://` with TLS).
    pub fn url(&self, id: u64) -> String {
        format!("{}://{}", self.scheme, self.addr(id))
    }

    pub fn client(&self, id: u64) -> Client {
        Client::new(self.http.clone(), self.url(id))
    }

    pub fn config_path(&self, id: u64) -> &Path {
        &self.replica(id).config_path
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.replica(id).data_dir
    }

    pub fn log_path(&self, id: u64) -> &Path {
        &self.replica(id).log_path
    }

    /// Output of replica `id` since its latest start.
    pub fn log_since_last_start(&self, id: u64) -> String {
        self.replica(id).log_since_last_start()
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.replica(id).pid()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.replica(id).is_running()
    }

    /// SIGKILLs replica `id` and reaps it.
    pub fn kill(&self, id: u64) {
        self.replica(id).kill();
    }

    /// Stops replica `id` with SIGSTOP (a leader frozen mid-operation, as a long GC pause or a
    /// partition would): it keeps its sockets but answers nothing until [`Cluster::resume`].
    /// Requests to it hang until the client's timeout, so poll the others meanwhile.
    pub fn pause(&self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGSTOP)
    }

    /// Asks replica `id` to stop (SIGTERM), as systemd or docker stop does; the test then waits
    /// for it to exit ([`Cluster::wait_exit`]).
    pub fn terminate(&self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGTERM)
    }

    /// Continues a replica stopped by [`Cluster::pause`].
    pub fn resume(&self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGCONT)
    }

    fn signal(&self, id: u64, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self
            .pid(id)
            .ok_or_else(|| anyhow::anyhow!("replica {id} is not running"))?;
        let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
        // SAFETY: kill(2) with the pid of a child this process has not reaped yet.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("signal {signal} to replica {id}"));
        }
        Ok(())
    }

    /// Starts replica `id` again with the same config and data dir (or for the first time, after
    /// [`Cluster::configure`]).
    pub fn restart(&self, id: u64) -> anyhow::Result<()> {
        self.replica(id).spawn(&self.bin, &self.rust_log)
    }

    /// Empties the data dir of the stopped replica `id`.
    pub fn wipe(&self, id: u64) -> anyhow::Result<()> {
        self.replica(id).wipe()
    }

    /// Waits for replica `id` to exit on its own; the exit then does not count as a crash.
    pub async fn wait_exit(&self, id: u64, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let replica = self.replica(id);
        let status = wait_until(&format!("replica {id} to exit"), timeout, async || {
            replica
                .exited_on_its_own()
                .ok_or_else(|| anyhow!("replica {id} still running"))
        })
        .await?;
        replica.acknowledge_exit();
        Ok(status)
    }

    /// Fails if a replica exited without the test killing it or waiting for its exit.
    pub fn check_no_crashes(&self) -> anyhow::Result<()> {
        let crashed: Vec<String> = self
            .replicas
            .iter()
            .filter_map(|r| {
                r.exited_on_its_own()
                    .map(|s| format!("replica {} exited: {s}", r.id))
            })
            .collect();
        if crashed.is_empty() {
            Ok(())
        } else {
            bail!("{}", crashed.join("; "))
        }
    }

    /// `/control/v1/cluster` of replica `id`.
    pub async fn status_of(&self, id: u64) -> Result<ClusterStatus, ClientError> {
        self.client(id).cluster().await
    }

    /// Cluster status of every live replica, asked concurrently.
    pub async fn live_statuses(&self) -> Vec<(u64, Result<ClusterStatus, ClientError>)> {
        let ids = self.live_ids();
        let statuses = join_all(ids.iter().map(|id| self.status_of(*id))).await;
        ids.into_iter().zip(statuses).collect()
    }

    /// Cluster status of every replica, running or not, in [`Cluster::ids`] order; fails unless
    /// every one answers.
    pub async fn all_statuses(&self) -> anyhow::Result<Vec<ClusterStatus>> {
        let mut all = Vec::new();
        for id in self.ids() {
            all.push(
                self.status_of(id)
                    .await
                    .with_context(|| format!("status of replica {id}"))?,
            );
        }
        Ok(all)
    }

    /// One request to replica `via`, with `body` sent as `application/json` and the extra
    /// `headers`. Panics only when there is no answer; any status is returned.
    pub async fn request(
        &self,
        via: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> RawResponse {
        self.client(via)
            .raw(
                method.clone(),
                path,
                body.map(|b| ("application/json", b)),
                headers,
            )
            .await
            .unwrap_or_else(|e| panic!("{method} {path} via {via}: no answer: {e}"))
    }

    /// The live replica that reports itself as leader (the highest term wins if, briefly, two do).
    pub async fn leader_id(&self) -> Option<u64> {
        self.live_statuses()
            .await
            .into_iter()
            .filter_map(|(id, status)| status.ok().filter(|s| s.leader_id == Some(id)))
            .max_by_key(|s| s.term)
            .map(|s| s.node_id)
    }

    /// Waits until a live replica reports itself as leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        self.wait_for_leader_where("a leader", timeout, |_| true)
            .await
    }

    /// Waits until a live replica other than `old` reports itself as leader.
    pub async fn wait_for_new_leader(&self, old: u64, timeout: Duration) -> anyhow::Result<u64> {
        self.wait_for_leader_where(&format!("a leader other than {old}"), timeout, |l| l != old)
            .await
    }

    async fn wait_for_leader_where(
        &self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(u64) -> bool,
    ) -> anyhow::Result<u64> {
        wait_until(what, timeout, async || {
            let statuses = self.live_statuses().await;
            let leader = statuses
                .iter()
                .filter_map(|(id, s)| s.as_ref().ok().filter(|s| s.leader_id == Some(*id)))
                .max_by_key(|s| s.term)
                .map(|s| s.node_id);
            match leader {
                Some(l) if accept(l) => Ok(l),
                _ => Err(anyhow!("no acceptable leader: {}", describe(&statuses))),
            }
        })
        .await
    }

    /// Waits until every live replica answers, names the same live leader and reports the same
    /// `last_applied`. Returns that index.
    pub async fn wait_converged(&self, timeout: Duration) -> anyhow::Result<u64> {
        wait_until(
            "every live replica to apply the same log index",
            timeout,
            async || {
                let statuses = self.live_statuses().await;
                let ok: Vec<&ClusterStatus> = statuses
                    .iter()
                    .filter_map(|(_, s)| s.as_ref().ok())
                    .collect();
                let converged = ok.len() == statuses.len()
                    && !ok.is_empty()
                    && ok
                        .iter()
                        .all(|s| s.leader_id.is_some() && s.leader_id == ok[0].leader_id)
                    && ok[0]
                        .leader_id
                        .is_some_and(|l| statuses.iter().any(|(id, _)| *id == l))
                    && ok
                        .iter()
                        .all(|s| s.last_applied.is_some() && s.last_applied == ok[0].last_applied);
                match (converged, ok.first().and_then(|s| s.last_applied)) {
                    (true, Some(applied)) => Ok(applied),
                    _ => Err(anyhow!("not converged: {}", describe(&statuses))),
                }
            },
        )
        .await
    }

    /// Waits until every live replica answers `/ready` with 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_until("every live replica to be ready", timeout, async || {
            let ids = self.live_ids();
            let probes = join_all(
                ids.iter()
                    .map(|id| async move { (*id, self.client(*id).probe("/ready").await) }),
            )
            .await;
            let not_ready: Vec<String> = probes
                .iter()
                .filter(|(_, p)| !matches!(p, Ok(200)))
                .map(|(id, p)| match p {
                    Ok(code) => format!("{id}: HTTP {code}"),
                    Err(e) => format!("{id}: {e}"),
                })
                .collect();
            anyhow::ensure!(not_ready.is_empty(), "not ready: {}", not_ready.join(", "));
            Ok(())
        })
        .await
    }

    /// Registers `req` through replica `via`, retrying every `interval` on retryable failures
    /// (no response, 5xx) until `timeout`. Registration is idempotent, so a retry of a write that
    /// did commit still succeeds. A non-retryable failure (4xx, bad body) is returned at once.
    pub async fn register_with_retry(
        &self,
        via: u64,
        req: &NodeRegisterRequest,
        timeout: Duration,
        interval: Duration,
    ) -> anyhow::Result<WriteOutcome> {
        let client = self.client(via);
        let start = Instant::now();
        let mut outcome = WriteOutcome::default();
        loop {
            outcome.attempts += 1;
            match client.register_node(req).await {
                Ok(()) => return Ok(outcome),
                Err(e) if e.is_retryable() && start.elapsed() < timeout => {
                    outcome.retried.push(short_error(&e));
                }
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!(
                            "registering node {} via replica {via} ({} attempts in {:.1?}, retried: {:?})",
                            req.node_id,
                            outcome.attempts,
                            start.elapsed(),
                            outcome.retried
                        )
                    });
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// [`Cluster::register_with_retry`] with the test defaults.
    pub async fn register(
        &self,
        via: u64,
        req: &NodeRegisterRequest,
    ) -> anyhow::Result<WriteOutcome> {
        self.register_with_retry(via, req, deadline::WRITE, POLL_INTERVAL)
            .await
    }
}

/// The cluster's client, as [`crate::client::http_client`]: with `token`, it sends `Authorization: Bearer
/// <token>` unless a request sets its own; with `tls`, it trusts only the test CA and presents
/// the test client certificate if there is one.
fn cluster_client(
    token: Option<&str>,
    tls: Option<&TlsOptions>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(REQUEST_TIMEOUT);
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the client token is not a valid header value")?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    if let Some(tls) = tls {
        builder = crate::certs::trusting(builder, &tls.ca_file, tls.client_identity.as_ref())?;
    }
    builder
        .build()
        .context("building the cluster's HTTP client")
}

/// One line per replica status, for error messages.
fn describe(statuses: &[(u64, Result<ClusterStatus, ClientError>)]) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|(id, s)| match s {
            Ok(s) => format!(
                "[{id}: leader={:?} term={} applied={:?}]",
                s.leader_id, s.term, s.last_applied
            ),
            Err(e) => format!("[{id}: {}]", short_error(e)),
        })
        .collect();
    if parts.is_empty() {
        "no live replicas".to_owned()
    } else {
        parts.join(" ")
    }
}

/// A status code or a one-line transport error.
pub fn short_error(e: &ClientError) -> String {
    match e.status() {
        Some(code) => match e.msg() {
            Some(msg) => format!("HTTP {code}: {msg}"),
            None => format!("HTTP {code}"),
        },
        None => {
            let text = e.to_string();
            text.chars().take(160).collect()
        }
    }
}

impl Cluster {
    /// Prints the last lines (`CLUSTER_TESTS_LOG_LINES`, default 60) of every replica's log.
    pub fn print_log_tails(&self) {
        let lines = std::env::var("CLUSTER_TESTS_LOG_LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        for replica in &self.replicas {
            eprintln!(
                "---- last {lines} lines of {} ----\n{}",
                replica.log_path.display(),
                replica.log_tail(lines)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in &self.replicas {
            replica.kill();
        }
        let keep = std::env::var(KEEP_ENV).ok();
        if !std::thread::panicking() {
            if keep.as_deref() == Some("always")
                && let Some(dir) = self.dir.take()
            {
                eprintln!("cluster-tests: kept {}", dir.keep().display());
            }
            return;
        }
        self.print_log_tails();
        if keep.is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster-tests: kept {}", dir.keep().display());
            }
        } else {
            eprintln!(
                "cluster-tests: set {KEEP_ENV}=1 to keep the cluster directory (configs, data, logs)"
            );
        }
    }
}
