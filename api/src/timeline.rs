//! Wire types of the timeline API and the passthroughs to pageservers (upstream
//! `pageserver_api::models` and `controller_api`).
//!
//! Timeline details (`TimelineInfo`) belong to the pageserver and grow with every release: the
//! controller relays them as the JSON objects the pageserver sent, and reads only the fields it
//! needs. What the controller builds or checks itself (create requests, leases, archival
//! states) is typed, so a malformed request is refused before any pageserver sees it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{Lsn, TimelineId};

/// `POST /v1/tenant/:tenant_id/timeline`: the fields of the mode sit at the top level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTimelineCreate")]
pub struct TimelineCreateRequest {
    pub new_timeline_id: TimelineId,
    #[serde(flatten)]
    pub mode: TimelineCreateMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimelineCreateMode {
    Branch {
        ancestor_timeline_id: TimelineId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ancestor_start_lsn: Option<Lsn>,
        #[serde(default)]
        read_only: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pg_version: Option<u32>,
    },
    ImportPgdata {
        import_pgdata: Value,
    },
    Bootstrap {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        existing_initdb_timeline_id: Option<TimelineId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pg_version: Option<u32>,
    },
}

/// Every field any mode takes. The mode is chosen by which fields are present, not by trying
/// each in turn: an untagged decode would turn a branch with a malformed ancestor id into a
/// bootstrap. Unknown keys are ignored, as the pageserver ignores them; they are not relayed.
#[derive(Deserialize)]
struct RawTimelineCreate {
    new_timeline_id: TimelineId,
    ancestor_timeline_id: Option<TimelineId>,
    ancestor_start_lsn: Option<Lsn>,
    #[serde(default)]
    read_only: bool,
    pg_version: Option<u32>,
    existing_initdb_timeline_id: Option<TimelineId>,
    import_pgdata: Option<Value>,
}

impl TryFrom<RawTimelineCreate> for TimelineCreateRequest {
    type Error = String;

    fn try_from(raw: RawTimelineCreate) -> Result<Self, String> {
        let mode = match (raw.ancestor_timeline_id, raw.import_pgdata) {
            (Some(_), Some(_)) => {
                return Err("ancestor_timeline_id and import_pgdata exclude each other".into());
            }
            (Some(ancestor), None) => {
                if raw.existing_initdb_timeline_id.is_some() {
                    return Err("existing_initdb_timeline_id is for bootstrap, not a branch".into());
                }
                TimelineCreateMode::Branch {
                    ancestor_timeline_id: ancestor,
                    ancestor_start_lsn: raw.ancestor_start_lsn,
                    read_only: raw.read_only,
                    pg_version: raw.pg_version,
                }
            }
            (None, Some(import_pgdata)) => TimelineCreateMode::ImportPgdata { import_pgdata },
            (None, None) => {
                if raw.ancestor_start_lsn.is_some() || raw.read_only {
                    return Err(
                        "ancestor_start_lsn and read_only need an ancestor_timeline_id".into(),
                    );
                }
                TimelineCreateMode::Bootstrap {
                    existing_initdb_timeline_id: raw.existing_initdb_timeline_id,
                    pg_version: raw.pg_version,
                }
            }
        };
        Ok(TimelineCreateRequest {
            new_timeline_id: raw.new_timeline_id,
            mode,
        })
    }
}

impl TimelineCreateRequest {
    /// The request for shards other than zero, once shard zero created the timeline: a branch
    /// starts at the LSN shard zero chose, and a bootstrap reuses shard zero's initdb, so that
    /// every shard holds the same timeline (upstream does the same).
    pub fn for_other_shards(&self, shard_zero: &TimelineInfo) -> TimelineCreateRequest {
        let mode = match &self.mode {
            TimelineCreateMode::Branch {
                ancestor_timeline_id,
                ancestor_start_lsn,
                read_only,
                pg_version,
            } => TimelineCreateMode::Branch {
                ancestor_timeline_id: *ancestor_timeline_id,
                ancestor_start_lsn: shard_zero.ancestor_lsn().or(*ancestor_start_lsn),
                read_only: *read_only,
                pg_version: *pg_version,
            },
            TimelineCreateMode::Bootstrap { pg_version, .. } => TimelineCreateMode::Bootstrap {
                existing_initdb_timeline_id: Some(self.new_timeline_id),
                pg_version: *pg_version,
            },
            other @ TimelineCreateMode::ImportPgdata { .. } => other.clone(),
        };
        TimelineCreateRequest {
            new_timeline_id: self.new_timeline_id,
            mode,
        }
    }
}

/// A pageserver's `TimelineInfo`, relayed as it was sent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimelineInfo(pub Map<String, Value>);

impl TimelineInfo {
    fn lsn(&self, field: &str) -> Option<Lsn> {
        self.0.get(field)?.as_str()?.parse().ok()
    }

