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

/// Test-only keypair (cluster-tests/fixtures/auth/README.md).
fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cluster-tests/fixtures/auth")
        .join(name)
}

/// A token signed with the test-only private key `key` ("a" or "b").
fn sign(key: &str, scope: &str) -> String {
    let pem = std::fs::read(fixture(&format!("test-only-ed25519-{key}.private.pem")))
        .expect("test private key");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("ed25519 pem");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &serde_json::json!({ "scope": scope }),
        &key,
    )
    .expect("sign")
}

/// `VALID` with an `[auth]` section instead of `insecure_no_auth`; `extra` goes into `[auth]`.
fn with_auth(public_key: &Path, extra: &str) -> String {
    VALID.replace("insecure_no_auth = true", "")
        + &format!(
            "\n[auth]\npublic_key_file = \"{}\"\n{extra}",
            public_key.display()
        )
}

/// Writes `token` (with a trailing newline, as editors leave it) to `dir/name`.
fn token_file(dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).expect("write token");
    path
}

fn check_config(dir: &Path, config: &str) -> (bool, String, String) {
    check_config_env(dir, config, &[])
}

/// The secrets' environment variables, cleared for every run but those given.
const SECRET_VARS: &[&str] = &[
    "STORCON_PUBLIC_KEY",
    "STORCON_PEER_TOKEN",
    "STORCON_PAGESERVER_TOKEN",
    "STORCON_COMPUTE_HOOK_TOKEN",
];

fn check_config_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let path = dir.join("check.toml");
    std::fs::write(
        &path,
        config.replace("DATA", &dir.join("data").display().to_string()),
    )
    .expect("write");
    let mut command = Command::new(BIN);
    for var in SECRET_VARS {
        command.env_remove(var);
    }
    let out = command
        .envs(env.iter().copied())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run storcon");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn auth_section_with_a_real_key_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = token_file(dir.path(), "peer.jwt", &sign("a", "controller_peer"));
    let ps = token_file(dir.path(), "ps.jwt", &sign("a", "pageserverapi"));
    let config = with_auth(
        &fixture("test-only-ed25519-a.public.pem"),
        &format!(
            "peer_token_file = \"{}\"\npageserver_token_file = \"{}\"\n",
            peer.display(),
            ps.display()
        ),
    );
    let (ok, stdout, stderr) = check_config(dir.path(), &config);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ok: node 1"), "{stdout}");
    // An admin token also serves as the peer token.
    let admin = token_file(dir.path(), "admin.jwt", &sign("a", "admin"));
    let config = with_auth(
        &fixture("test-only-ed25519-a.public.pem"),
        &format!("peer_token_file = \"{}\"\n", admin.display()),
    );
    let (ok, _, stderr) = check_config(dir.path(), &config);
    assert!(ok, "{stderr}");
}

#[test]
fn auth_and_insecure_no_auth_together_are_refused() {
    let config = VALID.to_owned()
        + &format!(
            "\n[auth]\npublic_key_file = \"{}\"\n",
            fixture("test-only-ed25519-a.public.pem").display()
        );
    let err = refused(&config);
    assert!(err.contains("pick one"), "{err}");
}

#[test]
fn missing_or_bad_public_key_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = token_file(dir.path(), "peer.jwt", &sign("a", "controller_peer"));
    let peer_line = format!("peer_token_file = \"{}\"\n", peer.display());
    let missing = dir.path().join("no-such-key.pem");
    let err = refused(&with_auth(&missing, &peer_line));
    assert!(err.contains("public_key_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").expect("write");
    let err = refused(&with_auth(&garbage, &peer_line));
    assert!(err.contains(&garbage.display().to_string()), "{err}");
    assert!(err.contains("Ed25519 public key"), "{err}");

    // A private key is not a public key.
    let private = fixture("test-only-ed25519-a.private.pem");
    let err = refused(&with_auth(&private, &peer_line));
    assert!(err.contains("Ed25519 public key"), "{err}");
}

#[test]
fn peer_token_is_required_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = fixture("test-only-ed25519-a.public.pem");
    let err = refused(&with_auth(&key, ""));
    assert!(err.contains("peer_token_file"), "{err}");

    let missing = dir.path().join("no-such.jwt");
    let err = refused(&with_auth(
        &key,
        &format!("peer_token_file = \"{}\"\n", missing.display()),
    ));
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let empty = token_file(dir.path(), "empty.jwt", "  ");
    let err = refused(&with_auth(
        &key,
        &format!("peer_token_file = \"{}\"\n", empty.display()),
    ));
    assert!(err.contains("empty"), "{err}");

    let infra = token_file(dir.path(), "infra.jwt", &sign("a", "infra"));
    let err = refused(&with_auth(
        &key,
        &format!("peer_token_file = \"{}\"\n", infra.display()),
    ));
    assert!(err.contains("controller_peer"), "{err}");

    let other_key = token_file(dir.path(), "other.jwt", &sign("b", "controller_peer"));
    let err = refused(&with_auth(
        &key,
        &format!("peer_token_file = \"{}\"\n", other_key.display()),
    ));
    assert!(err.contains("not accepted"), "{err}");
}

