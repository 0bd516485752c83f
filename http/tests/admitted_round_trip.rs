//! Any request the API admits becomes a command that survives every encoding on the
//! replication path: the log entry, the AppendEntries body and the snapshot (issue 8: a tenant
//! config nested 123 deep was admitted, appended, and then could not be read back, killing
//! every leader it reached).
//!
//! Tenant configs are typed: a body is admitted only if every config key is a known field of
//! the right type, so admitted bodies nest a few levels at most and free-form values (unknown
//! keys, deep nesting) are refused at the edge. What is still refused only before proposing is
//! a typed config past the size bound (a long `timeline_get_throttle.task_kinds`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use openraft::raft::AppendEntriesRequest;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StoredMembership, Vote};
use proptest::prelude::*;
use raft_store::{SnapshotBlob, TypeConfig, codec};
use serde_json::{Map, Value, json};
use state_machine::ids::TenantId;
use state_machine::limits::{MAX_COMMAND_BYTES, MAX_REQUEST_DEPTH, json_depth};
use state_machine::{Command, CreateTenant, NodeId, PlacementPolicy, ReplicaId, Response, State};
use storcon_api::wire::{TenantCreateRequest, TenantLocationConfigRequest};
use storcon_http::extract::admit;
use storcon_http::tenant_config::{ConfigPatchRequest, ConfigRequest};

const TENANT: &str = "1f359dd625e519a1a4e8d7509690f6fc";
/// The deepest body an admitted request can be with a typed config: the location_config body,
/// `tenant_conf`, `timeline_get_throttle`, `task_kinds`.
const TYPED_MAX_DEPTH: usize = 4;

/// A value nested exactly `depth` levels (0 is a scalar); `shape` picks array or object per
/// level and how wide each level is, `leaf` is the innermost scalar.
fn nested(depth: usize, shape: u64, leaf: Value) -> Value {
    let mut v = leaf;
    for level in 0..depth {
        let bits = shape.rotate_right(level as u32);
        let siblings = (bits >> 1) as usize % 3;
        v = if bits & 1 == 0 {
            let mut items = vec![v];
            items.extend((0..siblings).map(|i| json!(i)));
            Value::Array(items)
        } else {
            let mut m = Map::new();
            m.insert(format!("k{level}"), v);
            for i in 0..siblings {
                m.insert(format!("s{i}"), json!("x"));
            }
            Value::Object(m)
        };
    }
    v
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
        // Large strings, around the config size bound.
        (0usize..48).prop_map(|k| Value::from("y".repeat(k << 10))),
    ]
}

/// A free-form field: any key, its value nested from 0 to past the request bound.
fn free_field() -> impl Strategy<Value = (String, Value)> {
    (
        "[a-z_]{1,12}",
        0usize..(MAX_REQUEST_DEPTH + 6),
        any::<u64>(),
        leaf(),
    )
        .prop_map(|(k, depth, shape, leaf)| (k, nested(depth, shape, leaf)))
}

/// A typed config field with a valid value (`null` too: absent in a config, a removal in a
/// patch), including throttles whose task list reaches past the config size bound.
fn typed_field() -> impl Strategy<Value = (String, Value)> {
    let field = |name: &str, v: Value| (name.to_string(), v);
    prop_oneof![
        any::<u64>().prop_map(move |n| field("gc_horizon", json!(n))),
        (0u64..10_000_000).prop_map(move |s| field("pitr_interval", json!(format!("{s}s")))),
        any::<bool>().prop_map(move |b| field("lazy_slru_download", json!(b))),
        (1u64..1000, 1u64..1000).prop_map(move |(p, t)| field(
            "eviction_policy",
            json!({"kind": "LayerAccessThreshold", "period": format!("{p}m"),
                   "threshold": format!("{t}s")})
        )),
        prop_oneof![Just("legacy"), Just("tiered")]
            .prop_map(move |k| field("compaction_algorithm", json!({ "kind": k }))),
        (0usize..48).prop_map(move |k| field(
            "timeline_get_throttle",
            json!({"task_kinds": ["y".repeat(k << 10)], "initial": 0,
                   "refill_interval": "1s", "refill_amount": 1, "max": 1})
        )),
        Just(field("gc_period", Value::Null)),
    ]
}

/// Config fields: mostly typed, some free-form.
fn fields() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec(prop_oneof![3 => typed_field(), 1 => free_field()], 0..4)
        .prop_map(|items| items.into_iter().collect())
}

#[derive(Debug, Clone, Copy)]
enum Route {
    PatchConfig,
    PutConfig,
    CreateTenant,
    LocationConfig,
}

