//! Moves of attachments as the pageservers' histories show them, and what compute was told.
//!
//! - [`holds`]: from the simulators' history events, when each node started and stopped
//!   holding a shard in an attached mode (`AttachedSingle`, `AttachedMulti`, `AttachedStale`);
//!   a simulator that is down holds nothing ([`Outage`]).
//! - [`unattached_gaps`]: per shard, the intervals after its first attachment during which no
//!   node held it attached. A live migration keeps the origin `AttachedStale` until the
//!   destination is attached, so a live move leaves no gap at all; a cold move (detach, then
//!   attach elsewhere) leaves one as long as the controller took between the two calls.
//! - [`new_attachments`]: each attachment in a generation not seen before for the shard, on a
//!   node other than the previous generation's: the moves compute has to hear about.
//! - [`ComputeHook`]: a control-plane hook on 127.0.0.1 recording every `notify-attach` body
//!   with the time it arrived.
//!
//! Histories carry millisecond timestamps taken on the same machine as the test's clock, so
//! times from different simulators and the hook are comparable to the millisecond.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::put;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::history::Event;

/// The time of a history event (`None` if it does not parse).
pub fn event_time(e: &Event) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&e.ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a history mode is an attached one.
pub fn is_attached_mode(mode: Option<&str>) -> bool {
    matches!(
        mode,
        Some("AttachedSingle" | "AttachedMulti" | "AttachedStale")
    )
}

/// A simulator process that was down from `from` until `to` (`None`: still down). While down
/// it holds nothing; after it restarts, its `reattach` events say what it holds again.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub node: u64,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// One change of whether `node` holds `shard` attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub at: DateTime<Utc>,
    pub node: u64,
    pub attached: bool,
}

/// Every accepted location change (`location_config`, `reattach`, `split`) of `shard`, with
/// the outages of the nodes, in time order (a node's own events keep their file order).
pub fn holds(events: &[Event], shard: &str, outages: &[Outage]) -> Vec<Hold> {
    let mut out: Vec<Hold> = events
        .iter()
        .filter(|e| {
            e.accepted
                && e.tenant_shard_id.as_deref() == Some(shard)
                && matches!(e.kind.as_str(), "location_config" | "reattach" | "split")
                && e.mode.is_some()
        })
        .filter_map(|e| {
            Some(Hold {
                at: event_time(e)?,
                node: e.node_id,
                attached: is_attached_mode(e.mode.as_deref()),
            })
        })
        .collect();
    out.extend(outages.iter().map(|o| Hold {
        at: o.from,
        node: o.node,
        attached: false,
    }));
    // Stable: events of one node at the same millisecond keep their file order.
    out.sort_by_key(|h| h.at);
    out
}

/// Intervals (start, length) after the shard was first attached during which no node held it
/// attached; one still open at `until` ends there. Changes at the same millisecond are applied
/// together, so only a gap of at least a millisecond counts.
pub fn unattached_gaps(holds: &[Hold], until: DateTime<Utc>) -> Vec<(DateTime<Utc>, Duration)> {
    let mut attached: BTreeMap<u64, bool> = BTreeMap::new();
    let mut gaps = Vec::new();
    let mut ever = false;
    let mut since: Option<DateTime<Utc>> = None;
    let mut i = 0;
    while i < holds.len() {
        let at = holds[i].at;
        while i < holds.len() && holds[i].at == at {
            attached.insert(holds[i].node, holds[i].attached);
            i += 1;
        }
        let any = attached.values().any(|a| *a);
        ever |= any;
        match (ever, any, since) {
            (true, false, None) => since = Some(at),
            (_, true, Some(start)) => {
                gaps.push((start, (at - start).to_std().unwrap_or_default()));
                since = None;
            }
            _ => {}
        }
    }
    if let Some(start) = since {
        gaps.push((start, (until - start).to_std().unwrap_or_default()));
    }
    gaps
}

/// The longest of [`unattached_gaps`] (zero when there is none).
pub fn longest_gap(holds: &[Hold], until: DateTime<Utc>) -> Duration {
    unattached_gaps(holds, until)
        .into_iter()
        .map(|(_, d)| d)
        .max()
        .unwrap_or_default()
}

/// An attachment of a shard in a generation first seen on `node` at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAttachment {
    pub shard: String,
    pub node: u64,
    pub generation: u32,
    pub at: DateTime<Utc>,
    /// The node of the shard's previous generation, if there was one.
    pub from: Option<u64>,
}

/// Per shard, in time order, every generation accepted as attached for the first time, on a
/// node other than the previous generation's (a re-attach in place is not a move).
pub fn new_attachments(events: &[Event]) -> Vec<NewAttachment> {
    let mut attaches: Vec<(DateTime<Utc>, &Event)> = events
        .iter()
        .filter(|e| e.accepted_attach().is_some())
        .filter_map(|e| Some((event_time(e)?, e)))
        .collect();
    attaches.sort_by_key(|(t, _)| *t);
    let mut newest: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    let mut out = Vec::new();
    for (at, e) in attaches {
        let Some((shard, generation)) = e.accepted_attach() else {
            continue;
        };
        let previous = newest.get(shard).copied();
        if previous.is_some_and(|(g, _)| g >= generation) {
            continue;
        }
        newest.insert(shard.to_owned(), (generation, e.node_id));
        let from = previous.map(|(_, n)| n);
        if from != Some(e.node_id) {
            out.push(NewAttachment {
                shard: shard.to_owned(),
                node: e.node_id,
                generation,
                at,
                from,
            });
        }
    }
    out
}

