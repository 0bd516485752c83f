//! A replica whose log holds an entry it cannot decode stops with a message that gives the whole
//! cause (issue 8: it printed `cannot start raft` and nothing else). The entry is the one the
//! API used to admit: a tenant config nested past serde_json's recursion limit.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_storcon");

#[test]
fn cannot_start_raft_prints_its_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    {
        let db = redb::Database::create(data.join("raft.redb")).expect("redb");
        let tx = db.begin_write().expect("tx");
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("raft_meta");
            tx.open_table(meta)
                .expect("meta")
                .insert("node_id", b"1".as_slice())
                .expect("node id");
            let log: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raft_log");
            let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
            let entry = format!(
                r#"{{"log_id":{{"leader_id":{{"term":1,"node_id":1}},"index":1}},"payload":{{"Normal":{{"SetTenantConfig":{{"tenant_id":"1f359dd625e519a1a4e8d7509690f6fc","config":{{"deep":{deep}}}}}}}}}}}"#
            );
            tx.open_table(log)
                .expect("log")
                .insert(1, entry.as_bytes())
                .expect("entry");
        }
        tx.commit().expect("commit");
    }
    let config = format!(
        r#"
node_id = 1
listen_addr = "127.0.0.1:1"
data_dir = "{}"
insecure_no_auth = true

[cluster]
members = [{{ id = 1, addr = "127.0.0.1:1" }}, {{ id = 2, addr = "127.0.0.1:2" }}]
"#,
        data.display()
    );
    let path = dir.path().join("storcon.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run storcon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("cannot start raft"), "{stderr}");
    assert!(stderr.contains("recursion limit exceeded"), "{stderr}");
}
