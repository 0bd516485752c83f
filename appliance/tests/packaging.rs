//! `packaging/`, checked against this build:
//! - `systemd/storcon.service`: its pre-start step is `check-config` on the same config file that
//!   `ExecStart` runs, both commands work with this build's binary, the hardening it promises is
//!   there, and `systemd-analyze verify` accepts it where systemd is installed;
//! - `docker/build-image.sh` builds the image `storcon:local` from this build's debug binaries,
//!   which prints this build's version, runs as the unprivileged user and checks the compose
//!   cluster's config files;
//! - `compose/compose.yaml` validates and gives each replica its own volume and config, a port
//!   on 127.0.0.1 only and no restart policy (docker would restart a refusal, exit 3, forever).
//!
//! The docker tests print why and pass when docker (or compose) is not usable here. The full
//! chaos check, `packaging/compose/check.sh`, is not part of this suite (README, Packaging).

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_storcon");
const INSTALLED: &str = "/usr/local/bin/storcon";

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn unit_path() -> PathBuf {
    packaging().join("systemd/storcon.service")
}

fn unit() -> String {
    std::fs::read_to_string(unit_path()).expect("read the unit")
}

/// Every value of `key` in the unit, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

fn one(unit: &str, key: &str) -> String {
    let v = values(unit, key);
    assert_eq!(v.len(), 1, "{key}: {v:?}");
    v[0].clone()
}

#[test]
fn pre_start_checks_the_config_that_start_runs() {
    let unit = unit();
    let pre: Vec<String> = one(&unit, "ExecStartPre")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let start: Vec<String> = one(&unit, "ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(pre[..3], [INSTALLED, "check-config", "--config"], "{pre:?}");
    assert_eq!(start[..3], [INSTALLED, "run", "--config"], "{start:?}");
    assert_eq!(pre.len(), 4);
    assert_eq!(start.len(), 4);
    assert_eq!(pre[3], start[3], "the same config file");

    // The pre-start command line works with this binary: a good config passes, a bad one
    // stops the start with exit 2.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
    let run = |config: &Path| {
        Command::new(BIN)
            .args(&pre[1..3])
            .arg(config)
            .output()
            .expect("run storcon")
    };
    let out = run(&example);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "node_id = \"one\"\n").expect("write");
    assert_eq!(run(&bad).status.code(), Some(2));
}

#[test]
fn restarts_on_crashes_but_not_on_bad_config_or_refusal() {
    let unit = unit();
    assert_eq!(one(&unit, "Restart"), "on-failure");
    let prevent: Vec<String> = one(&unit, "RestartPreventExitStatus")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // 2: bad config, 3: refused to start to protect the cluster (README, exit statuses).
    assert_eq!(prevent, ["2", "3"]);
}

#[test]
fn hardening_is_in_place() {
    let unit = unit();
    for (key, want) in [
        ("User", "storcon"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("StateDirectory", "storcon"),
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
    ] {
        assert_eq!(one(&unit, key), want, "{key}");
    }
    assert_eq!(
        one(&unit, "RestrictAddressFamilies"),
        "AF_INET AF_INET6 AF_UNIX"
    );
}

#[test]
fn systemd_accepts_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: verify skipped");
        return;
    };
    assert!(out.status.success());
    // Verify the unit as installed, with the binary where this build put it.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit().replace(INSTALLED, BIN);
    let path = dir.path().join("storcon.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("storcon.service"),
        "warnings about the unit: {stderr}"
    );
}

const IMAGE: &str = "storcon:local";
const REPLICAS: [u32; 3] = [1, 2, 3];

fn run(program: &str, args: &[&str]) -> Option<Output> {
    Command::new(program).args(args).output().ok()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The docker CLI is installed and its daemon answers; otherwise says so.
fn docker_usable() -> bool {
    let usable = run("docker", &["info"]).is_some_and(|o| o.status.success());
    if !usable {
        eprintln!("docker is not usable here (docker info failed): skipped");
    }
    usable
}

/// `docker compose` if the plugin is there, else `docker-compose`; `None` (said) without either.
fn compose() -> Option<Vec<&'static str>> {
    if !docker_usable() {
        return None;
    }
    for cmd in [vec!["docker", "compose"], vec!["docker-compose"]] {
        let mut version = cmd[1..].to_vec();
        version.push("version");
        if run(cmd[0], &version).is_some_and(|o| o.status.success()) {
            return Some(cmd);
        }
    }
    eprintln!("neither `docker compose` nor docker-compose is installed: skipped");
    None
}

