//! Simulated remote storage (the pageserver's S3 bucket): a directory that several simulators
//! share, laid out as upstream's bucket is:
//!
//! - `tenants/<tenant_shard_id>/timelines/<timeline_id>/index_part.json`: a timeline's
//!   metadata (LSNs, archival state), written by the attached location;
//! - `tenants/<tenant_shard_id>/heatmap-v1.json`: the layers a secondary should hold, uploaded
//!   by the attached location only while its tenant config has a `heatmap_period`.
//!
//! Only a deletion removes anything: a detach or a restart leaves it, which is what lets a new
//! attached location (another simulator) find the timelines. Writes go to a temporary file and
//! are renamed into place, so a reader never sees half an object; there is no fsync, as an
//! object store's durability is not what the tests examine.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::TenantShardId;
use crate::model::{LAYERS_PER_TIMELINE, Location, SimState, Timeline};

const TENANTS: &str = "tenants";
const INDEX: &str = "index_part.json";
const HEATMAP: &str = "heatmap-v1.json";

#[derive(Clone, Debug)]
pub struct RemoteStorage {
    root: PathBuf,
}

/// What an attached location uploads for its secondaries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub generation: u32,
    pub uploaded_at: String,
    /// Layers per timeline.
    pub timelines: BTreeMap<String, u64>,
}

impl Heatmap {
    pub fn layers(&self) -> u64 {
        self.timelines.values().sum()
    }
}

/// One object an attached location writes after a change.
#[derive(Debug, PartialEq)]
pub enum Upload {
    Timeline(TenantShardId, String, Timeline),
    Heatmap(TenantShardId, Heatmap),
}

/// What the attached locations of `next` upload: every timeline that is new or changed since
/// `prev`, and a fresh heatmap for each changed location whose config asks for heatmaps.
pub fn uploads(prev: &SimState, next: &SimState, now: &str) -> Vec<Upload> {
    let mut out = Vec::new();
    // Only what changed: shared subtrees of the two maps are skipped.
    let changed = prev
        .locations
        .diff(&next.locations)
        .filter_map(|d| match d {
            imbl::ordmap::DiffItem::Add(id, loc)
            | imbl::ordmap::DiffItem::Update { new: (id, loc), .. } => Some((id, loc)),
            imbl::ordmap::DiffItem::Remove(..) => None,
        });
    for (id, loc) in changed {
        let before = prev.locations.get(id);
        if !loc.mode.is_attached() || before.is_some_and(|b| b.same(loc)) {
            continue;
        }
        let before = before
            .filter(|b| b.mode.is_attached())
            .map(|b| &b.timelines);
        for (name, tl) in &loc.timelines {
            if before.and_then(|t| t.get(name)) != Some(tl) {
                out.push(Upload::Timeline(*id, name.clone(), *tl));
            }
        }
        if loc.uploads_heatmaps()
            && let Some(heatmap) = heatmap_of(loc, now)
        {
            out.push(Upload::Heatmap(*id, heatmap));
        }
    }
    out
}

/// The heatmap of an attached location: every layer of every timeline.
pub fn heatmap_of(loc: &Location, now: &str) -> Option<Heatmap> {
    Some(Heatmap {
        generation: loc.generation.filter(|_| loc.mode.is_attached())?,
        uploaded_at: now.to_owned(),
        timelines: loc
            .timelines
            .keys()
            .map(|name| (name.clone(), LAYERS_PER_TIMELINE))
            .collect(),
    })
}

impl RemoteStorage {
    pub fn new(root: PathBuf) -> Self {
        RemoteStorage { root }
    }

    fn shard_dir(&self, id: TenantShardId) -> PathBuf {
        self.root.join(TENANTS).join(id.to_string())
    }

    fn index_path(&self, id: TenantShardId, timeline: &str) -> PathBuf {
        self.shard_dir(id)
            .join("timelines")
            .join(timeline)
            .join(INDEX)
    }

