//! The persisted [`SimState`]: a snapshot `DIR/locations.json` plus a journal
//! `DIR/locations.journal` of the changes made since, so a change costs one small fsynced
//! append instead of rewriting every location.
//!
//! - The snapshot is the whole state (the format `locations.json` always had) plus
//!   `journal_seq`, the sequence number of the last journal record it includes (absent, i.e. 0,
//!   in files written before the journal existed). It is replaced atomically (write a temporary
//!   file, fsync, rename, fsync the directory).
//! - The journal holds one JSON line per transaction: `{"seq": N, "changes": [...]}`, where each
//!   change sets or removes one location or `max_generation` entry, sets `max_term`, or
//!   appends to (or replaces) `retained`. A transaction's changes share one line, so a crash
//!   applies all of them or none.
//!
//! Guarantees:
//! - [`Store::save`] returns after the change is durable (the journal line is fdatasynced), and
//!   callers publish and answer only after it returned;
//! - loading applies, on top of the snapshot, the journal records after its `journal_seq`, in
//!   order. A last line torn by a crash (never acknowledged) is ignored and cut off; any other
//!   unreadable line, or a gap in the sequence, stops the simulator rather than silently
//!   forgetting acknowledged changes. So a crash at any moment leaves a prefix of the
//!   acknowledged changes;
//! - compaction (snapshot, then empty the journal) runs when the journal holds more than
//!   `max(1000, 2 × locations)` records, and at every start. A crash between the two steps is
//!   harmless: the records left behind have `seq <= journal_seq` and are skipped on load.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use imbl::OrdMap;
use imbl::ordmap::DiffItem;
use serde::{Deserialize, Serialize};

use crate::append_log::{AppendLog, write_atomically};
use crate::ids::TenantShardId;
use crate::model::{Location, RetainedData, Shared, SimState};

const SNAPSHOT: &str = "locations.json";
const JOURNAL: &str = "locations.journal";
/// Compaction threshold: more journal records than this and twice the locations.
const MIN_RECORDS_BEFORE_COMPACTION: u64 = 1000;

pub struct Store {
    snapshot: PathBuf,
    journal: AppendLog,
    /// Sequence number of the last record written (or included in the snapshot).
    seq: u64,
    /// Records in the journal after the snapshot.
    records: u64,
}

/// One state change; a journal record lists those of one transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    MaxTerm {
        value: Option<u64>,
    },
    /// `value: null` removes the location.
    Location {
        id: TenantShardId,
        value: Option<Shared<Location>>,
    },
    /// `value: null` removes the entry.
    MaxGeneration {
        id: TenantShardId,
        value: Option<u32>,
    },
    RetainedAppend {
        value: Vec<RetainedData>,
    },
    RetainedReplace {
        value: Vec<RetainedData>,
    },
}

#[derive(Serialize, Deserialize, Debug)]
struct Record {
    seq: u64,
    changes: Vec<Change>,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    journal_seq: u64,
    #[serde(flatten)]
    state: &'a SimState,
}

#[derive(Deserialize)]
struct SnapshotIn {
    #[serde(default)]
    journal_seq: u64,
    #[serde(flatten)]
    state: SimState,
}

