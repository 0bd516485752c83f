//! How a replica decides, at start, whether it may take part in Raft.
//!
//! - A replica with Raft state on disk is admitted at once and never initializes anything.
//! - A pristine replica asks its peers (`GET /raft/formation`). When every peer answers pristine,
//!   the lowest configured id initializes the cluster with all members. Before a pristine replica
//!   answers the lowest id, it writes a durable formation marker.
//! - A pristine replica that finds a peer already in a formed cluster joins only if its marker
//!   shows it took part in that formation. Otherwise its disk was wiped or replaced after the
//!   cluster formed, and joining with an empty log under the same id could lose committed
//!   entries and double-vote: it refuses and explains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raft_store::{FormationMarker, FormationStatus, Raft};
use storcon_http::{BearerToken, FROM_NODE_HEADER, FormationProbe};

/// This replica's side of formation: what it answers peers.
pub struct Formation {
    node_id: u64,
    lowest_id: u64,
    /// Pristine at start and not yet admitted to Raft.
    pristine: AtomicBool,
    marker: FormationMarker,
}

impl Formation {
    pub fn new(
        node_id: u64,
        members: &BTreeMap<u64, String>,
        pristine: bool,
        marker: FormationMarker,
    ) -> Self {
        Formation {
            node_id,
            lowest_id: members.keys().next().copied().unwrap_or(node_id),
            pristine: AtomicBool::new(pristine),
            marker,
        }
    }

    fn admitted(&self) {
        self.pristine.store(false, Ordering::SeqCst);
    }
}

impl FormationProbe for Formation {
    fn status(&self, asker: Option<u64>) -> FormationStatus {
        let mut pristine = self.pristine.load(Ordering::SeqCst);
        if pristine && asker == Some(self.lowest_id) && asker != Some(self.node_id) {
            // The forming node must not count us as pristine unless we will remember it.
            if let Err(e) = self.marker.write(self.lowest_id) {
                tracing::error!(error = %e, "cannot write formation marker; not reporting pristine");
                pristine = false;
            }
        }
        FormationStatus {
            node_id: self.node_id,
            pristine,
            initialized: !self.pristine.load(Ordering::SeqCst),
        }
    }
}

/// Start-up refused, with the explanation for the operator.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}

const POLL_INTERVAL: Duration = Duration::from_millis(300);
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Decides how this replica enters Raft; returns once it is admitted (and, for the forming
/// node, once the cluster is initialized). `admit` opens the Raft RPC endpoints. `peer_token`
/// (the `controller_peer` token, with auth) goes with every question to a peer.
pub async fn enter_raft(
    formation: &Formation,
    raft: &Raft,
    members: &BTreeMap<u64, String>,
    client: &reqwest::Client,
    peer_token: Option<&BearerToken>,
    data_dir: &std::path::Path,
    admit: impl Fn(),
) -> Result<(), Refused> {
    if !formation.pristine.load(Ordering::SeqCst) {
        formation.admitted();
        admit();
        return Ok(());
    }
    let peers: BTreeMap<u64, String> = members
        .iter()
        .filter(|(id, _)| **id != formation.node_id)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let mut last_log = Instant::now() - Duration::from_secs(60);
    loop {
        let Answers {
            statuses: answers,
            auth_refused,
        } = ask_peers(formation.node_id, &peers, client, peer_token).await;
        let initialized: BTreeSet<u64> = answers
            .iter()
            .filter(|(_, s)| s.initialized)
            .map(|(id, _)| *id)
            .collect();
        if !initialized.is_empty() {
            if formation.marker.exists() {
                tracing::info!(?initialized, "cluster formed by peers; joining it");
                formation.admitted();
                admit();
                return Ok(());
            }
            return Err(Refused(format!(
                "refusing to bootstrap: node {} has no Raft state in {}, but peer(s) {:?} already \
                 belong to a formed cluster that includes this node. Its data dir was probably \
                 wiped or replaced after the cluster formed; rejoining with an empty log under \
                 the same node id could lose committed entries or vote twice in one term. \
                 Restore the data dir from a backup, or replace this replica with a new node id.",
                formation.node_id,
                data_dir.display(),
                initialized
            )));
        }
        let all_pristine = answers.len() == peers.len() && answers.values().all(|s| s.pristine);
        if formation.node_id == formation.lowest_id && all_pristine {
            formation.admitted();
            admit();
            let nodes: BTreeMap<u64, openraft::BasicNode> = members
                .iter()
                .map(|(id, a)| (*id, openraft::BasicNode::new(a)))
                .collect();
            match raft.initialize(nodes).await {
                Ok(()) => tracing::info!(members = ?members.keys(), "formed a new cluster"),
                Err(e) => tracing::warn!(error = %e, "initialize refused; joining as is"),
            }
            return Ok(());
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            if !auth_refused.is_empty() {
                tracing::warn!(
                    peers = ?auth_refused,
                    "peers refused our formation probe (401/403): check [auth] peer_token_file \
                     here and public_key_file there"
                );
            }
            tracing::info!(
                answered = ?answers.keys().collect::<Vec<_>>(),
                forming_node = formation.lowest_id,
                "pristine; waiting for all members to answer before the cluster forms"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[derive(Default)]
struct Answers {
    statuses: BTreeMap<u64, FormationStatus>,
    /// Peers that answered 401/403: their key or our peer token is wrong.
    auth_refused: BTreeSet<u64>,
}

async fn ask_peers(
    node_id: u64,
    peers: &BTreeMap<u64, String>,
    client: &reqwest::Client,
    peer_token: Option<&BearerToken>,
) -> Answers {
    let asks = peers.iter().map(|(id, addr)| async move {
        let mut ask = client
            .get(format!("http://{addr}/raft/formation"))
            .header(FROM_NODE_HEADER, node_id.to_string())
            .timeout(ASK_TIMEOUT);
        if let Some(token) = peer_token {
            ask = ask.header(reqwest::header::AUTHORIZATION, token.header_value());
        }
        let resp = ask.send().await.ok()?;
        if matches!(resp.status().as_u16(), 401 | 403) {
            return Some(Err(*id));
        }
        let resp = resp.error_for_status().ok()?;
        let status: FormationStatus = resp.json().await.ok()?;
        // A peer answering for another id is mis-wired; ignore it rather than trust it.
        (status.node_id == *id).then_some(Ok((*id, status)))
    });
    let mut answers = Answers::default();
    for answer in futures::future::join_all(asks).await.into_iter().flatten() {
        match answer {
            Ok((id, status)) => {
                answers.statuses.insert(id, status);
            }
            Err(id) => {
                answers.auth_refused.insert(id);
            }
        }
    }
    answers
}
