//! Membership changes, served by the leader (`POST /control/v1/members`,
//! `DELETE /control/v1/members/{id}`), and the handover (`step_down.rs`) share one lock: one
//! change at a time; a second one is refused with 409 while the first is in flight (openraft's
//! own "a change is in progress" refusal maps to 409 as well).
//!
//! Add, steps:
//! 1. refuse (409) an id that is a member already or was ever removed (ids are never reused);
//! 2. `add_learner(id, addr)`, not blocking: the membership entry naming the learner and its
//!    address commits, so every replica (and any later leader) reaches it at that address;
//! 3. wait until the learner's matched index reaches the leader's last log index (as of step 2),
//!    within
//!    [`CATCH_UP_WITHIN`]; past that answer 504 (it stays a learner: remove it or retry);
//! 4. `change_membership(AddVoterIds)`: the joint, then the uniform config commits.
//!
//! Remove, steps:
//! 1. 404 for an id that is not a member, 400 for the last voter;
//! 2. `change_membership(RemoveVoters | RemoveNodes)`, not retained as a learner. When the
//!    uniform config applies, the replicated state records the id as removed at that index
//!    (`State::record_membership`); from then on every replica refuses its Raft RPCs (403).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use openraft::ChangeMembers;
use raft_store::client::{MembershipChange, change_membership};
use raft_store::{ProposeError, Raft, SharedState};
use state_machine::ReplicaId;
use storcon_http::OperationError;
use storcon_http::members::{MembershipOps, StepDownResponse, in_flight};
use tokio::sync::Mutex;

use crate::step_down::StepDown;

/// How long an added learner may take to catch up before the request answers 504 (below the
/// forwarding layer's 40 s).
pub const CATCH_UP_WITHIN: Duration = Duration::from_secs(30);
/// How long one membership entry may take to commit.
const COMMIT_WITHIN: Duration = Duration::from_secs(10);

pub struct Membership {
    pub node_id: ReplicaId,
    pub raft: Raft,
    pub state: SharedState,
    /// Held for the whole of one change or handover.
    pub in_flight: Arc<Mutex<()>>,
    pub step_down: StepDown,
}

fn membership_error(e: ProposeError) -> OperationError {
    match e {
        ProposeError::Membership(m) => in_flight(m),
        other => OperationError::Proposal(other),
    }
}

impl Membership {
    fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, OperationError> {
        self.in_flight
            .try_lock()
            .map_err(|_| in_flight("another membership change or handover is running"))
    }

    fn metrics(&self) -> openraft::RaftMetrics<ReplicaId, openraft::BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    fn leading(
        &self,
    ) -> Result<openraft::RaftMetrics<ReplicaId, openraft::BasicNode>, OperationError> {
        let m = self.metrics();
        if m.current_leader != Some(self.node_id) {
            return Err(OperationError::NotLeading(format!(
                "node {} does not lead (leader {:?}); retry",
                self.node_id, m.current_leader
            )));
        }
        Ok(m)
    }

    async fn add_member(&self, id: ReplicaId, addr: String) -> Result<(), OperationError> {
        let _guard = self.lock()?;
        let m = self.leading()?;
        if let Some(r) = self.state.read().removed_replica(id) {
            return Err(OperationError::Conflict(format!(
                "replica {id} was removed from the cluster at log index {}; a removed id is \
                 never reused: add the replica under a new id",
                r.removed_at
            )));
        }
        if m.membership_config.membership().get_node(&id).is_some() {
            return Err(OperationError::Conflict(format!(
                "replica {id} is already a member"
            )));
        }
        change_membership(
            &self.raft,
            MembershipChange::AddLearner { id, addr },
            COMMIT_WITHIN,
        )
        .await
        .map_err(membership_error)?;
        self.wait_caught_up(id).await?;
        change_membership(
            &self.raft,
            MembershipChange::Members(ChangeMembers::AddVoterIds(BTreeSet::from([id]))),
            COMMIT_WITHIN,
        )
        .await
        .map_err(membership_error)?;
        tracing::info!(%id, "replica added as a voter");
        Ok(())
    }

    /// Step 3 of an add: the learner's matched index reaches the leader's last log index as it
    /// was when the learner was added (so a steady write load cannot keep it "behind").
    async fn wait_caught_up(&self, id: ReplicaId) -> Result<(), OperationError> {
        let target = self.metrics().last_log_index;
        let mut metrics = self.raft.metrics();
        let caught_up = metrics.wait_for(|m| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map(|l| l.index);
            target.is_some() && matched >= target
        });
        match tokio::time::timeout(CATCH_UP_WITHIN, caught_up).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(OperationError::Internal(format!(
                "raft metrics closed: {e}"
            ))),
            Err(_) => Err(OperationError::Timeout(format!(
                "replica {id} did not catch up within {CATCH_UP_WITHIN:?}; it stays a learner \
                 (is it running, in join mode, at the address given?). Retry the add once it \
                 has caught up, or remove it"
            ))),
        }
    }

    async fn remove_member(&self, id: ReplicaId) -> Result<(), OperationError> {
        let _guard = self.lock()?;
        let m = self.leading()?;
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(OperationError::NotFound(format!(
                "replica {id} is not a member"
            )));
        }
        let voters: BTreeSet<ReplicaId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(OperationError::Invalid(format!(
                    "replica {id} is the last voter; a cluster cannot remove its last voter"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        change_membership(&self.raft, MembershipChange::Members(change), COMMIT_WITHIN)
            .await
            .map_err(membership_error)?;
        tracing::info!(%id, "replica removed");
        Ok(())
    }
}

impl MembershipOps for Membership {
    fn add(&self, id: ReplicaId, addr: String) -> storcon_http::Op<'_, ()> {
        self.add_member(id, addr).boxed()
    }

    fn remove(&self, id: ReplicaId) -> storcon_http::Op<'_, ()> {
        self.remove_member(id).boxed()
    }

    fn step_down(&self, to: Option<ReplicaId>) -> storcon_http::Op<'_, StepDownResponse> {
        async move {
            let _guard = self.lock()?;
            self.step_down.run(to).await
        }
        .boxed()
    }

    fn handing_over(&self) -> bool {
        self.step_down.handover.active()
    }

    fn elect(&self) -> storcon_http::Op<'_, ()> {
        async move {
            tracing::info!("the leader hands over to this replica: campaigning now");
            self.raft
                .trigger()
                .elect()
                .await
                .map_err(|e| OperationError::Internal(format!("cannot campaign: {e}")))
        }
        .boxed()
    }
}
