//! Secondary warm-up and remote-storage recovery: `POST /v1/tenant/:tenant_shard_id/secondary/download`
//! and `PUT /v1/tenant/:tenant_id/time_travel_remote_storage`.

use serde::{Deserialize, Serialize};

/// `?wait_ms=N` of the secondary download: how long the pageserver may wait for the download
/// before answering 202 with progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryDownloadQuery {
    pub wait_ms: Option<u64>,
}

/// A secondary location's download of its heatmap, in layers and bytes (upstream's
/// `SecondaryProgress`). `heatmap_mtime` is RFC 3339, `null` before any heatmap was read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecondaryProgress {
    pub heatmap_mtime: Option<String>,
    pub layers_downloaded: u64,
    pub layers_total: u64,
    pub bytes_downloaded: u64,
    pub bytes_total: u64,
}

impl SecondaryProgress {
    /// Adds another location's progress: the sums, and the newest heatmap.
    pub fn add(&mut self, other: &SecondaryProgress) {
        self.layers_downloaded += other.layers_downloaded;
        self.layers_total += other.layers_total;
        self.bytes_downloaded += other.bytes_downloaded;
        self.bytes_total += other.bytes_total;
        let newer = match (&self.heatmap_mtime, &other.heatmap_mtime) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(a), Some(b)) => match (rfc3339(a), rfc3339(b)) {
                (Some(a), Some(b)) => b > a,
                _ => b > a,
            },
        };
        if newer {
            self.heatmap_mtime.clone_from(&other.heatmap_mtime);
        }
    }
}

fn rfc3339(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// Whether every secondary finished its download (200) or one still runs (202).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadStatus {
    Complete,
    InProgress,
}

/// `?travel_to=&done_if_after=` of the time travel, both RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeTravelQuery {
    pub travel_to: String,
    pub done_if_after: String,
}

impl TimeTravelQuery {
    /// Both timestamps parse, and `done_if_after` is not before `travel_to`.
    pub fn check(&self) -> Result<(), String> {
        let parse = |name: &str, value: &str| {
            rfc3339(value).ok_or_else(|| format!("{name}={value:?} is not an RFC 3339 timestamp"))
        };
        let to = parse("travel_to", &self.travel_to)?;
        let done = parse("done_if_after", &self.done_if_after)?;
        if done < to {
            return Err("done_if_after is before travel_to".into());
        }
        Ok(())
    }
}

/// The body of the time travel: every shard count the tenant had since `travel_to`, so that
/// the remote data of each is rewound (upstream's `TenantTimeTravelRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeTravelRequest {
    pub shard_counts: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_sums_and_keeps_the_newest_heatmap() {
        let mut total = SecondaryProgress::default();
        let a = SecondaryProgress {
            heatmap_mtime: Some("2026-12-02T10:00:00.000Z".into()),
            layers_downloaded: 3,
            layers_total: 10,
            bytes_downloaded: 30,
            bytes_total: 100,
        };
        let b = SecondaryProgress {
            heatmap_mtime: Some("2026-12-02T11:30:00.000+01:00".into()),
            layers_downloaded: 10,
            layers_total: 10,
            bytes_downloaded: 100,
            bytes_total: 100,
        };
        total.add(&a);
        total.add(&b);
        total.add(&SecondaryProgress::default());
        assert_eq!(total.layers_downloaded, 13);
        assert_eq!(total.layers_total, 20);
        assert_eq!(total.bytes_downloaded, 130);
        assert_eq!(total.bytes_total, 200);
        // 11:30+01:00 is 10:30Z, the newer one.
        assert_eq!(total.heatmap_mtime, b.heatmap_mtime);
    }

    #[test]
    fn time_travel_query_needs_ordered_rfc3339() {
        let q = |to: &str, done: &str| TimeTravelQuery {
            travel_to: to.into(),
            done_if_after: done.into(),
        };
        assert!(
            q("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z")
                .check()
                .is_ok()
        );
        assert!(q("yesterday", "2026-12-02T00:00:00Z").check().is_err());
        assert!(
            q("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z")
                .check()
                .is_err()
        );
    }
}
