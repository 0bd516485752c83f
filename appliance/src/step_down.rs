//! Planned leader handover: `PUT /control/v1/step_down [{"to": id}]`.
//!
//! openraft 0.9.25 has no leader transfer (no `transfer_leader`, and no TimeoutNow message).
//! What it has: `trigger().elect()` (campaign now, on a follower), runtime switches for the
//! leader's heartbeats, and a leader lease: a follower whose vote is committed rejects every
//! vote request until `election_timeout_max` has passed since it last heard its leader, and it
//! starts an election of its own only after lease + a random election timeout. The handover
//! uses exactly those, and nothing that bypasses a vote rule, so Raft safety is openraft's:
//!
//! 1. choose the successor: a voter (`to`, or the lowest id) whose matched index equals the
//!    leader's last log index; 409 if there is none;
//! 2. fence: stop this leader's services exactly as when leadership is lost (the controller's
//!    cancellation token, which aborts its in-flight pageserver calls; the leader slot is
//!    emptied, so leader-served requests answer 503 until the new leader serves them). They
//!    stay stopped while the handover runs ([`Handover`]), and leader-served requests answer
//!    503 (a linearizable read would send heartbeats and renew the lease);
//! 3. stop sending heartbeats; wait until the successor has every entry (nothing is proposed
//!    now);
//! 4. wait out the lease (`election_timeout_max` + a margin): the followers now grant votes, and
//!    none of them campaigns on its own before another random election timeout;
//! 5. ask the successor to campaign (`POST /raft/elect`); its log is as long as any, so it wins
//!    the next term; repeat the ask if a round was lost;
//! 6. once another leader is known, turn heartbeats back on (for a later term of ours) and end
//!    the handover. If no new leader shows up in time, the same: this replica, still leader,
//!    restarts its services under its term, and the request answers 503.
//!
//! Fencing is that of a failover: the new leader's term is higher; it records itself
//! (`RecordLeader`) before its services start, and every generation it mints goes through Raft,
//! so pageservers that see its generations refuse the old leader's.
//!
//! The handover takes about the lease plus one election round trip (measured in
//! cluster-tests/tests/membership.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raft_store::{Raft, TARGET_NODE_HEADER, raft_paths};
use state_machine::ReplicaId;
use storcon_http::members::StepDownResponse;
use storcon_http::{BearerToken, OperationError};
use tokio::sync::Notify;

/// Set while a handover runs: the leadership watcher keeps the leader services stopped.
#[derive(Default)]
pub struct Handover {
    active: AtomicBool,
    /// The watcher has stopped the services for the active handover.
    fenced: AtomicBool,
    changed: Notify,
}

