//! Decoding, encoding and patching of the typed tenant config, alone and inside the requests
//! that carry it.

use serde_json::{Value, json};

use super::*;
use crate::wire::{
    AttachHookRequest, LocationConfig, TenantConfigPatchRequest, TenantConfigRequest,
    TenantCreateRequest, TenantLocationConfigRequest,
};

const TENANT: &str = "1f359dd625e519a1a4e8d7509690f6fc";

fn secs(s: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(s))
}

/// A config with every field set, each to a value other than its type's default.
fn full() -> TenantConfig {
    let threshold = EvictionPolicyLayerAccessThreshold {
        period: secs(600),
        threshold: secs(86400),
    };
    TenantConfig {
        checkpoint_distance: Some(256 << 20),
        checkpoint_timeout: Some(secs(600)),
        compaction_target_size: Some(128 << 20),
        compaction_period: Some(secs(20)),
        compaction_threshold: Some(10),
        compaction_upper_limit: Some(20),
        compaction_algorithm: Some(CompactionAlgorithmSettings {
            kind: CompactionAlgorithm::Tiered,
        }),
        compaction_shard_ancestor: Some(false),
        compaction_l0_first: Some(true),
        compaction_l0_semaphore: Some(true),
        l0_flush_delay_threshold: Some(30),
        l0_flush_stall_threshold: Some(40),
        gc_horizon: Some(64 << 20),
        gc_period: Some(secs(3600)),
        image_creation_threshold: Some(3),
        image_layer_force_creation_period: Some(secs(7 * 86400)),
        pitr_interval: Some(secs(7 * 86400)),
        walreceiver_connect_timeout: Some(secs(10)),
        lagging_wal_timeout: Some(secs(10)),
        max_lsn_wal_lag: NonZeroU64::new(1 << 30),
        eviction_policy: Some(EvictionPolicy::LayerAccessThreshold(threshold)),
        min_resident_size_override: Some(0),
        evictions_low_residence_duration_metric_threshold: Some(secs(86400)),
        heatmap_period: Some(HumanDuration(Duration::from_millis(1500))),
        lazy_slru_download: Some(true),
        timeline_get_throttle: Some(ThrottleConfig {
            task_kinds: vec!["PageRequestHandler".into()],
            initial: 0,
            refill_interval: HumanDuration(Duration::from_millis(50)),
            refill_amount: NonZeroU32::new(1000).expect("nonzero"),
            max: 40000,
        }),
        image_layer_creation_check_threshold: Some(2),
        image_creation_preempt_threshold: Some(5),
        lsn_lease_length: Some(secs(600)),
        lsn_lease_length_for_ts: Some(secs(60)),
        timeline_offloading: Some(true),
        rel_size_v2_enabled: Some(false),
        gc_compaction_enabled: Some(true),
        gc_compaction_verification: Some(false),
        gc_compaction_initial_threshold_kb: Some(10240),
        gc_compaction_ratio_percent: Some(100),
        sampling_ratio: Some(Ratio {
            numerator: 1,
            denominator: 10,
        }),
        relsize_snapshot_cache_capacity: Some(1024),
        basebackup_cache_enabled: Some(true),
    }
}

