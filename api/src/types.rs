//! Small types that appear on the wire and in the replicated model alike: node ids,
//! generations, terms, and the policies of tenants and nodes.
//!
//! The numbers are distinct newtypes so that a pageserver id cannot be passed where a
//! controller replica id is meant, nor a generation where a Raft term is. Each is
//! `#[serde(transparent)]` (JSON, log entries, rows and snapshots hold the bare number, as
//! before the newtypes), and `Display` and `Debug` print the bare number, honouring width and
//! fill (row keys zero-pad node ids).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! number_newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

number_newtype!(
    /// A pageserver's id, as pageservers and upstream number them.
    NodeId(u64)
);

number_newtype!(
    /// A shard's attachment generation.
    Generation(u32)
);

number_newtype!(
    /// A leadership term: the Raft term in which a controller replica leads.
    Term(u64)
);

number_newtype!(
    /// A controller replica's id: its Raft node id, as in the config's `node_id` and `members`.
    ReplicaId(u64)
);

/// openraft's storage compliance suite (`openraft::testing::Suite`) builds its node ids from
/// numbers and so asks for this. A `u64` converts explicitly; a [`NodeId`] still does not.
impl From<u64> for ReplicaId {
    fn from(id: u64) -> Self {
        ReplicaId(id)
    }
}

impl Generation {
    /// The generation a shard gets first.
    pub const FIRST: Generation = Generation(1);

    /// The generation after this one; `None` at the end of the range.
    pub fn next(self) -> Option<Generation> {
        self.0.checked_add(1).map(Generation)
    }
}

/// Stripe size in 8 KiB pages; upstream default 2048 (16 MiB).
pub const DEFAULT_STRIPE_SIZE: u32 = 2048;

/// Where a tenant's shards should live. JSON is externally tagged as upstream:
/// `{"Attached": 1}`, `"Secondary"`, `"Detached"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementPolicy {
    /// One attached location plus this many secondaries.
    Attached(usize),
    Secondary,
    Detached,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        PlacementPolicy::Attached(0)
    }
}

impl PlacementPolicy {
    pub fn want_secondaries(self) -> usize {
        match self {
            PlacementPolicy::Attached(n) => n,
            PlacementPolicy::Secondary => 1,
            PlacementPolicy::Detached => 0,
        }
    }
}

/// How much the controller may change a shard (upstream `ShardSchedulingPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ShardSchedulingPolicy {
    #[default]
    Active,
    /// No optimisation; still fails over.
    Essential,
    /// No scheduling changes; reconciles still run towards the current intent.
    Pause,
    /// No reconciles at all.
    Stop,
}

/// Whether a node may be given new work. Persisted; PascalCase on the wire as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodeSchedulingPolicy {
    #[default]
    Active,
    Filling,
    Pause,
    PauseForRestart,
    Draining,
    Deleting,
}

/// Liveness as seen by the leader's heartbeats. Never replicated: every node starts `Offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodeAvailability {
    Active,
    WarmingUp,
    #[default]
    Offline,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The newtypes encode as the bare numbers the aliases did: in JSON values, as map keys
    /// (openraft's membership is keyed by replica id), and inside options.
    #[test]
    fn ids_encode_as_bare_numbers() {
        let json = |v: serde_json::Value| v.to_string();
        assert_eq!(json(serde_json::json!(NodeId(3))), "3");
        assert_eq!(json(serde_json::json!(Generation(7))), "7");
        assert_eq!(json(serde_json::json!(Term(9))), "9");
        assert_eq!(json(serde_json::json!(ReplicaId(2))), "2");
        assert_eq!(
            serde_json::to_string(&(Some(Generation(5)), NodeId(1))).unwrap(),
            "[5,1]"
        );
        let members: BTreeMap<ReplicaId, &str> = [(ReplicaId(1), "a"), (ReplicaId(2), "b")].into();
        let encoded = serde_json::to_string(&members).unwrap();
        assert_eq!(encoded, r#"{"1":"a","2":"b"}"#);
        assert_eq!(
            serde_json::from_str::<BTreeMap<ReplicaId, String>>(&encoded).unwrap(),
            [(ReplicaId(1), "a".into()), (ReplicaId(2), "b".into())].into()
        );
        assert_eq!(serde_json::from_str::<NodeId>("3").unwrap(), NodeId(3));
        assert_eq!(
            serde_json::from_str::<Generation>("4294967295").unwrap(),
            Generation(u32::MAX)
        );
        assert!(serde_json::from_str::<Generation>("4294967296").is_err());
        assert!(serde_json::from_str::<NodeId>("-1").is_err());
        assert!(serde_json::from_str::<Term>("\"3\"").is_err());
    }

    #[test]
    fn ids_print_as_bare_numbers() {
        assert_eq!(
            format!("Node {} not registered", NodeId(3)),
            "Node 3 not registered"
        );
        assert_eq!(format!("{:020}", NodeId(3)), "00000000000000000003");
        assert_eq!(format!("{:?}", Some(Generation(5))), "Some(5)");
        assert_eq!(format!("{:?}", [ReplicaId(1), ReplicaId(3)]), "[1, 3]");
        assert_eq!(Term(12).to_string(), "12");
    }

    #[test]
    fn ids_parse_from_strings() {
        assert_eq!("42".parse::<NodeId>(), Ok(NodeId(42)));
        assert_eq!("2".parse::<ReplicaId>(), Ok(ReplicaId(2)));
        assert_eq!("7".parse::<Term>(), Ok(Term(7)));
        assert!("x".parse::<NodeId>().is_err());
        assert!("-1".parse::<Generation>().is_err());
    }

    #[test]
    fn generation_next_stops_at_the_end_of_the_range() {
        assert_eq!(Generation(0).next(), Some(Generation::FIRST));
        assert_eq!(Generation(6).next(), Some(Generation(7)));
        assert_eq!(Generation(u32::MAX).next(), None);
    }
}