impl Handover {
    pub fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    fn set(&self, active: bool) {
        self.fenced.store(false, Ordering::SeqCst);
        self.active.store(active, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Called by the leadership watcher once no leader services run during a handover.
    pub fn mark_fenced(&self) {
        if self.active() {
            self.fenced.store(true, Ordering::SeqCst);
        }
    }

    fn fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Resolves at the next change of [`Handover::active`].
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// Everything the handover needs on the leader.
#[derive(Clone)]
pub struct StepDown {
    pub node_id: ReplicaId,
    pub raft: Raft,
    pub handover: Arc<Handover>,
    pub http: reqwest::Client,
    pub peer_token: Option<BearerToken>,
    /// The followers' leader lease (openraft uses `election_timeout_max`).
    pub lease: Duration,
}

const CATCH_UP_WAIT: Duration = Duration::from_secs(3);
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(15);

type Metrics = openraft::RaftMetrics<ReplicaId, openraft::BasicNode>;

/// Voters other than `me` whose matched index is the leader's last log index.
pub fn caught_up_voters(m: &Metrics, me: ReplicaId) -> Vec<ReplicaId> {
    let Some(replication) = m.replication.as_ref() else {
        return Vec::new();
    };
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != me)
        .filter(|id| replication.get(id).copied().flatten().map(|l| l.index) == m.last_log_index)
        .collect()
}

/// Step 1: the successor among the caught-up voters.
pub fn choose(caught_up: &[ReplicaId], to: Option<ReplicaId>) -> Option<ReplicaId> {
    match to {
        Some(to) => caught_up.contains(&to).then_some(to),
        None => caught_up.iter().min().copied(),
    }
}

impl StepDown {
    fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow().clone()
    }

    /// Waits up to [`CATCH_UP_WAIT`] for a successor to be caught up.
    async fn successor(&self, to: Option<ReplicaId>) -> Option<ReplicaId> {
        let until = Instant::now() + CATCH_UP_WAIT;
        loop {
            let m = self.metrics();
            if let Some(id) = choose(&caught_up_voters(&m, self.node_id), to) {
                return Some(id);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn run(&self, to: Option<ReplicaId>) -> Result<StepDownResponse, OperationError> {
        let m = self.metrics();
        if m.current_leader != Some(self.node_id) {
            return Err(OperationError::NotLeading(format!(
                "node {} does not lead (leader {:?}); retry",
                self.node_id, m.current_leader
            )));
        }
        if let Some(to) = to
            && (to == self.node_id
                || !m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == to))
        {
            return Err(OperationError::Conflict(format!(
                "replica {to} is not a voter other than the leader"
            )));
        }
        let old_term = m.current_term;
        let Some(target) = self.successor(to).await else {
            return Err(OperationError::Conflict(match to {
                Some(to) => format!("replica {to} has not caught up with the leader's log"),
                None => "no voter has caught up with the leader's log".into(),
            }));
        };
        let started = Instant::now();
        tracing::info!(%target, term = old_term, "handing over leadership: stopping leader services");
        // Step 2: fence.
        self.handover.set(true);
        let fenced = async {
            while !self.handover.fenced() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), fenced)
            .await
            .is_err()
        {
            self.handover.set(false);
            return Err(OperationError::Internal(
                "leader services did not stop within 5 s; handover abandoned".into(),
            ));
        }
        let outcome = self.hand_over(target, old_term).await;
        // Step 6.
        self.raft.runtime_config().heartbeat(true);
        self.handover.set(false);
        match outcome {
            Ok((new_leader, term)) => {
                tracing::info!(%new_leader, term, elapsed_ms = started.elapsed().as_millis() as u64, "handover done");
                Ok(StepDownResponse {
                    previous_leader: self.node_id,
                    new_leader,
                    term,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "handover failed; this replica keeps leading");
                Err(e)
            }
        }
    }

    /// Steps 3 to 5; returns the new leader and its term.
    async fn hand_over(
        &self,
        target: ReplicaId,
        old_term: u64,
    ) -> Result<(ReplicaId, u64), OperationError> {
        self.raft.runtime_config().heartbeat(false);
        // Nothing is proposed any more; what was proposed just before reaches the successor
        // (those appends renew the lease too, so the lease is counted from here).
        if self.successor(Some(target)).await.is_none() {
            return Err(OperationError::Conflict(format!(
                "replica {target} did not catch up with the leader's log"
            )));
        }
        let silent_since = Instant::now();
        let addr = self
            .metrics()
            .membership_config
            .membership()
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or_else(|| OperationError::Internal(format!("replica {target} has no address")))?;
        let lease = self.lease + Duration::from_millis(50);
        let deadline = Instant::now() + NEW_LEADER_WITHIN;
        let mut next_ask = silent_since + lease;
        loop {
            let m = self.metrics();
            if m.current_term > old_term
                && let Some(leader) = m.current_leader
                && leader != self.node_id
            {
                return Ok((leader, m.current_term));
            }
            if Instant::now() > deadline {
                return Err(OperationError::NotYet(format!(
                    "no new leader within {NEW_LEADER_WITHIN:?}; node {} still leads",
                    self.node_id
                )));
            }
            if Instant::now() >= next_ask {
                self.ask_to_campaign(target, &addr).await;
                next_ask = Instant::now() + lease;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ask_to_campaign(&self, target: ReplicaId, addr: &str) {
        let mut ask = self
            .http
            .post(format!("http://{addr}{}", raft_paths::ELECT))
            .header(TARGET_NODE_HEADER, target.to_string())
            .timeout(Duration::from_secs(2));
        if let Some(token) = &self.peer_token {
            ask = ask.header(reqwest::header::AUTHORIZATION, token.header_value());
        }
        match ask.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(%target, "asked the successor to campaign")
            }
            Ok(r) => tracing::warn!(%target, status = %r.status(), "successor refused to campaign"),
            Err(e) => tracing::warn!(%target, error = %e, "cannot reach the successor"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_is_a_caught_up_voter() {
        let ids = |v: &[u64]| v.iter().copied().map(ReplicaId).collect::<Vec<_>>();
        assert_eq!(choose(&ids(&[3, 2]), None), Some(ReplicaId(2)));
        assert_eq!(
            choose(&ids(&[3, 2]), Some(ReplicaId(3))),
            Some(ReplicaId(3))
        );
        assert_eq!(
            choose(&ids(&[3]), Some(ReplicaId(2))),
            None,
            "2 is not caught up"
        );
        assert_eq!(choose(&[], None), None);
    }
}