fn route() -> impl Strategy<Value = Route> {
    prop_oneof![
        Just(Route::PatchConfig),
        Just(Route::PutConfig),
        Just(Route::CreateTenant),
        Just(Route::LocationConfig),
    ]
}

fn body(route: Route, fields: Map<String, Value>) -> Vec<u8> {
    let mut body = fields;
    match route {
        Route::PatchConfig | Route::PutConfig => {
            body.insert("tenant_id".into(), json!(TENANT));
        }
        Route::CreateTenant => {
            body.insert("new_tenant_id".into(), json!(TENANT));
            body.insert(
                "shard_parameters".into(),
                json!({"count": 2, "stripe_size": 2048}),
            );
        }
        Route::LocationConfig => {
            let conf = Value::Object(std::mem::take(&mut body));
            body.insert("mode".into(), json!("AttachedSingle"));
            body.insert("generation".into(), json!(3));
            body.insert("tenant_conf".into(), conf);
        }
    }
    serde_json::to_vec(&Value::Object(body)).expect("encodes")
}

/// The command the route's handler proposes for an admitted body, built as the handler does.
fn command(route: Route, bytes: &[u8]) -> Option<Command> {
    let tenant_id: TenantId = TENANT.parse().expect("tenant id");
    Some(match route {
        Route::PatchConfig => {
            let req: ConfigPatchRequest = admit(bytes).ok()?;
            Command::PatchTenantConfig {
                tenant_id: req.tenant_id,
                patch: req.config.to_map(),
            }
        }
        Route::PutConfig => {
            let req: ConfigRequest = admit(bytes).ok()?;
            Command::SetTenantConfig {
                tenant_id: req.tenant_id,
                config: req.config.to_value(),
            }
        }
        Route::CreateTenant => {
            let req: TenantCreateRequest = admit(bytes).ok()?;
            Command::CreateTenant(CreateTenant {
                tenant_id: req.new_tenant_id.tenant_id,
                shard_count: req.shard_parameters.count,
                stripe_size: 2048,
                placement: PlacementPolicy::Attached(0),
                config: req.config.to_value(),
                preferred_az: None,
                generation: req.generation,
            })
        }
        Route::LocationConfig => {
            let req: TenantLocationConfigRequest = admit(bytes).ok()?;
            Command::OnboardTenant {
                tenant_id,
                placement: PlacementPolicy::Attached(0),
                config: req.tenant_conf.to_value(),
                generation: req.generation,
            }
        }
    })
}

/// Whether the command sets or removes at least one config field.
fn carries_config(command: &Command) -> bool {
    let non_empty = |v: &Value| v.as_object().is_some_and(|m| !m.is_empty());
    match command {
        Command::PatchTenantConfig { patch, .. } => !patch.is_empty(),
        Command::SetTenantConfig { config, .. } | Command::OnboardTenant { config, .. } => {
            non_empty(config)
        }
        Command::CreateTenant(c) => non_empty(&c.config),
        _ => false,
    }
}

fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(7, ReplicaId(1)), index),
        payload: EntryPayload::Normal(command),
    }
}

fn apply(state: &mut State, rows: &mut BTreeMap<String, Vec<u8>>, command: &Command) -> bool {
    let (response, mutations) = state.apply(command);
    for m in mutations {
        match m.value {
            Some(v) => rows.insert(m.key, v),
            None => rows.remove(&m.key),
        };
    }
    !matches!(response, Response::Rejected(_))
}

/// A state holding the tenant (unless the command creates it), and the rows a store would
/// hold for it: exactly the mutations `apply` returned, as the store writes them.
fn base(route: Route) -> (State, BTreeMap<String, Vec<u8>>) {
    let mut state = State::default();
    let mut rows = BTreeMap::new();
    if !matches!(route, Route::CreateTenant) {
        let create = Command::CreateTenant(CreateTenant {
            tenant_id: TENANT.parse().expect("tenant id"),
            shard_count: 2,
            stripe_size: 2048,
            placement: PlacementPolicy::Attached(0),
            config: json!({}),
            preferred_az: None,
            generation: None,
        });
        assert!(apply(&mut state, &mut rows, &create));
    }
    (state, rows)
}

static ADMITTED: AtomicUsize = AtomicUsize::new(0);
static ADMITTED_WITH_CONFIG: AtomicUsize = AtomicUsize::new(0);
static REFUSED_TOO_DEEP: AtomicUsize = AtomicUsize::new(0);
static REFUSED_BY_TYPE: AtomicUsize = AtomicUsize::new(0);
static PROPOSABLE: AtomicUsize = AtomicUsize::new(0);
static REFUSED_BEFORE_PROPOSING: AtomicUsize = AtomicUsize::new(0);

