//! Seeding a data dir as a one-member cluster holding a given state: the one mechanism behind
//! `storcon restore` (state from a backup document) and `storcon recover` (state from a
//! surviving replica's own store).
//!
//! Steps:
//! 1. build the state: [`Seed::from_backup`] takes a verified document's rows;
//!    [`Seed::from_survivor`] reads a replica's applied rows and applies, in log order, every
//!    entry it holds beyond `last_applied` (committed or not, as etcd's `--force-new-cluster`
//!    does: the survivor may hold entries a lost majority committed);
//! 2. raise every generation by the gap ([`Seed::apply_gap`], the pure
//!    `State::raise_generations`), since generations issued after that point are unknown, and
//!    the starting term by the same gap, since so are the old cluster's later terms;
//! 3. write a new `raft.redb` beside the data dir's ([`Seed::install`]) in one Immediate
//!    transaction, then rename it into place and fsync the directory. A recovered replica's
//!    previous file is kept as `raft.redb.before-recover-<unix ms>`.
//!
//! What the seeded store holds, so that `storcon run` starts it as the leader of a one-member
//! cluster (openraft 0.9's rules, read from its `get_initial_state` and election code):
//! - state rows, `last_applied = L` (the last log id of the state) and a snapshot at `L`
//!   whose membership is this replica alone, also stored as the applied membership at `L`;
//! - an empty log purged up to `L` (`last_purged = committed = L`), so the log continues at
//!   `L.index + 1` and a member added later is sent the snapshot;
//! - a vote for itself, not committed, at the highest term the old log or vote reached plus the
//!   gap: the only voter elects itself at once at the next term, above every entry it holds
//!   (openraft compares terms only; a leader id in the seeded log ids that names another node
//!   is just the old cluster's history).
//!
//! The store is not pristine (it has a snapshot, a purge point and a vote), so formation admits
//! it without asking anyone and never initializes: the config's other members are ignored,
//! and Raft's membership (this replica alone) is what it talks to. Members are added back
//! with the membership API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use openraft::{BasicNode, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use redb::ReadableTable;
use state_machine::{GapError, LogPoint, ReplicaId, RestoreKind, State};

use crate::backup::BackupDocument;
use crate::codec;
use crate::db::{Db, LOG, OpenError, RAFT_META, SM_META, SM_ROWS, get_json, put_json};
use crate::error::StoreError;
use crate::log_store::{COMMITTED, LAST_PURGED, VOTE};
use crate::snapshot::{FORMAT_VERSION, SnapshotBlob, StoredSnapshot};
use crate::state_machine::{LAST_APPLIED, MEMBERSHIP, SNAPSHOT};

