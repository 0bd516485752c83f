//! The leader-only controller: node availability, observed locations, scheduling and
//! reconciling. One instance lives per leadership term; it is built after the leader's own
//! entry of the term has applied and is cancelled as soon as leadership is lost.
//!
//! Modules: `nodes` (availability rules), `observed` (what pageservers hold), `heartbeat`
//! (utilization polls and transitions), `reconcile` (one shard's steps and the worker pool),
//! `pageserver` (the outbound client), `split` (the split driver), `compute_hook`, and
//! `operations` (the operations API the HTTP layer calls, one workflow per file).

mod autosplit;
mod chaos;
mod compute_hook;
mod heartbeat;
mod live_migration;
mod locks;
mod nodes;
mod observed;
pub mod operations;
mod pageserver;
mod reconcile;
mod schedule_rounds;
mod split;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use raft_store::{ProposeError, Raft, SharedState};
use state_machine::ids::{TenantId, TenantShardId};
use state_machine::scheduler::Scheduler;
use state_machine::{Command, NodeId, Response, Term};
use tokio_util::sync::CancellationToken;

pub use autosplit::AutoSplit;

use crate::config::ControllerConfig;
use nodes::{NodeState, NodeTable};
use observed::Observed;
use pageserver::PageserverClient;

/// How long the controller's own proposals (intents, generations, splits) may take to commit.
const PROPOSE_WAIT: Duration = Duration::from_secs(10);

/// One term's controller, made of owned parts, each with its invariant stated where it is
/// defined: the node table (`nodes::NodeTable`), the observed locations (`observed::Observed`),
/// the reconcile queue (`reconcile::Queue`) and the tenant locks (`locks::TenantLocks`).
pub struct Controller {
    raft: Raft,
    proposer: raft_store::client::Proposer,
    state: SharedState,
    term: Term,
    cfg: ControllerConfig,
    cancel: CancellationToken,
    ps: PageserverClient,
    observed: Mutex<Observed>,
    nodes: NodeTable,
    reconciles: reconcile::Queue,
    hook: compute_hook::ComputeHook,
    locks: locks::TenantLocks,
    schedule_rounds: schedule_rounds::Rounds,
    /// Set once the startup reconcile has run; handlers get 503 until then.
    started: AtomicBool,
    /// A background retry of pending compute notifications is running.
    hook_retry_running: AtomicBool,
    audit: raft_store::StateAudit,
    failpoints: Arc<storcon_failpoints::Failpoints>,
    /// The warm-up task of each migration this leader runs (children of `cancel`).
    warm_ups: Mutex<BTreeMap<TenantShardId, (u64, CancellationToken)>>,
    /// The node operation task runs (one at a time).
    node_operation_running: AtomicBool,
    /// An auto-split pass runs (one at a time).
    autosplit_running: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Outcome of one scheduling pass: committed intent changes, and shards that could not be
/// placed (they keep their previous intent).
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub changed: Vec<TenantShardId>,
    pub unschedulable: Vec<(TenantShardId, state_machine::scheduler::ScheduleError)>,
}

/// What every term's controller gets from the replica it runs on.
#[derive(Clone)]
pub struct Replica {
    pub raft: Raft,
    /// Every write of this replica goes through it (group commit).
    pub proposer: raft_store::client::Proposer,
    pub state: SharedState,
    pub audit: raft_store::StateAudit,
    pub cfg: ControllerConfig,
    /// Client for pageservers (HTTPS-capable, with `pageserver_ca_file` if set).
    pub http: reqwest::Client,
    /// Client for the compute hook (with `compute_hook_ca_file` if set).
    pub hook_http: reqwest::Client,
    /// Bearer token on every call to a pageserver (`[auth] pageserver_token_file`).
    pub pageserver_token: Option<String>,
    /// Test-only fault injection, shared with the HTTP layer that configures it.
    pub failpoints: Arc<storcon_failpoints::Failpoints>,
}

impl Controller {
    pub fn new(replica: Replica, term: Term, cancel: CancellationToken) -> Arc<Controller> {
        let Replica {
            raft,
            proposer,
            state,
            audit,
            cfg,
            http,
            hook_http,
            pageserver_token,
            failpoints,
        } = replica;
        let hook = compute_hook::ComputeHook::new(
            cfg.compute_hook_url.clone(),
            cfg.compute_hook_token
                .as_ref()
                .map(|t| t.token().to_owned()),
            hook_http,
            cancel.clone(),
        );
        Arc::new(Controller {
            hook,
            hook_retry_running: AtomicBool::new(false),
            started: AtomicBool::new(false),
            audit,
            failpoints,
            locks: locks::TenantLocks::default(),
            schedule_rounds: schedule_rounds::Rounds::default(),
            ps: PageserverClient::new(
                http,
                cfg.use_https_pageserver_api,
                term,
                pageserver_token,
                cancel.clone(),
            ),
            raft,
            proposer,
            state,
            term,
            cfg,
            cancel,
            observed: Mutex::new(Observed::default()),
            nodes: NodeTable::default(),
            reconciles: reconcile::Queue::new(),
            warm_ups: Mutex::new(BTreeMap::new()),
            node_operation_running: AtomicBool::new(false),
            autosplit_running: AtomicBool::new(false),
        })
    }