    pub fn timeline_id(&self) -> Option<TimelineId> {
        self.0.get("timeline_id")?.as_str()?.parse().ok()
    }

    pub fn ancestor_lsn(&self) -> Option<Lsn> {
        self.lsn("ancestor_lsn")
    }
}

/// `201` to a timeline create: shard zero's `TimelineInfo` with the safekeepers the timeline
/// was created on (upstream `TimelineCreateResponseStorcon`; storcon manages no safekeepers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineCreateResponse {
    #[serde(flatten)]
    pub timeline_info: TimelineInfo,
    pub safekeepers: Option<Value>,
}

/// `GET /control/v1/tenant/:tenant_id/timeline/:timeline_id`: the timeline on every shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantTimelineDescribeResponse {
    pub shards: Vec<TimelineInfo>,
    /// The lowest `image_consistent_lsn` any shard reports, when every shard reports one.
    pub image_consistent_lsn: Option<Lsn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimelineArchivalState {
    Archived,
    Unarchived,
}

/// `PUT .../timeline/:timeline_id/archival_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineArchivalConfigRequest {
    pub state: TimelineArchivalState,
}

/// `?detach_behavior=` of `PUT .../detach_ancestor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetachBehavior {
    #[serde(rename = "v1")]
    NoAncestorAndReparent,
    MultiLevelAndNoReparent,
}

impl fmt::Display for DetachBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DetachBehavior::NoAncestorAndReparent => "v1",
            DetachBehavior::MultiLevelAndNoReparent => "multi_level_and_no_reparent",
        })
    }
}

/// What a detach answers; every shard must answer the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AncestorDetached {
    pub reparented_timelines: Vec<TimelineId>,
}

/// `POST .../timeline/:timeline_id/lsn_lease`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LsnLeaseRequest {
    pub lsn: Lsn,
}

/// A lease, `valid_until` in RFC 3339 with milliseconds (upstream `LsnLease`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsnLease {
    pub valid_until: String,
}

/// `?concurrency=&recurse=` of `POST .../download_heatmap_layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadHeatmapLayersQuery {
    pub concurrency: Option<usize>,
    pub recurse: Option<bool>,
}

/// The timeline calls relayed to pageservers as they are (upstream's timeline passthroughs).
#[derive(Debug, Clone, PartialEq)]
pub enum TimelineCall {
    /// `PUT .../archival_config`, on every shard.
    ArchivalConfig(TimelineArchivalConfigRequest),
    /// `PUT .../detach_ancestor`, on every shard; all must answer the same.
    DetachAncestor(Option<DetachBehavior>),
    /// `POST .../block_gc`, on every shard.
    BlockGc,
    /// `POST .../unblock_gc`, on every shard.
    UnblockGc,
    /// `POST .../lsn_lease`, on every shard; the answer is the earliest expiry.
    LsnLease(LsnLeaseRequest),
    /// `PUT .../mark_invisible`, on shard zero, with the client's body.
    MarkInvisible(Option<Value>),
    /// `POST .../download_heatmap_layers`, on the named shard or every shard.
    DownloadHeatmapLayers(DownloadHeatmapLayersQuery),
}

impl TimelineCall {
    /// The method, the path after `/v1/tenant/:shard/timeline/:timeline`, and the query.
    pub fn route(&self) -> (&'static str, &'static str, String) {
        match self {
            TimelineCall::ArchivalConfig(_) => ("PUT", "/archival_config", String::new()),
            TimelineCall::DetachAncestor(b) => (
                "PUT",
                "/detach_ancestor",
                b.map(|b| format!("?detach_behavior={b}"))
                    .unwrap_or_default(),
            ),
            TimelineCall::BlockGc => ("POST", "/block_gc", String::new()),
            TimelineCall::UnblockGc => ("POST", "/unblock_gc", String::new()),
            TimelineCall::LsnLease(_) => ("POST", "/lsn_lease", String::new()),
            TimelineCall::MarkInvisible(_) => ("PUT", "/mark_invisible", String::new()),
            TimelineCall::DownloadHeatmapLayers(q) => {
                let mut params = Vec::new();
                if let Some(c) = q.concurrency {
                    params.push(format!("concurrency={c}"));
                }
                if let Some(r) = q.recurse {
                    params.push(format!("recurse={r}"));
                }
                let query = if params.is_empty() {
                    String::new()
                } else {
                    format!("?{}", params.join("&"))
                };
                ("POST", "/download_heatmap_layers", query)
            }
        }
    }