/// `compose -f packaging/compose/compose.yaml ARGS`, which must succeed; its stdout.
fn compose_config(cmd: &[&str], args: &[&str]) -> String {
    let file = packaging().join("compose/compose.yaml");
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .arg("-f")
        .arg(&file)
        .args(args)
        .output()
        .expect("run compose");
    assert!(
        out.status.success(),
        "compose {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The lines of service `name` in the normalized `compose config` output (two-space indented
/// YAML, services at depth one under `services:`).
fn service_block<'a>(config: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = config.lines().skip_while(|l| *l != "services:").skip(1);
    let header = format!("  {name}:");
    lines
        .by_ref()
        .find(|l| *l == header)
        .unwrap_or_else(|| panic!("no service {name} in:\n{config}"));
    lines.take_while(|l| l.starts_with("    ")).collect()
}

#[test]
fn compose_file_validates_and_isolates_each_replica() {
    let Some(cmd) = compose() else { return };
    assert_eq!(compose_config(&cmd, &["config", "-q"]), "");
    let mut services: Vec<String> = compose_config(&cmd, &["config", "--services"])
        .lines()
        .map(str::to_owned)
        .collect();
    services.sort();
    let mut want: Vec<String> = REPLICAS
        .iter()
        .flat_map(|n| [format!("pageserver-{n}"), format!("storcon-{n}")])
        .collect();
    want.sort();
    assert_eq!(services, want);

    let config = compose_config(&cmd, &["config"]);
    for n in REPLICAS {
        let block = service_block(&config, &format!("storcon-{n}"));
        let has = |needle: &str| block.iter().any(|l| l.contains(needle));
        let restart: Vec<&str> = block
            .iter()
            .filter_map(|l| l.trim().strip_prefix("restart:"))
            .map(|v| v.trim().trim_matches(['\'', '"']))
            .collect();
        assert_eq!(restart, ["no"], "storcon-{n}: {block:#?}");
        assert!(has(&format!("storcon-{n}-data")), "own volume: {block:#?}");
        assert!(
            has("/var/lib/storcon"),
            "volume on the data dir: {block:#?}"
        );
        assert!(has(&format!("storcon-{n}.toml")), "own config: {block:#?}");
        assert!(has("127.0.0.1"), "published on loopback only: {block:#?}");
        assert!(!has("0.0.0.0"), "published on every interface: {block:#?}");
    }
}

/// `storcon:local` built once for this test binary from the binaries next to this build's
/// `storcon` (no cargo: this runs inside cargo). `false` (said) without docker.
fn image_built() -> bool {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let built = *BUILT.get_or_init(|| {
        if !docker_usable() {
            return false;
        }
        let bin_dir = Path::new(BIN).parent().expect("the binary's directory");
        assert!(
            bin_dir.join("pageserver-sim").exists(),
            "no pageserver-sim next to {BIN}: run `cargo build -p storcon -p pageserver-sim`"
        );
        let out = Command::new(packaging().join("docker/build-image.sh"))
            .arg("--bin-dir")
            .arg(bin_dir)
            .output()
            .expect("run build-image.sh");
        assert!(
            out.status.success(),
            "build-image.sh: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        true
    });
    if !built {
        eprintln!("no {IMAGE} image without docker: skipped");
    }
    built
}

fn docker(args: &[&str]) -> Output {
    run("docker", args).expect("run docker")
}

#[test]
fn image_prints_this_builds_version_and_runs_unprivileged() {
    if !image_built() {
        return;
    }
    let want = run(BIN, &["--version"]).expect("run storcon");
    let out = docker(&["run", "--rm", IMAGE, "--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&want.stdout));
    assert!(text(&out.stdout).starts_with("storcon "));

    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}}",
        IMAGE,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        r#"10001:10001 ["/usr/local/bin/storcon"]"#
    );

    // The simulator's shared libraries are in the image too.
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/usr/local/bin/pageserver-sim",
        IMAGE,
        "--help",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("--controller"));
}

/// `storcon check-config` in a container of the image, on `config` mounted where the compose
/// file mounts each replica's.
fn check_config_in_image(config: &Path) -> Output {
    let mount = format!("{}:/etc/storcon/storcon.toml:ro", config.display());
    docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        IMAGE,
        "check-config",
        "--config",
        "/etc/storcon/storcon.toml",
    ])
}

#[test]
fn image_accepts_the_compose_configs() {
    if !image_built() {
        return;
    }
    for n in REPLICAS {
        let config = packaging().join(format!("compose/storcon-{n}.toml"));
        let out = check_config_in_image(&config);
        assert!(out.status.success(), "storcon-{n}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with(&format!("ok: node {n} of members [1, 2, 3]")),
            "{}",
            text(&out.stdout)
        );
    }
    // And the same check refuses a bad file there, with the bad-config status.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "node_id = \"one\"\n").expect("write");
    // The container's user must be able to read it, as it reads the real ones.
    for (path, mode) in [(dir.path(), 0o755), (bad.as_path(), 0o644)] {
        std::fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
    }
    assert_eq!(check_config_in_image(&bad).status.code(), Some(2));
}

#[test]
fn packaging_scripts_parse() {
    for script in ["docker/build-image.sh", "compose/check.sh"] {
        let path = packaging().join(script);
        let out = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("run bash -n");
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
}