    /// Runs until cancelled: startup reconcile, then the heartbeat and background loops.
    pub async fn run(self: Arc<Self>) {
        let started = Instant::now();
        {
            let now = Instant::now();
            let ids: Vec<NodeId> = self.state.read().nodes().map(|n| n.id).collect();
            let mut nodes = self.nodes.states();
            for id in ids {
                nodes.insert(id, NodeState::new(now));
            }
        }
        if let Some(rx) = self.reconciles.take_receiver() {
            tokio::spawn(reconcile::dispatch(self.clone(), rx));
        }
        // Splits the previous leader left unfinished are rolled back before anything is listed.
        self.abort_recorded_splits().await;
        // Startup: one heartbeat round lists every responding node's locations (activation),
        // which is the observed-state scan; then schedule and reconcile what differs.
        self.heartbeat_round().await;
        if let Err(e) = self.schedule_all().await {
            tracing::warn!(error = %e, "startup scheduling failed");
        }
        let queued = self.reconcile_all_dirty();
        // Migrations the previous leader was warming up: carried on from their records.
        self.resume_migrations();
        self.resume_node_operation();
        // The previous leader may have changed attachments (a split it committed, say) without
        // telling compute: tell it where every tenant is, as upstream does at startup. Sends
        // wait until a tenant's shards are observed attached; the background pass retries.
        let tenants: BTreeSet<TenantId> =
            self.state.read().shards().map(|s| s.id.tenant_id).collect();
        for tenant in tenants {
            self.hook.mark_pending(tenant);
        }
        self.spawn_compute_retry();
        self.started.store(true, Ordering::SeqCst);
        storcon_http::metrics::startup_reconcile(started.elapsed());
        tracing::info!(
            queued,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "startup reconcile done"
        );
        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat_interval());
        let mut background = tokio::time::interval(self.cfg.background_reconcile_interval());
        // A slow round delays the next one instead of firing a burst to catch up.
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        background.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        background.tick().await;
        let mut chaos = self.cfg.chaos_interval_ms.map(|ms| {
            let mut i = tokio::time::interval(Duration::from_millis(ms.max(1)));
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut chaos_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = heartbeat.tick() => self.heartbeat_round().await,
                _ = async {
                    match chaos.as_mut() {
                        Some(i) => i.tick().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // splitmix64: the injector's randomness stays out of the state machine.
                    chaos_seed = chaos_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = chaos_seed;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    self.chaos_move(z ^ (z >> 31)).await;
                }
                _ = background.tick() => {
                    let pass = Instant::now();
                    let (pending, stuck) = self.reconciles.counts();
                    storcon_http::metrics::set_reconcile_queue(pending, stuck);
                    if let Err(e) = self.schedule_all().await {
                        tracing::warn!(error = %e, "background scheduling failed");
                    }
                    if self.reconcile_all_dirty() == 0
                        && let Err(e) = self.optimise().await
                    {
                        tracing::warn!(error = %e, "optimiser pass failed");
                    }
                    self.spawn_autosplit();
                    self.spawn_compute_retry();
                    storcon_http::metrics::background_pass(pass.elapsed());
                }
            }
        }
        // The queue's gauges describe a leader's work: this replica has none now.
        storcon_http::metrics::set_reconcile_queue(0, 0);
        tracing::info!(term = %self.term, "controller stopped");
    }

    /// Retries pending compute notifications in a task of its own (one at a time): a control
    /// plane that keeps failing must not hold up heartbeats (a retry sequence takes seconds).
    fn spawn_compute_retry(self: &Arc<Self>) {
        if !self.hook_retry_running.swap(true, Ordering::SeqCst) {
            let ctl = self.clone();
            tokio::spawn(async move {
                ctl.retry_compute_notifications().await;
                ctl.hook_retry_running.store(false, Ordering::SeqCst);
            });
        }
    }

    /// The current life of `node`: cancelled when it goes Offline or re-attaches. A result
    /// obtained under a token that has since been cancelled describes a previous life.
    fn node_token(&self, node: NodeId) -> CancellationToken {
        self.nodes.life(node, &self.cancel)
    }

    /// The pageserver client for calls to `node`, cancelled when the node is lost.
    fn ps_for(&self, node: NodeId) -> PageserverClient {
        self.ps.with_cancel(self.node_token(node))
    }

