//! `GET /control/v1/cluster` (this replica's view of the Raft cluster; on the leader also each
//! member's replication lag) and
//! `GET /control/v1/leader` (upstream shape), both answered locally.

use axum::Json;
use axum::extract::State;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use state_machine::{ReplicaId, Term};

use crate::app::AppState;

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node_id: ReplicaId,
    pub leader_id: Option<ReplicaId>,
    pub term: Term,
    /// The log index of the last applied entry.
    pub last_applied: Option<u64>,
    pub members: Vec<MemberStatus>,
    /// The last restore or forced recovery of the applied state (log point, generation gap),
    /// `null` if it never was.
    #[serde(default)]
    pub restored_from: Option<state_machine::RestoreRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: ReplicaId,
    pub addr: String,
    pub role: String,
    /// The last log index known replicated to this member; only the leader knows (`null` on
    /// a follower, and for a member the leader has not heard from yet).
    pub matched_index: Option<u64>,
    /// Entries this member is behind the leader's last log index; `null` where
    /// `matched_index` is unknown, except on the leader itself.
    pub lag: Option<u64>,
}

/// `(matched_index, lag)` of member `id`, from the leader's replication metrics; both `None`
/// unless this replica leads.
fn replication_of(
    m: &openraft::RaftMetrics<ReplicaId, openraft::BasicNode>,
    own: ReplicaId,
    id: ReplicaId,
) -> (Option<u64>, Option<u64>) {
    if m.state != ServerState::Leader {
        return (None, None);
    }
    let last = m.last_log_index.unwrap_or(0);
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .map(|l| l.map_or(0, |l| l.index))
        // The leader has every entry it wrote, whether or not openraft lists it.
        .or((id == own).then_some(last));
    (matched, matched.map(|i| last.saturating_sub(i)))
}

fn own_role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

pub async fn status(State(app): State<AppState>) -> Json<ClusterStatus> {
    let m = app.metrics();
    let membership = m.membership_config.membership();
    let mut members: Vec<MemberStatus> = membership
        .nodes()
        .map(|(id, node)| {
            let role = if *id == app.node_id {
                own_role(m.state)
            } else if Some(*id) == m.current_leader {
                "leader"
            } else if membership.voter_ids().any(|v| v == *id) {
                "follower"
            } else {
                "learner"
            };
            let (matched_index, lag) = replication_of(&m, app.node_id, *id);
            MemberStatus {
                id: *id,
                addr: node.addr.clone(),
                role: role.to_string(),
                matched_index,
                lag,
            }
        })
        .collect();
    if members.is_empty() {
        // Not formed yet: show the configured members without claiming any role.
        members = app
            .configured_members
            .iter()
            .map(|(id, addr)| MemberStatus {
                id: *id,
                addr: addr.clone(),
                role: "unknown".to_string(),
                matched_index: None,
                lag: None,
            })
            .collect();
    }
    Json(ClusterStatus {
        node_id: app.node_id,
        leader_id: m.current_leader,
        term: Term(m.current_term),
        last_applied: m.last_applied.map(|l| l.index),
        members,
        restored_from: app.state.read().restored_from().cloned(),
    })
}

#[derive(Debug, Serialize)]
pub struct LeaderResponse {
    pub address: String,
    pub started_at: String,
}

/// The record the current leader wrote about itself, or `null` while no leader is known or the
/// new leader's record is not applied here yet.
pub async fn leader(State(app): State<AppState>) -> Json<Option<LeaderResponse>> {
    let current = app.metrics().current_leader;
    let state = app.state.read();
    let record = state
        .leader()
        .filter(|r| Some(r.node_id) == current)
        .map(|r| LeaderResponse {
            address: r.address.clone(),
            started_at: r.started_at.clone(),
        });
    Json(record)
}
