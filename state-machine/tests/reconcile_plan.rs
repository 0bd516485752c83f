//! The reconcile planner, case by case: each situation and the exact steps it must produce.

use state_machine::ids::{ShardCount, TenantShardId};
use state_machine::reconcile_plan::{Locations, ObservedLocation, Step, attach_step, plan};
use state_machine::{
    Generation, Intent, NodeId, PlacementPolicy, ShardSchedulingPolicy, TenantShard,
};
use storcon_api::wire::{LocationConfig, LocationConfigMode};

fn shard_id() -> TenantShardId {
    TenantShardId {
        tenant_id: "1f359dd625e519a1a4e8d7509690f6fc".parse().expect("id"),
        shard_number: 0,
        shard_count: ShardCount(2),
    }
}

/// A shard intended on `attached` (with `secondaries`), generation `gen` issued to `holder`.
fn shard(
    attached: Option<NodeId>,
    secondaries: &[NodeId],
    g: Option<Generation>,
    holder: Option<NodeId>,
) -> TenantShard {
    TenantShard {
        id: shard_id(),
        stripe_size: 2048,
        generation: g,
        generation_pageserver: holder,
        placement: PlacementPolicy::Attached(secondaries.len()),
        config: serde_json::json!({"gc_period": "1h"}),
        scheduling: ShardSchedulingPolicy::Active,
        preferred_az: None,
        intent: Intent {
            attached,
            secondaries: secondaries.to_vec(),
        },
        splitting: false,
    }
}

/// What a pageserver holding `s` as wanted would report.
fn attached(s: &TenantShard, g: Generation) -> Option<LocationConfig> {
    Some(s.attached_location(g))
}

fn secondary(s: &TenantShard) -> Option<LocationConfig> {
    Some(s.secondary_location())
}

fn with_conf(mut c: Option<LocationConfig>, conf: serde_json::Value) -> Option<LocationConfig> {
    if let Some(c) = c.as_mut() {
        c.tenant_conf = storcon_api::tenant_config::TenantConfig::from_stored(&conf).into();
    }
    c
}

fn with_mode(mut c: Option<LocationConfig>, mode: LocationConfigMode) -> Option<LocationConfig> {
    if let Some(c) = c.as_mut() {
        c.mode = mode;
    }
    c
}

/// Observed locations; `None` is a location that is there but uncertain (`Unknown`).
fn obs(entries: Vec<(NodeId, Option<LocationConfig>)>) -> Locations {
    entries
        .into_iter()
        .map(|(n, c)| (n, ObservedLocation::listed(c)))
        .collect()
}

struct Case {
    name: &'static str,
    shard: Option<TenantShard>,
    owned_by_split: bool,
    observed: Locations,
    inactive: &'static [NodeId],
    expect: Vec<Step>,
}

fn case(name: &'static str, shard: TenantShard, observed: Locations, expect: Vec<Step>) -> Case {
    Case {
        name,
        shard: Some(shard),
        owned_by_split: false,
        observed,
        inactive: &[],
        expect,
    }
}

use Step::{
    AttachCurrentGeneration, AttachMulti, AttachNewGeneration, CatchUp, Detach, Finalize,
    MakeSecondary, ReadBack,
};