/// `full()` as JSON, written out by hand: the wire form a pageserver reads.
fn full_json() -> Value {
    json!({
        "checkpoint_distance": 268435456,
        "checkpoint_timeout": "10m",
        "compaction_target_size": 134217728,
        "compaction_period": "20s",
        "compaction_threshold": 10,
        "compaction_upper_limit": 20,
        "compaction_algorithm": {"kind": "tiered"},
        "compaction_shard_ancestor": false,
        "compaction_l0_first": true,
        "compaction_l0_semaphore": true,
        "l0_flush_delay_threshold": 30,
        "l0_flush_stall_threshold": 40,
        "gc_horizon": 67108864,
        "gc_period": "1h",
        "image_creation_threshold": 3,
        "image_layer_force_creation_period": "7days",
        "pitr_interval": "7days",
        "walreceiver_connect_timeout": "10s",
        "lagging_wal_timeout": "10s",
        "max_lsn_wal_lag": 1073741824,
        "eviction_policy": {"kind": "LayerAccessThreshold", "period": "10m", "threshold": "1day"},
        "min_resident_size_override": 0,
        "evictions_low_residence_duration_metric_threshold": "1day",
        "heatmap_period": "1s 500ms",
        "lazy_slru_download": true,
        "timeline_get_throttle": {
            "task_kinds": ["PageRequestHandler"], "initial": 0, "refill_interval": "50ms",
            "refill_amount": 1000, "max": 40000
        },
        "image_layer_creation_check_threshold": 2,
        "image_creation_preempt_threshold": 5,
        "lsn_lease_length": "10m",
        "lsn_lease_length_for_ts": "1m",
        "timeline_offloading": true,
        "rel_size_v2_enabled": false,
        "gc_compaction_enabled": true,
        "gc_compaction_verification": false,
        "gc_compaction_initial_threshold_kb": 10240,
        "gc_compaction_ratio_percent": 100,
        "sampling_ratio": {"numerator": 1, "denominator": 10},
        "relsize_snapshot_cache_capacity": 1024,
        "basebackup_cache_enabled": true
    })
}

fn decode_config(v: Value) -> Result<TenantConfig, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn every_field_round_trips_in_its_wire_form() {
    assert_eq!(TenantConfig::FIELDS.len(), 39);
    let value = full().to_value();
    assert_eq!(value, full_json());
    let keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut fields = TenantConfig::FIELDS.to_vec();
    fields.sort_unstable();
    assert_eq!(keys, fields, "every field is written when set");
    assert_eq!(decode_config(full_json()), Ok(full()));
    // From text too, as the API reads it.
    let text = serde_json::to_string(&full()).expect("encodes");
    assert_eq!(
        serde_json::from_str::<TenantConfig>(&text).ok(),
        Some(full())
    );
}

#[test]
fn unset_and_null_fields_are_omitted() {
    assert_eq!(TenantConfig::default().to_value(), json!({}));
    let c = decode_config(json!({"gc_period": null, "gc_horizon": 5})).expect("decodes");
    assert_eq!(c.gc_period, None);
    assert_eq!(c.to_value(), json!({"gc_horizon": 5}));
}

#[test]
fn each_variant_of_the_enums_round_trips() {
    let threshold = EvictionPolicyLayerAccessThreshold {
        period: secs(60),
        threshold: secs(3600),
    };
    for (policy, wire) in [
        (EvictionPolicy::NoEviction {}, json!({"kind": "NoEviction"})),
        (
            EvictionPolicy::LayerAccessThreshold(threshold),
            json!({"kind": "LayerAccessThreshold", "period": "1m", "threshold": "1h"}),
        ),
        (
            EvictionPolicy::OnlyImitiate(threshold),
            json!({"kind": "OnlyImitiate", "period": "1m", "threshold": "1h"}),
        ),
    ] {
        let config = TenantConfig {
            eviction_policy: Some(policy),
            ..TenantConfig::default()
        };
        let value = json!({ "eviction_policy": wire });
        assert_eq!(config.to_value(), value);
        assert_eq!(decode_config(value), Ok(config));
    }
    for (kind, wire) in [
        (CompactionAlgorithm::Legacy, "legacy"),
        (CompactionAlgorithm::Tiered, "tiered"),
    ] {
        let value = json!({"compaction_algorithm": {"kind": wire}});
        let config = decode_config(value.clone()).expect("decodes");
        assert_eq!(
            config.compaction_algorithm,
            Some(CompactionAlgorithmSettings { kind })
        );
        assert_eq!(config.to_value(), value);
    }
}

#[test]
fn durations_are_written_as_humantime_writes_them() {
    for (given, canonical) in [
        ("1h", "1h"),
        ("60m", "1h"),
        ("3600s", "1h"),
        ("1d", "1day"),
        ("90m", "1h 30m"),
        ("500ms", "500ms"),
        ("0s", "0s"),
    ] {
        let c = decode_config(json!({ "pitr_interval": given })).expect(given);
        assert_eq!(
            c.to_value(),
            json!({ "pitr_interval": canonical }),
            "{given}"
        );
        // The canonical form reads back to the same duration.
        assert_eq!(decode_config(c.to_value()), Ok(c));
    }
}

