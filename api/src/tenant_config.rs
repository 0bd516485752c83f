//! Tenant config: upstream's typed `TenantConfig` (every field optional) and its patch,
//! `TenantConfigPatch`, where each field is a [`FieldPatch`].
//!
//! What this module guarantees:
//! - a config decodes only if every key is one of [`TenantConfig::FIELDS`] and every value has
//!   that field's type; the error names the field (`tenant config field `gc_period`: ...`), and an
//!   unknown key is refused (`unknown field `bogus_key``). Nested objects refuse unknown keys too,
//!   except the legacy `fair` of `timeline_get_throttle`, which upstream still accepts;
//! - `null` for a field of a [`TenantConfig`] is the same as leaving it out; in a
//!   [`TenantConfigPatch`] it removes the field;
//! - the encoding omits unset fields and writes durations as humantime does (`"1h"`, `"1day"`,
//!   `"1h 30m"`), which is what a pageserver decodes: [`TenantConfig::to_value`] is the canonical
//!   JSON object the controller stores and sends;
//! - [`TenantConfig::from_stored`] reads a stored object leniently (unknown keys and bad values
//!   are dropped), so a config stored before configs were typed can still be sent safely;
//! - a location carries a [`CanonicalConfig`]: the canonical object, built only from a typed
//!   config, and read leniently from what a pageserver reports.
//!
//! Field names and types follow upstream's `libs/pageserver_api/src/models.rs`. The decoding is
//! written by hand (each value is decoded on its own) so that its errors name the field even
//! when the config is flattened into a request, where serde's own messages would not.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// A duration, written and read as humantime does it (upstream's `humantime_serde`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"1h\" or \"30s\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse()
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}

/// `compaction_algorithm.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompactionAlgorithm {
    Legacy,
    Tiered,
}

/// `compaction_algorithm`: `{"kind": "legacy" | "tiered"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionAlgorithmSettings {
    pub kind: CompactionAlgorithm,
}

/// `eviction_policy`: `{"kind": "NoEviction"}`, or `{"kind": "LayerAccessThreshold" |
/// "OnlyImitiate", "period": "10m", "threshold": "1day"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum EvictionPolicy {
    /// A struct variant with no fields, so that an unknown key beside `kind` is refused.
    NoEviction {},
    LayerAccessThreshold(EvictionPolicyLayerAccessThreshold),
    OnlyImitiate(EvictionPolicyLayerAccessThreshold),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvictionPolicyLayerAccessThreshold {
    pub period: HumanDuration,
    pub threshold: HumanDuration,
}

/// `timeline_get_throttle`. Upstream names the Rust field `enabled` and writes it `task_kinds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ThrottleConfigInput")]
pub struct ThrottleConfig {
    pub task_kinds: Vec<String>,
    pub initial: u32,
    pub refill_interval: HumanDuration,
    pub refill_amount: NonZeroU32,
    pub max: u32,
}

/// What [`ThrottleConfig`] accepts: its fields, and the legacy `fair` that upstream still
/// accepts and ignores. It is never written back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleConfigInput {
    task_kinds: Vec<String>,
    initial: u32,
    refill_interval: HumanDuration,
    refill_amount: NonZeroU32,
    max: u32,
    #[serde(default)]
    #[allow(dead_code)]
    fair: Option<bool>,
}

impl From<ThrottleConfigInput> for ThrottleConfig {
    fn from(i: ThrottleConfigInput) -> Self {
        ThrottleConfig {
            task_kinds: i.task_kinds,
            initial: i.initial,
            refill_interval: i.refill_interval,
            refill_amount: i.refill_amount,
            max: i.max,
        }
    }
}

/// `sampling_ratio`: `{"numerator", "denominator"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ratio {
    pub numerator: usize,
    pub denominator: usize,
}

/// One field of a [`TenantConfigPatch`]: absent is [`FieldPatch::Noop`] (unchanged), `null` is
/// [`FieldPatch::Remove`], a value is [`FieldPatch::Upsert`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldPatch<T> {
    Upsert(T),
    Remove,
    #[default]
    Noop,
}

