//! Reading `pageserver-sim` histories (`DIR/history.jsonl`) and checking them for the safety
//! properties of generations.
//!
//! Every simulator appends one JSON object per line for each location change it made or
//! refused, each re-attach outcome, each split and each validate answer, in the order it decided
//! them (under its state lock). [`check`] takes the events of every simulator of a run and
//! reports:
//!
//! - [`Violation::SameGenerationOnTwoNodes`]: a generation is issued to one node, so two
//!   different nodes must never both accept an attached location of the same shard in the same
//!   generation;
//! - [`Violation::GenerationWentBack`]: on one node, the attached generations accepted for a
//!   shard never decrease;
//! - [`Violation::TermWentBack`]: on one node, accepted controller requests never carry a lower
//!   `x-storcon-term` than an earlier accepted one;
//! - [`Violation::StaleValidateApproved`]: a validate answered `valid: true` for a generation
//!   that was already superseded: a newer generation of the shard had been accepted earlier on
//!   the same node (file order, exact), or on another node more than `validate_slack` before the
//!   answer was recorded (wall clock; the slack covers the time between sending the validate and
//!   recording its answer, which the simulator bounds at 5 s).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One history line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub ts: String,
    pub node_id: u64,
    /// `location_config`, `reattach`, `validate`, `split`, ... (and the kinds of refused
    /// term-fenced requests, such as `utilization`).
    pub kind: String,
    #[serde(default)]
    pub tenant_shard_id: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub generation: Option<u32>,
    #[serde(default)]
    pub term: Option<u64>,
    pub accepted: bool,
    #[serde(default)]
    pub reason: Option<String>,
    /// Validate answers: `Some(v)` when the controller answered for the shard.
    #[serde(default)]
    pub valid: Option<bool>,
    /// Timeline calls: the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline_id: Option<String>,
}

impl Event {
    /// An accepted attached location (`location_config`, `reattach` or `split` in an attached
    /// mode with a generation): `(shard, generation)`.
    pub fn accepted_attach(&self) -> Option<(&str, u32)> {
        let attached_mode = self
            .mode
            .as_deref()
            .is_some_and(|m| m.starts_with("Attached"));
        let kind = matches!(self.kind.as_str(), "location_config" | "reattach" | "split");
        match (&self.tenant_shard_id, self.generation) {
            (Some(shard), Some(generation)) if self.accepted && attached_mode && kind => {
                Some((shard.as_str(), generation))
            }
            _ => None,
        }
    }

    fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.ts)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Parses a history file's text. A last line without its newline is a write in progress and is
/// left out; any other line that does not parse is an error.
pub fn parse(text: &str) -> anyhow::Result<Vec<Event>> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).with_context(|| format!("history line {}: {line}", n + 1))
        })
        .collect()
}

/// Reads and parses a history file; an absent file is an empty history.
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A broken safety property, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    SameGenerationOnTwoNodes {
        shard: String,
        generation: u32,
        nodes: Vec<u64>,
    },
    GenerationWentBack {
        node: u64,
        shard: String,
        previous: u32,
        next: u32,
        ts: String,
    },
    TermWentBack {
        node: u64,
        previous: u64,
        next: u64,
        ts: String,
    },
    StaleValidateApproved {
        node: u64,
        shard: String,
        generation: u32,
        newer: u32,
        newer_node: u64,
        ts: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::SameGenerationOnTwoNodes {
                shard,
                generation,
                nodes,
            } => write!(
                f,
                "{shard}: generation {generation} accepted as attached on nodes {nodes:?}"
            ),
            Violation::GenerationWentBack {
                node,
                shard,
                previous,
                next,
                ts,
            } => write!(
                f,
                "node {node} accepted {shard} in generation {next} after generation {previous} (at {ts})"
            ),
            Violation::TermWentBack {
                node,
                previous,
                next,
                ts,
            } => write!(
                f,
                "node {node} accepted a request of term {next} after one of term {previous} (at {ts})"
            ),
            Violation::StaleValidateApproved {
                node,
                shard,
                generation,
                newer,
                newer_node,
                ts,
            } => write!(
                f,
                "node {node} was told generation {generation} of {shard} is valid at {ts}, after \
                 generation {newer} had been accepted on node {newer_node}"
            ),
        }
    }
}