impl Store {
    /// Creates the data dir if needed and loads the snapshot and the journal; absent files mean
    /// no locations. Unreadable data stops the simulator rather than silently forgetting
    /// locations.
    pub fn open(dir: &Path) -> anyhow::Result<(Store, SimState)> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let snapshot = dir.join(SNAPSHOT);
        let (mut state, snapshot_seq) = match fs::read(&snapshot) {
            Ok(bytes) => {
                let snap: SnapshotIn = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", snapshot.display()))?;
                (snap.state, snap.journal_seq)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (SimState::default(), 0),
            Err(e) => return Err(e).with_context(|| format!("reading {}", snapshot.display())),
        };
        let journal = dir.join(JOURNAL);
        let bytes = match fs::read(&journal) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", journal.display())),
        };
        let replay = replay(&mut state, snapshot_seq, &bytes)
            .with_context(|| format!("replaying {}", journal.display()))?;
        if replay.applied > 0 {
            tracing::info!(
                "replayed {} journal records on top of {}",
                replay.applied,
                snapshot.display()
            );
        }
        let journal = AppendLog::open_at(journal.clone(), replay.valid_len)
            .with_context(|| format!("opening {}", journal.display()))?;
        let store = Store {
            snapshot,
            journal,
            seq: replay.last_seq,
            records: replay.applied,
        };
        Ok((store, state))
    }

    /// Durably records the changes from `prev` (the published state) to `next`; nothing is
    /// written when they are equal.
    pub async fn save(&mut self, prev: &SimState, next: &SimState) -> io::Result<()> {
        self.save_changes(diff(prev, next), next).await
    }

    /// Durably records `changes`, which turn the published state into `next`.
    pub async fn save_changes(&mut self, changes: Vec<Change>, next: &SimState) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let record = Record {
            seq: self.seq + 1,
            changes,
        };
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.journal.append(line).await?;
        self.seq = record.seq;
        self.records += 1;
        let threshold = MIN_RECORDS_BEFORE_COMPACTION.max(2 * next.locations.len() as u64);
        if self.records > threshold {
            // The change is durable already; a failed compaction is retried on the next one.
            if let Err(e) = self.compact(next).await {
                tracing::warn!("compacting {}: {e}", self.snapshot.display());
            }
        }
        Ok(())
    }

    /// Writes `state` (which must include every journal record) as the snapshot and empties
    /// the journal.
    pub async fn compact(&mut self, state: &SimState) -> io::Result<()> {
        let snapshot = SnapshotOut {
            journal_seq: self.seq,
            state,
        };
        let bytes = serde_json::to_vec_pretty(&snapshot).map_err(io::Error::other)?;
        let path = self.snapshot.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(io::Error::other)??;
        self.records = 0;
        // Should emptying fail, the records stay but are skipped on load (seq <= journal_seq).
        self.journal.clear().await
    }
}

struct Replay {
    /// Bytes of the journal that hold complete records (a torn last line is not included).
    valid_len: u64,
    last_seq: u64,
    /// Records applied: those after the snapshot's.
    applied: u64,
}

/// Applies the journal `bytes` to `state`, a snapshot that includes records up to
/// `snapshot_seq`.
fn replay(state: &mut SimState, snapshot_seq: u64, bytes: &[u8]) -> anyhow::Result<Replay> {
    let mut result = Replay {
        valid_len: 0,
        last_seq: snapshot_seq,
        applied: 0,
    };
    let mut offset = 0;
    let mut line_number = 0;
    while offset < bytes.len() {
        line_number += 1;
        let Some(end) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            tracing::warn!(
                "journal line {line_number} is incomplete (torn by a crash, never acknowledged); ignored"
            );
            break;
        };
        let line = &bytes[offset..offset + end];
        let next_offset = offset + end + 1;
        let record: Record = match serde_json::from_slice(line) {
            Ok(record) => record,
            // A torn write can also end in a newline of garbage: fine as the last line only.
            Err(e) if next_offset == bytes.len() => {
                tracing::warn!(
                    "journal line {line_number} (the last) is unreadable ({e}); ignored"
                );
                break;
            }
            Err(e) => bail!("journal line {line_number} is unreadable: {e}"),
        };
        offset = next_offset;
        result.valid_len = offset as u64;
        if record.seq <= snapshot_seq && result.applied == 0 {
            // Left behind by a compaction that crashed before emptying the journal.
            continue;
        }
        if record.seq != result.last_seq + 1 {
            bail!(
                "journal line {line_number} has seq {} after {}: records are missing",
                record.seq,
                result.last_seq
            );
        }
        apply(state, record.changes);
        result.last_seq = record.seq;
        result.applied += 1;
    }
    Ok(result)
}

/// The changes that turn `prev` into `next`.
pub fn diff(prev: &SimState, next: &SimState) -> Vec<Change> {
    // Destructured so that a new field cannot be forgotten here.
    let SimState {
        max_term,
        locations,
        max_generation,
        retained,
    } = next;
    let mut changes = Vec::new();
    if prev.max_term != *max_term {
        changes.push(Change::MaxTerm { value: *max_term });
    }
    diff_maps(&prev.locations, locations, |id, value| {
        changes.push(Change::Location {
            id,
            value: value.cloned(),
        });
    });
    diff_maps(&prev.max_generation, max_generation, |id, value| {
        changes.push(Change::MaxGeneration {
            id,
            value: value.copied(),
        });
    });
    if prev.retained != *retained {
        match retained.strip_prefix(prev.retained.as_slice()) {
            Some(added) => changes.push(Change::RetainedAppend {
                value: added.to_vec(),
            }),
            None => changes.push(Change::RetainedReplace {
                value: retained.clone(),
            }),
        }
    }
    changes
}

