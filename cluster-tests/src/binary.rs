//! Finding the binaries under test: `storcon` and `pageserver-sim`.
//!
//! `cargo test -p cluster-tests` does not build another package's binaries, so the harness looks
//! for the ones cargo left next to the test executable, and warns when a binary is older than the
//! sources it is built from (a stale binary is the usual reason for a confusing failure). Build
//! both first: `cargo build -p storcon -p pageserver-sim` (add `--release` for the benchmark).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Environment variable naming the `storcon` binary explicitly.
pub const STORCON_BIN_ENV: &str = "STORCON_BIN";

/// Environment variable naming the `pageserver-sim` binary explicitly.
pub const PAGESERVER_SIM_BIN_ENV: &str = "PAGESERVER_SIM_BIN";

/// The crates the `storcon` binary is built from.
const STORCON_SOURCES: &[&str] = &[
    "appliance",
    "http",
    "raft-store",
    "state-machine",
    "api",
    "failpoints",
];

/// Path of the `storcon` binary: `$STORCON_BIN`, else `storcon` in the cargo profile directory of
/// the running executable (`target/<profile>/deps/<test>` or `target/<profile>/<bin>`).
///
/// Panics with instructions when there is none.
pub fn storcon_binary() -> PathBuf {
    find_binary("storcon", STORCON_BIN_ENV, STORCON_SOURCES)
}

/// Path of the `pageserver-sim` binary: `$PAGESERVER_SIM_BIN`, else `pageserver-sim` in the
/// cargo profile directory of the running executable, as for [`storcon_binary`].
///
/// Panics with instructions when there is none.
pub fn pageserver_sim_binary() -> PathBuf {
    find_binary(
        "pageserver-sim",
        PAGESERVER_SIM_BIN_ENV,
        &["pageserver-sim"],
    )
}

/// `$env`, else the binary `name` (built by the package of the same name) next to the running
/// executable, with a warning when it is older than the `sources` crates.
fn find_binary(name: &str, env: &str, sources: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env}={} does not name a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("current_exe of the test process");
    let found = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    match found {
        Some(path) => {
            warn_if_stale(&path, name, sources);
            path
        }
        None => panic!(
            "no {name} binary next to {}: run `cargo build -p storcon -p pageserver-sim` (or \
             `cargo build --release -p storcon -p pageserver-sim` for the benchmark) first, or \
             set {env}=/path/to/{name}",
            exe.display()
        ),
    }
}

/// Prints a warning when a source file of the `sources` crates is newer than `binary`.
fn warn_if_stale(binary: &Path, package: &str, sources: &[&str]) {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cluster-tests lives inside the workspace");
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for krate in sources {
        newest_file(&workspace.join(krate).join("src"), &mut newest);
        newest_file(&workspace.join(krate).join("Cargo.toml"), &mut newest);
    }
    if let Some((modified, path)) = newest
        && modified > built
    {
        eprintln!(
            "warning: {} is older than {}; run `cargo build -p {package}` to test the current code",
            binary.display(),
            path.display()
        );
    }
}

fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = path.metadata() else { return };
    if meta.is_dir() {
        let Ok(entries) = path.read_dir() else { return };
        for entry in entries.flatten() {
            newest_file(&entry.path(), newest);
        }
    } else if let Ok(modified) = meta.modified()
        && newest.as_ref().is_none_or(|(t, _)| modified > *t)
    {
        *newest = Some((modified, path.to_owned()));
    }
}
