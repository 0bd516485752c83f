//! The generation gap a restore or recovery applies (`State::raise_generations`): every shard
//! raised, shards without a generation and shards unknown to the state start above the new
//! floor, overflow refused with nothing changed, and the raised state survives its own rows.

use state_machine::ids::{TenantId, TenantShardId};
use state_machine::{
    Command, CreateTenant, GapError, Generation, LogPoint, NodeId, NodeRegisterRequest,
    PlacementPolicy, Response, RestoreKind, State,
};

const AT: LogPoint = LogPoint { term: 3, index: 42 };

fn tenant(n: u8) -> TenantId {
    TenantId([n; 16])
}

fn ok(state: &mut State, command: Command) -> Response {
    let (r, _) = state.apply(&command);
    assert!(!matches!(r, Response::Rejected(_)), "{command:?}: {r:?}");
    r
}

fn register(state: &mut State, id: u64) {
    ok(
        state,
        Command::RegisterNode(NodeRegisterRequest {
            node_id: NodeId(id),
            listen_pg_addr: "h".into(),
            listen_pg_port: id as u16,
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: "h".into(),
            listen_http_port: id as u16,
            listen_https_port: None,
            availability_zone_id: "az".into(),
            node_ip_addr: None,
        }),
    );
}

fn create_command(t: TenantId, placement: PlacementPolicy) -> Command {
    Command::CreateTenant(CreateTenant {
        tenant_id: t,
        shard_count: 2,
        stripe_size: 2048,
        placement,
        config: serde_json::json!({}),
        preferred_az: None,
        generation: None,
    })
}

fn create(state: &mut State, t: TenantId, placement: PlacementPolicy) {
    ok(state, create_command(t, placement));
}

fn shards(state: &State, t: TenantId) -> Vec<TenantShardId> {
    state.tenant_shards(t).map(|s| s.id).collect()
}

fn generation(state: &State, id: &TenantShardId) -> Option<Generation> {
    state.shard(id).and_then(|s| s.generation)
}

fn issue(state: &mut State, id: TenantShardId, node: u64) -> Generation {
    match ok(
        state,
        Command::IncrementGeneration {
            shard: id,
            node_id: NodeId(node),
        },
    ) {
        Response::Generation(g) => g,
        other => panic!("{other:?}"),
    }
}

/// One node, an attached tenant with generations 1 and 3 issued, a secondary-only tenant
/// without generations.
fn state_with_generations() -> State {
    let mut state = State::default();
    register(&mut state, 1);
    create(&mut state, tenant(1), PlacementPolicy::Attached(0));
    let ids = shards(&state, tenant(1));
    issue(&mut state, ids[0], 1);
    for _ in 0..3 {
        issue(&mut state, ids[1], 1);
    }
    create(&mut state, tenant(2), PlacementPolicy::Secondary);
    state
}

/// The state's rows, as a store holds them: every mutation the state ever returned. Rebuilt
/// from them, the state must be the same (a restore seeds exactly these rows).
fn rows_of(history: &[state_machine::Mutation]) -> State {
    let mut rows = std::collections::BTreeMap::new();
    for m in history {
        rows.insert(m.key.clone(), m.value.clone());
    }
    State::from_rows(
        rows.iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.as_str(), v.as_slice()))),
    )
    .expect("rows decode")
}

/// [`state_with_generations`] and every mutation that built it.
fn state_and_rows() -> (State, Vec<state_machine::Mutation>) {
    let mut state = State::default();
    let mut history = Vec::new();
    let mut run = |state: &mut State, command: Command| {
        let (r, muts) = state.apply(&command);
        assert!(!matches!(r, Response::Rejected(_)), "{command:?}: {r:?}");
        history.extend(muts);
    };
    let reference = state_with_generations();
    // The same commands as `state_with_generations`, recorded.
    replay_state_with_generations(&mut state, &mut run);
    assert_eq!(state, reference);
    (state, history)
}

fn replay_state_with_generations(state: &mut State, run: &mut impl FnMut(&mut State, Command)) {
    let mut scratch = State::default();
    register(&mut scratch, 1);
    create(&mut scratch, tenant(1), PlacementPolicy::Attached(0));
    let ids = shards(&scratch, tenant(1));
    let mut commands = vec![
        Command::RegisterNode(NodeRegisterRequest {
            node_id: NodeId(1),
            listen_pg_addr: "h".into(),
            listen_pg_port: 1,
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: "h".into(),
            listen_http_port: 1,
            listen_https_port: None,
            availability_zone_id: "az".into(),
            node_ip_addr: None,
        }),
        create_command(tenant(1), PlacementPolicy::Attached(0)),
    ];
    for (i, n) in [(0, 1), (1, 3)] {
        for _ in 0..n {
            commands.push(Command::IncrementGeneration {
                shard: ids[i],
                node_id: NodeId(1),
            });
        }
    }
    commands.push(create_command(tenant(2), PlacementPolicy::Secondary));
    for c in commands {
        run(state, c);
    }
}