/// Calls `changed(key, new value or None if removed)` for every key whose entry differs.
/// Subtrees the two maps share are skipped, so this costs what changed, not the map's size.
fn diff_maps<V: PartialEq + Clone>(
    prev: &OrdMap<TenantShardId, V>,
    next: &OrdMap<TenantShardId, V>,
    mut changed: impl FnMut(TenantShardId, Option<&V>),
) {
    for item in prev.diff(next) {
        match item {
            DiffItem::Add(k, v) => changed(*k, Some(v)),
            DiffItem::Update { new: (k, v), .. } => changed(*k, Some(v)),
            DiffItem::Remove(k, _) => changed(*k, None),
        }
    }
}

pub fn apply(state: &mut SimState, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::MaxTerm { value } => state.max_term = value,
            Change::Location { id, value: Some(v) } => {
                state.locations.insert(id, v);
            }
            Change::Location { id, value: None } => {
                state.locations.remove(&id);
            }
            Change::MaxGeneration { id, value: Some(v) } => {
                state.max_generation.insert(id, v);
            }
            Change::MaxGeneration { id, value: None } => {
                state.max_generation.remove(&id);
            }
            Change::RetainedAppend { value } => state.retained.extend(value),
            Change::RetainedReplace { value } => state.retained = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{LocationConfig, Mode};
    use serde_json::Value;

    const NOW: &str = "2025-01-01T00:00:00.000Z";

    fn id(tenant: u128, number: u8, count: u8) -> TenantShardId {
        TenantShardId {
            tenant,
            number,
            count,
        }
    }

    fn attach(state: &mut SimState, shard: TenantShardId, generation: u32) {
        let conf = LocationConfig {
            mode: Mode::AttachedSingle,
            generation: Some(generation),
            secondary_conf: None,
            shard_number: shard.number,
            shard_count: shard.count,
            shard_stripe_size: 2048,
            tenant_conf: Value::Null,
        };
        state
            .configure(shard, &conf, NOW, Default::default())
            .expect("attach");
    }

    /// A sequence of states covering every kind of change.
    fn history_of_states() -> Vec<SimState> {
        let mut states = vec![SimState::default()];
        let mut st = SimState::default();
        let (a, b, c) = (id(1, 0, 2), id(1, 1, 2), id(2, 0, 0));
        st.max_term = Some(3);
        states.push(st.clone());
        attach(&mut st, a, 1);
        attach(&mut st, b, 1);
        states.push(st.clone());
        st.create_timeline(a, "t1").expect("timeline");
        attach(&mut st, c, 4);
        states.push(st.clone());
        st.remove(a, None, "detach"); // retains a's data
        states.push(st.clone());
        attach(&mut st, a, 2);
        st.max_generation.remove(&b);
        st.max_term = Some(4);
        states.push(st.clone());
        st.retained.clear();
        st.remove(c, Some(true), "detach");
        states.push(st.clone());
        states
    }

    fn journal_of(states: &[SimState], first_seq: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (i, pair) in states.windows(2).enumerate() {
            let record = Record {
                seq: first_seq + i as u64,
                changes: diff(&pair[0], &pair[1]),
            };
            bytes.extend(serde_json::to_vec(&record).expect("json"));
            bytes.push(b'\n');
        }
        bytes
    }

    #[test]
    fn diff_then_apply_reproduces_every_state() {
        let states = history_of_states();
        for prev in &states {
            for next in &states {
                let mut st = prev.clone();
                apply(&mut st, diff(prev, next));
                assert_eq!(&st, next);
            }
        }
        assert!(diff(&states[2], &states[2]).is_empty());
        // A changed location is one change, not a rewrite of the others.
        let changes = diff(&states[2], &states[3]);
        assert_eq!(changes.len(), 3, "{changes:?}"); // a's timeline, c, c's max_generation
    }

    #[test]
    fn replay_ignores_a_torn_last_line_at_every_cut() {
        let states = history_of_states();
        let journal = journal_of(&states, 1);
        let line_ends: Vec<usize> = journal
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        // Cut anywhere: the result is the state after the last complete line.
        for cut in 0..=journal.len() {
            let complete = line_ends.iter().filter(|end| **end <= cut).count();
            let mut st = SimState::default();
            let replay = replay(&mut st, 0, &journal[..cut]).expect("replay");
            assert_eq!(st, states[complete], "cut at {cut}");
            assert_eq!(replay.applied, complete as u64);
            let valid = if complete == 0 {
                0
            } else {
                line_ends[complete - 1]
            };
            assert_eq!(replay.valid_len, valid as u64);
        }
        // Garbage ending in a newline is tolerated as the last line only.
        let mut garbage = journal.clone();
        garbage.extend(b"{\"seq\": 9, \"chan\n");
        let mut st = SimState::default();
        let replay = replay(&mut st, 0, &garbage).expect("replay");
        assert_eq!(st, *states.last().expect("states"));
        assert_eq!(replay.valid_len, journal.len() as u64);
        let mut middle = b"garbage\n".to_vec();
        middle.extend(&journal);
        assert!(super::replay(&mut SimState::default(), 0, &middle).is_err());
    }

    #[test]
    fn replay_skips_records_in_the_snapshot_and_refuses_gaps() {
        let states = history_of_states();
        let journal = journal_of(&states, 1);
        // A compaction at seq 3 that crashed before emptying the journal.
        let mut st = states[3].clone();
        let replay = replay(&mut st, 3, &journal).expect("replay");
        assert_eq!(st, *states.last().expect("states"));
        assert_eq!(replay.applied, states.len() as u64 - 1 - 3);
        // Records 1..=3 missing: refused.
        let later = journal_of(&states[3..], 4);
        assert!(super::replay(&mut SimState::default(), 0, &later).is_err());
    }

    #[tokio::test]
    async fn survives_reopen_torn_tail_and_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let states = history_of_states();
        let (mut store, loaded) = Store::open(dir.path()).expect("open");
        assert_eq!(loaded, SimState::default());
        for pair in states.windows(2) {
            store.save(&pair[0], &pair[1]).await.expect("save");
        }
        let last = states.last().expect("states").clone();
        drop(store);

        // A crash mid-append: a torn line after the acknowledged records.
        let journal = dir.path().join(JOURNAL);
        let complete = fs::read(&journal).expect("journal");
        let mut torn = complete.clone();
        torn.extend(b"{\"seq\":99,\"changes\":[{\"op\":\"max_te");
        fs::write(&journal, &torn).expect("write");
        let (mut store, loaded) = Store::open(dir.path()).expect("reopen");
        assert_eq!(loaded, last);
        assert_eq!(
            fs::read(&journal).expect("journal"),
            complete,
            "torn tail cut"
        );

        // Appending continues the sequence after the cut.
        let mut next = last.clone();
        next.max_term = Some(10);
        store.save(&last, &next).await.expect("save");
        drop(store);
        let (mut store, loaded) = Store::open(dir.path()).expect("reopen");
        assert_eq!(loaded, next);

        // Compaction: snapshot written, journal emptied, state unchanged.
        store.compact(&next).await.expect("compact");
        assert!(fs::read(&journal).expect("journal").is_empty());
        let (mut store, loaded) = Store::open(dir.path()).expect("reopen");
        assert_eq!(loaded, next);

        // Many small changes compact by themselves, without losing any.
        let mut prev = next;
        for generation in 1..=2 * MIN_RECORDS_BEFORE_COMPACTION as u32 + 5 {
            let mut st = prev.clone();
            attach(&mut st, id(7, 0, 0), generation);
            store.save(&prev, &st).await.expect("save");
            prev = st;
        }
        let journal_records = fs::read(&journal)
            .expect("journal")
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        assert!(
            journal_records <= MIN_RECORDS_BEFORE_COMPACTION,
            "{journal_records}"
        );
        let (_, loaded) = Store::open(dir.path()).expect("reopen");
        assert_eq!(loaded, prev);
    }

    #[test]
    fn loads_a_snapshot_written_before_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = history_of_states()[3].clone();
        fs::write(
            dir.path().join(SNAPSHOT),
            serde_json::to_vec_pretty(&state).expect("json"),
        )
        .expect("write");
        let (_, loaded) = Store::open(dir.path()).expect("open");
        assert_eq!(loaded, state);
        // And the new snapshot is still the old format plus one field.
        let text = serde_json::to_value(SnapshotOut {
            journal_seq: 5,
            state: &state,
        })
        .expect("json");
        assert_eq!(
            serde_json::from_value::<SimState>(text.clone()).expect("old reader"),
            state
        );
        assert_eq!(text["journal_seq"], 5);
    }
}
