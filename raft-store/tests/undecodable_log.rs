//! A log entry that cannot be decoded stops start-up with an error that names the cause
//! (issue 8: `cannot start raft` was printed with an empty cause).

use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use openraft::{Config, Vote};
use raft_store::{Db, HttpNetworkFactory, LogStore, Raft, StateMachineStore};
use state_machine::ReplicaId;

/// The error and its whole source chain, as `anyhow`'s `{:#}` prints it at the binary's edge.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[tokio::test]
async fn cannot_start_raft_names_its_cause() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    {
        let db = Db::open(dir.path(), ReplicaId(1)).expect("open");
        LogStore::new(db)
            .save_vote(&Vote::new(1, ReplicaId(1)))
            .await
            .expect("vote");
    }
    // An entry nested past serde_json's recursion limit, as the API once admitted, written
    // behind the store's back (the API and the proposers refuse it now).
    {
        let db = redb::Database::open(dir.path().join("raft.redb")).expect("redb");
        let tx = db.begin_write().expect("tx");
        {
            let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raft_log");
            let mut t = tx.open_table(table).expect("table");
            let mut value = serde_json::json!(1);
            for _ in 0..130 {
                value = serde_json::json!([value]);
            }
            let entry: openraft::Entry<raft_store::TypeConfig> = openraft::Entry {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, ReplicaId(1)), 1),
                payload: openraft::EntryPayload::Normal(state_machine::Command::SetTenantConfig {
                    tenant_id: "1f359dd625e519a1a4e8d7509690f6fc".parse().expect("id"),
                    config: serde_json::json!({ "deep": value }),
                }),
            };
            let bytes = serde_json::to_vec(&entry).expect("encodes");
            t.insert(1, bytes.as_slice()).expect("insert");
        }
        tx.commit().expect("commit");
    }
    let db = Db::open(dir.path(), ReplicaId(1)).expect("reopen");
    let sm = StateMachineStore::open(db.clone()).expect("sm");
    let config = Arc::new(Config::default().validate().expect("config"));
    let network = HttpNetworkFactory::new(reqwest::Client::new());
    let err = match Raft::new(ReplicaId(1), config, network, LogStore::new(db), sm).await {
        Ok(raft) => {
            let _ = raft.shutdown().await;
            panic!("raft started on an undecodable log");
        }
        Err(e) => e,
    };
    let text = chain(&err);
    assert!(text.contains("recursion limit exceeded"), "{text}");
    assert!(text.contains("Read Logs"), "{text}");
}