    /// Abandons every call in flight to `node`.
    fn cancel_node_calls(&self, node: NodeId) {
        self.nodes.end_life(node);
    }

    async fn propose(&self, command: Command) -> Result<Response, ProposeError> {
        self.propose_within(command, PROPOSE_WAIT).await
    }

    /// Every proposal of this controller: fenced by its term, checked and bounded by
    /// [`raft_store::client::propose`].
    async fn propose_within(
        &self,
        command: Command,
        within: Duration,
    ) -> Result<Response, ProposeError> {
        // A controller of a past term must not write, even if its replica leads again later.
        if self.cancel.is_cancelled() {
            return Err(ProposeError::TermEnded);
        }
        raft_store::client::propose(&self.proposer, command, within).await
    }

    /// Schedules the given tenants and commits the changed intents, in one pass with every
    /// other caller waiting at the same time (`schedule_rounds.rs`). Returns the shards of
    /// `tenants` whose intent changed.
    async fn schedule(&self, tenants: &BTreeSet<TenantId>) -> Result<Scheduled, ProposeError> {
        let joined = self.schedule_rounds.join(tenants);
        let _one_at_a_time = self.locks.schedule().await;
        let all = match self.schedule_rounds.turn(&joined) {
            schedule_rounds::Turn::Served(result) => result,
            schedule_rounds::Turn::Pass { round, tenants } => {
                let result = self.schedule_pass(&tenants).await;
                self.schedule_rounds.finish(round, &result);
                result
            }
        };
        schedule_rounds::part_of(all, tenants)
    }

    /// One scheduling pass over `tenants`; the caller holds the scheduling lock.
    async fn schedule_pass(&self, tenants: &BTreeSet<TenantId>) -> Result<Scheduled, ProposeError> {
        let (intents, unschedulable) = {
            let state = self.state.read();
            let views = nodes::views(&state, &self.nodes.states());
            let mut scheduler = Scheduler::new(&state, views);
            let mut intents = Vec::new();
            let mut unschedulable = Vec::new();
            for t in tenants {
                let (c, errors) = scheduler.schedule_tenant(state.tenant_shards(*t));
                for (shard, e) in errors {
                    tracing::warn!(%shard, error = %e, "cannot schedule shard");
                    self.reconciles
                        .record_error(shard, format!("Scheduling error: {e}"));
                    unschedulable.push((shard, e));
                }
                intents.extend(c);
            }
            (intents, unschedulable)
        };
        let changed = intents.iter().map(|(id, _)| *id).collect();
        // In bounded commands, so a pass over many shards never makes an entry too large to
        // replicate. Each intent stands alone: a pass cut short is completed by the next one.
        for chunk in intents.chunks(state_machine::limits::MAX_INTENTS_PER_COMMAND) {
            self.propose(Command::SetIntents(chunk.to_vec())).await?;
        }
        Ok(Scheduled {
            changed,
            unschedulable,
        })
    }

    async fn schedule_all(&self) -> Result<(), ProposeError> {
        let tenants: BTreeSet<TenantId> =
            self.state.read().shards().map(|s| s.id.tenant_id).collect();
        for id in self.schedule(&tenants).await?.changed {
            self.reconciles.push(id);
        }
        Ok(())
    }

    /// Sends the current attachments of `tenant` to the control plane if they changed. Only
    /// once every shard is observed attached where its intent says, so compute is never sent
    /// to a pageserver that does not hold the shard yet.
    async fn notify_compute(&self, tenant: TenantId) {
        let body = {
            let state = self.state.read();
            let observed = lock(&self.observed);
            let all_attached = state.tenant_shards(tenant).all(|s| {
                s.intent.attached.is_some_and(|a| {
                    observed
                        .locations(&s.id)
                        .get(a)
                        .known()
                        .is_some_and(|c| c.mode.is_attached() && c.generation == s.generation)
                })
            });
            if all_attached {
                compute_hook::body_for(&state, tenant)
            } else {
                None
            }
        };
        if let Some(body) = body
            && let Err(e) = self.hook.notify(body).await
        {
            tracing::warn!(%tenant, error = %e, "compute notification failed; will retry");
        }
    }

    async fn retry_compute_notifications(&self) {
        for tenant in self.hook.pending_tenants() {
            if self.cancel.is_cancelled() {
                return;
            }
            self.notify_compute(tenant).await;
        }
    }

    /// Queues every shard that needs work, including observed locations of deleted shards.
    fn reconcile_all_dirty(&self) -> usize {
        let mut ids: BTreeSet<TenantShardId> = self.state.read().shards().map(|s| s.id).collect();
        ids.extend(lock(&self.observed).shard_ids());
        self.reconcile_if_dirty(ids)
    }
}