#[test]
fn missing_pageserver_token_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = token_file(dir.path(), "peer.jwt", &sign("a", "controller_peer"));
    let missing = dir.path().join("no-such-ps.jwt");
    let err = refused(&with_auth(
        &fixture("test-only-ed25519-a.public.pem"),
        &format!(
            "peer_token_file = \"{}\"\npageserver_token_file = \"{}\"\n",
            peer.display(),
            missing.display()
        ),
    ));
    assert!(err.contains("pageserver_token_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
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

/// `[auth]` without files: the key and every token from `STORCON_*` environment variables.
fn auth_from_env() -> String {
    VALID.replace("insecure_no_auth = true", "") + "\n[auth]\n"
}

#[test]
fn secrets_from_the_environment_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = std::fs::read_to_string(fixture("test-only-ed25519-a.public.pem")).expect("pem");
    let peer = sign("a", "controller_peer");
    let ps = sign("a", "pageserverapi");
    let hook = sign("a", "admin");
    let env = [
        ("STORCON_PUBLIC_KEY", pem.as_str()),
        ("STORCON_PEER_TOKEN", peer.as_str()),
        ("STORCON_PAGESERVER_TOKEN", ps.as_str()),
        ("STORCON_COMPUTE_HOOK_TOKEN", hook.as_str()),
    ];
    let (ok, stdout, stderr) = check_config_env(dir.path(), &auth_from_env(), &env);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ok: node 1"), "{stdout}");

    // Without the key anywhere: refused, naming both ways to give it.
    let (ok, _, stderr) = check_config_env(dir.path(), &auth_from_env(), &env[1..]);
    assert!(!ok);
    assert!(
        stderr.contains("public_key_file") && stderr.contains("STORCON_PUBLIC_KEY"),
        "{stderr}"
    );
    // An empty variable counts as unset.
    let (ok, _, stderr) = check_config_env(
        dir.path(),
        &auth_from_env(),
        &[
            ("STORCON_PUBLIC_KEY", pem.as_str()),
            ("STORCON_PEER_TOKEN", ""),
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("STORCON_PEER_TOKEN"), "{stderr}");
}

#[test]
fn a_secret_in_both_a_file_and_the_environment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = fixture("test-only-ed25519-a.public.pem");
    let peer = token_file(dir.path(), "peer.jwt", &sign("a", "controller_peer"));
    let config = with_auth(&key, &format!("peer_token_file = \"{}\"\n", peer.display()));
    let token = sign("a", "controller_peer");
    let (ok, _, stderr) = check_config_env(
        dir.path(),
        &config,
        &[("STORCON_PEER_TOKEN", token.as_str())],
    );
    assert!(!ok);
    assert!(
        stderr.contains("pick one") && stderr.contains("STORCON_PEER_TOKEN"),
        "{stderr}"
    );
    let pem = std::fs::read_to_string(&key).expect("pem");
    let (ok, _, stderr) =
        check_config_env(dir.path(), &config, &[("STORCON_PUBLIC_KEY", pem.as_str())]);
    assert!(!ok);
    assert!(stderr.contains("STORCON_PUBLIC_KEY"), "{stderr}");
}

#[test]
fn a_bad_secret_from_the_environment_is_named_not_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = std::fs::read_to_string(fixture("test-only-ed25519-a.public.pem")).expect("pem");
    // Signed with the other key: refused, naming the variable and never echoing the token.
    let wrong = sign("b", "controller_peer");
    let (ok, _, stderr) = check_config_env(
        dir.path(),
        &auth_from_env(),
        &[
            ("STORCON_PUBLIC_KEY", pem.as_str()),
            ("STORCON_PEER_TOKEN", wrong.as_str()),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("environment variable STORCON_PEER_TOKEN")
            && stderr.contains("not accepted"),
        "{stderr}"
    );
    assert!(!stderr.contains(&wrong), "the token was printed: {stderr}");
    // A key that is not a PEM key: named by its variable.
    let (ok, _, stderr) = check_config_env(
        dir.path(),
        &auth_from_env(),
        &[("STORCON_PUBLIC_KEY", "not a key")],
    );
    assert!(!ok);
    assert!(stderr.contains("STORCON_PUBLIC_KEY"), "{stderr}");
}
