//! The newest log entries, in memory: what replication and apply read right after an append,
//! served without a blocking-pool hop, a read transaction and a decode each.
//!
//! Invariant: the tail is a contiguous run of entries ending at the log's last entry, each
//! identical to the one on disk, or it is empty. Appends extend it after their commit (a run
//! that does not follow on replaces it); truncation and purge remove from it before their
//! commit, so a read never gets an entry from the tail that the disk no longer holds. Bounded
//! by entry count and by encoded bytes; the oldest entries go first.

use std::collections::VecDeque;

use openraft::{Entry, RaftLogId};

use crate::types::TypeConfig;

const MAX_ENTRIES: usize = 4096;
const MAX_BYTES: usize = 16 << 20;

#[derive(Default)]
pub(crate) struct LogTail {
    /// (entry, its encoded size), by index.
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl LogTail {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.get_log_id().index)
    }

    fn next_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.get_log_id().index + 1)
    }

    /// Entries just committed to disk, in index order, with their encoded sizes.
    pub fn extend(&mut self, appended: impl IntoIterator<Item = (Entry<TypeConfig>, usize)>) {
        for (entry, size) in appended {
            let index = entry.get_log_id().index;
            if self.next_index().is_some_and(|next| next != index) {
                // Not a continuation (only a truncation could make one): start over.
                self.clear();
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            self.pop_front();
        }
    }

    /// Forgets entries at `index` and after (a truncation).
    pub fn remove_from(&mut self, index: u64) {
        while self.next_index().is_some_and(|next| next > index) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets entries up to and including `index` (a purge).
    pub fn remove_through(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    /// The entries in `[start, end)` if the tail holds every one of them; `None` sends the
    /// reader to disk. An open or partly covered range goes to disk too: an append that has
    /// committed may not have reached the tail yet, so the tail cannot say what is beyond it.
    pub fn read(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry<TypeConfig>>> {
        let (first, next) = (self.first_index()?, self.next_index()?);
        let end = end?;
        if start < first || end > next || end <= start {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use state_machine::ReplicaId;

    use super::*;

    fn entry(term: u64, index: u64) -> (Entry<TypeConfig>, usize) {
        (
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(term, ReplicaId(1)), index),
                payload: EntryPayload::Blank,
            },
            100,
        )
    }

    fn ids(entries: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<(u64, u64)>> {
        entries.map(|v| {
            v.iter()
                .map(|e| (e.log_id.leader_id.term, e.log_id.index))
                .collect()
        })
    }

    #[test]
    fn reads_what_it_holds_and_sends_older_reads_to_disk() {
        let mut tail = LogTail::default();
        assert_eq!(ids(tail.read(1, None)), None, "empty: disk");
        tail.extend((5..=8).map(|i| entry(1, i)));
        assert_eq!(ids(tail.read(4, Some(7))), None, "starts before the tail");
        assert_eq!(ids(tail.read(6, Some(8))), Some(vec![(1, 6), (1, 7)]));
        assert_eq!(
            ids(tail.read(5, Some(9))),
            Some(vec![(1, 5), (1, 6), (1, 7), (1, 8)])
        );
        assert_eq!(ids(tail.read(7, None)), None, "open end: disk");
        assert_eq!(ids(tail.read(8, Some(100))), None, "past the end: disk");
        assert_eq!(ids(tail.read(7, Some(7))), None, "empty range: disk");
    }

    #[test]
    fn truncation_and_purge_trim_it_and_a_gap_restarts_it() {
        let mut tail = LogTail::default();
        tail.extend((1..=6).map(|i| entry(1, i)));
        tail.remove_from(5);
        tail.extend([entry(2, 5)]);
        assert_eq!(
            ids(tail.read(3, Some(6))),
            Some(vec![(1, 3), (1, 4), (2, 5)])
        );
        assert_eq!(ids(tail.read(3, Some(7))), None, "6 was truncated");
        tail.remove_through(3);
        assert_eq!(ids(tail.read(3, Some(5))), None);
        assert_eq!(ids(tail.read(4, Some(6))), Some(vec![(1, 4), (2, 5)]));
        // Not a continuation of 5: the tail starts over at 9.
        tail.extend([entry(2, 9)]);
        assert_eq!(ids(tail.read(5, Some(6))), None);
        assert_eq!(ids(tail.read(9, Some(10))), Some(vec![(2, 9)]));
        tail.remove_from(0);
        assert_eq!(tail.bytes, 0);
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut tail = LogTail::default();
        tail.extend((1..=(MAX_ENTRIES as u64 + 10)).map(|i| entry(1, i)));
        assert_eq!(tail.entries.len(), MAX_ENTRIES);
        assert_eq!(tail.first_index(), Some(11));
        let mut tail = LogTail::default();
        tail.extend((1..=3).map(|i| (entry(1, i).0, MAX_BYTES / 2)));
        assert_eq!(tail.entries.len(), 2, "{} bytes", tail.bytes);
        assert_eq!(tail.bytes, MAX_BYTES);
    }
}
