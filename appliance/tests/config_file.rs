//! `storcon run --config` refuses bad config files with a message that names the problem, and
//! exits before touching the data dir.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_storcon");

const VALID: &str = r#"
node_id = 1
listen_addr = "127.0.0.1:1"
data_dir = "DATA"
insecure_no_auth = true

[cluster]
members = [{ id = 1, addr = "127.0.0.1:1" }, { id = 2, addr = "127.0.0.1:2" }]
"#;

/// Runs `storcon run` on `config` and returns (exit code, stderr).
fn run_with(dir: &Path, config: &str) -> (Option<i32>, String) {
    let data = dir.join("data");
    let path = dir.join("storcon.toml");
    std::fs::write(&path, config.replace("DATA", &data.display().to_string())).expect("write");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run storcon");
    assert!(
        !data.exists(),
        "a refused config must not create the data dir"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = run_with(dir.path(), config);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    stderr
}

#[test]
fn unknown_key_is_named() {
    let err = refused(&format!("{VALID}\n[raft]\nheartbeat_ms = 5\n"));
    assert!(err.contains("heartbeat_ms"), "{err}");
    let err = refused(&VALID.replace("insecure_no_auth", "colour = 1\ninsecure_no_auth"));
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn missing_auth_choice_is_refused() {
    let err = refused(&VALID.replace("insecure_no_auth = true", ""));
    assert!(err.contains("insecure_no_auth = true"), "{err}");
}

#[test]
fn auth_section_is_refused_until_supported() {
    let config = VALID.replace("insecure_no_auth = true", "")
        + "\n[auth]\npublic_key_file = \"/nonexistent\"\n";
    let err = refused(&config);
    assert!(err.contains("[auth]"), "{err}");
}

#[test]
fn node_must_be_a_member() {
    let err = refused(&VALID.replace("node_id = 1", "node_id = 9"));
    assert!(err.contains("node_id 9 is not in cluster.members"), "{err}");
}

#[test]
fn duplicate_members_and_bad_timings_are_refused() {
    let err = refused(&VALID.replace("id = 2", "id = 1"));
    assert!(err.contains("twice"), "{err}");
    let err = refused(&format!(
        "{VALID}\n[raft]\nelection_timeout_min_ms = 900\nelection_timeout_max_ms = 800\n"
    ));
    assert!(err.contains("[raft]"), "{err}");
}

#[test]
fn missing_required_key_is_named() {
    let err = refused(&VALID.replace("listen_addr = \"127.0.0.1:1\"", ""));
    assert!(err.contains("listen_addr"), "{err}");
}

#[test]
fn example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .expect("run storcon");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ok: node 1 of members [1, 2, 3]"),
        "{stdout}"
    );
}
