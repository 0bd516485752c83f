//! When this replica last heard from its leader: recorded by the AppendEntries handler, read by
//! the dead-leader detector (appliance `dead_leader.rs`). Openraft keeps the same instant
//! privately (`vote_last_modified`) and does not export it in 0.9.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use state_machine::ReplicaId;

#[derive(Default)]
pub struct LeaderContact {
    last: Mutex<Option<(ReplicaId, Instant)>>,
}

impl LeaderContact {
    /// `leader` sent an AppendEntries (heartbeat or entries) that this replica answered.
    pub fn record(&self, leader: ReplicaId) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((leader, Instant::now()));
    }

    /// How long since `leader` was last heard; `None` when the last contact was another leader
    /// or none at all.
    pub fn silent_for(&self, leader: ReplicaId) -> Option<Duration> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            Some((from, at)) if from == leader => Some(at.elapsed()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_per_leader() {
        let c = LeaderContact::default();
        assert_eq!(c.silent_for(ReplicaId(1)), None);
        c.record(ReplicaId(1));
        assert!(
            c.silent_for(ReplicaId(1))
                .is_some_and(|d| d < Duration::from_secs(60))
        );
        assert_eq!(c.silent_for(ReplicaId(2)), None);
        c.record(ReplicaId(2));
        assert_eq!(c.silent_for(ReplicaId(1)), None);
    }
}
