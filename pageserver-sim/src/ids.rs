//! Tenant, shard and timeline ids in their wire form (32 lowercase hex digits; a shard adds
//! `-NNCC`). Parsing accepts either case and always prints lowercase, so map keys built from
//! requests match keys loaded from disk.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A tenant shard. `count == 0` is the legacy unsharded form, printed without a suffix.
/// Field order gives the upstream ordering: (tenant, number, count).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TenantShardId {
    pub tenant: u128,
    pub number: u8,
    pub count: u8,
}

impl TenantShardId {
    /// `count()` of the upstream `ShardCount`: 0 and 1 both mean one shard.
    pub fn effective_count(&self) -> u8 {
        self.count.max(1)
    }
}

impl fmt::Display for TenantShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.tenant)?;
        if self.count != 0 {
            write!(f, "-{:02x}{:02x}", self.number, self.count)?;
        }
        Ok(())
    }
}

impl FromStr for TenantShardId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tenant, suffix) = match s.len() {
            32 => (s, None),
            37 if s.as_bytes()[32] == b'-' => (&s[..32], Some(&s[33..])),
            _ => return Err(format!("invalid tenant shard id {s:?}")),
        };
        let tenant = parse_tenant(tenant)?;
        let (number, count) = match suffix {
            None => (0, 0),
            Some(slug) => {
                let value =
                    parse_hex(slug).ok_or_else(|| format!("invalid shard suffix in {s:?}"))?;
                ((value >> 8) as u8, (value & 0xff) as u8)
            }
        };
        if count != 0 && number >= count {
            return Err(format!("shard number not below shard count in {s:?}"));
        }
        Ok(TenantShardId {
            tenant,
            number,
            count,
        })
    }
}

impl Serialize for TenantShardId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TenantShardId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A bare tenant id (32 hex digits).
pub fn parse_tenant(s: &str) -> Result<u128, String> {
    if s.len() != 32 {
        return Err(format!("invalid tenant id {s:?}"));
    }
    parse_hex(s).ok_or_else(|| format!("invalid tenant id {s:?}"))
}

/// A timeline id, normalised to lowercase.
pub fn parse_timeline(s: &str) -> Result<String, String> {
    if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("invalid timeline id {s:?}"))
    }
}

/// Hex digits only: `from_str_radix` alone would also take a leading `+`.
fn parse_hex(s: &str) -> Option<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "1f359dd625e519a1a4e8d7509690f6fc";

    #[test]
    fn round_trips_both_forms() {
        let unsharded: TenantShardId = TENANT.parse().expect("unsharded");
        assert_eq!(unsharded.count, 0);
        assert_eq!(unsharded.to_string(), TENANT);
        let shard: TenantShardId = format!("{TENANT}-0104").parse().expect("sharded");
        assert_eq!((shard.number, shard.count), (1, 4));
        assert_eq!(shard.to_string(), format!("{TENANT}-0104"));
        let upper: TenantShardId = TENANT.to_uppercase().parse().expect("uppercase");
        assert_eq!(upper.to_string(), TENANT);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "xyz",
            &TENANT[..31],
            &format!("+{}", &TENANT[1..]),
            &format!("{TENANT}_0104"),
            &format!("{TENANT}-0404"),
            &format!("{TENANT}-01g4"),
        ] {
            assert!(bad.parse::<TenantShardId>().is_err(), "{bad:?}");
        }
    }
}
