//! Running the `storcon` binary's operator subcommands as a subprocess, and reading what it
//! printed (tables, JSON, `label: value` lines).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::binary::storcon_binary;

/// One CLI run must end well within this (a `--wait` test bounds its own `--timeout`).
pub const CLI_DEADLINE: Duration = Duration::from_secs(180);

/// One finished run of the `storcon` binary.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exit 0, else a panic with everything printed.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self}");
        self
    }

    pub fn fails(self, code: i32, stderr_has: &[&str]) -> Run {
        assert_eq!(self.code, code, "{self}");
        for needle in stderr_has {
            assert!(
                self.stderr.contains(needle),
                "no {needle:?} in stderr: {self}"
            );
        }
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self}"))
    }

    /// The first table printed: one map per row, by header.
    pub fn table(&self) -> Vec<BTreeMap<String, String>> {
        let mut lines = self
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|') || l.starts_with('+'))
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                let inner = l.trim().trim_start_matches('|').trim_end_matches('|');
                inner
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect::<Vec<_>>()
            });
        let header = lines.next().unwrap_or_else(|| panic!("no table: {self}"));
        lines
            .map(|cells| {
                assert_eq!(cells.len(), header.len(), "ragged row: {self}");
                header.iter().cloned().zip(cells).collect()
            })
            .collect()
    }

    /// The value after `label: ` on its own line.
    pub fn field(&self, label: &str) -> String {
        let prefix = format!("{label}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {label:?} line: {self}"))
            .to_string()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "storcon {:?} exited {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `storcon <args>` with `env` added and no `STORCON_API`/`STORCON_TOKEN` from the
/// test's own environment.
pub async fn run_storcon(args: Vec<String>, env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(storcon_binary());
    cmd.args(&args)
        .env_remove("STORCON_API")
        .env_remove("STORCON_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(CLI_DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("storcon {args:?} still running after {CLI_DEADLINE:?}"))
        .expect("storcon starts");
    Run {
        args,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