#[test]
fn the_legacy_throttle_key_fair_is_accepted_and_not_written() {
    let mut throttle = full_json()["timeline_get_throttle"].clone();
    throttle["fair"] = json!(true);
    let c = decode_config(json!({ "timeline_get_throttle": throttle })).expect("decodes");
    assert_eq!(c.timeline_get_throttle, full().timeline_get_throttle);
    assert_eq!(
        c.to_value()["timeline_get_throttle"],
        full_json()["timeline_get_throttle"]
    );
}

/// Bad values of every kind: each is refused, and the message names the field.
#[test]
fn bad_values_are_refused_naming_the_field() {
    let throttle_missing = json!({"task_kinds": [], "initial": 0, "max": 1, "refill_amount": 1});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("checkpoint_distance", json!("abc"), "invalid type: string"),
        (
            "checkpoint_distance",
            json!(-1),
            "invalid value: integer `-1`",
        ),
        (
            "checkpoint_distance",
            json!(1.5),
            "invalid type: floating point",
        ),
        ("gc_horizon", json!(true), "invalid type: boolean"),
        ("image_layer_creation_check_threshold", json!(256), "u8"),
        ("max_lsn_wal_lag", json!(0), "nonzero"),
        ("gc_period", json!("abc"), "invalid duration \"abc\""),
        ("gc_period", json!("1 fortnight"), "invalid duration"),
        ("gc_period", json!(3600), "expected a duration"),
        ("gc_period", json!({"secs": 1}), "expected a duration"),
        ("lazy_slru_download", json!("yes"), "expected a boolean"),
        (
            "compaction_algorithm",
            json!({"kind": "fast"}),
            "unknown variant `fast`",
        ),
        (
            "compaction_algorithm",
            json!("tiered"),
            "invalid type: string",
        ),
        (
            "compaction_algorithm",
            json!({"kind": "tiered", "x": 1}),
            "unknown field `x`",
        ),
        (
            "eviction_policy",
            json!({"kind": "Sometimes"}),
            "unknown variant `Sometimes`",
        ),
        ("eviction_policy", json!("NoEviction"), "invalid type"),
        (
            "eviction_policy",
            json!({"kind": "NoEviction", "period": "1m"}),
            "unknown field `period`",
        ),
        (
            "eviction_policy",
            json!({"kind": "OnlyImitiate", "period": "1m", "threshold": "soon"}),
            "invalid duration \"soon\"",
        ),
        (
            "eviction_policy",
            json!({"kind": "OnlyImitiate", "period": "1m", "threshold": "1h", "extra": 1}),
            "unknown field `extra`",
        ),
        (
            "timeline_get_throttle",
            throttle_missing,
            "missing field `refill_interval`",
        ),
        (
            "timeline_get_throttle",
            json!([["a"], 0, "1s", 1, 1]),
            "sequence",
        ),
        (
            "sampling_ratio",
            json!({"numerator": 1}),
            "missing field `denominator`",
        ),
        ("sampling_ratio", json!([1, 10]), "sequence"),
        ("basebackup_cache_enabled", json!([true]), "sequence"),
    ];
    for (field, value, why) in cases {
        let input = json!({ field: value });
        let e = decode_config(input.clone()).expect_err(&input.to_string());
        assert!(
            e.contains(&format!("tenant config field `{field}`")) && e.contains(why),
            "{input}: {e}"
        );
        // The same value in a patch is refused alike.
        let e = serde_json::from_value::<TenantConfigPatch>(input.clone())
            .expect_err(&input.to_string())
            .to_string();
        assert!(
            e.contains(&format!("`{field}`")) && e.contains(why),
            "{input}: {e}"
        );
    }
    let e = decode_config(json!({"gc_period": "1h", "bogus_key": 1})).expect_err("unknown");
    assert!(e.starts_with("unknown field `bogus_key`"), "{e}");
    let e = decode_config(json!(5)).expect_err("not an object");
    assert!(e.contains("expected a JSON object for TenantConfig"), "{e}");
    let e = serde_json::from_str::<TenantConfig>(r#"{"gc_period": "1h", "gc_period": "2h"}"#)
        .expect_err("duplicate")
        .to_string();
    assert!(e.starts_with("duplicate field `gc_period`"), "{e}");
}