#[test]
fn every_shard_is_raised_by_the_gap_and_recorded() {
    let (mut state, mut history) = state_and_rows();
    let before = state.clone();
    let ids1 = shards(&state, tenant(1));
    let ids2 = shards(&state, tenant(2));
    assert_eq!(generation(&state, &ids1[0]), Some(Generation(1)));
    assert_eq!(generation(&state, &ids1[1]), Some(Generation(3)));
    assert_eq!(generation(&state, &ids2[0]), None);

    let muts = state
        .raise_generations(RestoreKind::Restore, AT, 1000)
        .expect("raise");
    assert_eq!(generation(&state, &ids1[0]), Some(Generation(1001)));
    assert_eq!(generation(&state, &ids1[1]), Some(Generation(1003)));
    // No generation yet: counted from the new floor.
    assert_eq!(generation(&state, &ids2[0]), Some(Generation(1000)));
    assert_eq!(state.generation_floor(), Generation(1000));
    let record = state.restored_from().expect("recorded").clone();
    assert_eq!(record.kind, RestoreKind::Restore);
    assert_eq!(record.taken_at, AT);
    assert_eq!(record.generation_gap, 1000);
    assert_eq!(record.restores, 1);
    // Holders, placements and intents are untouched.
    for s in before.shards() {
        let after = state.shard(&s.id).expect("shard kept");
        assert_eq!(after.generation_pageserver, s.generation_pageserver);
        assert_eq!(after.intent, s.intent);
        assert_eq!(after.placement, s.placement);
    }
    state.validate().expect("valid");
    history.extend(muts);
    assert_eq!(
        rows_of(&history),
        state,
        "the raised rows rebuild the raised state"
    );

    // The next generations issued are above the raised ones.
    assert_eq!(issue(&mut state, ids1[0], 1), Generation(1002));
    assert_eq!(issue(&mut state, ids2[0], 1), Generation(1001));
}

#[test]
fn a_shard_unknown_to_the_backup_starts_above_the_floor() {
    let mut state = state_with_generations();
    state
        .raise_generations(RestoreKind::Recover, AT, 500)
        .expect("raise");
    // A tenant created after the restore: its first generation is above anything the old
    // cluster could have issued for it (at most `gap` of them, starting at 1).
    create(&mut state, tenant(9), PlacementPolicy::Attached(0));
    let ids = shards(&state, tenant(9));
    assert_eq!(generation(&state, &ids[0]), Some(Generation(500)));
    assert_eq!(issue(&mut state, ids[0], 1), Generation(501));
    // Re-attach answers in the same numbering.
    let (r, _) = state.apply(&Command::ReAttach { node_id: NodeId(1) });
    match r {
        Response::ReAttached(issued) => {
            assert!(!issued.is_empty());
            assert!(issued.iter().all(|(_, g)| g.0 > 500), "{issued:?}");
        }
        other => panic!("{other:?}"),
    }
    // The attach hook without an override also counts from the floor.
    let fresh: TenantShardId = format!("{}-0001", tenant(8)).parse().expect("id");
    let (r, _) = state.apply(&Command::AttachHook {
        shard: fresh,
        node_id: Some(NodeId(1)),
        generation_override: None,
        config: None,
    });
    assert_eq!(r, Response::AttachHook(Some(Generation(501))));
}

#[test]
fn a_second_restore_raises_again_and_counts() {
    let mut state = state_with_generations();
    state
        .raise_generations(RestoreKind::Restore, AT, 100)
        .expect("first");
    state
        .raise_generations(RestoreKind::Recover, LogPoint { term: 9, index: 77 }, 100)
        .expect("second");
    let ids = shards(&state, tenant(1));
    assert_eq!(generation(&state, &ids[1]), Some(Generation(203)));
    assert_eq!(state.generation_floor(), Generation(200));
    let record = state.restored_from().expect("recorded");
    assert_eq!(record.restores, 2);
    assert_eq!(record.kind, RestoreKind::Recover);
}

#[test]
fn overflow_and_zero_gap_are_refused_and_change_nothing() {
    let mut state = state_with_generations();
    let before = state.clone();
    assert_eq!(
        state.raise_generations(RestoreKind::Restore, AT, 0),
        Err(GapError::Zero)
    );
    assert_eq!(state, before);

    // Highest generation is 3: a gap of u32::MAX - 3 fits exactly, one more does not.
    let err = state
        .raise_generations(RestoreKind::Restore, AT, u32::MAX - 2)
        .expect_err("overflow");
    match &err {
        GapError::Overflow { at, room, .. } => {
            assert_eq!(*at, 3);
            assert_eq!(*room, u32::MAX - 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("at most 4294967292"), "{err}");
    assert_eq!(state, before, "a refused gap changed the state");

    let mut fits = before.clone();
    fits.raise_generations(RestoreKind::Restore, AT, u32::MAX - 3)
        .expect("fits");
    let ids = shards(&fits, tenant(1));
    assert_eq!(generation(&fits, &ids[1]), Some(Generation(u32::MAX)));
    // At the end of the range no further generation is issued (never a reused one).
    let (r, muts) = fits.apply(&Command::IncrementGeneration {
        shard: ids[1],
        node_id: NodeId(1),
    });
    assert!(matches!(r, Response::Rejected(_)), "{r:?}");
    assert!(muts.is_empty());
}

#[test]
fn overflow_counts_the_floor_of_an_earlier_restore() {
    let mut state = State::default();
    register(&mut state, 1);
    create(&mut state, tenant(2), PlacementPolicy::Secondary);
    state
        .raise_generations(RestoreKind::Restore, AT, u32::MAX - 10)
        .expect("first");
    let before = state.clone();
    let err = state
        .raise_generations(RestoreKind::Restore, AT, 11)
        .expect_err("floor overflows");
    assert!(matches!(err, GapError::Overflow { room: 10, .. }), "{err}");
    assert_eq!(state, before);
}
