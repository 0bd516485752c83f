//! Shared handler state and the router that lays out the API table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use raft_store::{FormationStatus, Raft, SharedState};
use state_machine::ReplicaId;

use crate::auth::HttpAuth;
use crate::failpoints;
use crate::{
    auth, backup, cluster, debug, forward, guard, members, metrics, migrate, nodes, onboarding,
    probes, raft_rpc, secondary, tenant_config, tenants, timelines, trace, upcalls,
};
use storcon_failpoints::Failpoints;

/// Answers formation questions from peers; implemented by the binary, which owns start-up.
pub trait FormationProbe: Send + Sync {
    /// `asker` is the node id the calling peer gave, if any.
    fn status(&self, asker: Option<ReplicaId>) -> FormationStatus;
}

pub struct AppInner {
    pub node_id: ReplicaId,
    /// This replica's own address, as peers and clients reach it.
    pub listen_addr: String,
    /// Members from the config file, used until Raft knows the membership.
    pub configured_members: BTreeMap<ReplicaId, String>,
    pub raft: Raft,
    pub state: SharedState,
    /// Pool for requests proxied to the leader (kept apart from the Raft pool).
    pub forward_client: reqwest::Client,
    /// How peers are called (HTTPS with `[tls]`; `forward_client` then carries the TLS config).
    pub peer_scheme: raft_store::PeerScheme,
    /// `use_https_pageserver_api`: a node must register a `listen_https_port`.
    pub pageserver_https: bool,
    /// Raft RPCs are refused until start-up decided this replica may take part in Raft.
    raft_admitted: AtomicBool,
    pub formation: Arc<dyn FormationProbe>,
    /// Leader-only services while this replica leads.
    pub leader: crate::operations::LeaderSlot,
    /// Token checks on incoming requests and the token this replica presents to its peers.
    pub auth: HttpAuth,
    /// Test-only fault injection, configured per replica.
    pub failpoints: Arc<Failpoints>,
    /// Takes backup documents of this replica's store (`GET /control/v1/backup`).
    pub backup: Option<raft_store::backup::BackupSource>,
    /// Membership changes and the leader handover (see `members.rs`).
    pub membership: Option<Arc<dyn crate::members::MembershipOps>>,
    /// Peers that refused this replica's Raft RPCs as a non-member (reported on `/status`).
    pub refusals: raft_store::Refusals,
    /// When the leader was last heard (AppendEntries answered); read by the dead-leader detector.
    pub leader_contact: Arc<raft_store::contact::LeaderContact>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        node_id: ReplicaId,
        listen_addr: String,
        configured_members: BTreeMap<ReplicaId, String>,
        raft: Raft,
        state: SharedState,
        forward_client: reqwest::Client,
        formation: Arc<dyn FormationProbe>,
    ) -> Self {
        AppState(Arc::new(AppInner {
            node_id,
            listen_addr,
            configured_members,
            raft,
            state,
            forward_client,
            peer_scheme: raft_store::PeerScheme::Http,
            pageserver_https: false,
            raft_admitted: AtomicBool::new(false),
            formation,
            leader: Default::default(),
            auth: HttpAuth::disabled(),
            failpoints: Arc::new(Failpoints::new(false)),
            backup: None,
            membership: None,
            refusals: Default::default(),
            leader_contact: Default::default(),
        }))
    }

    /// Lets this replica serve backups of its store; start-up wiring like `with_auth`.
    pub fn with_backup(mut self, source: raft_store::backup::BackupSource) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("AppState::with_backup is called before the state is shared")
            .backup = Some(source);
        self
    }

    /// Sets the membership workflows and the refusal record the Raft network writes; start-up
    /// wiring like `with_auth`.
    pub fn with_membership(
        mut self,
        membership: Arc<dyn crate::members::MembershipOps>,
        refusals: raft_store::Refusals,
    ) -> Self {
        let inner = Arc::get_mut(&mut self.0)
            .expect("AppState::with_membership is called before the state is shared");
        inner.membership = Some(membership);
        inner.refusals = refusals;
        self
    }

    /// Shares the failpoint registry with the leader services; start-up wiring like `with_auth`.
    pub fn with_failpoints(mut self, failpoints: Arc<Failpoints>) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("AppState::with_failpoints is called before the state is shared")
            .failpoints = failpoints;
        self
    }

    /// Sets the auth settings; call it on the fresh state from [`AppState::new`], before the state
    /// is cloned (start-up wiring, not a request path).
    pub fn with_auth(mut self, auth: HttpAuth) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("AppState::with_auth is called before the state is shared")
            .auth = auth;
        self
    }

    /// Calls peers over HTTPS (or not); start-up wiring like `with_auth`.
    pub fn with_peer_scheme(mut self, scheme: raft_store::PeerScheme) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("AppState::with_peer_scheme is called before the state is shared")
            .peer_scheme = scheme;
        self
    }

    /// Requires an HTTPS port of registering nodes; start-up wiring like `with_auth`.
    pub fn with_pageserver_https(mut self, required: bool) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("AppState::with_pageserver_https is called before the state is shared")
            .pageserver_https = required;
        self
    }

    pub fn admit_raft(&self) {
        self.raft_admitted.store(true, Ordering::SeqCst);
    }

    pub fn raft_admitted(&self) -> bool {
        self.raft_admitted.load(Ordering::SeqCst)
    }

    /// A copy of the current Raft metrics; never hold the watch borrow across an await.
    pub fn metrics(&self) -> openraft::RaftMetrics<ReplicaId, openraft::BasicNode> {
        self.raft.metrics().borrow().clone()
    }
}