impl<T> FieldPatch<T> {
    pub fn is_noop(&self) -> bool {
        matches!(self, FieldPatch::Noop)
    }

    pub fn apply(self, target: &mut Option<T>) {
        match self {
            FieldPatch::Upsert(v) => *target = Some(v),
            FieldPatch::Remove => *target = None,
            FieldPatch::Noop => {}
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FieldPatch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::deserialize(deserializer).map(|v| v.map_or(FieldPatch::Remove, FieldPatch::Upsert))
    }
}

/// A no-op is never written (the fields skip it); written anyway it would read back as a removal.
impl<T: Serialize> Serialize for FieldPatch<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldPatch::Upsert(v) => serializer.serialize_some(v),
            FieldPatch::Remove | FieldPatch::Noop => serializer.serialize_none(),
        }
    }
}

/// Why one key of a config could not be taken.
enum FieldError {
    Unknown,
    Invalid(String),
}

impl FieldError {
    fn message(self, key: &str) -> String {
        match self {
            FieldError::Unknown => format!("unknown field `{key}`: not a tenant config field"),
            FieldError::Invalid(e) => format!("tenant config field `{key}`: {e}"),
        }
    }
}

/// Decodes one field's value. No field takes an array, so an array is refused here (a struct
/// would otherwise accept its positional form).
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    if value.is_array() {
        return Err(FieldError::Invalid(
            "invalid type: sequence, expected a scalar or a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| FieldError::Invalid(e.to_string()))
}

/// A config-shaped struct: one slot per field of [`TenantConfig::FIELDS`].
trait Fields: Default {
    const NAME: &'static str;
    fn set(&mut self, key: &str, value: Value) -> Result<(), FieldError>;
}

struct FieldsVisitor<T>(PhantomData<T>);

impl<'de, T: Fields> Visitor<'de> for FieldsVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a JSON object for {}", T::NAME)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut out = T::default();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            out.set(&key, value)
                .map_err(|e| de::Error::custom(e.message(&key)))?;
        }
        Ok(out)
    }
}

macro_rules! tenant_config {
    ($($field:ident: $ty:ty,)*) => {
        /// Upstream's `TenantConfig`: the tenant's overrides of the pageservers' defaults.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct TenantConfig {
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        /// Upstream's `TenantConfigPatch`: per field, unchanged, removed or set.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct TenantConfigPatch {
            $(
                #[serde(skip_serializing_if = "FieldPatch::is_noop")]
                pub $field: FieldPatch<$ty>,
            )*
        }

        impl TenantConfig {
            /// Every field's JSON name, in upstream's order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The config with `patch` applied.
            pub fn apply_patch(mut self, patch: TenantConfigPatch) -> TenantConfig {
                $(patch.$field.apply(&mut self.$field);)*
                self
            }
        }

        impl Fields for TenantConfig {
            const NAME: &'static str = "TenantConfig";

            fn set(&mut self, key: &str, value: Value) -> Result<(), FieldError> {
                match key {
                    $(stringify!($field) => self.$field = decode(value)?,)*
                    _ => return Err(FieldError::Unknown),
                }
                Ok(())
            }
        }

        impl Fields for TenantConfigPatch {
            const NAME: &'static str = "TenantConfigPatch";

            fn set(&mut self, key: &str, value: Value) -> Result<(), FieldError> {
                match key {
                    $(stringify!($field) => self.$field = decode(value)?,)*
                    _ => return Err(FieldError::Unknown),
                }
                Ok(())
            }
        }
    };
}