fn cases() -> Vec<Case> {
    let on1 = shard(Some(NodeId(1)), &[], Some(Generation(5)), Some(NodeId(1)));
    let on1_sec2 = shard(
        Some(NodeId(1)),
        &[NodeId(2)],
        Some(Generation(5)),
        Some(NodeId(1)),
    );
    let on1_sec23 = shard(
        Some(NodeId(1)),
        &[NodeId(2), NodeId(3)],
        Some(Generation(5)),
        Some(NodeId(1)),
    );
    let fresh = shard(Some(NodeId(1)), &[], Some(Generation(0)), None);
    let moved_to_2 = shard(Some(NodeId(2)), &[], Some(Generation(5)), Some(NodeId(1)));
    let mut splitting = on1.clone();
    splitting.splitting = true;
    let mut stopped = on1.clone();
    stopped.scheduling = ShardSchedulingPolicy::Stop;
    let mut detached_policy = shard(None, &[], Some(Generation(5)), None);
    detached_policy.placement = PlacementPolicy::Detached;
    let mut secondary_policy = shard(None, &[NodeId(1)], Some(Generation(5)), None);
    secondary_policy.placement = PlacementPolicy::Secondary;
    let reattached = shard(Some(NodeId(1)), &[], Some(Generation(6)), Some(NodeId(1)));
    let old_conf = serde_json::json!({"gc_period": "2h"});

    let mut all = vec![
        case(
            "fresh attach",
            fresh.clone(),
            obs(vec![]),
            vec![AttachNewGeneration { node: NodeId(1) }],
        ),
        case(
            "attached as wanted",
            on1.clone(),
            obs(vec![(NodeId(1), attached(&on1, Generation(5)))]),
            vec![],
        ),
        case(
            "nothing observed yet on the holder",
            on1.clone(),
            obs(vec![]),
            vec![AttachNewGeneration { node: NodeId(1) }],
        ),
        case(
            "migration: live from the active origin (detached in the next plan)",
            moved_to_2.clone(),
            obs(vec![(NodeId(1), attached(&moved_to_2, Generation(5)))]),
            live(1, 5, 2, &[]),
        ),
        case(
            "migration, destination already warm as a secondary",
            moved_to_2.clone(),
            obs(vec![
                (NodeId(1), attached(&moved_to_2, Generation(5))),
                (NodeId(2), secondary(&moved_to_2)),
            ]),
            live(1, 5, 2, &[]),
        ),
        case(
            "secondary creation",
            on1_sec2.clone(),
            obs(vec![(NodeId(1), attached(&on1_sec2, Generation(5)))]),
            vec![MakeSecondary { node: NodeId(2) }],
        ),
        case(
            "secondary as wanted",
            on1_sec2.clone(),
            obs(vec![
                (NodeId(1), attached(&on1_sec2, Generation(5))),
                (NodeId(2), secondary(&on1_sec2)),
            ]),
            vec![],
        ),
        case(
            "stale secondary outside the intent",
            on1.clone(),
            obs(vec![
                (NodeId(1), attached(&on1, Generation(5))),
                (NodeId(3), secondary(&on1)),
            ]),
            vec![Detach { node: NodeId(3) }],
        ),
        case(
            "secondary with an old config",
            on1_sec2.clone(),
            obs(vec![
                (NodeId(1), attached(&on1_sec2, Generation(5))),
                (NodeId(2), with_conf(secondary(&on1_sec2), old_conf.clone())),
            ]),
            vec![MakeSecondary { node: NodeId(2) }],
        ),
        case(
            "a secondary node still attached (demotion)",
            on1_sec2.clone(),
            obs(vec![
                (NodeId(1), attached(&on1_sec2, Generation(5))),
                (NodeId(2), attached(&on1_sec2, Generation(4))),
            ]),
            vec![MakeSecondary { node: NodeId(2) }],
        ),
        case(
            "one secondary fine, one missing",
            on1_sec23.clone(),
            obs(vec![
                (NodeId(1), attached(&on1_sec23, Generation(5))),
                (NodeId(2), secondary(&on1_sec23)),
            ]),
            vec![MakeSecondary { node: NodeId(3) }],
        ),
        case(
            "unknown observation on the attached node is read back first",
            on1_sec2.clone(),
            obs(vec![(NodeId(1), None), (NodeId(2), secondary(&on1_sec2))]),
            vec![ReadBack { node: NodeId(1) }],
        ),
        case(
            "unknown observation on a secondary is rewritten",
            on1_sec2.clone(),
            obs(vec![
                (NodeId(1), attached(&on1_sec2, Generation(5))),
                (NodeId(2), None),
            ]),
            vec![MakeSecondary { node: NodeId(2) }],
        ),
        case(
            "unknown observation on a node outside the intent is detached",
            on1.clone(),
            obs(vec![
                (NodeId(1), attached(&on1, Generation(5))),
                (NodeId(4), None),
            ]),
            vec![Detach { node: NodeId(4) }],
        ),
        case(
            "config-only change: same generation, no bump",
            on1.clone(),
            obs(vec![(
                NodeId(1),
                with_conf(attached(&on1, Generation(5)), old_conf.clone()),
            )]),
            vec![AttachCurrentGeneration {
                node: NodeId(1),
                generation: Generation(5),
            }],
        ),
        case(
            "mode-only change (AttachedMulti to Single) keeps the generation",
            on1.clone(),
            obs(vec![(
                NodeId(1),
                with_mode(
                    attached(&on1, Generation(5)),
                    LocationConfigMode::AttachedMulti,
                ),
            )]),
            vec![AttachCurrentGeneration {
                node: NodeId(1),
                generation: Generation(5),
            }],
        ),
        case(
            "attached in an older generation",
            on1.clone(),
            obs(vec![(NodeId(1), attached(&on1, Generation(4)))]),
            vec![AttachNewGeneration { node: NodeId(1) }],
        ),
        case(
            "generation issued to another node: a new one for this node",
            shard(Some(NodeId(1)), &[], Some(Generation(5)), Some(NodeId(2))),
            obs(vec![(NodeId(1), attached(&on1, Generation(5)))]),
            vec![AttachNewGeneration { node: NodeId(1) }],
        ),
        case(
            "a secondary to promote gets a new generation",
            on1.clone(),
            obs(vec![(NodeId(1), secondary(&on1))]),
            vec![AttachNewGeneration { node: NodeId(1) }],
        ),
        case(
            "node re-attached mid-plan: the generation moved past what was observed",
            reattached.clone(),
            obs(vec![(NodeId(1), attached(&reattached, Generation(5)))]),
            vec![AttachNewGeneration { node: NodeId(1) }],
        ),
        case(
            "node re-attached mid-plan: its location became unknown",
            reattached.clone(),
            obs(vec![(NodeId(1), None)]),
            vec![ReadBack { node: NodeId(1) }],
        ),
        case(
            "detached policy: every location detached",
            detached_policy.clone(),
            obs(vec![
                (NodeId(1), attached(&detached_policy, Generation(5))),
                (NodeId(2), secondary(&detached_policy)),
            ]),
            vec![Detach { node: NodeId(1) }, Detach { node: NodeId(2) }],
        ),
        case(
            "secondary policy: the attached node becomes a secondary",
            secondary_policy.clone(),
            obs(vec![(
                NodeId(1),
                attached(&secondary_policy, Generation(5)),
            )]),
            vec![MakeSecondary { node: NodeId(1) }],
        ),
        case(
            "a splitting shard belongs to the split driver",
            splitting.clone(),
            obs(vec![(NodeId(1), None), (NodeId(3), secondary(&splitting))]),
            vec![],
        ),
        case(
            "policy Stop: no reconcile at all",
            stopped.clone(),
            obs(vec![(NodeId(2), attached(&stopped, Generation(4)))]),
            vec![],
        ),
        case(
            "an uncertain other node is read back before choosing live or cold",
            moved_to_2_with_secondary(),
            obs(vec![
                (NodeId(1), attached(&moved_to_2, Generation(5))),
                (NodeId(4), None),
            ]),
            // The attached origin and the uncertain node may serve: kept until the attach.
            vec![
                ReadBack { node: NodeId(4) },
                MakeSecondary { node: NodeId(3) },
            ],
        ),
        case(
            "every step in order: live attach, secondary, detaches",
            moved_to_2_with_secondary(),
            obs(vec![
                (NodeId(1), attached(&moved_to_2, Generation(5))),
                (NodeId(4), secondary(&moved_to_2)),
            ]),
            live(
                1,
                5,
                2,
                &[
                    MakeSecondary { node: NodeId(3) },
                    Detach { node: NodeId(4) },
                ],
            ),
        ),
        case(
            "live migration resumed: the origin is stale already",
            moved_to_2.clone(),
            obs(vec![(NodeId(1), stale(&moved_to_2, 5))]),
            vec![
                AttachMulti { node: NodeId(2) },
                CatchUp {
                    node: NodeId(2),
                    origin: NodeId(1),
                },
                Finalize { node: NodeId(2) },
            ],
        ),
        case(
            "live migration resumed: the destination is multi in the current generation",
            issued_to_2(),
            obs(vec![
                (NodeId(1), stale(&issued_to_2(), 5)),
                (NodeId(2), multi(&issued_to_2(), 6)),
            ]),
            vec![
                CatchUp {
                    node: NodeId(2),
                    origin: NodeId(1),
                },
                Finalize { node: NodeId(2) },
            ],
        ),
        case(
            "live migration done: only the stale origin is left to detach",
            issued_to_2(),
            obs(vec![
                (NodeId(1), stale(&issued_to_2(), 5)),
                (NodeId(2), attached(&issued_to_2(), Generation(6))),
            ]),
            vec![Detach { node: NodeId(1) }],
        ),
        case(
            "a destination multi with no origin left goes single in its generation",
            issued_to_2(),
            obs(vec![(NodeId(2), multi(&issued_to_2(), 6))]),
            vec![AttachCurrentGeneration {
                node: NodeId(2),
                generation: Generation(6),
            }],
        ),
        case(
            "of two attached leftovers, the newest generation is the origin",
            moved_to_2.clone(),
            obs(vec![
                (NodeId(1), attached(&moved_to_2, Generation(5))),
                (NodeId(3), stale(&moved_to_2, 4)),
            ]),
            live(1, 5, 2, &[]),
        ),
        case(
            "the origin stays as a secondary when the intent keeps it",
            origin_kept_as_secondary(),
            obs(vec![(
                NodeId(1),
                attached(&origin_kept_as_secondary(), Generation(5)),
            )]),
            live(1, 5, 2, &[]),
        ),
        case(
            "nothing intended, nothing observed",
            detached_policy.clone(),
            obs(vec![]),
            vec![],
        ),
    ];
    all.push(Case {
        name: "the destination not active yet: the attached origin stays, stale or not",
        shard: Some(moved_to_2.clone()),
        owned_by_split: false,
        observed: obs(vec![
            (NodeId(1), stale(&moved_to_2, 5)),
            (NodeId(3), secondary(&moved_to_2)),
        ]),
        inactive: &[NodeId(2)],
        expect: vec![Detach { node: NodeId(3) }],
    });
    all.push(Case {
        name: "an offline origin: the attach is cold, the origin left for when it returns",
        shard: Some(moved_to_2.clone()),
        owned_by_split: false,
        observed: obs(vec![(NodeId(1), attached(&moved_to_2, Generation(5)))]),
        inactive: &[NodeId(1)],
        expect: vec![AttachNewGeneration { node: NodeId(2) }],
    });
    all.push(Case {
        name: "offline attached node: no steps for it",
        shard: Some(on1_sec2.clone()),
        owned_by_split: false,
        observed: obs(vec![(NodeId(1), None)]),
        inactive: &[NodeId(1)],
        expect: vec![MakeSecondary { node: NodeId(2) }],
    });
    all.push(Case {
        name: "offline secondary: no steps for it",
        shard: Some(on1_sec2.clone()),
        owned_by_split: false,
        observed: obs(vec![(NodeId(1), attached(&on1_sec2, Generation(5)))]),
        inactive: &[NodeId(2)],
        expect: vec![],
    });
    all.push(Case {
        name: "all dirty locations on offline nodes: no reconcile",
        shard: Some(moved_to_2.clone()),
        owned_by_split: false,
        observed: obs(vec![
            (NodeId(1), attached(&moved_to_2, Generation(5))),
            (NodeId(3), secondary(&moved_to_2)),
        ]),
        inactive: &[NodeId(1), NodeId(2), NodeId(3)],
        expect: vec![],
    });
    all.push(Case {
        name: "split child before the commit: owned by the split",
        shard: None,
        owned_by_split: true,
        observed: obs(vec![(NodeId(1), None)]),
        inactive: &[],
        expect: vec![],
    });
    all.push(Case {
        name: "deleted shard: detached wherever an active node holds it",
        shard: None,
        owned_by_split: false,
        observed: obs(vec![
            (NodeId(1), attached(&on1, Generation(5))),
            (NodeId(2), None),
            (NodeId(3), secondary(&on1)),
        ]),
        inactive: &[NodeId(2)],
        expect: vec![Detach { node: NodeId(1) }, Detach { node: NodeId(3) }],
    });
    all.push(Case {
        name: "deleted shard held nowhere",
        shard: None,
        owned_by_split: false,
        observed: obs(vec![]),
        inactive: &[],
        expect: vec![],
    });
    all
}

