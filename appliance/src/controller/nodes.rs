//! Node availability as the leader sees it (soft state, rebuilt on every leadership start).
//!
//! Every node starts `Unknown`: not yet heard from by this leader. It is not reconciled against
//! and not given new work, but its attachments do not fail over until `max_offline` passes
//! without a heartbeat, so a slow start of the leader does not reshuffle shards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use state_machine::scheduler::NodeView;
use state_machine::{NodeAvailability, NodeId, NodeSchedulingPolicy, State};

/// The leader's table of pageservers: availability, the token of each node's current life, and
/// the node task (activation or offline handling) running for it.
///
/// Invariants:
/// - a node's life token is cancelled whenever it goes Offline or re-attaches, and a new one is
///   made on next use, so a call made under a cancelled token answers for a previous life;
/// - at most one node task runs per node.
#[derive(Default)]
pub struct NodeTable {
    states: Mutex<BTreeMap<NodeId, NodeState>>,
    lives: Mutex<BTreeMap<NodeId, CancellationToken>>,
    tasks: Mutex<BTreeSet<NodeId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeTable {
    pub fn states(&self) -> MutexGuard<'_, BTreeMap<NodeId, NodeState>> {
        lock(&self.states)
    }

    /// The current life of `node`, a child of `parent` (the controller's term).
    pub fn life(&self, node: NodeId, parent: &CancellationToken) -> CancellationToken {
        lock(&self.lives)
            .entry(node)
            .or_insert_with(|| parent.child_token())
            .clone()
    }

    /// Ends the current life of `node`: every call made under it is abandoned.
    pub fn end_life(&self, node: NodeId) {
        if let Some(token) = lock(&self.lives).remove(&node) {
            token.cancel();
        }
    }

    /// Forgets a node that left the registry: its availability goes, and every call made
    /// under its current life is abandoned.
    pub fn forget(&self, node: NodeId) {
        lock(&self.states).remove(&node);
        self.end_life(node);
    }

    /// Claims the node task slot of `node`; false when a task already runs.
    pub fn start_task(&self, node: NodeId) -> bool {
        lock(&self.tasks).insert(node)
    }

    pub fn end_task(&self, node: NodeId) {
        lock(&self.tasks).remove(&node);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Avail {
    Unknown {
        since: Instant,
    },
    /// Re-attached; waiting for the first heartbeat after it applied the answer.
    WarmingUp {
        since: Instant,
    },
    Active,
    Offline,
}

#[derive(Debug, Clone, Copy)]
pub struct NodeState {
    pub avail: Avail,
    pub last_seen: Option<Instant>,
    pub utilization_score: u64,
}

impl NodeState {
    pub fn new(now: Instant) -> Self {
        NodeState {
            avail: Avail::Unknown { since: now },
            last_seen: None,
            // Upstream treats a node without a heartbeat as exactly "full".
            utilization_score: 1_000_000,
        }
    }

    pub fn wire(&self) -> NodeAvailability {
        match self.avail {
            Avail::Active => NodeAvailability::Active,
            Avail::WarmingUp { .. } => NodeAvailability::WarmingUp,
            Avail::Unknown { .. } | Avail::Offline => NodeAvailability::Offline,
        }
    }
}

/// Transition decided for a node after a heartbeat round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    ToActive,
    ToOffline,
    Unchanged,
}

/// Heartbeat outcome -> transition, by upstream's rules (grace periods for lost heartbeats).
pub fn on_heartbeat(
    state: &NodeState,
    ok: bool,
    now: Instant,
    max_offline: Duration,
    max_warming_up: Duration,
) -> Transition {
    match (state.avail, ok) {
        (Avail::Active, true) => Transition::Unchanged,
        (_, true) => Transition::ToActive,
        (Avail::Offline, false) => Transition::Unchanged,
        (Avail::Active, false) => {
            let since = state.last_seen.unwrap_or(now);
            if now.duration_since(since) >= max_offline {
                Transition::ToOffline
            } else {
                Transition::Unchanged
            }
        }
        (Avail::Unknown { since }, false) if now.duration_since(since) >= max_offline => {
            Transition::ToOffline
        }
        (Avail::WarmingUp { since }, false) if now.duration_since(since) >= max_warming_up => {
            Transition::ToOffline
        }
        _ => Transition::Unchanged,
    }
}

/// The scheduler's view of every registered node.
pub fn views(state: &State, nodes: &BTreeMap<NodeId, NodeState>) -> Vec<NodeView> {
    state
        .nodes()
        .map(|n| {
            let s = nodes.get(&n.id);
            let avail = s.map(|s| s.avail);
            let active = matches!(avail, Some(Avail::Active));
            NodeView {
                id: n.id,
                az: n.availability_zone_id.clone(),
                available: !matches!(avail, Some(Avail::Offline)),
                may_schedule: active
                    && matches!(
                        n.scheduling,
                        NodeSchedulingPolicy::Active | NodeSchedulingPolicy::Filling
                    ),
                utilization_score: s.map_or(1_000_000, |s| s.utilization_score),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn lost_heartbeats_need_the_grace_period() {
        let t0 = Instant::now();
        let active = NodeState {
            avail: Avail::Active,
            last_seen: Some(t0),
            utilization_score: 0,
        };
        assert_eq!(
            on_heartbeat(&active, false, t0 + MIN / 2, MIN, MIN * 5),
            Transition::Unchanged
        );
        assert_eq!(
            on_heartbeat(&active, false, t0 + MIN, MIN, MIN * 5),
            Transition::ToOffline
        );
        let unknown = NodeState::new(t0);
        assert_eq!(
            on_heartbeat(&unknown, true, t0, MIN, MIN * 5),
            Transition::ToActive
        );
        assert_eq!(
            on_heartbeat(&unknown, false, t0 + MIN, MIN, MIN * 5),
            Transition::ToOffline
        );
        let warming = NodeState {
            avail: Avail::WarmingUp { since: t0 },
            ..active
        };
        assert_eq!(
            on_heartbeat(&warming, false, t0 + MIN * 2, MIN, MIN * 5),
            Transition::Unchanged
        );
        assert_eq!(
            on_heartbeat(&warming, false, t0 + MIN * 5, MIN, MIN * 5),
            Transition::ToOffline
        );
    }
}