/// The largest API request body. Bodies are bounded again by nesting (`ApiJson`) and the
/// commands built from them by size (`Command::check_encodable`); this bound is for requests
/// that are not commands, like a validate of tens of thousands of shards.
pub const API_BODY_LIMIT: usize = 4 << 20;

pub fn router(app: AppState) -> Router {
    // Raft RPCs carry batches of entries and snapshot chunks: the store's codec sets their bound.
    let raft = Router::new()
        .route(raft_store::raft_paths::APPEND, post(raft_rpc::append))
        .route(raft_store::raft_paths::VOTE, post(raft_rpc::vote))
        .route(raft_store::raft_paths::SNAPSHOT, post(raft_rpc::snapshot))
        .route(raft_store::FORMATION_PATH, get(raft_rpc::formation))
        .route(raft_store::raft_paths::ELECT, post(members::elect))
        .layer(DefaultBodyLimit::max(raft_store::codec::RAFT_BODY_LIMIT));

    let local = Router::new()
        .route("/status", get(probes::status))
        .route("/live", get(probes::live))
        .route("/ready", get(probes::ready))
        .route("/metrics", get(metrics::serve))
        .route("/control/v1/cluster", get(cluster::status))
        .route("/control/v1/leader", get(cluster::leader))
        .route(
            "/debug/v1/failpoints",
            get(failpoints::list).put(failpoints::put),
        )
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));

    let leader_served = Router::new()
        .route("/control/v1/node", post(nodes::register).get(nodes::list))
        .route(
            "/control/v1/node/{node_id}",
            get(nodes::describe).delete(nodes::delete_now),
        )
        .route(
            "/control/v1/node/{node_id}/delete",
            put(nodes::delete_start).delete(nodes::delete_cancel),
        )
        .route("/debug/v1/tombstone", get(nodes::tombstones))
        .route(
            "/debug/v1/tombstone/{node_id}",
            axum::routing::delete(nodes::tombstone_delete),
        )
        .route("/control/v1/node/{node_id}/config", put(nodes::configure))
        .route("/control/v1/node/{node_id}/shards", get(nodes::shards))
        .route(
            "/control/v1/node/{node_id}/drain",
            put(nodes::drain_start).delete(nodes::drain_cancel),
        )
        .route(
            "/control/v1/node/{node_id}/fill",
            put(nodes::fill_start).delete(nodes::fill_cancel),
        )
        .route("/upcall/v1/re-attach", post(upcalls::re_attach))
        .route("/upcall/v1/validate", post(upcalls::validate))
        .route("/v1/tenant", post(tenants::create))
        .route(
            "/v1/tenant/{tenant_id}",
            delete(tenants::delete).get(timelines::tenant_get),
        )
        .route("/control/v1/tenant", get(tenants::list))
        .route("/control/v1/tenant/{tenant_id}", get(tenants::describe))
        .route(
            "/control/v1/tenant/{tenant_id}/policy",
            put(tenants::set_policy),
        )
        .route(
            "/v1/tenant/config",
            put(tenant_config::put).patch(tenant_config::patch),
        )
        .route("/v1/tenant/{tenant_id}/config", get(tenant_config::get))
        // Timelines. A GET under /v1/tenant/{id} the controller does not serve is relayed to
        // shard zero's pageserver, so routes with other methods relay their GET too.
        .route(
            "/v1/tenant/{tenant_id}/timeline",
            post(timelines::create).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}",
            delete(timelines::delete).get(timelines::tenant_get),
        )
        .route(
            "/control/v1/tenant/{tenant_id}/timeline/{timeline_id}",
            get(timelines::describe),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/archival_config",
            put(timelines::archival_config).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/detach_ancestor",
            put(timelines::detach_ancestor).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/block_gc",
            post(timelines::block_gc).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/unblock_gc",
            post(timelines::unblock_gc).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/lsn_lease",
            post(timelines::lsn_lease).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/mark_invisible",
            put(timelines::mark_invisible).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/download_heatmap_layers",
            post(timelines::download_heatmap_layers).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_shard_id}/secondary/download",
            post(secondary::download).get(timelines::tenant_get),
        )
        .route(
            "/v1/tenant/{tenant_id}/time_travel_remote_storage",
            put(secondary::time_travel).get(timelines::tenant_get),
        )
        .route("/v1/tenant/{tenant_id}/{*rest}", get(timelines::tenant_get))
        .route(
            "/v1/tenant/{tenant_shard_id}/location_config",
            put(onboarding::put).get(timelines::tenant_get),
        )
        .route(
            "/control/v1/tenant/{tenant_id}/shard_split",
            put(tenants::split),
        )
        .route(
            "/control/v1/tenant/{tenant_shard_id}/migrate",
            put(migrate::migrate),
        )
        .route(
            "/control/v1/tenant/{tenant_shard_id}/migrate_secondary",
            put(migrate::migrate_secondary),
        )
        .route(
            "/control/v1/tenant/{tenant_shard_id}/cancel_reconcile",
            put(migrate::cancel_reconcile),
        )
        .route("/control/v1/preferred_azs", put(migrate::preferred_azs))
        .route("/control/v1/backup", get(backup::take))
        .route("/control/v1/members", post(members::add))
        .route("/control/v1/members/{id}", delete(members::remove))
        .route("/control/v1/step_down", put(members::step_down))
        .route("/debug/v1/inspect", post(debug::inspect))
        .route("/debug/v1/attach-hook", post(debug::attach_hook))
        .route("/debug/v1/reconcile_all", post(debug::reconcile_all))
        .route(
            "/debug/v1/consistency_check",
            post(debug::consistency_check),
        )
        .route("/debug/v1/tenant", get(debug::tenants_dump))
        .route(
            "/debug/v1/tenant/{tenant_id}/locate",
            get(debug::tenant_locate),
        )
        .route("/debug/v1/scheduler", get(debug::scheduler_dump))
        .route(
            "/debug/v1/tenant/{tenant_id}/drop",
            post(debug::tenant_drop),
        )
        .route("/debug/v1/node/{node_id}/drop", post(debug::node_drop))
        .fallback(nodes::not_found)
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            forward::to_leader,
        ));

    // Auth wraps every route and the fallback, outside the forwarding layer: a follower checks the
    // token before it forwards, and the leader checks the forwarded header again.
    // Outermost first: request metrics (by route template: every layer wraps each route, so
    // `MatchedPath` is known), the span, panics caught, errors as JSON, dot segments refused,
    // then auth.
    raft.merge(local)
        .merge(leader_served)
        .layer(axum::middleware::from_fn_with_state(
            app.auth.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn(guard::refuse_dot_segments))
        .layer(axum::middleware::from_fn(guard::json_errors))
        .layer(axum::middleware::from_fn(guard::catch_panic))
        .layer(axum::middleware::from_fn(trace::request_span))
        .layer(axum::middleware::from_fn(metrics::track_requests))
        .with_state(app)
}
