//! Upstream's HA-aware config: the config sent to the locations of a shard with secondaries
//! carries a heatmap upload period (the tenant's own, else 60 s), so that the attached location
//! uploads heatmaps and its secondaries have something to download; a shard without
//! secondaries is sent none, whatever the tenant set.

use serde_json::{Value, json};
use state_machine::ids::TenantId;
use state_machine::{Command, CreateTenant, Generation, PlacementPolicy, Response, State};

fn created(placement: PlacementPolicy, config: Value) -> State {
    let mut state = State::default();
    let command = Command::CreateTenant(CreateTenant {
        tenant_id: tenant(),
        shard_count: 2,
        stripe_size: 2048,
        placement,
        config,
        preferred_az: None,
        generation: None,
    });
    let (r, _) = state.apply(&command);
    assert!(!matches!(r, Response::Rejected(_)), "{r:?}");
    state
}

fn tenant() -> TenantId {
    "00000000000000000000000000000abc"
        .parse()
        .expect("tenant id")
}

/// `heatmap_period` as sent in the attached, secondary and detached location of every shard.
fn sent(state: &State) -> Vec<[Value; 3]> {
    state
        .tenant_shards(tenant())
        .map(|s| {
            [
                s.attached_location(Generation(1)),
                s.secondary_location(),
                s.detached_location(),
            ]
            .map(|l| l.tenant_conf.to_value()["heatmap_period"].clone())
        })
        .collect()
}

#[test]
fn heatmap_period_follows_secondaries() {
    let default = json!("1m");
    let cases = [
        // With secondaries: the default period, or the tenant's own.
        (
            PlacementPolicy::Attached(1),
            json!({}),
            [default.clone(), default.clone(), default.clone()],
        ),
        (
            PlacementPolicy::Attached(1),
            json!({"heatmap_period": "10s"}),
            [json!("10s"), json!("10s"), json!("10s")],
        ),
        // Without: none for the attached location, even one the tenant set; a secondary's
        // own config keeps heatmaps on.
        (
            PlacementPolicy::Attached(0),
            json!({"heatmap_period": "10s"}),
            [Value::Null, json!("10s"), Value::Null],
        ),
        (
            PlacementPolicy::Attached(0),
            json!({}),
            [Value::Null, default.clone(), Value::Null],
        ),
    ];
    for (placement, config, want) in cases {
        let state = created(placement, config.clone());
        let got = sent(&state);
        assert_eq!(got.len(), 2);
        for shard in got {
            assert_eq!(shard, want, "{placement:?} {config}");
        }
    }
}