    /// The JSON body sent to each pageserver, if the call has one.
    pub fn body(&self) -> Option<Value> {
        match self {
            TimelineCall::ArchivalConfig(r) => serde_json::to_value(r).ok(),
            TimelineCall::LsnLease(r) => serde_json::to_value(r).ok(),
            TimelineCall::MarkInvisible(body) => body.clone(),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        self.route().1.trim_start_matches('/')
    }
}

/// A pageserver's answer relayed to the client as it came: status, and the body's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub status: u16,
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TL: &str = "de200bd42b49cc1814412c7e592dd6e9";
    const ANCESTOR: &str = "1f359dd625e519a1a4e8d7509690f6fc";

    fn parse(v: Value) -> Result<TimelineCreateRequest, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn the_mode_is_chosen_by_the_fields_present() {
        let bootstrap = parse(json!({"new_timeline_id": TL, "pg_version": 16})).expect("bootstrap");
        assert!(matches!(
            bootstrap.mode,
            TimelineCreateMode::Bootstrap {
                pg_version: Some(16),
                existing_initdb_timeline_id: None
            }
        ));
        let branch = parse(
            json!({"new_timeline_id": TL, "ancestor_timeline_id": ANCESTOR,
            "ancestor_start_lsn": "0/16B9188"}),
        )
        .expect("branch");
        assert!(matches!(
            branch.mode,
            TimelineCreateMode::Branch {
                ancestor_start_lsn: Some(Lsn(0x16B9188)),
                ..
            }
        ));
        // What is relayed is what was typed: the same fields, no unknown ones.
        assert_eq!(
            serde_json::to_value(&branch).expect("encode"),
            json!({"new_timeline_id": TL, "ancestor_timeline_id": ANCESTOR,
                "ancestor_start_lsn": "0/16B9188", "read_only": false})
        );
    }

    #[test]
    fn malformed_requests_are_refused_not_reinterpreted() {
        for bad in [
            json!({"new_timeline_id": TL, "ancestor_timeline_id": "nope"}),
            json!({"new_timeline_id": TL, "ancestor_start_lsn": "0/1"}),
            json!({"new_timeline_id": TL, "ancestor_timeline_id": ANCESTOR,
                "existing_initdb_timeline_id": TL}),
            json!({"new_timeline_id": TL, "ancestor_timeline_id": ANCESTOR, "import_pgdata": {}}),
            json!({"new_timeline_id": "short"}),
            json!({"ancestor_timeline_id": ANCESTOR}),
            json!({"new_timeline_id": TL, "pg_version": "16"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_shards_follow_shard_zero() {
        let info = TimelineInfo(
            json!({"timeline_id": TL, "ancestor_lsn": "0/2000"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let branch = parse(json!({"new_timeline_id": TL, "ancestor_timeline_id": ANCESTOR}))
            .expect("branch");
        assert!(matches!(
            branch.for_other_shards(&info).mode,
            TimelineCreateMode::Branch {
                ancestor_start_lsn: Some(Lsn(0x2000)),
                ..
            }
        ));
        let bootstrap = parse(json!({"new_timeline_id": TL})).expect("bootstrap");
        let tl: TimelineId = TL.parse().expect("id");
        assert!(matches!(
            bootstrap.for_other_shards(&info).mode,
            TimelineCreateMode::Bootstrap { existing_initdb_timeline_id: Some(t), .. } if t == tl
        ));
    }

    #[test]
    fn detach_behavior_uses_upstream_names() {
        for (b, s) in [
            (DetachBehavior::NoAncestorAndReparent, "v1"),
            (
                DetachBehavior::MultiLevelAndNoReparent,
                "multi_level_and_no_reparent",
            ),
        ] {
            assert_eq!(serde_json::to_value(b).expect("encode"), json!(s));
            assert_eq!(b.to_string(), s);
        }
    }
}
