//! Finding the `storcon` binary under test.
//!
//! `cargo test -p cluster-tests` does not build another package's binaries, so the harness looks
//! for the one cargo left next to the test executable, and warns when that binary is older than the
//! sources it is built from (a stale binary is the usual reason for a confusing failure).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Environment variable naming the binary explicitly.
pub const STORCON_BIN_ENV: &str = "STORCON_BIN";

/// Path of the `storcon` binary: `$STORCON_BIN`, else `storcon` in the cargo profile directory of
/// the running executable (`target/<profile>/deps/<test>` or `target/<profile>/<bin>`).
///
/// Panics with instructions when there is none.
pub fn storcon_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(STORCON_BIN_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{STORCON_BIN_ENV}={} does not name a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("current_exe of the test process");
    let found = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("storcon"))
        .find(|candidate| candidate.is_file());
    match found {
        Some(path) => {
            warn_if_stale(&path);
            path
        }
        None => panic!(
            "no storcon binary next to {}: run `cargo build -p storcon` (or `cargo build --release \
             -p storcon` for the benchmark) first, or set {STORCON_BIN_ENV}=/path/to/storcon",
            exe.display()
        ),
    }
}

/// Prints a warning when a source file of the server crates is newer than `binary`.
fn warn_if_stale(binary: &Path) {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cluster-tests lives inside the workspace");
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for krate in ["appliance", "http", "raft-store", "state-machine"] {
        newest_file(&workspace.join(krate).join("src"), &mut newest);
        newest_file(&workspace.join(krate).join("Cargo.toml"), &mut newest);
    }
    if let Some((modified, path)) = newest
        && modified > built
    {
        eprintln!(
            "warning: {} is older than {}; run `cargo build -p storcon` to test the current code",
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