#[test]
fn a_patch_keeps_absent_fields_removes_nulls_and_sets_values() {
    let patch: TenantConfigPatch = serde_json::from_value(json!({
        "gc_period": null, "pitr_interval": "1d", "eviction_policy": {"kind": "NoEviction"}
    }))
    .expect("decodes");
    assert_eq!(patch.gc_period, FieldPatch::Remove);
    assert_eq!(patch.pitr_interval, FieldPatch::Upsert(secs(86400)));
    assert_eq!(patch.gc_horizon, FieldPatch::Noop);
    assert_eq!(
        Value::Object(patch.to_map()),
        json!({"gc_period": null, "pitr_interval": "1day", "eviction_policy": {"kind": "NoEviction"}})
    );
    let before = TenantConfig {
        gc_period: Some(secs(3600)),
        gc_horizon: Some(7),
        ..TenantConfig::default()
    };
    let after = before.apply_patch(patch);
    assert_eq!(
        after.to_value(),
        json!({"gc_horizon": 7, "pitr_interval": "1day", "eviction_policy": {"kind": "NoEviction"}})
    );
    assert!(TenantConfigPatch::default().to_map().is_empty());
    // Every field's patch round-trips: set from `full()`, then removed.
    let set: TenantConfigPatch = serde_json::from_value(full_json()).expect("decodes");
    assert_eq!(TenantConfig::default().apply_patch(set.clone()), full());
    assert_eq!(Value::Object(set.to_map()), full_json());
    let nulls: serde_json::Map<String, Value> = TenantConfig::FIELDS
        .iter()
        .map(|f| (f.to_string(), Value::Null))
        .collect();
    let remove: TenantConfigPatch =
        serde_json::from_value(Value::Object(nulls.clone())).expect("decodes");
    assert_eq!(full().apply_patch(remove.clone()), TenantConfig::default());
    assert_eq!(remove.to_map(), nulls);
}

#[test]
fn a_stored_config_is_read_leniently() {
    let stored = json!({"gc_period": "2h", "bogus_key": 1, "pitr_interval": 5, "gc_horizon": 9});
    assert_eq!(
        TenantConfig::from_stored(&stored).to_value(),
        json!({"gc_period": "2h", "gc_horizon": 9})
    );
    assert_eq!(
        TenantConfig::from_stored(&json!(null)),
        TenantConfig::default()
    );
    assert_eq!(
        TenantConfig::from_stored(&json!([1])),
        TenantConfig::default()
    );
    assert_eq!(TenantConfig::from_stored(&full_json()), full());
}

#[test]
fn a_reported_location_reads_its_config_leniently() {
    let reported = json!({
        "mode": "AttachedSingle", "generation": 3, "shard_number": 0, "shard_count": 0,
        "shard_stripe_size": 2048, "tenant_conf": {"gc_period": "1h", "newer_field": 1}
    });
    let loc: LocationConfig = serde_json::from_value(reported).expect("decodes");
    assert_eq!(loc.tenant_conf.to_value(), json!({"gc_period": "1h"}));
    assert_eq!(
        loc.tenant_conf.typed().gc_period,
        Some(HumanDuration(Duration::from_secs(3600)))
    );
    for conf in [json!(null), json!(5)] {
        let reported = json!({"mode": "Detached", "tenant_conf": conf});
        let loc: LocationConfig = serde_json::from_value(reported).expect("decodes");
        assert_eq!(loc.tenant_conf, CanonicalConfig::default());
    }
    let loc: LocationConfig = serde_json::from_value(json!({"mode": "Detached"})).expect("decodes");
    assert_eq!(loc.tenant_conf, CanonicalConfig::default());
    // What a location carries is the typed config's canonical form, and reads back typed.
    let canonical = CanonicalConfig::from(full());
    assert_eq!(canonical.to_value(), full_json());
    assert_eq!(canonical.typed(), full());
    assert_eq!(
        serde_json::from_value::<CanonicalConfig>(full_json()).ok(),
        Some(canonical)
    );
}