tenant_config! {
    checkpoint_distance: u64,
    checkpoint_timeout: HumanDuration,
    compaction_target_size: u64,
    compaction_period: HumanDuration,
    compaction_threshold: usize,
    compaction_upper_limit: usize,
    compaction_algorithm: CompactionAlgorithmSettings,
    compaction_shard_ancestor: bool,
    compaction_l0_first: bool,
    compaction_l0_semaphore: bool,
    l0_flush_delay_threshold: usize,
    l0_flush_stall_threshold: usize,
    gc_horizon: u64,
    gc_period: HumanDuration,
    image_creation_threshold: usize,
    image_layer_force_creation_period: HumanDuration,
    pitr_interval: HumanDuration,
    walreceiver_connect_timeout: HumanDuration,
    lagging_wal_timeout: HumanDuration,
    max_lsn_wal_lag: NonZeroU64,
    eviction_policy: EvictionPolicy,
    min_resident_size_override: u64,
    evictions_low_residence_duration_metric_threshold: HumanDuration,
    heatmap_period: HumanDuration,
    lazy_slru_download: bool,
    timeline_get_throttle: ThrottleConfig,
    image_layer_creation_check_threshold: u8,
    image_creation_preempt_threshold: usize,
    lsn_lease_length: HumanDuration,
    lsn_lease_length_for_ts: HumanDuration,
    timeline_offloading: bool,
    rel_size_v2_enabled: bool,
    gc_compaction_enabled: bool,
    gc_compaction_verification: bool,
    gc_compaction_initial_threshold_kb: u64,
    gc_compaction_ratio_percent: u64,
    sampling_ratio: Ratio,
    relsize_snapshot_cache_capacity: usize,
    basebackup_cache_enabled: bool,
}

impl<'de> Deserialize<'de> for TenantConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A struct, with its field names: flattened into a request, serde hands this config
        // exactly these keys and leaves the rest to the request's `deny_unknown_fields`.
        deserializer.deserialize_struct(
            "TenantConfig",
            TenantConfig::FIELDS,
            FieldsVisitor(PhantomData),
        )
    }
}

impl<'de> Deserialize<'de> for TenantConfigPatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(
            "TenantConfigPatch",
            TenantConfig::FIELDS,
            FieldsVisitor(PhantomData),
        )
    }
}

impl TenantConfig {
    /// The canonical JSON object: set fields only, durations as humantime writes them.
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Every field serializes to JSON; a struct always becomes an object.
            _ => Map::new(),
        }
    }

    /// [`TenantConfig::to_map`] as a value: what the controller stores and sends.
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// Reads a stored config, keeping every known field whose value decodes and dropping the
    /// rest (a config stored before configs were typed may hold anything). Not an object: empty.
    pub fn from_stored(value: &Value) -> TenantConfig {
        match value {
            Value::Object(map) => TenantConfig::from_map(map),
            _ => TenantConfig::default(),
        }
    }

    fn from_map(map: &Map<String, Value>) -> TenantConfig {
        let mut config = TenantConfig::default();
        for (key, value) in map {
            // A key or value that does not decode is what is dropped.
            let _ = config.set(key, value.clone());
        }
        config
    }
}

impl TenantConfigPatch {
    /// The patch as a JSON object: a removal is `null`, an unchanged field is absent.
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// A [`TenantConfig`] in its canonical JSON form ([`TenantConfig::to_map`]), as a location
/// carries it: only the set fields (an empty config takes no heap), and only ever built from a
/// typed config, so a pageserver can always decode it. Decoding is lenient, as for a config a
/// pageserver reports: what [`TenantConfig::from_stored`] drops is dropped, `null` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CanonicalConfig(Map<String, Value>);

impl CanonicalConfig {
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// The typed config again.
    pub fn typed(&self) -> TenantConfig {
        TenantConfig::from_map(&self.0)
    }
}

impl From<&TenantConfig> for CanonicalConfig {
    fn from(config: &TenantConfig) -> Self {
        CanonicalConfig(config.to_map())
    }
}

impl From<TenantConfig> for CanonicalConfig {
    fn from(config: TenantConfig) -> Self {
        CanonicalConfig(config.to_map())
    }
}

impl<'de> Deserialize<'de> for CanonicalConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|v| TenantConfig::from_stored(&v).into())
    }
}

#[cfg(test)]
mod tests;
