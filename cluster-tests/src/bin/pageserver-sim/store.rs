//! `DIR/locations.json`: the whole [`SimState`], rewritten on every change.
//!
//! Guarantee: a save is atomic and durable before it returns. It writes `locations.json.tmp`,
//! fsyncs it, renames it over `locations.json` and fsyncs the directory, so a crash at any point
//! leaves either the old or the new file, never a torn one. The file I/O runs on the blocking
//! pool, not on the async workers.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::model::SimState;

const FILE: &str = "locations.json";
const TMP: &str = "locations.json.tmp";

pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates the data dir if needed and loads the state; an absent file means no locations.
    /// A file that does not parse stops the simulator rather than silently forgetting locations.
    pub fn open(dir: &Path) -> anyhow::Result<(Store, SimState)> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(FILE);
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => SimState::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok((
            Store {
                dir: dir.to_path_buf(),
            },
            state,
        ))
    }

    pub async fn save(&self, state: &SimState) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &bytes))
            .await
            .map_err(io::Error::other)?
    }
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(FILE))?;
    File::open(dir)?.sync_all()
}