/// The store file in a data dir.
pub const STORE_FILE: &str = "raft.redb";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    Open(#[from] OpenError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "the state was taken before anything was applied (no log id); there is nothing to \
         restore"
    )]
    NothingApplied,
    #[error("{0}")]
    Gap(#[from] GapError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SeedError + 'a {
    move |source| SeedError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// What a survivor's store held, for the operator.
#[derive(Debug, Clone)]
pub struct SurvivorReport {
    pub last_applied: Option<LogId<ReplicaId>>,
    /// Entries beyond `last_applied` that were applied to the state (normal ones).
    pub applied_from_log: u64,
    /// The survivor's own vote term.
    pub vote_term: u64,
    /// The membership the survivor last applied.
    pub old_voters: BTreeSet<ReplicaId>,
}

/// A state and the log point it stands for, ready to be written as a one-member store.
pub struct Seed {
    state: State,
    rows: BTreeMap<String, Vec<u8>>,
    last_log_id: LogId<ReplicaId>,
    min_term: u64,
}

impl Seed {
    /// From a verified backup document and the state its rows decoded to.
    pub fn from_backup(doc: &BackupDocument, state: State) -> Result<Seed, SeedError> {
        let last_log_id = doc.taken_at_log_id.ok_or(SeedError::NothingApplied)?;
        Ok(Seed {
            state,
            rows: doc.payload.row_map(),
            last_log_id,
            min_term: last_log_id.leader_id.term,
        })
    }

    /// From a replica's store in `dir`: applied rows plus every entry beyond `last_applied`.
    /// Blocking.
    pub fn from_survivor(
        dir: &Path,
        node_id: ReplicaId,
    ) -> Result<(Seed, SurvivorReport), SeedError> {
        let db = Db::open(dir, node_id)?;
        let tx = db.read().map_err(SeedError::from)?;
        let sm_meta = tx.open_table(SM_META).map_err(StoreError::from)?;
        let last_applied: Option<LogId<ReplicaId>> = get_json(&sm_meta, LAST_APPLIED)?.flatten();
        let old_membership: StoredMembership<ReplicaId, BasicNode> =
            get_json(&sm_meta, MEMBERSHIP)?.unwrap_or_default();
        let raft_meta = tx.open_table(RAFT_META).map_err(StoreError::from)?;
        let vote: Option<Vote<ReplicaId>> = get_json(&raft_meta, VOTE)?;
        let mut rows = BTreeMap::new();
        for item in tx
            .open_table(SM_ROWS)
            .map_err(StoreError::from)?
            .iter()
            .map_err(StoreError::from)?
        {
            let (k, v) = item.map_err(StoreError::from)?;
            rows.insert(k.value().to_string(), v.value().to_vec());
        }
        let mut state = State::from_rows(rows.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(StoreError::from)?;
        let mut last_log_id = last_applied;
        let mut applied_from_log = 0;
        let start = last_applied.map_or(0, |l| l.index + 1);
        let log = tx.open_table(LOG).map_err(StoreError::from)?;
        for item in log.range(start..).map_err(StoreError::from)? {
            let (_, v) = item.map_err(StoreError::from)?;
            let entry = codec::decode_entry(v.value())?;
            if let EntryPayload::Normal(cmd) = &entry.payload {
                // A refused command changes nothing, here as on every replica.
                let (_, mutations) = state.apply(cmd);
                for m in mutations {
                    match m.value {
                        Some(v) => rows.insert(m.key, v),
                        None => rows.remove(&m.key),
                    };
                }
                applied_from_log += 1;
            }
            last_log_id = Some(entry.log_id);
        }
        let last_log_id = last_log_id.ok_or(SeedError::NothingApplied)?;
        let vote_term = vote.map_or(0, |v| v.leader_id().term);
        let report = SurvivorReport {
            last_applied,
            applied_from_log,
            vote_term,
            old_voters: old_membership.membership().voter_ids().collect(),
        };
        Ok((
            Seed {
                state,
                rows,
                last_log_id,
                min_term: vote_term.max(last_log_id.leader_id.term),
            },
            report,
        ))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The last log id of the old cluster the state includes.
    pub fn last_log_id(&self) -> LogId<ReplicaId> {
        self.last_log_id
    }

    /// Raises every generation by `gap` and records the restore (see `state_machine`'s
    /// `restore.rs` for the guarantee), and raises the term the store starts at by `gap` too:
    /// the old cluster may have held up to `gap` elections after that point, and pageservers
    /// that heard its terms (`x-storcon-term`) must hear higher ones. All or nothing.
    pub fn apply_gap(&mut self, kind: RestoreKind, gap: u32) -> Result<(), SeedError> {
        let at = LogPoint {
            term: self.last_log_id.leader_id.term,
            index: self.last_log_id.index,
        };
        for m in self.state.raise_generations(kind, at, gap)? {
            match m.value {
                Some(v) => self.rows.insert(m.key, v),
                None => self.rows.remove(&m.key),
            };
        }
        self.min_term = self.min_term.saturating_add(u64::from(gap));
        Ok(())
    }

    /// Writes the seeded store into `dir` as `raft.redb`: built beside it, renamed into place,
    /// directory fsynced. An existing `raft.redb` is kept as
    /// `raft.redb.before-recover-<stamp>` (returned). Blocking.
    pub fn install(
        &self,
        dir: &Path,
        node_id: ReplicaId,
        addr: &str,
        stamp: u64,
    ) -> Result<Option<PathBuf>, SeedError> {
        let building = dir.join(format!("{STORE_FILE}.seeding"));
        match std::fs::remove_file(&building) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("cannot remove", &building)(e));
            }
            _ => {}
        }
        self.write_store(&building, node_id, addr)?;
        let target = dir.join(STORE_FILE);
        let previous = if target.exists() {
            let kept = dir.join(format!("{STORE_FILE}.before-recover-{stamp}"));
            std::fs::rename(&target, &kept).map_err(io_err("cannot move aside", &target))?;
            Some(kept)
        } else {
            None
        };
        std::fs::rename(&building, &target).map_err(io_err("cannot rename", &building))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot fsync", dir))?;
        Ok(previous)
    }

    fn write_store(&self, path: &Path, node_id: ReplicaId, addr: &str) -> Result<(), SeedError> {
        let db = Db::open_file(path, node_id)?;
        let last = self.last_log_id;
        let nodes = BTreeMap::from([(node_id, BasicNode::new(addr))]);
        let membership = StoredMembership::new(
            Some(last),
            Membership::new(vec![BTreeSet::from([node_id])], nodes),
        );
        let blob = SnapshotBlob {
            version: FORMAT_VERSION,
            last_applied: Some(last),
            membership: membership.clone(),
            rows: self
                .rows
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let snapshot = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(last),
                last_membership: membership.clone(),
                snapshot_id: format!("seed-{}-{}", last.leader_id.term, last.index),
            },
            data: codec::encode_snapshot(&blob)?,
        };
        // Not committed: the only voter elects itself at the next term on its first tick.
        let vote = Vote::new(self.min_term, node_id);
        db.write_blocking(true, |tx| {
            {
                let mut rows = tx.open_table(SM_ROWS)?;
                for (k, v) in &self.rows {
                    rows.insert(k.as_str(), v.as_slice())?;
                }
            }
            put_json(tx, SM_META, LAST_APPLIED, &Some(last))?;
            put_json(tx, SM_META, MEMBERSHIP, &membership)?;
            put_json(tx, SM_META, SNAPSHOT, &snapshot)?;
            put_json(tx, RAFT_META, VOTE, &vote)?;
            put_json(tx, RAFT_META, COMMITTED, &Some(last))?;
            put_json(tx, RAFT_META, LAST_PURGED, &last)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry};
    use state_machine::{Command, NodeId, NodeRegisterRequest, Response};

    use super::*;
    use crate::types::TypeConfig;
    use crate::{HttpNetworkFactory, LogStore, Raft, StateMachineStore};

    fn log_id(term: u64, index: u64) -> LogId<ReplicaId> {
        LogId::new(CommittedLeaderId::new(term, ReplicaId(2)), index)
    }

    fn register(id: u64) -> Command {
        Command::RegisterNode(NodeRegisterRequest {
            node_id: NodeId(id),
            listen_pg_addr: "ps".into(),
            listen_pg_port: 1,
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: "ps".into(),
            listen_http_port: id as u16,
            listen_https_port: None,
            availability_zone_id: "az".into(),
            node_ip_addr: None,
        })
    }

    fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(term, index),
            payload,
        }
    }

    /// A replica's store as a three-member cluster left it: a membership entry and two
    /// registrations applied (term 3), plus `pending` registrations in the log only (term 4).
    async fn old_replica(dir: &Path, pending: &[u64]) -> StateMachineStore {
        let db = Db::open(dir, ReplicaId(1)).expect("open");
        let mut sm = StateMachineStore::open(db.clone()).expect("sm");
        let ids = BTreeSet::from([ReplicaId(1), ReplicaId(2), ReplicaId(3)]);
        let nodes = ids
            .iter()
            .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{id}"))))
            .collect::<BTreeMap<_, _>>();
        let membership = EntryPayload::Membership(Membership::new(vec![ids], nodes));
        sm.apply([
            entry(3, 1, membership),
            entry(3, 2, EntryPayload::Normal(register(10))),
            entry(3, 3, EntryPayload::Normal(register(11))),
        ])
        .await
        .expect("apply");
        db.write_blocking(true, |tx| {
            let mut log = tx.open_table(LOG)?;
            for (i, id) in pending.iter().enumerate() {
                let e = entry(4, 4 + i as u64, EntryPayload::Normal(register(*id)));
                log.insert(e.log_id.index, codec::encode_entry(&e)?.as_slice())?;
            }
            put_json(tx, RAFT_META, VOTE, &Vote::new_committed(5, ReplicaId(2)))
        })
        .expect("log");
        sm
    }

    /// Starts openraft on the seeded store in `dir` as node 7 and proposes one command.
    async fn start_and_write(dir: &Path) -> (Raft, crate::SharedState) {
        let db = Db::open(dir, ReplicaId(7)).expect("open seeded");
        assert!(!db.is_pristine_blocking().expect("pristine?"));
        let sm = StateMachineStore::open(db.clone()).expect("sm");
        let state = sm.shared_state();
        let config = openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            ..Default::default()
        };
        let raft = Raft::new(
            ReplicaId(7),
            Arc::new(config.validate().expect("config")),
            HttpNetworkFactory::new(reqwest::Client::new()),
            LogStore::new(db),
            sm,
        )
        .await
        .expect("raft");
        raft.wait(Some(Duration::from_secs(10)))
            .current_leader(ReplicaId(7), "leads its one-member cluster")
            .await
            .expect("leader");
        let written = raft.client_write(register(99)).await.expect("write");
        assert!(matches!(written.data, Response::NodeRegistered(_)));
        (raft, state)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_restored_store_elects_itself_and_serves_above_the_backup() {
        let old = tempfile::tempdir().expect("tmp");
        let sm = old_replica(old.path(), &[12]).await;
        let bytes = sm.backup_source(ReplicaId(1)).take(5).await.expect("take");
        let (doc, state) = BackupDocument::decode_verified(&bytes).expect("verified");
        // The backup is the applied state: the pending entry is not in it.
        assert_eq!(doc.taken_at_log_id, Some(log_id(3, 3)));
        assert_eq!(state.nodes().count(), 2);

        let mut seed = Seed::from_backup(&doc, state).expect("seed");
        seed.apply_gap(RestoreKind::Restore, 1000).expect("gap");
        let new = tempfile::tempdir().expect("tmp");
        let previous = tokio::task::block_in_place(|| {
            seed.install(new.path(), ReplicaId(7), "127.0.0.1:7", 1)
        })
        .expect("install");
        assert_eq!(previous, None);

        let (raft, state) = start_and_write(new.path()).await;
        let m = raft.metrics().borrow().clone();
        let applied = m.last_applied.expect("applied");
        // Elected above the old term plus the gap, and the log continues after the backup.
        assert!(
            applied.index > 3 && applied.leader_id.term > 1003,
            "{applied:?}"
        );
        let voters: Vec<_> = m.membership_config.membership().voter_ids().collect();
        assert_eq!(voters, [ReplicaId(7)]);
        let nodes: Vec<_> = state.read().nodes().map(|n| n.id.0).collect();
        assert_eq!(nodes, [10, 11, 99]);
        assert_eq!(
            state.read().restored_from().map(|r| r.taken_at.index),
            Some(3)
        );
        raft.shutdown().await.expect("shutdown");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_recovered_store_keeps_the_log_beyond_applied_and_the_old_file() {
        let dir = tempfile::tempdir().expect("tmp");
        drop(old_replica(dir.path(), &[12, 13]).await);
        let (mut seed, report) =
            tokio::task::block_in_place(|| Seed::from_survivor(dir.path(), ReplicaId(1)))
                .expect("survivor");
        assert_eq!(report.last_applied, Some(log_id(3, 3)));
        assert_eq!(report.applied_from_log, 2);
        assert_eq!(report.vote_term, 5);
        assert_eq!(report.old_voters.len(), 3);
        assert_eq!(seed.last_log_id(), log_id(4, 5));
        assert_eq!(seed.state().nodes().count(), 4);
        seed.apply_gap(RestoreKind::Recover, 10).expect("gap");
        let previous = tokio::task::block_in_place(|| {
            seed.install(dir.path(), ReplicaId(1), "127.0.0.1:1", 42)
        })
        .expect("install")
        .expect("old file kept");
        assert!(previous.ends_with("raft.redb.before-recover-42"));
        assert!(previous.exists());
        let db = Db::open(dir.path(), ReplicaId(1)).expect("reopen");
        let mut sm = StateMachineStore::open(db).expect("sm");
        let (applied, membership) = sm.applied_state().await.expect("applied");
        assert_eq!(applied, Some(log_id(4, 5)));
        assert_eq!(
            membership.membership().voter_ids().collect::<Vec<_>>(),
            [ReplicaId(1)]
        );
        let nodes: Vec<_> = sm.shared_state().read().nodes().map(|n| n.id.0).collect();
        assert_eq!(nodes, [10, 11, 12, 13]);
    }
}