/// The requests that flatten a config refuse any key that is neither theirs nor a config field
/// (serde's `flatten` with `deny_unknown_fields` on the request), and a bad value names its field.
#[test]
fn flattened_requests_refuse_unknown_keys_and_name_bad_fields() {
    let put: TenantConfigRequest =
        serde_json::from_value(json!({"tenant_id": TENANT, "gc_period": "1h", "gc_horizon": 3}))
            .expect("decodes");
    assert_eq!(
        put.config.to_value(),
        json!({"gc_period": "1h", "gc_horizon": 3})
    );
    let create: TenantCreateRequest = serde_json::from_value(json!({
        "new_tenant_id": TENANT, "shard_parameters": {"count": 2, "stripe_size": 8},
        "placement_policy": {"Attached": 1}, "eviction_policy": {"kind": "NoEviction"}
    }))
    .expect("decodes");
    assert_eq!(create.shard_parameters.count, 2);
    assert_eq!(
        create.config.to_value(),
        json!({"eviction_policy": {"kind": "NoEviction"}})
    );
    let patch: TenantConfigPatchRequest =
        serde_json::from_value(json!({"tenant_id": TENANT, "gc_period": null})).expect("decodes");
    assert_eq!(patch.config.gc_period, FieldPatch::Remove);

    fn refused<T: DeserializeOwned + fmt::Debug>(v: Value) -> String {
        let text = v.to_string();
        let e = serde_json::from_str::<T>(&text).expect_err(&text);
        let from_value = serde_json::from_value::<T>(v);
        assert!(from_value.is_err(), "{text}");
        e.to_string()
    }
    for (field, value) in [("bogus_key", json!(1)), ("gc_period", json!("soon"))] {
        let what = format!("`{field}`");
        let e = refused::<TenantConfigRequest>(json!({"tenant_id": TENANT, field: value}));
        assert!(e.contains(&what), "{e}");
        let e = refused::<TenantConfigPatchRequest>(json!({"tenant_id": TENANT, field: value}));
        assert!(e.contains(&what), "{e}");
        let e = refused::<TenantCreateRequest>(json!({"new_tenant_id": TENANT, field: value}));
        assert!(e.contains(&what), "{e}");
        let e = refused::<TenantLocationConfigRequest>(
            json!({"mode": "Detached", "tenant_conf": {field: value}}),
        );
        assert!(e.contains(&what), "{e}");
        let e = refused::<AttachHookRequest>(
            json!({"tenant_shard_id": TENANT, "config": {field: value}}),
        );
        assert!(e.contains(&what), "{e}");
    }
    let e = refused::<TenantConfigRequest>(json!({"gc_period": "1h"}));
    assert!(e.contains("missing field `tenant_id`"), "{e}");
}

#[test]
fn location_config_requests_need_a_typed_tenant_conf() {
    let req: TenantLocationConfigRequest = serde_json::from_value(json!({
        "mode": "AttachedSingle", "generation": 4, "tenant_conf": {"gc_period": "90m"}
    }))
    .expect("decodes");
    let loc = LocationConfig::from(req);
    assert_eq!(loc.generation.map(|g| g.0), Some(4));
    assert_eq!(
        serde_json::to_value(&loc).expect("encodes")["tenant_conf"],
        json!({"gc_period": "1h 30m"})
    );
    for body in [
        json!({"mode": "Detached"}),
        json!({"mode": "Detached", "tenant_conf": null}),
        json!({"mode": "Detached", "tenant_conf": 5}),
        json!({"mode": "Detached", "tenant_conf": {}, "surprise": true}),
    ] {
        assert!(
            serde_json::from_value::<TenantLocationConfigRequest>(body.clone()).is_err(),
            "{body}"
        );
    }
}
