//! Replicas removed from the Raft membership, recorded in the replicated state.
//!
//! Raft's membership only says who is a member now. Every replica (and every later leader) must
//! also know who *was* a member and left, so that a removed replica that comes back is refused
//! and its id is never handed out again. The store calls [`State::record_membership`] when it
//! applies a membership entry: every id that the previous membership listed (voter or learner)
//! and the new one does not is recorded with the log index of the entry that removed it. It is a
//! pure function of the log, so every replica records the same ids at the same index.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ReplicaId;
use crate::rows::{self, Mutation};
use crate::state::State;

/// One removed replica id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedReplica {
    pub id: ReplicaId,
    /// Log index of the membership entry that left it out.
    pub removed_at: u64,
}

impl State {
    /// Removed replica ids, with the log index that removed each.
    pub fn removed_replicas(&self) -> &BTreeMap<ReplicaId, RemovedReplica> {
        &self.removed_replicas
    }

    pub fn removed_replica(&self, id: ReplicaId) -> Option<&RemovedReplica> {
        self.removed_replicas.get(&id)
    }

    /// Records the ids in `before` (the previous membership's nodes) that `after` (the nodes of
    /// the membership entry at `index`) leaves out. An id already recorded keeps its first
    /// removal index. Returns the rows written.
    pub fn record_membership(
        &mut self,
        before: &BTreeSet<ReplicaId>,
        after: &BTreeSet<ReplicaId>,
        index: u64,
    ) -> Vec<Mutation> {
        let mut mutations = Vec::new();
        for id in before.difference(after) {
            if self.removed_replicas.contains_key(id) {
                continue;
            }
            let record = RemovedReplica {
                id: *id,
                removed_at: index,
            };
            mutations.push(rows::put(rows::removed_replica_key(*id), &record));
            self.removed_replicas.insert(*id, record);
        }
        mutations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<ReplicaId> {
        v.iter().copied().map(ReplicaId).collect()
    }

    #[test]
    fn ids_left_out_are_recorded_with_their_index() {
        let mut state = State::default();
        // Formation: nobody before.
        assert!(
            state
                .record_membership(&ids(&[]), &ids(&[1, 2, 3]), 1)
                .is_empty()
        );
        // Adding a learner, then the joint and uniform configs of a removal of 2.
        assert!(
            state
                .record_membership(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4]), 5)
                .is_empty()
        );
        assert!(
            state
                .record_membership(&ids(&[1, 2, 3, 4]), &ids(&[1, 2, 3, 4]), 8)
                .is_empty()
        );
        let rows = state.record_membership(&ids(&[1, 2, 3, 4]), &ids(&[1, 3, 4]), 9);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            state.removed_replica(ReplicaId(2)),
            Some(&RemovedReplica {
                id: ReplicaId(2),
                removed_at: 9
            })
        );
        assert_eq!(state.removed_replicas().len(), 1);
        // Rebuilt from its rows, the state holds the same record.
        let rebuilt = State::from_rows(
            rows.iter()
                .map(|m| (m.key.as_str(), m.value.as_deref().unwrap_or_default())),
        )
        .expect("rows decode");
        assert_eq!(rebuilt.removed_replicas(), state.removed_replicas());
        let mut copy = State::default();
        copy.copy_rows(&state, rows.iter().map(|m| m.key.as_str()))
            .expect("known keys");
        assert_eq!(copy, state);
    }

    #[test]
    fn a_second_removal_keeps_the_first_index() {
        let mut state = State::default();
        state.record_membership(&ids(&[1, 2, 3]), &ids(&[1, 3]), 4);
        // A (refused in practice) re-add and removal again must not move the record.
        assert!(
            state
                .record_membership(&ids(&[1, 2, 3]), &ids(&[1, 3]), 12)
                .is_empty()
        );
        assert_eq!(
            state.removed_replica(ReplicaId(2)).map(|r| r.removed_at),
            Some(4)
        );
    }
}