    pub async fn put_timeline(
        &self,
        id: TenantShardId,
        timeline: &str,
        tl: &Timeline,
    ) -> io::Result<()> {
        let path = self.index_path(id, timeline);
        let bytes = serde_json::to_vec(tl).map_err(io::Error::other)?;
        blocking(move || put(&path, &bytes)).await
    }

    pub async fn delete_timeline(&self, id: TenantShardId, timeline: &str) -> io::Result<()> {
        let dir = self.shard_dir(id).join("timelines").join(timeline);
        blocking(move || remove_dir(&dir)).await
    }

    /// Every timeline stored for `id`.
    pub async fn timelines(&self, id: TenantShardId) -> io::Result<BTreeMap<String, Timeline>> {
        let dir = self.shard_dir(id).join("timelines");
        blocking(move || {
            let mut out = BTreeMap::new();
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                match fs::read(entry.path().join(INDEX)) {
                    Ok(bytes) => {
                        let tl: Timeline = serde_json::from_slice(&bytes).map_err(|e| {
                            io::Error::other(format!("{}: {e}", entry.path().display()))
                        })?;
                        out.insert(name, tl);
                    }
                    // A timeline directory without an index is a deletion that did not finish.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn put_heatmap(&self, id: TenantShardId, heatmap: &Heatmap) -> io::Result<()> {
        let path = self.shard_dir(id).join(HEATMAP);
        let bytes = serde_json::to_vec(heatmap).map_err(io::Error::other)?;
        blocking(move || put(&path, &bytes)).await
    }

    pub async fn heatmap(&self, id: TenantShardId) -> io::Result<Option<Heatmap>> {
        let path = self.shard_dir(id).join(HEATMAP);
        blocking(move || match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// The stored shard directories that `target` covers: its own, or, for an unsharded id,
    /// every shard of the tenant in every shard count (upstream deletes the prefix
    /// `tenants/<tenant_id>`, which all of them start with).
    pub async fn shards_under(&self, target: TenantShardId) -> io::Result<Vec<TenantShardId>> {
        let dir = self.root.join(TENANTS);
        blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                let Ok(id) = name.parse::<TenantShardId>() else {
                    continue;
                };
                if covers(target, id) {
                    out.push(id);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    pub async fn delete_shard(&self, id: TenantShardId) -> io::Result<()> {
        let dir = self.shard_dir(id);
        blocking(move || remove_dir(&dir)).await
    }
}

/// Whether a delete of `target` covers shard `id`: the same shard, or any shard of the tenant
/// when `target` is the unsharded id.
pub fn covers(target: TenantShardId, id: TenantShardId) -> bool {
    if target.count == 0 {
        id.tenant == target.tenant
    } else {
        id == target
    }
}

fn put(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Lsn;

    fn shard(number: u8, count: u8) -> TenantShardId {
        TenantShardId {
            tenant: 7,
            number,
            count,
        }
    }

    #[tokio::test]
    async fn unsharded_delete_covers_every_shard_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = RemoteStorage::new(dir.path().to_path_buf());
        let tl = Timeline::fresh(Lsn::INITDB);
        let other = TenantShardId {
            tenant: 8,
            number: 0,
            count: 0,
        };
        for id in [shard(0, 0), shard(0, 2), shard(1, 2), other] {
            remote.put_timeline(id, "t", &tl).await.expect("put");
        }
        let all = remote.shards_under(shard(0, 0)).await.expect("list");
        assert_eq!(all, vec![shard(0, 0), shard(0, 2), shard(1, 2)]);
        let one = remote.shards_under(shard(1, 2)).await.expect("list");
        assert_eq!(one, vec![shard(1, 2)]);
        for id in all {
            remote.delete_shard(id).await.expect("delete");
        }
        assert!(
            remote
                .shards_under(shard(0, 0))
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(remote.timelines(other).await.expect("other").len(), 1);
    }
}
