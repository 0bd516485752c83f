//! Raft RPC endpoints and the formation probe, on the same listener as the API.
//!
//! Each RPC must name this replica in `x-storcon-target-node` (421 otherwise), and RPCs are
//! refused with 503 until start-up has admitted this replica to Raft. An RPC is also refused
//! (403) unless it comes from a member and its term is plausible ([`check_sender`]). The members
//! are Raft's membership, the configured members and, for an AppendEntries or a snapshot, the
//! nodes its own membership entries name (a lagging replica meets a leader added while it was
//! away), less every id the replicated state records as removed. A forged
//! AppendEntries from a phantom leader at term 2^63 once made every replica follow it, and the
//! next election overflowed the term (issue 8). Bodies are decoded by `raft_store::codec`, with
//! its body limit, so a replica reads every RPC its leader can send.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::HeaderMap;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, Vote};
use raft_store::{
    FormationStatus, NOT_A_MEMBER, REMOVED_FROM_CLUSTER, TARGET_NODE_HEADER, TypeConfig, codec,
};
use serde::de::DeserializeOwned;
use state_machine::ReplicaId;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::body_bytes;

/// How far above this replica's term an RPC's term may be. Honest terms grow by one per
/// election, so a gap this large is a forgery; refusing it means no sequence of fewer than 2^31
/// RPCs can carry a term to overflow.
pub const MAX_TERM_JUMP: u64 = 1 << 32;
/// No term above this is ever accepted, so `term + 1` can never overflow.
pub const MAX_TERM: u64 = u64::MAX - MAX_TERM_JUMP;

/// A Raft RPC body, decoded by the store's codec (not the API's bounded extractor: an entry
/// nests a command a few levels deeper than the request it came from).
pub struct RaftJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for RaftJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        codec::decode_rpc(&bytes)
            .map(RaftJson)
            .map_err(|e| ApiError::BadRequest(format!("cannot decode raft rpc: {e}")))
    }
}

/// Whether an RPC carrying `vote` (and log ids `log_ids`) may reach Raft: its sender is one of
/// `members`, its term is at most [`MAX_TERM_JUMP`] above `current_term` and below
/// [`MAX_TERM`], and no log id claims a later term than the sender's.
pub fn check_sender<'a>(
    vote: &Vote<ReplicaId>,
    log_ids: impl IntoIterator<Item = &'a LogId<ReplicaId>>,
    members: &Members,
    current_term: u64,
) -> Result<(), String> {
    let (term, sender) = (vote.leader_id.term, vote.leader_id.node_id);
    if let Some(index) = members.removed.get(&sender) {
        return Err(format!(
            "raft rpc from node {sender}, which {NOT_A_MEMBER}: it was {REMOVED_FROM_CLUSTER} \
             at log index {index}"
        ));
    }
    let members = &members.current;
    if !members.contains(&sender) {
        return Err(format!(
            "raft rpc from node {sender}, which {NOT_A_MEMBER} ({members:?})"
        ));
    }
    if term > MAX_TERM || term > current_term.saturating_add(MAX_TERM_JUMP) {
        return Err(format!(
            "raft rpc from node {sender} at term {term}, implausibly far above term {current_term}"
        ));
    }
    if let Some(id) = log_ids.into_iter().find(|id| id.leader_id.term > term) {
        return Err(format!(
            "raft rpc from node {sender} at term {term} carries log id {id} of a later term"
        ));
    }
    Ok(())
}

/// Who may send Raft RPCs: `current` (Raft's membership, voters and learners, and the
/// configured members) except the `removed` ids (with the log index that removed each).
#[derive(Debug, Clone, Default)]
pub struct Members {
    pub current: BTreeSet<ReplicaId>,
    pub removed: BTreeMap<ReplicaId, u64>,
}

/// The members an RPC may come from: Raft's membership (voters and learners) and the configured
/// members, less every id the replicated state records as removed.
fn members(app: &AppState) -> Members {
    let metrics = app.metrics();
    let removed = app
        .state
        .read()
        .removed_replicas()
        .values()
        .map(|r| (r.id, r.removed_at))
        .collect();
    Members {
        current: metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .chain(app.configured_members.keys().copied())
            .collect(),
        removed,
    }
}

