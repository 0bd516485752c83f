//! The formation marker: a file a pristine replica writes (and fsyncs) before it tells the
//! forming node that it is pristine. Its presence later proves that this empty replica took part
//! in forming the cluster it now sees, rather than being a member whose disk was wiped.
//!
//! Also the wire side of the formation probe: its path and its answer, shared by the replica
//! that asks (the binary's start-up) and the router that answers.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use state_machine::ReplicaId;

#[derive(Debug, Clone)]
pub struct FormationMarker {
    path: PathBuf,
}

impl FormationMarker {
    pub fn new(data_dir: &Path) -> Self {
        FormationMarker {
            path: data_dir.join("formation.pending"),
        }
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Writes the marker durably (file and directory fsynced).
    pub fn write(&self, formed_by: ReplicaId) -> std::io::Result<()> {
        let mut f = fs::File::create(&self.path)?;
        writeln!(f, "pristine replica reported to forming node {formed_by}")?;
        f.sync_all()?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Removed once the replica holds Raft state of its own; from then on the store speaks for it.
    pub fn remove(&self) -> std::io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The formation probe, `GET` on every replica: the one spelling for the client and the router.
pub const FORMATION_PATH: &str = "/raft/formation";

/// What a replica answers on `GET /raft/formation` while a cluster forms or a replica starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FormationStatus {
    pub node_id: ReplicaId,
    /// Holds no Raft state at all (and is not serving Raft).
    pub pristine: bool,
    /// Holds Raft state or serves Raft: it belongs to a formed cluster.
    pub initialized: bool,
    /// What this replica's Raft knows of the membership (empty while pristine): voters,
    /// learners, and ids removed from the cluster. A replica joining under a new id reads them
    /// to make sure its id is not a member's or a removed one's.
    #[serde(default)]
    pub voters: Vec<ReplicaId>,
    #[serde(default)]
    pub learners: Vec<ReplicaId>,
    #[serde(default)]
    pub removed: Vec<ReplicaId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formation_path_is_a_raft_route() {
        // Auth gives every `/raft/...` route to peers only; the probe must stay under it.
        assert!(FORMATION_PATH.starts_with("/raft/"));
        assert_eq!(FORMATION_PATH, "/raft/formation");
    }

    #[test]
    fn formation_marker_write_exists_remove() {
        let dir = tempfile::tempdir().unwrap();
        let marker = FormationMarker::new(dir.path());
        assert!(!marker.exists());
        marker.remove().expect("removing an absent marker is fine");
        marker.write(ReplicaId(1)).unwrap();
        assert!(marker.exists());
        marker
            .write(ReplicaId(1))
            .expect("writing twice overwrites");
        marker.remove().unwrap();
        assert!(!marker.exists());
    }
}
