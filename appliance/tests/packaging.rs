//! `packaging/systemd/storcon.service`: its pre-start step is `check-config` on the same config
//! file that `ExecStart` runs, both commands work with this build's binary, the hardening it
//! promises is there, and `systemd-analyze verify` accepts it where systemd is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_storcon");
const INSTALLED: &str = "/usr/local/bin/storcon";

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/storcon.service")
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
