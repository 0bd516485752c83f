//! The Raft network client: openraft RPCs as JSON over HTTP to `/raft/*` on the peer's listener.
//!
//! Every request names its target node id in [`TARGET_NODE_HEADER`]; the receiving replica
//! refuses (421) a request meant for another node, so a mis-wired address can never make a leader
//! talk to itself. Connection failures map to `Unreachable` (openraft backs off), other transport
//! failures to `Network`, and an error returned by the remote Raft to `RemoteError`.
//!
//! With auth configured, every RPC carries this replica's `controller_peer` token in
//! `Authorization` (see [`HttpNetworkFactory::with_authorization`]).

use std::time::Duration;

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
}

impl HttpNetworkFactory {
    pub fn new(client: reqwest::Client) -> Self {
        HttpNetworkFactory {
            client,
            authorization: None,
            scheme: PeerScheme::Http,
        }
    }

    /// HTTPS with `[tls]`; the client must then carry the TLS config.
    pub fn with_scheme(mut self, scheme: PeerScheme) -> Self {
        self.scheme = scheme;
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
        }
    }
}

pub struct HttpNetwork {
    client: reqwest::Client,
    target: ReplicaId,
    base: String,
    authorization: Option<HeaderValue>,
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
