//! Dead-leader detection: start an election as soon as one can succeed when the leader's
//! process is gone, instead of waiting out openraft's full timer.
//!
//! Openraft 0.9 lets a follower campaign only after `election_timeout_max` (its leader lease)
//! plus a random election timeout without hearing the leader, and a follower refuses votes
//! until its own lease (`election_timeout_max` since it last heard the leader) has run out. So
//! no election can win before the lease ends; the random part after it is what this saves.
//!
//! Each tick (half a heartbeat interval), on a voter that follows a known leader:
//! 1. Due: the leader has been silent for the lease, plus half a heartbeat so that the other
//!    followers' leases have surely ended too, plus one heartbeat per rank (this replica's
//!    position among the voters other than the leader), so that two survivors do not split
//!    the vote; the first to win makes itself heard and the others' silence ends.
//! 2. Probe: a TCP connect to the leader's address. Only a refusal counts (the port is closed:
//!    the process died). A timeout or success means the leader may be alive, slow or cut off:
//!    openraft's own timers handle that, as before.
//! 3. Elect: `trigger().elect()`, an ordinary Raft election (a new term, vote requests with
//!    the log check). It only starts an election, early; it never skips one, and it can lose.
//!    After it, this replica waits for a new leader before it may trigger again.

use std::time::Duration;

use raft_store::Raft;
use raft_store::contact::LeaderContact;
use state_machine::ReplicaId;
use std::sync::Arc;

/// What one tick looks at (from the Raft metrics and [`LeaderContact`]).
#[derive(Debug, Clone)]
pub struct Observation {
    pub me: ReplicaId,
    pub leader: Option<ReplicaId>,
    /// Current voters, in id order.
    pub voters: Vec<ReplicaId>,
    /// How long the leader has been silent; `None` when it was never heard by this replica.
    pub silent_for: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The followers' lease: openraft's `election_timeout_max`.
    pub lease: Duration,
    pub heartbeat: Duration,
}

/// The leader to probe, when an election started now could win (step 1).
pub fn due(obs: &Observation, timing: Timing) -> Option<ReplicaId> {
    let leader = obs.leader.filter(|l| *l != obs.me)?;
    let rank = obs
        .voters
        .iter()
        .filter(|v| **v != leader)
        .position(|v| *v == obs.me)?;
    let rank = u32::try_from(rank).unwrap_or(u32::MAX);
    let wait = timing.lease + timing.heartbeat / 2 + timing.heartbeat.saturating_mul(rank);
    (obs.silent_for? >= wait).then_some(leader)
}

/// Runs until the process ends (aborted with the server).
pub async fn run(raft: Raft, contact: Arc<LeaderContact>, timing: Timing) {
    let tick = (timing.heartbeat / 2).max(Duration::from_millis(5));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The leader this replica last campaigned against: not again until another one is known.
    let mut campaigned_against: Option<ReplicaId> = None;
    loop {
        interval.tick().await;
        let (obs, addr) = {
            let m = raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            let voters: Vec<ReplicaId> = membership.voter_ids().collect();
            let addr = m
                .current_leader
                .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()));
            let obs = Observation {
                me: m.id,
                leader: m.current_leader,
                voters,
                silent_for: m.current_leader.and_then(|l| contact.silent_for(l)),
            };
            (obs, addr)
        };
        if obs.leader != campaigned_against {
            campaigned_against = None;
        }
        let Some(leader) = due(&obs, timing) else {
            continue;
        };
        if campaigned_against == Some(leader) {
            continue;
        }
        let Some(addr) = addr else { continue };
        if !refuses_connections(&addr, timing.heartbeat).await {
            continue;
        }
        tracing::warn!(
            %leader,
            %addr,
            silent_ms = obs.silent_for.map(|d| d.as_millis()),
            "leader's address refuses connections; starting an election"
        );
        campaigned_against = Some(leader);
        if let Err(e) = raft.trigger().elect().await {
            tracing::warn!(error = %e, "cannot start an election");
        }
    }
}

/// Step 2: true only for a refused connect (nothing listens there any more).
async fn refuses_connections(addr: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        lease: Duration::from_millis(400),
        heartbeat: Duration::from_millis(50),
    };

    fn obs(me: u64, leader: Option<u64>, silent_ms: Option<u64>) -> Observation {
        Observation {
            me: ReplicaId(me),
            leader: leader.map(ReplicaId),
            voters: vec![ReplicaId(1), ReplicaId(2), ReplicaId(3)],
            silent_for: silent_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn due_only_after_the_lease_and_the_rank_stagger() {
        // Leader 1; survivors 2 (rank 0) and 3 (rank 1).
        assert_eq!(due(&obs(2, Some(1), Some(424)), T), None);
        assert_eq!(due(&obs(2, Some(1), Some(425)), T), Some(ReplicaId(1)));
        assert_eq!(due(&obs(3, Some(1), Some(470)), T), None);
        assert_eq!(due(&obs(3, Some(1), Some(475)), T), Some(ReplicaId(1)));
        // Leader 2: replica 1 is rank 0, replica 3 rank 1.
        assert_eq!(due(&obs(1, Some(2), Some(425)), T), Some(ReplicaId(2)));
        assert_eq!(due(&obs(3, Some(2), Some(425)), T), None);
    }

    #[test]
    fn never_due_without_a_leader_heard_or_on_the_leader_or_a_learner() {
        assert_eq!(due(&obs(2, None, Some(10_000)), T), None);
        assert_eq!(due(&obs(2, Some(1), None), T), None, "never heard");
        assert_eq!(due(&obs(1, Some(1), Some(10_000)), T), None, "the leader");
        assert_eq!(due(&obs(4, Some(1), Some(10_000)), T), None, "a learner");
    }

    #[tokio::test]
    async fn only_a_refused_connect_counts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(!refuses_connections(&open, Duration::from_secs(5)).await);
        drop(listener);
        assert!(refuses_connections(&open, Duration::from_secs(5)).await);
    }
}
