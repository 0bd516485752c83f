//! Tenant configs written before configs were typed at the API edge: the log entries still
//! apply as they did (the stored object is kept as it was, so replicas replaying an old log
//! agree), and the locations sent to pageservers carry only what the typed config reads from
//! them, so a key or value a pageserver would refuse never reaches one.

use serde_json::json;
use state_machine::ids::TenantId;
use state_machine::{Command, CreateTenant, Generation, PlacementPolicy, Response, State};

const TENANT: &str = "0123456789abcdef0123456789abcdef";

fn tenant() -> TenantId {
    TENANT.parse().expect("tenant id")
}

fn applied(state: &mut State, command: Command) {
    assert!(command.check_admissible().is_ok(), "{command:?}");
    let (r, _) = state.apply(&command);
    assert!(!matches!(r, Response::Rejected(_)), "{command:?}: {r:?}");
}

#[test]
fn old_free_form_configs_replay_and_are_sent_typed() {
    let legacy = json!({"gc_period": "1h", "bogus_key": 1, "pitr_interval": 5,
                        "checkpoint_distance": "abc", "gc_horizon": 7});
    let mut state = State::default();
    applied(
        &mut state,
        Command::CreateTenant(CreateTenant {
            tenant_id: tenant(),
            shard_count: 0,
            stripe_size: 2048,
            placement: PlacementPolicy::Detached,
            config: legacy.clone(),
            preferred_az: None,
            generation: None,
        }),
    );
    let shard = state.tenant_shards(tenant()).next().expect("created");
    assert_eq!(shard.config, legacy, "stored as it was");
    let sent = json!({"gc_period": "1h", "gc_horizon": 7});
    assert_eq!(shard.tenant_conf().to_value(), sent);
    for location in [
        shard.attached_location(Generation(1)),
        shard.detached_location(),
    ] {
        assert_eq!(location.tenant_conf.to_value(), sent, "{location:?}");
    }
    // A secondary's config has heatmaps on (see ha_aware_config).
    assert_eq!(
        shard.secondary_location().tenant_conf.to_value(),
        json!({"gc_period": "1h", "gc_horizon": 7, "heatmap_period": "1m"})
    );

    // An old patch merges into the stored object as before; what is sent is still typed.
    let mut patch = serde_json::Map::new();
    patch.insert("gc_period".into(), serde_json::Value::Null);
    patch.insert("another_bogus".into(), json!([1, 2]));
    applied(
        &mut state,
        Command::PatchTenantConfig {
            tenant_id: tenant(),
            patch,
        },
    );
    let shard = state.tenant_shards(tenant()).next().expect("still there");
    assert_eq!(
        shard.config,
        json!({"bogus_key": 1, "pitr_interval": 5, "checkpoint_distance": "abc",
               "gc_horizon": 7, "another_bogus": [1, 2]})
    );
    assert_eq!(
        shard
            .attached_location(Generation(1))
            .tenant_conf
            .to_value(),
        json!({"gc_horizon": 7})
    );
}