/// Live migration from `origin` (attached in `generation`) to `destination`, then `rest`.
fn live(origin: u64, generation: u32, destination: u64, rest: &[Step]) -> Vec<Step> {
    let (origin, destination) = (NodeId(origin), NodeId(destination));
    let mut steps = vec![
        Step::MakeStale {
            node: origin,
            generation: Generation(generation),
        },
        Step::AttachMulti { node: destination },
        Step::CatchUp {
            node: destination,
            origin,
        },
        Step::Finalize { node: destination },
    ];
    steps.extend_from_slice(rest);
    steps
}

fn stale(s: &TenantShard, g: u32) -> Option<LocationConfig> {
    with_mode(
        attached(s, Generation(g)),
        LocationConfigMode::AttachedStale,
    )
}

fn multi(s: &TenantShard, g: u32) -> Option<LocationConfig> {
    with_mode(
        attached(s, Generation(g)),
        LocationConfigMode::AttachedMulti,
    )
}

/// Intended on node 2, whose generation 6 was issued to it (a live migration under way).
fn issued_to_2() -> TenantShard {
    shard(Some(NodeId(2)), &[], Some(Generation(6)), Some(NodeId(2)))
}

fn origin_kept_as_secondary() -> TenantShard {
    shard(
        Some(NodeId(2)),
        &[NodeId(1)],
        Some(Generation(5)),
        Some(NodeId(1)),
    )
}

