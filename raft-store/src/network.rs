//! The Raft network client: openraft RPCs as JSON over HTTP to `/raft/*` on the peer's listener.
//!
//! Every request names its target node id in [`TARGET_NODE_HEADER`]; the receiving replica
//! refuses (421) a request meant for another node, so a mis-wired address can never make a leader
//! talk to itself. Connection failures map to `Unreachable` (openraft backs off), other transport
//! failures to `Network`, and an error returned by the remote Raft to `RemoteError`.
//!
//! A peer that refuses an RPC with 403 because this replica is not (or no longer) a member is
//! recorded in [`Refusals`]: the replica logs it loudly and reports it on `/status`.
//!
//! With auth configured, every RPC carries this replica's `controller_peer` token in
//! `Authorization` (see [`HttpNetworkFactory::with_authorization`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::types::TypeConfig;
use state_machine::ReplicaId;

pub const TARGET_NODE_HEADER: &str = "x-storcon-target-node";

/// Paths of the Raft RPC endpoints, shared by this client and the HTTP server.
pub mod raft_paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    /// Not a Raft RPC: the leader handing over asks the chosen voter to campaign now.
    pub const ELECT: &str = "/raft/elect";
}

/// The words a replica uses when it refuses an RPC from a replica outside the membership.
pub const NOT_A_MEMBER: &str = "is not a member";
/// ... and, when the replicated state records the sender as removed, these: the refused replica
/// recognizes its own removal by them.
pub const REMOVED_FROM_CLUSTER: &str = "removed from the cluster";

/// Peers that refused this replica's RPCs because it was removed from the cluster: the last
/// refusal seen.
#[derive(Clone, Default)]
pub struct Refusals(Arc<Mutex<RefusalLog>>);

#[derive(Default)]
struct RefusalLog {
    removed: Option<Refusal>,
    /// When a refusal as merely unknown was last logged.
    unknown_logged: Option<Instant>,
}

#[derive(Clone, Debug)]
pub struct Refusal {
    pub by: ReplicaId,
    pub msg: String,
    pub at: Instant,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Refusals {
    /// The last refusal, if any peer refused this replica as removed.
    pub fn last(&self) -> Option<Refusal> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .removed
            .clone()
    }

    /// Logs a refusal loudly, but once per interval: openraft retries every 200 ms.
    fn record(&self, by: ReplicaId, msg: &str) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !msg.contains(REMOVED_FROM_CLUSTER) {
            // Not known there as removed, only unknown: that peer's log lags behind a
            // membership change that added this replica (see the README). Not a removal.
            if log
                .unknown_logged
                .is_none_or(|t| t.elapsed() > REFUSAL_LOG_EVERY)
            {
                tracing::warn!(peer = %by, %msg, "a peer does not know this replica as a member");
                log.unknown_logged = Some(Instant::now());
            }
            return;
        }
        if log
            .removed
            .as_ref()
            .is_none_or(|l| l.at.elapsed() > REFUSAL_LOG_EVERY)
        {
            tracing::error!(
                peer = %by,
                %msg,
                "REFUSED BY THE CLUSTER: this replica was removed from the cluster. It takes no \
                 part in it; stop it, or add the machine back under a new id with an empty data \
                 dir and `[cluster] join = true`."
            );
            log.removed = Some(Refusal {
                by,
                msg: msg.to_string(),
                at: Instant::now(),
            });
        }
    }
}

/// How peers are called: every member of a cluster the same way (the config refuses a mix).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerScheme {
    #[default]
    Http,
    Https,
}

impl PeerScheme {
    /// `scheme://addr`, the base URL of the peer at `addr` (`host:port`).
    pub fn base(self, addr: &str) -> String {
        match self {
            PeerScheme::Http => format!("http://{addr}"),
            PeerScheme::Https => format!("https://{addr}"),
        }
    }
}

/// Builds per-peer clients on one shared connection pool (the Raft pool; forwarded client
/// requests use a pool of their own).
#[derive(Clone)]
pub struct HttpNetworkFactory {
    client: reqwest::Client,
    authorization: Option<HeaderValue>,
    scheme: PeerScheme,
    refusals: Refusals,
}

impl HttpNetworkFactory {
    pub fn new(client: reqwest::Client) -> Self {
        HttpNetworkFactory {
            client,
            authorization: None,
            scheme: PeerScheme::Http,
            refusals: Refusals::default(),
        }
    }

    /// HTTPS with `[tls]`; the client must then carry the TLS config.
    pub fn with_scheme(mut self, scheme: PeerScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Where refusals by peers are recorded (shared with the HTTP layer's `/status`).
    pub fn with_refusals(mut self, refusals: Refusals) -> Self {
        self.refusals = refusals;
        self
    }

    /// The `Authorization` header value (`Bearer <controller_peer token>`) sent on every RPC;
    /// `None` sends none (auth disabled).
    pub fn with_authorization(mut self, authorization: Option<HeaderValue>) -> Self {
        self.authorization = authorization.map(|mut v| {
            v.set_sensitive(true);
            v
        });
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetworkFactory {
    type Network = HttpNetwork;

    async fn new_client(&mut self, target: ReplicaId, node: &BasicNode) -> HttpNetwork {
        HttpNetwork {
            client: self.client.clone(),
            target,
            base: self.scheme.base(&node.addr),
            authorization: self.authorization.clone(),
            refusals: self.refusals.clone(),
        }
    }
}

pub struct HttpNetwork {
    client: reqwest::Client,
    target: ReplicaId,
    base: String,
    authorization: Option<HeaderValue>,
    refusals: Refusals,
}

impl HttpNetwork {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<ReplicaId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = codec::encode_rpc(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = self
            .client
            .post(format!("{}{}", self.base, path))
            .header(TARGET_NODE_HEADER, self.target.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(ttl)
            .body(body);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let resp = request.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            // The peer is up but not admitted to Raft yet (still deciding how to start).
            let e = std::io::Error::other(format!("{} is not serving raft yet", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            if status == reqwest::StatusCode::FORBIDDEN && body.contains(NOT_A_MEMBER) {
                self.refusals.record(self.target, &body);
            }
            let e = std::io::Error::other(format!("{} answered {status}: {body}", self.target));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let result: Result<Resp, E> =
            codec::decode_rpc(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<ReplicaId>,
        RPCError<ReplicaId, BasicNode, RaftError<ReplicaId>>,
    > {
        self.call(raft_paths::APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<ReplicaId>,
        RPCError<ReplicaId, BasicNode, RaftError<ReplicaId, InstallSnapshotError>>,
    > {
        self.call(raft_paths::SNAPSHOT, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ReplicaId>,
        option: RPCOption,
    ) -> Result<VoteResponse<ReplicaId>, RPCError<ReplicaId, BasicNode, RaftError<ReplicaId>>> {
        self.call(raft_paths::VOTE, &rpc, option.hard_ttl()).await
    }

    fn backoff(&self) -> Backoff {
        // Short enough that a restarted peer is picked up quickly, long enough not to spin.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