proptest! {
    // A fixed seed: the coverage test below asserts what this run reaches.
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0008),
        ..ProptestConfig::default()
    })]

    #[test]
    fn admitted_requests_round_trip_through_log_rpc_and_snapshot(
        route in route(),
        fields in fields(),
    ) {
        let bytes = body(route, fields);
        let depth = json_depth(&bytes);
        let Some(command) = command(route, &bytes) else {
            if depth > MAX_REQUEST_DEPTH {
                REFUSED_TOO_DEEP.fetch_add(1, Ordering::Relaxed);
            } else {
                REFUSED_BY_TYPE.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        };
        prop_assert!(depth <= MAX_REQUEST_DEPTH, "admitted a body {} deep", depth);
        // Typed configs keep admitted bodies far inside the request bound.
        prop_assert!(depth <= TYPED_MAX_DEPTH, "admitted a body {} deep", depth);
        ADMITTED.fetch_add(1, Ordering::Relaxed);
        if carries_config(&command) {
            ADMITTED_WITH_CONFIG.fetch_add(1, Ordering::Relaxed);
        }
        // Every proposer checks this. A config outside its own bounds is refused there (and
        // never reaches the log); an admitted body never exceeds the encoding bounds. The
        // entry is round-tripped either way: the decoders must take all the API admits.
        let admissible = command.check_admissible();
        match &admissible {
            Ok(()) => {
                PROPOSABLE.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                prop_assert!(e.to_string().starts_with("tenant config"), "{}", e);
                REFUSED_BEFORE_PROPOSING.fetch_add(1, Ordering::Relaxed);
            }
        }

        // The log entry.
        let e = entry(42, command.clone());
        let encoded = codec::encode_entry(&e).expect("entry encodes");
        let decoded = codec::decode_entry(&encoded).expect("entry decodes");
        prop_assert_eq!(&codec::encode_entry(&decoded).expect("re-encodes"), &encoded);
        prop_assert!(
            encoded.len() <= MAX_COMMAND_BYTES + 1024,
            "entry of {} bytes", encoded.len()
        );

        // The AppendEntries body, with the entry at the end of a batch.
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(7, ReplicaId(1)),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(7, ReplicaId(1)), 40)),
            entries: vec![entry(41, Command::ReAttach { node_id: NodeId(1) }), decoded],
            leader_commit: Some(LogId::new(CommittedLeaderId::new(7, ReplicaId(1)), 40)),
        };
        let body = codec::encode_rpc(&rpc).expect("rpc encodes");
        let back: AppendEntriesRequest<TypeConfig> =
            codec::decode_rpc(&body).expect("rpc decodes");
        prop_assert_eq!(codec::encode_rpc(&back).expect("re-encodes"), body);

        // The snapshot, after the command applied (or was refused) on a state with the tenant.
        let (mut state, mut rows) = base(route);
        // Apply refuses exactly what the proposers refuse here (the tenant's config starts
        // empty, so a patch is checked as what it sets).
        let applied = apply(&mut state, &mut rows, &command);
        prop_assert_eq!(applied, admissible.is_ok(), "{:?}", admissible);
        let blob = SnapshotBlob {
            version: raft_store::FORMAT_VERSION,
            last_applied: Some(LogId::new(CommittedLeaderId::new(7, ReplicaId(1)), 42)),
            membership: StoredMembership::default(),
            rows: rows.into_iter().collect(),
        };
        let snapshot = codec::encode_snapshot(&blob).expect("snapshot encodes");
        let back = codec::decode_snapshot(&snapshot).expect("snapshot decodes");
        let rebuilt =
            State::from_rows(back.rows.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .expect("rows decode");
        prop_assert_eq!(rebuilt, state);
    }
}

#[test]
fn the_property_reaches_its_cases() {
    admitted_requests_round_trip_through_log_rpc_and_snapshot();
    let count = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let admitted = count(&ADMITTED);
    assert!(admitted >= 100, "admitted {admitted}");
    let with_config = count(&ADMITTED_WITH_CONFIG);
    assert!(
        with_config >= 50,
        "admitted with config fields {with_config}"
    );
    let too_deep = count(&REFUSED_TOO_DEEP);
    assert!(too_deep >= 20, "refused as too deep {too_deep}");
    let by_type = count(&REFUSED_BY_TYPE);
    assert!(by_type >= 20, "refused by the typed config {by_type}");
    eprintln!(
        "admitted {admitted} (with config {with_config}), refused: too deep {too_deep}, \
         by type {by_type}, before proposing {}",
        count(&REFUSED_BEFORE_PROPOSING)
    );
    let proposable = count(&PROPOSABLE);
    assert!(proposable >= 50, "proposable {proposable}");
    let refused = count(&REFUSED_BEFORE_PROPOSING);
    assert!(refused >= 20, "refused before proposing {refused}");
}
