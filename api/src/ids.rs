//! Identifier wire formats shared with pageservers (upstream `TenantId`, `TenantShardId`, ...).
//!
//! - `TenantId`: 16 bytes, 32 lowercase hex characters.
//! - `TenantShardId`: `<tenant_id>` when the shard count is 0 (legacy unsharded), otherwise
//!   `<tenant_id>-<NN><CC>` with the shard number and count as two hex digits each.
//! - Ordering is (tenant, number, count), so all shards of one tenant are adjacent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub input: String,
    pub reason: &'static str,
}

impl IdError {
    pub fn new(kind: &'static str, input: &str, reason: &'static str) -> IdError {
        IdError {
            kind,
            input: shortened(input),
            reason,
        }
    }
}

/// At most the first 64 characters of client input, for quoting it in an error: a message
/// must not echo a hostile megabyte back.
pub fn shortened(input: &str) -> String {
    match input.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &input[..end]),
        None => input.to_string(),
    }
}

/// A 16-byte id written as 32 hex characters: tenants and timelines.
macro_rules! hex_id {
    ($name:ident, $kind:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 16]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_hex16($kind, s).map($name)
            }
        }
    };
}

hex_id!(TenantId, "tenant id");
hex_id!(TimelineId, "timeline id");

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?)
}

fn parse_hex16(kind: &'static str, s: &str) -> Result<[u8; 16], IdError> {
    let err = |reason| IdError::new(kind, s, reason);
    let bytes = s.as_bytes();
    if bytes.len() != 32 {
        return Err(err("expected 32 hex characters"));
    }
    let mut out = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = hex_byte(pair).ok_or_else(|| err("not hexadecimal"))?;
    }
    Ok(out)
}

/// A WAL position, written as upstream does: two hex halves, `X/Y` (e.g. `0/16B9188`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Lsn {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError::new("lsn", s, reason);
        let (hi, lo) = s.split_once('/').ok_or_else(|| err("expected X/Y"))?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 {
                return Err(err("each half is 1 to 8 hex digits"));
            }
            u32::from_str_radix(h, 16).map_err(|_| err("not hexadecimal"))
        };
        Ok(Lsn(u64::from(half(hi)?) << 32 | u64::from(half(lo)?)))
    }
}

/// Shard count of a tenant. 0 is the legacy unsharded layout; `count()` is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardCount(pub u8);

impl ShardCount {
    pub fn count(self) -> u8 {
        self.0.max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantShardId {
    pub tenant_id: TenantId,
    pub shard_number: u8,
    pub shard_count: ShardCount,
}

impl TenantShardId {
    pub fn unsharded(tenant_id: TenantId) -> Self {
        TenantShardId {
            tenant_id,
            shard_number: 0,
            shard_count: ShardCount(0),
        }
    }

    /// The `NNCC` slug (`0000` when unsharded).
    pub fn shard_slug(&self) -> String {
        format!("{:02x}{:02x}", self.shard_number, self.shard_count.0)
    }

    /// Children of this shard when its tenant splits into `new_count` shards: child `i` belongs
    /// to parent `i % old_count`.
    pub fn split_children(&self, new_count: u8) -> Vec<TenantShardId> {
        let old = self.shard_count.count();
        (0..new_count)
            .filter(|i| i % old == self.shard_number)
            .map(|i| TenantShardId {
                tenant_id: self.tenant_id,
                shard_number: i,
                shard_count: ShardCount(new_count),
            })
            .collect()
    }
}

impl fmt::Display for TenantShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shard_count.0 == 0 {
            write!(f, "{}", self.tenant_id)
        } else {
            write!(f, "{}-{}", self.tenant_id, self.shard_slug())
        }
    }
}

impl fmt::Debug for TenantShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for TenantShardId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError::new("tenant shard id", s, reason);
        // Work on bytes: an id is ASCII, and slicing the `str` at a fixed offset would panic
        // when a multi-byte character straddles it.
        let bytes = s.as_bytes();
        match bytes.len() {
            32 => Ok(TenantShardId::unsharded(s.parse()?)),
            37 => {
                let (tenant, rest) = bytes.split_at(32);
                let tenant = std::str::from_utf8(tenant)
                    .map_err(|_| err("not hexadecimal"))?
                    .parse()?;
                let slug = rest.strip_prefix(b"-").ok_or_else(|| err("expected '-'"))?;
                let number = hex_byte(&slug[0..2]).ok_or_else(|| err("bad shard number"))?;
                let count = hex_byte(&slug[2..4]).ok_or_else(|| err("bad shard count"))?;
                if count == 0 || number >= count {
                    return Err(err("shard number must be below a non-zero shard count"));
                }
                Ok(TenantShardId {
                    tenant_id: tenant,
                    shard_number: number,
                    shard_count: ShardCount(count),
                })
            }
            _ => Err(err("expected 32 or 37 characters")),
        }
    }
}

macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
string_serde!(TenantId, TimelineId, TenantShardId, Lsn);

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "1f359dd625e519a1a4e8d7509690f6fc";

    #[test]
    fn round_trips() {
        for s in [T.to_string(), format!("{T}-0104"), format!("{T}-0001")] {
            let id: TenantShardId = s.parse().expect("parse");
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for s in [
            "xyz",
            &T[..31],
            &format!("{T}-0404"),
            &format!("{T}-0100"),
            &format!("{T}_0104"),
            &format!("{}g", &T[..31]),
        ] {
            assert!(s.parse::<TenantShardId>().is_err(), "{s}");
        }
    }

    #[test]
    fn lsn_round_trips_and_refuses_garbage() {
        for s in ["0/16B9188", "1/0", "FFFFFFFF/FFFFFFFF"] {
            let lsn: Lsn = s.parse().expect("parse");
            assert_eq!(lsn.to_string(), s);
        }
        assert_eq!("0/10".parse::<Lsn>().map(|l| l.0), Ok(16));
        for s in [
            "",
            "0",
            "/1",
            "1/",
            "g/0",
            "123456789/0",
            "0/1/2",
            "\u{e9}/0",
        ] {
            assert!(s.parse::<Lsn>().is_err(), "{s}");
        }
    }

    #[test]
    fn timeline_id_is_its_own_type() {
        let tl: TimelineId = T.parse().expect("timeline");
        assert_eq!(tl.to_string(), T);
        assert!(format!("{T}-0104").parse::<TimelineId>().is_err());
    }

    #[test]
    fn split_children_follow_modulo_mapping() {
        let tenant: TenantId = T.parse().expect("tenant");
        let slugs = |id: TenantShardId, n| {
            id.split_children(n)
                .iter()
                .map(|c| c.shard_slug())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            slugs(TenantShardId::unsharded(tenant), 4),
            ["0004", "0104", "0204", "0304"]
        );
        let s = |n, c| TenantShardId {
            tenant_id: tenant,
            shard_number: n,
            shard_count: ShardCount(c),
        };
        assert_eq!(slugs(s(0, 2), 4), ["0004", "0204"]);
        assert_eq!(slugs(s(1, 2), 4), ["0104", "0304"]);
    }
}