fn moved_to_2_with_secondary() -> TenantShard {
    shard(
        Some(NodeId(2)),
        &[NodeId(3)],
        Some(Generation(5)),
        Some(NodeId(1)),
    )
}

#[test]
fn each_situation_plans_exactly_its_steps() {
    let cases = cases();
    assert!(cases.len() >= 42, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let active = |n: NodeId| !c.inactive.contains(&n);
        let steps = plan(c.shard.as_ref(), c.owned_by_split, &c.observed, active);
        if steps != c.expect {
            failures.push(format!(
                "{}: got {steps:?}, expected {:?}",
                c.name, c.expect
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn settled_means_no_attach_step_on_the_intended_node() {
    let s = shard(Some(NodeId(1)), &[], Some(Generation(5)), Some(NodeId(1)));
    assert_eq!(
        attach_step(
            &s,
            NodeId(1),
            &obs(vec![(NodeId(1), attached(&s, Generation(5)))])
        ),
        None
    );
    assert_eq!(
        attach_step(&s, NodeId(1), &obs(vec![(NodeId(1), None)])),
        Some(ReadBack { node: NodeId(1) })
    );
    assert_eq!(
        attach_step(&s, NodeId(1), &obs(vec![])),
        Some(AttachNewGeneration { node: NodeId(1) })
    );
}