/// How strict [`check_with`] is about cross-node timing.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// A validate answer recorded at `t` was requested after `t - validate_slack`.
    pub validate_slack: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            validate_slack: Duration::from_secs(6),
        }
    }
}

/// [`check_with`] with the default options.
pub fn check(events: &[Event]) -> Vec<Violation> {
    check_with(events, CheckOptions::default())
}

/// Checks the events of every simulator of a run. The events of one node must be in that
/// node's file order (concatenating the files keeps it); nodes may be interleaved in any way.
pub fn check_with(events: &[Event], opts: CheckOptions) -> Vec<Violation> {
    let mut violations = Vec::new();

    // One node per (shard, generation).
    let mut holders: BTreeMap<(&str, u32), BTreeSet<u64>> = BTreeMap::new();
    for e in events {
        if let Some(key) = e.accepted_attach() {
            holders.entry(key).or_default().insert(e.node_id);
        }
    }
    for ((shard, generation), nodes) in &holders {
        if nodes.len() > 1 {
            violations.push(Violation::SameGenerationOnTwoNodes {
                shard: (*shard).to_owned(),
                generation: *generation,
                nodes: nodes.iter().copied().collect(),
            });
        }
    }

    // Per node, in file order: generations per shard and terms only go up.
    let mut last_generation: BTreeMap<(u64, &str), u32> = BTreeMap::new();
    let mut last_term: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events {
        if let Some((shard, generation)) = e.accepted_attach() {
            let previous = last_generation.entry((e.node_id, shard)).or_insert(0);
            if generation < *previous {
                violations.push(Violation::GenerationWentBack {
                    node: e.node_id,
                    shard: shard.to_owned(),
                    previous: *previous,
                    next: generation,
                    ts: e.ts.clone(),
                });
            }
            *previous = (*previous).max(generation);
        }
        if let (true, Some(term)) = (e.accepted, e.term) {
            let previous = last_term.entry(e.node_id).or_insert(0);
            if term < *previous {
                violations.push(Violation::TermWentBack {
                    node: e.node_id,
                    previous: *previous,
                    next: term,
                    ts: e.ts.clone(),
                });
            }
            *previous = (*previous).max(term);
        }
    }

    // Validate never approves a superseded generation.
    let slack = chrono::Duration::from_std(opts.validate_slack).unwrap_or(chrono::Duration::MAX);
    for (at, v) in events.iter().enumerate() {
        let (Some(shard), Some(generation), Some(true)) =
            (v.tenant_shard_id.as_deref(), v.generation, v.valid)
        else {
            continue;
        };
        if v.kind != "validate" {
            continue;
        }
        let answered = v.time();
        let superseding = events.iter().enumerate().find_map(|(i, a)| {
            let (s, g) = a.accepted_attach()?;
            if s != shard || g <= generation {
                return None;
            }
            let earlier = if a.node_id == v.node_id {
                i < at
            } else {
                match (a.time(), answered) {
                    (Some(accepted), Some(answered)) => accepted + slack < answered,
                    _ => false,
                }
            };
            earlier.then_some((g, a.node_id))
        });
        if let Some((newer, newer_node)) = superseding {
            violations.push(Violation::StaleValidateApproved {
                node: v.node_id,
                shard: shard.to_owned(),
                generation,
                newer,
                newer_node,
                ts: v.ts.clone(),
            });
        }
    }
    violations
}

/// Fails with every violation listed, one per line.
pub fn ensure_safe(events: &[Event]) -> anyhow::Result<()> {
    let violations = check(events);
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
    anyhow::bail!(
        "{} safety violations in the simulators' histories:\n{}",
        violations.len(),
        lines.join("\n")
    )
}