/// Whether `node` held `shard` attached at `t`, by its last change at or before `t`.
pub fn held_attached_at(holds: &[Hold], node: u64, t: DateTime<Utc>) -> bool {
    holds
        .iter()
        .rev()
        .find(|h| h.node == node && h.at <= t)
        .is_some_and(|h| h.attached)
}

/// One `notify-attach` body and when the hook received it.
#[derive(Clone, Debug)]
pub struct Notification {
    pub at: DateTime<Utc>,
    pub body: Value,
}

impl Notification {
    /// `(shard id, node)` for each shard the body names, with the shard ids the tenant's
    /// shards have when it has `count` shards (see [`crate::storage_api::shard_ids`]).
    pub fn placements(&self, count: u8) -> Vec<(String, u64)> {
        let tenant = self.body["tenant_id"].as_str().unwrap_or_default();
        let ids = crate::storage_api::shard_ids(tenant, count);
        self.body["shards"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                let number = usize::try_from(s["shard_number"].as_u64()?).ok()?;
                Some((ids.get(number)?.clone(), s["node_id"].as_u64()?))
            })
            .collect()
    }
}

/// A control-plane hook on 127.0.0.1 that answers 200 to every `PUT /notify-attach` and
/// records the body with its arrival time. Dropping it stops the server.
pub struct ComputeHook {
    url: String,
    received: Arc<Mutex<Vec<Notification>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ComputeHook {
    pub async fn start() -> anyhow::Result<ComputeHook> {
        let received: Arc<Mutex<Vec<Notification>>> = Arc::default();
        let app = Router::new()
            .route(
                "/notify-attach",
                put(
                    |State(r): State<Arc<Mutex<Vec<Notification>>>>, body: Bytes| async move {
                        let at = Utc::now();
                        if let Ok(body) = serde_json::from_slice::<Value>(&body) {
                            r.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Notification { at, body });
                        }
                        "{}"
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ComputeHook {
            url,
            received,
            task,
        })
    }

    /// The base URL to configure as `compute_hook_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every notification so far, in arrival order.
    pub fn received(&self) -> Vec<Notification> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notifications for `tenant`, in arrival order.
    pub fn for_tenant(&self, tenant: &str) -> Vec<Notification> {
        self.received()
            .into_iter()
            .filter(|n| n.body["tenant_id"] == tenant)
            .collect()
    }
}

impl Drop for ComputeHook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).expect("valid")
    }

    fn h(ms: i64, node: u64, attached: bool) -> Hold {
        Hold {
            at: t(ms),
            node,
            attached,
        }
    }

    #[test]
    fn a_live_move_leaves_no_gap_and_a_cold_one_does() {
        // Created on 1; live to 2: 1 stale (still attached), 2 multi, 2 single, 1 secondary.
        let live = vec![
            h(0, 1, true),
            h(10, 1, true),
            h(12, 2, true),
            h(20, 2, true),
            h(20, 1, false),
        ];
        assert_eq!(unattached_gaps(&live, t(100)), vec![]);
        assert_eq!(longest_gap(&live, t(100)), Duration::ZERO);
        // Cold: 1 detached at 10, 2 attached at 35.
        let cold = vec![h(0, 1, true), h(10, 1, false), h(35, 2, true)];
        assert_eq!(
            unattached_gaps(&cold, t(100)),
            vec![(t(10), Duration::from_millis(25))]
        );
        // Still unattached at the end: the gap runs until then.
        let open = vec![h(0, 1, true), h(10, 1, false)];
        assert_eq!(longest_gap(&open, t(100)), Duration::from_millis(90));
        // Before the first attachment nothing counts.
        assert_eq!(
            longest_gap(&[h(0, 2, false), h(50, 1, true)], t(60)),
            Duration::ZERO
        );
        assert!(held_attached_at(&live, 2, t(15)));
        assert!(!held_attached_at(&live, 1, t(20)));
        assert!(!held_attached_at(&live, 2, t(11)));
    }

    #[test]
    fn new_attachments_are_moves_in_new_generations() {
        let ev = |ms: i64, node: u64, mode: &str, generation: u32| Event {
            ts: t(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            node_id: node,
            kind: "location_config".into(),
            tenant_shard_id: Some("s".into()),
            mode: Some(mode.into()),
            generation: Some(generation),
            term: None,
            accepted: true,
            reason: None,
            valid: None,
            timeline_id: None,
        };
        let events = vec![
            ev(0, 1, "AttachedSingle", 1),
            ev(10, 1, "AttachedStale", 1),
            ev(12, 2, "AttachedMulti", 2),
            ev(20, 2, "AttachedSingle", 2),
            // A re-attach in place in a newer generation is not a move.
            Event {
                kind: "reattach".into(),
                ..ev(30, 2, "AttachedSingle", 3)
            },
        ];
        let moves = new_attachments(&events);
        let summary: Vec<(u64, u32, Option<u64>)> = moves
            .iter()
            .map(|m| (m.node, m.generation, m.from))
            .collect();
        assert_eq!(summary, vec![(1, 1, None), (2, 2, Some(1))]);
        assert_eq!(moves[1].at, t(12));
    }
}
