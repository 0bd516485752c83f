//! `DIR/history.jsonl`: an append-only record of every location change this simulator made or
//! refused and of every validate answer, one JSON object per line, for chaos checkers.
//!
//! Guarantee: `append` returns after the lines are fsynced. Appends happen under the state lock,
//! so the file order is the order in which changes were decided. A line torn by a crash is cut
//! off before the next process appends (see [`AppendLog`]).

use std::io;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::append_log::AppendLog;
use crate::ids::TenantShardId;
use crate::wire::Mode;

const FILE: &str = "history.jsonl";

/// One history line. `ts` and `node_id` are filled in by [`History::append`].
#[derive(Serialize, Clone, Debug, Default)]
pub struct Event {
    pub ts: String,
    pub node_id: u64,
    pub kind: &'static str,
    pub tenant_shard_id: Option<TenantShardId>,
    pub mode: Option<Mode>,
    pub generation: Option<u32>,
    /// The request's `x-storcon-term`, if it had one.
    pub term: Option<u64>,
    pub accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Validate answers only: `null` when the controller omitted the shard or did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<Option<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline_id: Option<String>,
}

impl Event {
    pub fn new(kind: &'static str, id: Option<TenantShardId>, term: Option<u64>) -> Self {
        Event {
            kind,
            tenant_shard_id: id,
            term,
            ..Event::default()
        }
    }
}

pub struct History {
    log: AppendLog,
    node_id: u64,
}

impl History {
    pub fn new(dir: &Path, node_id: u64) -> Self {
        History {
            log: AppendLog::new(dir.join(FILE)),
            node_id,
        }
    }

    pub async fn append(&self, mut events: Vec<Event>) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let ts = crate::now();
        let mut text = String::new();
        for event in &mut events {
            event.ts.clone_from(&ts);
            event.node_id = self.node_id;
            text.push_str(&serde_json::to_string(event).map_err(io::Error::other)?);
            text.push('\n');
        }
        // One write per batch: a reader never sees half of a batch's lines interleaved.
        self.log.append(text.into_bytes()).await
    }

    /// Every line parsed as JSON; an absent file is an empty history.
    pub async fn read_all(&self) -> io::Result<Vec<Value>> {
        let text = match tokio::fs::read_to_string(self.log.path()).await {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(io::Error::other))
            .collect()
    }
}
