//! The replica's metrics: the one registry, every metric in it, and `GET /metrics`.
//!
//! Names: upstream's `storage_controller_*` names and labels wherever upstream has the metric
//! (but `reconcile_long_running` without upstream's per-shard labels, to keep it one series),
//! storcon's own as `storcon_raft_*` (the Raft store registers its part, see
//! `raft_store::metrics`). Counters are exposed with the `_total` suffix and histograms as
//! `_bucket`/`_sum`/`_count`, in OpenMetrics text.
//!
//! Three kinds of value, and who sets them:
//! - counters and histograms recorded where the event happens (HTTP requests by the
//!   [`track_requests`] layer, pageserver calls and reconciles by the controller, through the
//!   small functions below, so an instrumentation point stays one line);
//! - gauges of the replicated state and of Raft, set from the replica's own view at scrape time
//!   (`refresh`), so every replica answers for itself and nothing can drift;
//! - gauges of the leader's soft state (pending and stuck reconciles), set by the leader's
//!   background pass and zeroed when leadership ends.
//!
//! Labels are bounded: HTTP paths are route templates (axum's `MatchedPath`), pageserver paths
//! are templated by [`path_template`], node ids and AZs come from registered nodes.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use raft_store::Raft;
use state_machine::scheduler::{NodeView, Scheduler};

use crate::app::AppState;
use crate::error::ApiError;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub path: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpStatusLabels {
    pub path: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageserverLabels {
    pub pageserver_id: String,
    pub path: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub az: String,
    pub node_id: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_latency() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn latency_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(request_latency)
}

pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: a scrape clears and refills the per-node gauges before encoding.
    scrape: std::sync::Mutex<()>,
    http_request_status: Family<HttpStatusLabels, Counter>,
    http_request_latency: HistogramFamily<HttpLabels>,
    pageserver_request_error: Family<PageserverLabels, Counter>,
    pageserver_request_latency: HistogramFamily<PageserverLabels>,
    passthrough_request_error: Family<PageserverLabels, Counter>,
    passthrough_request_latency: HistogramFamily<PageserverLabels>,
    reconcile_spawn: Counter,
    reconcile_complete: Family<StatusLabel, Counter>,
    reconcile_long_running: Counter,
    pending_reconciles: Gauge,
    stuck_reconciles: Gauge,
    background_pass: Histogram,
    startup_reconcile: Gauge<f64, std::sync::atomic::AtomicU64>,
    schedule_optimization: Counter,
    schedule_az_violation: Gauge,
    tenant_shards: Gauge,
    pageserver_nodes: Gauge,
    https_pageserver_nodes: Gauge,
    node_shards: Family<NodeLabels, Gauge>,
    node_attached_shards: Family<NodeLabels, Gauge>,
    node_home_shards: Family<NodeLabels, Gauge>,
    leadership_status: Family<StatusLabel, Gauge>,
    raft_term: Gauge,
    raft_last_log_index: Gauge,
    raft_applied_index: Gauge,
    raft_apply_lag: Gauge,
    raft_snapshot_index: Gauge,
    raft_leader_id: Gauge,
    raft_is_leader: Gauge,
    raft_leader_changes: Counter,
}

/// Reconcile outcomes, upstream's label values.
#[derive(Clone, Copy, Debug)]
pub enum ReconcileOutcome {
    Ok,
    Error,
    Cancel,
}

impl ReconcileOutcome {
    const ALL: [ReconcileOutcome; 3] = [Self::Ok, Self::Error, Self::Cancel];

    fn label(self) -> StatusLabel {
        let status = match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Cancel => "cancel",
        };
        StatusLabel {
            status: status.into(),
        }
    }
}