/// Nodes named by membership entries an AppendEntries carries. A replica whose log lags behind
/// the change that added its new leader learns of that leader from these entries (its config
/// may not list it); removed ids stay refused whatever the entries say.
fn carried_members(entries: &[openraft::Entry<TypeConfig>]) -> Vec<ReplicaId> {
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            openraft::EntryPayload::Membership(m) => {
                Some(m.nodes().map(|(id, _)| *id).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn check_rpc<'a>(
    app: &AppState,
    members: &Members,
    vote: &Vote<ReplicaId>,
    log_ids: impl IntoIterator<Item = &'a LogId<ReplicaId>>,
) -> Result<(), ApiError> {
    let current_term = app.metrics().current_term;
    check_sender(vote, log_ids, members, current_term).map_err(|msg| {
        tracing::warn!(%msg, "refused raft rpc");
        ApiError::Forbidden(msg)
    })
}

/// The node id of the peer asking `/raft/formation`.
pub const FROM_NODE_HEADER: &str = "x-storcon-from-node";

type RpcResult<T, E = RaftError<ReplicaId>> = Result<Json<Result<T, E>>, ApiError>;

pub(crate) fn check(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let target = headers
        .get(TARGET_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<ReplicaId>().ok());
    if target != Some(app.node_id) {
        return Err(ApiError::Misdirected(format!(
            "raft rpc for node {target:?} reached node {}",
            app.node_id
        )));
    }
    if !app.raft_admitted() {
        return Err(ApiError::Unavailable(format!(
            "node {} is not serving raft yet",
            app.node_id
        )));
    }
    Ok(())
}

pub async fn append(
    State(app): State<AppState>,
    headers: HeaderMap,
    RaftJson(rpc): RaftJson<AppendEntriesRequest<TypeConfig>>,
) -> RpcResult<AppendEntriesResponse<ReplicaId>> {
    check(&app, &headers)?;
    let log_ids = rpc
        .prev_log_id
        .iter()
        .chain(rpc.entries.iter().map(|e| &e.log_id));
    let mut members = members(&app);
    members.current.extend(carried_members(&rpc.entries));
    check_rpc(
        &app,
        &members,
        &rpc.vote,
        log_ids.chain(rpc.leader_commit.iter()),
    )?;
    let from = rpc.vote.leader_id().voted_for();
    let answer = app.raft.append_entries(rpc).await;
    // A stale leader's call (answered HigherVote) is not contact with the current one.
    if let (Ok(r), Some(leader)) = (&answer, from)
        && !matches!(r, AppendEntriesResponse::HigherVote(_))
    {
        app.leader_contact.record(leader);
    }
    Ok(Json(answer))
}

pub async fn vote(
    State(app): State<AppState>,
    headers: HeaderMap,
    RaftJson(rpc): RaftJson<VoteRequest<ReplicaId>>,
) -> RpcResult<VoteResponse<ReplicaId>> {
    check(&app, &headers)?;
    check_rpc(&app, &members(&app), &rpc.vote, rpc.last_log_id.iter())?;
    Ok(Json(app.raft.vote(rpc).await))
}

pub async fn snapshot(
    State(app): State<AppState>,
    headers: HeaderMap,
    RaftJson(rpc): RaftJson<InstallSnapshotRequest<TypeConfig>>,
) -> RpcResult<InstallSnapshotResponse<ReplicaId>, RaftError<ReplicaId, InstallSnapshotError>> {
    check(&app, &headers)?;
    let mut members = members(&app);
    members.current.extend(
        rpc.meta
            .last_membership
            .membership()
            .nodes()
            .map(|(id, _)| *id),
    );
    check_rpc(&app, &members, &rpc.vote, rpc.meta.last_log_id.iter())?;
    Ok(Json(app.raft.install_snapshot(rpc).await))
}

pub async fn formation(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<FormationStatus>, ApiError> {
    let asker = headers
        .get(FROM_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<ReplicaId>().ok());
    // Answering may fsync the formation marker: keep that off the async workers.
    let formation = app.formation.clone();
    match tokio::task::spawn_blocking(move || formation.status(asker)).await {
        Ok(status) => Ok(Json(status)),
        Err(e) => Err(ApiError::Internal(format!("formation probe failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn members() -> Members {
        Members {
            current: [1, 2, 3].map(ReplicaId).into(),
            removed: BTreeMap::new(),
        }
    }

    #[test]
    fn membership_entries_name_their_nodes() {
        use openraft::{BasicNode, Entry, EntryPayload, Membership};
        let nodes = |ids: &[u64]| -> BTreeMap<ReplicaId, BasicNode> {
            ids.iter()
                .map(|i| (ReplicaId(*i), BasicNode::new("a:1")))
                .collect()
        };
        let voters: BTreeSet<ReplicaId> = [1, 4].map(ReplicaId).into();
        let membership = Membership::new(vec![voters], nodes(&[1, 4, 5]));
        let entries: Vec<Entry<TypeConfig>> = vec![
            Entry {
                log_id: log_id(3, 7),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(3, 8),
                payload: EntryPayload::Membership(membership),
            },
        ];
        assert_eq!(carried_members(&entries), [1, 4, 5].map(ReplicaId).to_vec());
        assert!(carried_members(&entries[..1]).is_empty());
    }

    #[test]
    fn a_removed_replica_is_refused_and_told_when() {
        let mut m = members();
        m.removed.insert(ReplicaId(3), 42);
        // Still in the configured members, but removed: refused.
        let e = check_sender(&Vote::new(7, ReplicaId(3)), [], &m, 6).expect_err("removed");
        assert!(e.contains(NOT_A_MEMBER), "{e}");
        assert!(e.contains("log index 42"), "{e}");
        assert!(e.contains(REMOVED_FROM_CLUSTER), "{e}");
        assert!(check_sender(&Vote::new(7, ReplicaId(2)), [], &m, 6).is_ok());
        let e = check_sender(&Vote::new(7, ReplicaId(9)), [], &m, 6).expect_err("unknown");
        assert!(e.contains(NOT_A_MEMBER), "{e}");
        assert!(
            !e.contains(REMOVED_FROM_CLUSTER),
            "unknown is not removed: {e}"
        );
    }

    fn log_id(term: u64, index: u64) -> LogId<ReplicaId> {
        LogId::new(CommittedLeaderId::new(term, ReplicaId(1)), index)
    }

    #[test]
    fn a_member_at_a_plausible_term_passes() {
        assert!(check_sender(&Vote::new(5, ReplicaId(2)), [&log_id(4, 9)], &members(), 4).is_ok());
        // A replica far behind (isolated for a long time) still accepts its leader.
        assert!(check_sender(&Vote::new(90_000, ReplicaId(1)), [], &members(), 3).is_ok());
        assert!(check_sender(&Vote::new_committed(3, ReplicaId(3)), [], &members(), 3).is_ok());
    }

    #[test]
    fn a_phantom_leader_is_refused() {
        // The forged request of the report: node 9, term 2^63.
        let e = check_sender(
            &Vote::new_committed(1 << 63, ReplicaId(9)),
            [],
            &members(),
            3,
        )
        .expect_err("not a member");
        assert!(e.contains("not a member"), "{e}");
        let e = check_sender(&Vote::new_committed(4, ReplicaId(9)), [], &members(), 3)
            .expect_err("not a member");
        assert!(e.contains("node 9"), "{e}");
    }

    #[test]
    fn absurd_terms_are_refused() {
        for term in [1 << 63, u64::MAX, 3 + MAX_TERM_JUMP + 1, MAX_TERM + 1] {
            assert!(
                check_sender(&Vote::new(term, ReplicaId(2)), [], &members(), 3).is_err(),
                "{term}"
            );
        }
        assert!(
            check_sender(
                &Vote::new(3 + MAX_TERM_JUMP, ReplicaId(2)),
                [],
                &members(),
                3
            )
            .is_ok()
        );
        // Even at the jump bound from a high term, the term stays far below overflow.
        assert!(
            check_sender(
                &Vote::new(MAX_TERM + 1, ReplicaId(2)),
                [],
                &members(),
                MAX_TERM
            )
            .is_err()
        );
    }

    #[test]
    fn log_ids_of_a_later_term_than_the_sender_are_refused() {
        let e = check_sender(
            &Vote::new(5, ReplicaId(2)),
            [&log_id(4, 1), &log_id(6, 2)],
            &members(),
            5,
        )
        .expect_err("later term");
        assert!(e.contains("later term"), "{e}");
    }
}
