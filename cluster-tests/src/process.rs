//! One replica's `storcon run` process: spawn, SIGKILL, restart, wipe, logs.
//!
//! Invariants:
//! - at most one child per replica; `spawn` refuses while one is running;
//! - every child is SIGKILLed and waited for by `kill`, which `Cluster`'s `Drop` calls for all;
//! - on Linux a child also gets SIGKILL if the thread that spawned it dies (`PR_SET_PDEATHSIG`), so
//!   an aborted test process leaves no replicas behind. The harness spawns from the test's own
//!   thread, which outlives the cluster;
//! - the log file is appended to across restarts; each start first writes a marker line, so
//!   [`Replica::log_since_last_start`] sees only the current incarnation's output.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};

const START_MARKER: &str = "==== cluster-tests: starting replica";

#[derive(Default)]
struct ProcState {
    child: Option<Child>,
    starts: u32,
    /// Exit status of a child that ended without the harness killing it, once noticed.
    exited_on_its_own: Option<ExitStatus>,
}

pub(crate) struct Replica {
    pub id: u64,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    state: Mutex<ProcState>,
}

impl Replica {
    pub fn new(id: u64, addr: SocketAddr, dir: &Path) -> Self {
        Replica {
            id,
            addr,
            config_path: dir.join(format!("node-{id}.toml")),
            data_dir: dir.join(format!("data-{id}")),
            log_path: dir.join(format!("node-{id}.log")),
            state: Mutex::new(ProcState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProcState> {
        // A panic while holding this lock leaves the state consistent enough to kill children.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `storcon run --config <config_path>`, output appended to the log file.
    pub fn spawn(&self, bin: &Path, rust_log: &str) -> anyhow::Result<()> {
        let mut state = self.state();
        if let Some(child) = state.child.as_mut()
            && child.try_wait()?.is_none()
        {
            bail!(
                "replica {} is already running (pid {})",
                self.id,
                child.id()
            );
        }
        state.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(
            log,
            "{START_MARKER} {} (start #{}) ====",
            self.id, state.starts
        )?;
        let stderr = log.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} for replica {}", bin.display(), self.id))?;
        state.child = Some(child);
        state.exited_on_its_own = None;
        Ok(())
    }

    /// SIGKILLs and reaps the child, if any. Returns its exit status.
    pub fn kill(&self) -> Option<ExitStatus> {
        let mut state = self.state();
        let mut child = state.child.take()?;
        // Fails only when the child was already reaped, which `wait` below then reports.
        let _ = child.kill();
        match child.wait() {
            Ok(status) => Some(status),
            Err(e) => {
                eprintln!("cluster-tests: waiting for replica {} failed: {e}", self.id);
                None
            }
        }
    }

    /// Whether a child is running. Notices (and remembers) a child that exited on its own.
    pub fn is_running(&self) -> bool {
        let mut state = self.state();
        let Some(child) = state.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                state.child = None;
                state.exited_on_its_own = Some(status);
                false
            }
            Err(_) => false,
        }
    }

    /// The exit status of a child that ended without being killed by the harness.
    pub fn exited_on_its_own(&self) -> Option<ExitStatus> {
        self.is_running();
        self.state().exited_on_its_own
    }

    /// Forgets an exit that the test expected, so it is not reported as a crash.
    pub fn acknowledge_exit(&self) {
        self.state().exited_on_its_own = None;
    }

    pub fn pid(&self) -> Option<u32> {
        self.state().child.as_ref().map(Child::id)
    }

    /// Deletes everything inside the data directory (the directory itself stays, empty).
    pub fn wipe(&self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("refusing to wipe replica {} while it runs", self.id);
        }
        let entries = match fs::read_dir(&self.data_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context(format!("reading {}", self.data_dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    /// The whole log file, across restarts.
    pub fn log(&self) -> String {
        match fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("<cannot read {}: {e}>", self.log_path.display()),
        }
    }

    /// The output of the latest start only.
    pub fn log_since_last_start(&self) -> String {
        let log = self.log();
        match log.rfind(START_MARKER) {
            Some(at) => log[at..].to_owned(),
            None => log,
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Makes the child get SIGKILL when the spawning thread dies.
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only calls prctl, getppid and _exit, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_cmd: &mut Command) {}