const LEADERSHIP: [&str; 3] = ["leader", "stepped_down", "candidate"];

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            scrape: std::sync::Mutex::new(()),
            http_request_status: Family::default(),
            http_request_latency: latency_family(),
            pageserver_request_error: Family::default(),
            pageserver_request_latency: latency_family(),
            passthrough_request_error: Family::default(),
            passthrough_request_latency: latency_family(),
            reconcile_spawn: Counter::default(),
            reconcile_complete: Family::default(),
            reconcile_long_running: Counter::default(),
            pending_reconciles: Gauge::default(),
            stuck_reconciles: Gauge::default(),
            background_pass: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            startup_reconcile: Gauge::default(),
            schedule_optimization: Counter::default(),
            schedule_az_violation: Gauge::default(),
            tenant_shards: Gauge::default(),
            pageserver_nodes: Gauge::default(),
            https_pageserver_nodes: Gauge::default(),
            node_shards: Family::default(),
            node_attached_shards: Family::default(),
            node_home_shards: Family::default(),
            leadership_status: Family::default(),
            raft_term: Gauge::default(),
            raft_last_log_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_apply_lag: Gauge::default(),
            raft_snapshot_index: Gauge::default(),
            raft_leader_id: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_leader_changes: Counter::default(),
        };
        // Every outcome and status from the start, so a rate over them never begins mid-way.
        for outcome in ReconcileOutcome::ALL {
            m.reconcile_complete
                .get_or_create(&outcome.label())
                .inc_by(0);
        }
        for status in LEADERSHIP {
            m.leadership_status
                .get_or_create(&StatusLabel {
                    status: status.into(),
                })
                .set(0);
        }
        m.registered()
    }

    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "storage_controller_http_request_status",
            "HTTP requests handled, by route template, method and status",
            self.http_request_status.clone(),
        );
        r.register(
            "storage_controller_http_request_latency",
            "HTTP request handling time in seconds, by route template and method",
            self.http_request_latency.clone(),
        );
        r.register(
            "storage_controller_pageserver_request_error",
            "Calls to pageservers that failed (transport error or non-2xx)",
            self.pageserver_request_error.clone(),
        );
        r.register(
            "storage_controller_pageserver_request_latency",
            "Time of calls to pageservers in seconds, retries included",
            self.pageserver_request_latency.clone(),
        );
        r.register(
            "storage_controller_passthrough_request_error",
            "Passthrough GETs relayed to pageservers that failed",
            self.passthrough_request_error.clone(),
        );
        r.register(
            "storage_controller_passthrough_request_latency",
            "Time of passthrough GETs relayed to pageservers in seconds",
            self.passthrough_request_latency.clone(),
        );
        r.register(
            "storage_controller_reconcile_spawn",
            "Reconcile passes started by this replica's leader services",
            self.reconcile_spawn.clone(),
        );
        r.register(
            "storage_controller_reconcile_complete",
            "Reconcile passes finished, by outcome (ok, error, cancel)",
            self.reconcile_complete.clone(),
        );
        r.register(
            "storage_controller_reconcile_long_running",
            "Reconcile passes that ran longer than the long-reconcile threshold",
            self.reconcile_long_running.clone(),
        );
        r.register(
            "storcon_background_pass_seconds",
            "Time of one background pass on the leader (scheduling, dirty-shard scan, optimiser)",
            self.background_pass.clone(),
        );
        r.register(
            "storcon_startup_reconcile_seconds",
            "Time this replica's last leadership took from its start to serving (abort of recorded \
             splits, the observed-state scan, scheduling, reconciles queued)",
            self.startup_reconcile.clone(),
        );
        r.register(
            "storage_controller_pending_reconciles",
            "Shards with a reconcile requested or running (leader only)",
            self.pending_reconciles.clone(),
        );
        r.register(
            "storage_controller_stuck_reconciles",
            "Shards whose last reconcile pass failed (leader only)",
            self.stuck_reconciles.clone(),
        );
        r.register(
            "storage_controller_schedule_optimization",
            "Optimiser moves begun",
            self.schedule_optimization.clone(),
        );
        r.register(
            "storage_controller_schedule_az_violation",
            "Shards whose intended attachment is outside their preferred AZ",
            self.schedule_az_violation.clone(),
        );
        r.register(
            "storage_controller_tenant_shards",
            "Tenant shards in this replica's applied state",
            self.tenant_shards.clone(),
        );
        r.register(
            "storage_controller_pageserver_nodes",
            "Registered pageservers in this replica's applied state",
            self.pageserver_nodes.clone(),
        );
        r.register(
            "storage_controller_https_pageserver_nodes",
            "Registered pageservers with an HTTPS port",
            self.https_pageserver_nodes.clone(),
        );
        r.register(
            "storage_controller_node_shards",
            "Shard locations (attached and secondary) intended per node",
            self.node_shards.clone(),
        );
        r.register(
            "storage_controller_node_attached_shards",
            "Attached shards intended per node",
            self.node_attached_shards.clone(),
        );
        r.register(
            "storage_controller_node_home_shards",
            "Shard locations per node in the shard's preferred AZ",
            self.node_home_shards.clone(),
        );
        r.register(
            "storage_controller_leadership_status",
            "1 for this replica's status: leader (services running), stepped_down, candidate",
            self.leadership_status.clone(),
        );
        r.register(
            "storcon_raft_term",
            "Current Raft term of this replica",
            self.raft_term.clone(),
        );
        r.register(
            "storcon_raft_last_log_index",
            "Last log index appended on this replica",
            self.raft_last_log_index.clone(),
        );
        r.register(
            "storcon_raft_applied_index",
            "Last log index applied to this replica's state machine",
            self.raft_applied_index.clone(),
        );
        r.register(
            "storcon_raft_apply_lag",
            "Log entries appended but not yet applied on this replica",
            self.raft_apply_lag.clone(),
        );
        r.register(
            "storcon_raft_snapshot_index",
            "Last log index covered by this replica's snapshot",
            self.raft_snapshot_index.clone(),
        );
        r.register(
            "storcon_raft_leader_id",
            "Replica id of the leader this replica knows, 0 when none",
            self.raft_leader_id.clone(),
        );
        r.register(
            "storcon_raft_is_leader",
            "1 when this replica is the Raft leader",
            self.raft_is_leader.clone(),
        );
        r.register(
            "storcon_raft_leader_changes",
            "Leaderships this replica has seen begin (a known leader in a new term)",
            self.raft_leader_changes.clone(),
        );
        raft_store::metrics::register(r);
        self
    }
}