/// Every generation accepted as attached, per shard, with the nodes that accepted it.
pub fn attach_generations(events: &[Event]) -> BTreeMap<String, BTreeMap<u32, BTreeSet<u64>>> {
    let mut out: BTreeMap<String, BTreeMap<u32, BTreeSet<u64>>> = BTreeMap::new();
    for e in events {
        if let Some((shard, generation)) = e.accepted_attach() {
            out.entry(shard.to_owned())
                .or_default()
                .entry(generation)
                .or_default()
                .insert(e.node_id);
        }
    }
    out
}

/// Number of events of `kind` (accepted or not: a refused call is still a call).
pub fn count_kind(events: &[Event], kind: &str) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// Milliseconds from `since` until a simulator first accepted a `location_config` carrying
/// `term`, if one did (wall clock of the same machine).
pub fn first_call_in_term(
    events: &[Event],
    term: u64,
    since: chrono::DateTime<chrono::Utc>,
) -> Option<i64> {
    events
        .iter()
        .filter(|e| e.kind == "location_config" && e.accepted && e.term == Some(term))
        .filter_map(|e| chrono::DateTime::parse_from_rfc3339(&e.ts).ok())
        .min()
        .map(|first| (first.with_timezone(&chrono::Utc) - since).num_milliseconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "000000010000000000000000000000aa-0002";
    const T: &str = "000000010000000000000000000000aa-0102";

    fn at(second: u32) -> String {
        format!("2025-01-01T00:{:02}:{:02}.000Z", second / 60, second % 60)
    }

    fn attach(node: u64, shard: &str, generation: u32, term: u64, second: u32) -> Event {
        Event {
            ts: at(second),
            node_id: node,
            kind: "location_config".into(),
            tenant_shard_id: Some(shard.into()),
            mode: Some("AttachedSingle".into()),
            generation: Some(generation),
            term: Some(term),
            accepted: true,
            reason: None,
            valid: None,
            timeline_id: None,
        }
    }

    fn secondary(node: u64, shard: &str, term: u64, second: u32) -> Event {
        Event {
            mode: Some("Secondary".into()),
            generation: None,
            ..attach(node, shard, 0, term, second)
        }
    }

    fn refused(mut e: Event) -> Event {
        e.accepted = false;
        e
    }

    fn validate(node: u64, shard: &str, generation: u32, valid: bool, second: u32) -> Event {
        Event {
            ts: at(second),
            node_id: node,
            kind: "validate".into(),
            tenant_shard_id: Some(shard.into()),
            mode: None,
            generation: Some(generation),
            term: None,
            accepted: valid,
            reason: None,
            valid: Some(valid),
            timeline_id: None,
        }
    }

    /// A failover done right: attach on 1, secondary on 2, node 1 lost, 2 attached in a new
    /// generation, 1 comes back as a secondary; validate approves only the current generation.
    fn clean_failover() -> Vec<Event> {
        vec![
            attach(1, S, 1, 1, 0),
            attach(1, T, 1, 1, 0),
            secondary(2, S, 1, 1),
            validate(1, S, 1, true, 2),
            attach(2, S, 2, 2, 10),
            secondary(1, S, 2, 20),
            validate(1, S, 1, false, 30),
            validate(2, S, 2, true, 31),
            // A stale controller's request, refused: not an acceptance.
            refused(attach(1, S, 1, 1, 32)),
            Event {
                kind: "reattach".into(),
                ..attach(1, T, 3, 2, 40)
            },
        ]
    }

    #[test]
    fn a_clean_failover_passes() {
        let events = clean_failover();
        assert_eq!(check(&events), vec![]);
        ensure_safe(&events).expect("clean");
        let gens = attach_generations(&events);
        assert_eq!(gens[S].keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(gens[T].keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(count_kind(&events, "location_config"), 6);
        assert_eq!(count_kind(&events, "validate"), 3);
    }

    #[test]
    fn the_same_generation_on_two_nodes_fails() {
        let mut events = clean_failover();
        events.push(attach(3, S, 2, 2, 50));
        assert_eq!(
            check(&events),
            vec![Violation::SameGenerationOnTwoNodes {
                shard: S.into(),
                generation: 2,
                nodes: vec![2, 3],
            }]
        );
        assert!(ensure_safe(&events).is_err());
        // Multi-attach modes count as attached too.
        let mut events = clean_failover();
        events.push(Event {
            mode: Some("AttachedMulti".into()),
            ..attach(3, T, 1, 2, 50)
        });
        assert_eq!(check(&events).len(), 1, "{:?}", check(&events));
    }

    #[test]
    fn a_generation_going_back_on_one_node_fails() {
        let mut events = clean_failover();
        events.push(attach(2, S, 1, 2, 50));
        let violations = check(&events);
        assert!(
            violations.contains(&Violation::GenerationWentBack {
                node: 2,
                shard: S.into(),
                previous: 2,
                next: 1,
                ts: at(50),
            }),
            "{violations:?}"
        );
        // Generation 1 is now also on nodes 1 and 2.
        assert!(
            violations
                .iter()
                .any(|v| matches!(v, Violation::SameGenerationOnTwoNodes { generation: 1, .. })),
            "{violations:?}"
        );
    }

    #[test]
    fn a_term_going_back_fails_unless_refused() {
        let mut events = clean_failover();
        events.push(refused(secondary(2, T, 1, 50)));
        assert_eq!(check(&events), vec![]);
        events.push(secondary(2, T, 1, 51));
        assert_eq!(
            check(&events),
            vec![Violation::TermWentBack {
                node: 2,
                previous: 2,
                next: 1,
                ts: at(51),
            }]
        );
    }

    #[test]
    fn a_superseded_generation_approved_on_the_same_node_fails() {
        // Node 2 accepted generation 2, then was told its older generation 1 is still valid.
        let mut events = clean_failover();
        events.push(validate(2, S, 1, true, 32));
        assert_eq!(
            check(&events),
            vec![Violation::StaleValidateApproved {
                node: 2,
                shard: S.into(),
                generation: 1,
                newer: 2,
                newer_node: 2,
                ts: at(32),
            }]
        );
        // File order decides on one node, not the clock.
        let events = vec![validate(1, S, 1, true, 5), attach(1, S, 2, 1, 4)];
        assert_eq!(check(&events), vec![]);
    }

    #[test]
    fn a_superseded_generation_approved_on_another_node_fails_beyond_the_slack() {
        // Generation 2 accepted on node 2 at 0:10; node 1 told generation 1 is valid at 0:30.
        let mut events = clean_failover();
        events.push(validate(1, S, 1, true, 30));
        let violations = check(&events);
        assert_eq!(
            violations,
            vec![Violation::StaleValidateApproved {
                node: 1,
                shard: S.into(),
                generation: 1,
                newer: 2,
                newer_node: 2,
                ts: at(30),
            }]
        );
        // Within the slack the validate may have been answered before the newer attach.
        let mut events = clean_failover();
        events.push(validate(1, S, 1, true, 12));
        assert_eq!(check(&events), vec![]);
        let strict = CheckOptions {
            validate_slack: Duration::ZERO,
        };
        assert_eq!(check_with(&events, strict).len(), 1);
    }

    #[test]
    fn parses_lines_and_skips_a_torn_last_line() {
        let line = serde_json::to_string(&attach(1, S, 1, 1, 0)).expect("serializes");
        let extra = r#"{"ts":"2025-01-01T00:00:00.000Z","node_id":1,"kind":"reattach","tenant_shard_id":null,"mode":null,"generation":null,"term":null,"accepted":true,"reason":"response listed 0 shards; 0 local"}"#;
        let text = format!("{line}\n{extra}\n{}", &line[..10]);
        let events = parse(&text).expect("parses");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], attach(1, S, 1, 1, 0));
        assert_eq!(events[1].kind, "reattach");
        assert!(parse("not json\n").is_err());
        assert_eq!(parse("").expect("empty").len(), 0);
    }
}