fn gauge_value(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// Upstream's method label values.
fn method_label(method: &Method) -> String {
    match *method {
        Method::GET => "get",
        Method::PUT => "put",
        Method::POST => "post",
        Method::DELETE => "delete",
        _ => "other",
    }
    .into()
}

/// Records every request by route template, method and status. Requests that match no route
/// are one template, `unmatched`, so a scan of random paths adds one series, not thousands.
pub async fn track_requests(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let m = &*METRICS;
    let labels = HttpLabels { path, method };
    m.http_request_latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let HttpLabels { path, method } = labels;
    m.http_request_status
        .get_or_create(&HttpStatusLabels {
            path,
            method,
            status: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

/// A pageserver path with its ids replaced by placeholders and the query dropped:
/// `/v1/tenant/<id>/timeline/<id>/lsn_lease?x` is
/// `/v1/tenant/{tenant_shard_id}/timeline/{timeline_id}/lsn_lease`.
/// Any other segment that is not a short lowercase word becomes `{id}`, so the label set stays
/// bounded by the controller's own call sites.
pub fn path_template(path_and_query: &str) -> String {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let mut out = String::new();
    let mut previous = "";
    for segment in path.split('/').skip(1) {
        out.push('/');
        // A hex id never has a letter past `f`; a route word (`v1`, `location_config`) does.
        let word = segment.len() <= 32
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && segment.bytes().any(|b| matches!(b, b'g'..=b'z' | b'_'));
        match previous {
            "tenant" if !word => out.push_str("{tenant_shard_id}"),
            "timeline" if !word => out.push_str("{timeline_id}"),
            _ if word => out.push_str(segment),
            _ => out.push_str("{id}"),
        }
        previous = segment;
    }
    out
}

/// Which family a call to a pageserver counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageserverCall {
    /// The controller's own calls (locations, utilization, timelines, splits).
    Controller,
    /// A GET relayed for a client under `/v1/tenant/{id}`.
    Passthrough,
}

/// One finished call to a pageserver: its latency, and an error if `ok` is false.
pub fn pageserver_call(
    kind: PageserverCall,
    node: impl std::fmt::Display,
    path: String,
    method: &Method,
    elapsed: Duration,
    ok: bool,
) {
    let m = &*METRICS;
    let (errors, latency) = match kind {
        PageserverCall::Controller => (&m.pageserver_request_error, &m.pageserver_request_latency),
        PageserverCall::Passthrough => {
            (&m.passthrough_request_error, &m.passthrough_request_latency)
        }
    };
    let labels = PageserverLabels {
        pageserver_id: node.to_string(),
        path,
        method: method_label(method),
    };
    latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if !ok {
        errors.get_or_create(&labels).inc();
    }
}

pub fn reconcile_spawned() {
    METRICS.reconcile_spawn.inc();
}

pub fn reconcile_completed(outcome: ReconcileOutcome) {
    METRICS
        .reconcile_complete
        .get_or_create(&outcome.label())
        .inc();
}

pub fn reconcile_long_running() {
    METRICS.reconcile_long_running.inc();
}

/// The leader's reconcile queue as its background pass last saw it; `(0, 0)` when it stops.
pub fn set_reconcile_queue(pending: usize, stuck: usize) {
    METRICS.pending_reconciles.set(gauge_value(pending));
    METRICS.stuck_reconciles.set(gauge_value(stuck));
}

pub fn background_pass(elapsed: std::time::Duration) {
    METRICS.background_pass.observe(elapsed.as_secs_f64());
}

pub fn startup_reconcile(elapsed: std::time::Duration) {
    METRICS.startup_reconcile.set(elapsed.as_secs_f64());
}

pub fn optimisations(moves: usize) {
    METRICS.schedule_optimization.inc_by(moves as u64);
}

/// Sets the gauges of replicated state and Raft from this replica's own view.
fn refresh(app: &AppState) {
    let m = &*METRICS;
    let raft = app.metrics();
    m.raft_term.set(gauge_value(raft.current_term));
    let last_log = raft.last_log_index.unwrap_or(0);
    let applied = raft.last_applied.map_or(0, |l| l.index);
    m.raft_last_log_index.set(gauge_value(last_log));
    m.raft_applied_index.set(gauge_value(applied));
    m.raft_apply_lag
        .set(gauge_value(last_log.saturating_sub(applied)));
    m.raft_snapshot_index
        .set(gauge_value(raft.snapshot.map_or(0, |l| l.index)));
    m.raft_leader_id
        .set(gauge_value(raft.current_leader.map_or(0, |id| id.0)));
    m.raft_is_leader
        .set(i64::from(raft.current_leader == Some(app.node_id)));
    let leading = app.leader.get_starting().is_ok();
    for status in LEADERSHIP {
        let current = if leading { "leader" } else { "candidate" };
        m.leadership_status
            .get_or_create(&StatusLabel {
                status: status.into(),
            })
            .set(i64::from(status == current));
    }

    let state = app.state.read();
    m.tenant_shards.set(gauge_value(state.shards().count()));
    let outside_home = state
        .shards()
        .filter(|s| {
            let attached_az = s
                .intent
                .attached
                .and_then(|id| state.node(id))
                .map(|n| n.availability_zone_id.as_str());
            s.preferred_az.is_some()
                && attached_az.is_some()
                && attached_az != s.preferred_az.as_deref()
        })
        .count();
    m.schedule_az_violation.set(gauge_value(outside_home));
    m.pageserver_nodes.set(gauge_value(state.nodes().count()));
    m.https_pageserver_nodes.set(gauge_value(
        state
            .nodes()
            .filter(|n| n.listen_https_port.is_some())
            .count(),
    ));
    // The scheduler's own count of locations per node, as `/debug/v1/scheduler` shows it.
    let views = state.nodes().map(|n| NodeView {
        id: n.id,
        az: n.availability_zone_id.clone(),
        available: true,
        may_schedule: false,
        utilization_score: 0,
    });
    let dump = Scheduler::new(&state, views).dump();
    drop(state);
    for family in [&m.node_shards, &m.node_attached_shards, &m.node_home_shards] {
        family.clear();
    }
    for (id, node) in dump.nodes {
        let labels = NodeLabels {
            az: node.az.clone(),
            node_id: id.to_string(),
        };
        m.node_shards
            .get_or_create(&labels)
            .set(gauge_value(node.shard_count));
        m.node_attached_shards
            .get_or_create(&labels)
            .set(gauge_value(node.attached_shard_count));
        m.node_home_shards
            .get_or_create(&labels)
            .set(gauge_value(node.home_shard_count));
    }
}

/// `GET /metrics`: this replica's metrics, never forwarded.
pub async fn serve(State(app): State<AppState>) -> Result<Response, ApiError> {
    let mut body = String::new();
    {
        let _one_at_a_time = METRICS.scrape.lock().unwrap_or_else(|p| p.into_inner());
        refresh(&app);
        prometheus_client::encoding::text::encode(&mut body, &METRICS.registry)
            .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    }
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(resp)
}

/// Counts leaderships as this replica sees them begin: a known leader in a term it had not
/// seen one in. Runs until Raft shuts down.
pub async fn watch_leader_changes(raft: Raft) {
    let mut watch = raft.metrics();
    let mut last: Option<(u64, state_machine::ReplicaId)> = None;
    loop {
        let seen = {
            let m = watch.borrow_and_update();
            m.current_leader.map(|leader| (m.current_term, leader))
        };
        if let Some(seen) = seen
            && last != Some(seen)
        {
            METRICS.raft_leader_changes.inc();
            last = Some(seen);
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_template;

    #[test]
    fn pageserver_paths_are_templated() {
        let tenant = "1f359dd625e519a1a4e8d7509690f6fc-0104";
        let timeline = "de200bd42b49cc1814412c7e592dd6e9";
        for (path, template) in [
            ("/v1/utilization", "/v1/utilization"),
            ("/v1/location_config", "/v1/location_config"),
            (
                &format!("/v1/tenant/{tenant}/location_config?lazy=true"),
                "/v1/tenant/{tenant_shard_id}/location_config",
            ),
            (
                &format!("/v1/tenant/{tenant}/timeline/{timeline}/lsn_lease"),
                "/v1/tenant/{tenant_shard_id}/timeline/{timeline_id}/lsn_lease",
            ),
            (
                &format!("/v1/tenant/{tenant}/timeline"),
                "/v1/tenant/{tenant_shard_id}/timeline",
            ),
            ("/v1/location_config/abc123", "/v1/location_config/{id}"),
        ] {
            assert_eq!(path_template(path), template, "{path}");
        }
    }
}
