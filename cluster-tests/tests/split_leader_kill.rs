//! SIGKILL of the leader in the middle of a shard split, at every step of the split driver.
//!
//! For each failpoint of `appliance/src/controller/split.rs` (after validation, after
//! `BeginSplit`, after a pageserver split, before and after the `CompleteSplit` commit, before a
//! parent detach) two variants run, each on a fresh 2-shard `Attached(1)` tenant split to 4
//! through a follower (which forwards to the leader):
//!
//! 1. `pause` at the failpoint on every replica; the leader is killed once it reached it;
//! 2. `sleep(400)` at the failpoint; the leader is killed a short, per-phase delay after the hit
//!    was observed (50 to 450 ms, fixed per phase), so the kill lands at different moments:
//!    during the sleep, or after it while the leader went on (see `KILL_DELAYS_MS`).
//!
//! After each kill a new leader must leave the tenant at one shard count everywhere (controller
//! and every simulator, no stray parent or child): the old count when the kill came before the
//! commit (a new leader aborts recorded splits), the new count when it came after. With `pause`
//! the outcome is known per phase; with `sleep` either is accepted for the steps before the
//! commit, but an in-flight call that answered 200 means the split must stand. The killed
//! replica is restarted (so the next kill keeps a quorum), then the split is retried and must
//! answer 200 and settle at 4 shards. A bystander tenant's attachments and generations never
//! move; the simulators' histories are generation-safe over the whole run, and no replica or
//! simulator exited on its own. A table of the runs is printed at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_tests::client::RawResponse;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::{Attachment, SETTLE_DEADLINE, wait_settled};
use cluster_tests::splits::{
    check_rolled_back, ensure_one_shard_count, new_shards, wait_split_settled,
};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{ClientError, Cluster, Sims, StorageApi, deadline, wait_until};
use reqwest::Method;
use serde_json::json;

const TAG: u32 = 0x5b1c;
const TIMELINE: &str = "5b1c0000000000000000000000000001";
const OLD_COUNT: u8 = 2;
const NEW_COUNT: u8 = 4;
/// The `sleep` variant's failpoint delay.
const SLEEP_MS: u64 = 400;
/// How long the leader may take to reach a failpoint (its split first settles the parents).
const HIT_DEADLINE: Duration = Duration::from_secs(60);
/// How often the leader's failpoint counter is polled: finer than the harness's 50 ms so the
/// kill delays of the `sleep` variant are meaningful.
const HIT_POLL: Duration = Duration::from_millis(5);
/// The in-flight call must end once its leader is dead (the client times out after 10 s).
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// The failpoints in the order the split driver passes them, and whether `CompleteSplit` has
/// committed when a failpoint is reached.
const PHASES: [(&str, bool); 6] = [
    ("split-after-validation", false),
    ("split-after-begin", false),
    ("split-after-pageserver-split", false),
    ("split-before-complete", false),
    ("split-after-complete", true),
    ("split-parent-detach", true),
];

/// The `sleep` variant's kill delay after the hit was observed, per phase. They straddle the
/// 400 ms sleep so that some kills land in it and some after it, when the leader went on:
/// - `split-after-validation` 150: in the sleep, before `BeginSplit` (nothing to undo);
/// - `split-after-begin` 50: in the sleep, before any pageserver split;
/// - `split-after-pageserver-split` 450: after the first parent's sleep, in the second one's
///   (both parents split on their pageservers);
/// - `split-before-complete` 400: races the `CompleteSplit` commit (either outcome);
/// - `split-after-complete` 200, `split-parent-detach` 350: after the commit, in the sleep.
const KILL_DELAYS_MS: [u64; PHASES.len()] = [150, 50, 450, 400, 200, 350];

/// A soak: `SPLIT_LEADER_KILL_ROUNDS=N` (at most 20) runs every phase and variant N times, the
/// sleep variant's kill `ROUND_SHIFT_MS` later each round. The default suite runs one round.
const ROUNDS_ENV: &str = "SPLIT_LEADER_KILL_ROUNDS";
const ROUND_SHIFT_MS: u64 = 35;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Pause,
    Sleep { kill_delay_ms: u64 },
}

impl Variant {
    fn action(self) -> String {
        match self {
            Variant::Pause => "pause".into(),
            Variant::Sleep { .. } => format!("sleep({SLEEP_MS})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    RolledBack,
    RolledForward,
}

impl Outcome {
    fn count(self) -> u8 {
        match self {
            Outcome::RolledBack => OLD_COUNT,
            Outcome::RolledForward => NEW_COUNT,
        }
    }
}

/// What the split call that was in flight at the kill got.
#[derive(Clone, Debug)]
enum CallResult {
    Succeeded,
    Failed(String),
}

struct Row {
    phase: &'static str,
    variant: Variant,
    old_leader: u64,
    new_leader: u64,
    outcome: Outcome,
    call: CallResult,
    kill_to_settled: Duration,
}

fn short(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() > 110 {
        format!("{}...", one_line.chars().take(110).collect::<String>())
    } else {
        one_line
    }
}

fn call_result(tenant: &str, answer: Result<RawResponse, ClientError>) -> CallResult {
    match answer {
        Ok(r) if r.status == 200 => {
            assert_eq!(
                new_shards(&r.body),
                shard_ids(tenant, NEW_COUNT),
                "{tenant}: the in-flight split answered 200 with other shards"
            );
            CallResult::Succeeded
        }
        Ok(r) => CallResult::Failed(format!(
            "HTTP {}: {}",
            r.status,
            short(&r.msg().unwrap_or(r.body))
        )),
        Err(e) => CallResult::Failed(format!("no answer: {}", short(&e.to_string()))),
    }
}

/// Sets `actions` at the failpoint `name` on every running replica.
async fn set_failpoint_everywhere(cluster: &Cluster, name: &str, actions: &str) {
    for id in cluster.live_ids() {
        StorageApi::new(cluster.client(id))
            .set_failpoint(name, actions)
            .await
            .unwrap_or_else(|e| panic!("failpoint {name}={actions} on replica {id}: {e}"));
    }
}

/// Waits until the leader passed the failpoint `name` more than `baseline` times. Fails at once
/// if the split call ended before that.
async fn wait_for_hit(
    leader: &StorageApi,
    name: &str,
    baseline: u64,
    call: &tokio::task::JoinHandle<Result<RawResponse, ClientError>>,
) {
    let start = Instant::now();
    loop {
        match leader.failpoint_hits(name).await {
            Ok(hits) if hits > baseline => return,
            Ok(_) => {}
            Err(e) => eprintln!("failpoint list on the leader: {e}"),
        }
        assert!(
            !call.is_finished(),
            "the split call ended before the leader reached {name}"
        );
        assert!(
            start.elapsed() < HIT_DEADLINE,
            "the leader did not reach {name} within {HIT_DEADLINE:?}"
        );
        tokio::time::sleep(HIT_POLL).await;
    }
}

/// Waits until the controller describes `tenant` with no shard splitting (the new leader has
/// aborted a recorded split, or the commit had landed); returns how many shards it has then.
async fn wait_not_splitting(api: &StorageApi, tenant: &str) -> u8 {
    wait_until(
        "the split tenant not splitting on the controller",
        SETTLE_DEADLINE,
        async || {
            let described = api.describe_tenant(tenant).await?;
            anyhow::ensure!(
                described.shards.iter().all(|s| !s.is_splitting),
                "still splitting: {:?}",
                described
                    .shards
                    .iter()
                    .map(|s| &s.tenant_shard_id)
                    .collect::<Vec<_>>()
            );
            Ok(u8::try_from(described.shards.len()).expect("few shards"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{tenant}: {e:#}"))
}

/// The processes of the test and the bystander tenant with its attachments at the start.
struct Fleet<'a> {
    cluster: &'a Cluster,
    sims: &'a Sims,
    bystander: &'a str,
    bystander_before: &'a BTreeMap<String, Attachment>,
}

/// One kill: split `tenant` through a follower, SIGKILL the leader at `phase`, check what the
/// new leader makes of it, restart the killed replica, retry the split.
async fn kill_mid_split(
    Fleet {
        cluster,
        sims,
        bystander,
        bystander_before,
    }: Fleet<'_>,
    tenant: &str,
    parents: &BTreeMap<String, Attachment>,
    (phase, committed): (&'static str, bool),
    variant: Variant,
) -> Row {
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("three replicas agree before the run");
    let leader = cluster.leader_id().await.expect("a leader");
    let via = cluster.live_other_than(leader);
    let leader_api = StorageApi::new(cluster.client(leader));
    set_failpoint_everywhere(cluster, phase, &variant.action()).await;
    let baseline = leader_api
        .failpoint_hits(phase)
        .await
        .expect("failpoint list");

    let call = {
        let api = StorageApi::new(cluster.client(via));
        let tenant = tenant.to_string();
        tokio::spawn(async move { api.split_tenant(&tenant, NEW_COUNT, None).await })
    };
    wait_for_hit(&leader_api, phase, baseline, &call).await;
    if let Variant::Sleep { kill_delay_ms } = variant {
        // Not a wait for a condition: the point of this variant is where the kill lands.
        tokio::time::sleep(Duration::from_millis(kill_delay_ms)).await;
    }
    let killed = Instant::now();
    cluster.kill(leader);
    set_failpoint_everywhere(cluster, phase, "off").await;

    let new_leader = cluster
        .wait_for_new_leader(leader, deadline::ELECTION)
        .await
        .expect("a new leader");
    let answer = tokio::time::timeout(CALL_DEADLINE, call)
        .await
        .expect("the in-flight split call ends once its leader is dead")
        .expect("split task");
    let call = call_result(tenant, answer);

    cluster.restart(leader).expect("restart the killed replica");
    cluster
        .wait_converged(deadline::CONVERGE)
        .await
        .expect("three replicas again");

    let api = StorageApi::new(cluster.client(cluster.live_other_than(leader)));
    let count = wait_not_splitting(&api, tenant).await;
    let outcome = match count {
        OLD_COUNT => Outcome::RolledBack,
        NEW_COUNT => Outcome::RolledForward,
        other => panic!("{tenant}: {other} shards after a kill at {phase}"),
    };
    let others = [bystander.to_string()];
    let settled = wait_split_settled(
        &api,
        sims,
        tenant,
        &shard_ids(tenant, outcome.count()),
        &others,
        SETTLE_DEADLINE,
    )
    .await
    .unwrap_or_else(|e| panic!("{tenant} after a kill at {phase} ({variant:?}): {e:#}"));
    let kill_to_settled = killed.elapsed();
    // Settled means settled: the count did not move while the shards were reconciled.
    ensure_one_shard_count(&api, sims, tenant, &shard_ids(tenant, outcome.count()))
        .await
        .unwrap_or_else(|e| panic!("{tenant}: the shard count moved after settling: {e:#}"));
    for (id, a) in bystander_before {
        assert_eq!(settled[id], *a, "bystander shard {id} moved at {phase}");
    }
    if outcome == Outcome::RolledBack {
        // An aborted split leaves the parents where they were (in a new generation where a
        // pageserver had split, and so dropped, the parent).
        check_rolled_back(
            sims,
            tenant,
            parents,
            &settled,
            &format!("parents after the split was rolled back at {phase}"),
        );
    }

    let row = Row {
        phase,
        variant,
        old_leader: leader,
        new_leader,
        outcome,
        call,
        kill_to_settled,
    };
    eprintln!(
        "split_leader_kill: {phase} {variant:?}: {outcome:?} ({count} shards), in-flight call \
         {:?}, settled {kill_to_settled:.1?} after the kill; leader {leader} -> {new_leader}",
        row.call
    );

    // The outcome a run must have.
    if committed {
        assert_eq!(
            outcome,
            Outcome::RolledForward,
            "{tenant}: the kill at {phase} came after CompleteSplit committed"
        );
    } else if variant == Variant::Pause {
        assert_eq!(
            outcome,
            Outcome::RolledBack,
            "{tenant}: the leader was paused at {phase}, before CompleteSplit"
        );
    }
    if matches!(row.call, CallResult::Succeeded) {
        assert_eq!(
            outcome,
            Outcome::RolledForward,
            "{tenant}: the split answered 200 but was rolled back"
        );
    }

    // A retry through any replica succeeds (a no-op if the split stood) and settles at 4.
    let retry_via = cluster.live_ids()[usize::from(count == NEW_COUNT)];
    let retry_api = StorageApi::new(cluster.client(retry_via));
    let r = retry_api
        .split_tenant(tenant, NEW_COUNT, None)
        .await
        .expect("the retried split answers");
    assert_eq!(
        r.status, 200,
        "{tenant}: retried split after {phase} ({variant:?}, {outcome:?}): {r:?}"
    );
    assert_eq!(new_shards(&r.body), shard_ids(tenant, NEW_COUNT));
    let settled = wait_split_settled(
        &retry_api,
        sims,
        tenant,
        &shard_ids(tenant, NEW_COUNT),
        &others,
        SETTLE_DEADLINE,
    )
    .await
    .unwrap_or_else(|e| panic!("{tenant}: retried split settles: {e:#}"));
    for (id, a) in bystander_before {
        assert_eq!(
            settled[id], *a,
            "bystander shard {id} moved (retry after {phase})"
        );
    }
    retry_api.consistency_check().await.expect("consistency");
    history::ensure_safe(&sims.all_history().expect("histories"))
        .unwrap_or_else(|e| panic!("generation safety after {phase} ({variant:?}): {e:#}"));
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_leader_kill() {
    let test_started = Instant::now();
    let ControllerFixture {
        sims,
        cluster,
        leader: _,
        follower,
    } = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let api = StorageApi::new(cluster.client(follower));

    let bystander = tenant_id(TAG, 0);
    api.create_tenant(&tenant_create_body(&bystander, OLD_COUNT, 1))
        .await
        .expect("create the bystander");
    let bystander_before = wait_settled(
        &api,
        &sims,
        std::slice::from_ref(&bystander),
        SETTLE_DEADLINE,
    )
    .await
    .expect("bystander settled");

    let mut rows = Vec::new();
    let mut n = 0;
    let rounds: u64 = std::env::var(ROUNDS_ENV)
        .ok()
        .map(|r| r.parse().expect("SPLIT_LEADER_KILL_ROUNDS is a number"))
        .unwrap_or(1)
        .clamp(1, 20);
    for (round, (i, phase)) in
        (0..rounds).flat_map(|round| PHASES.into_iter().enumerate().map(move |p| (round, p)))
    {
        // Each further round moves the sleep variant's kill a little later.
        let kill_delay_ms = KILL_DELAYS_MS[i] + ROUND_SHIFT_MS * round;
        for variant in [Variant::Pause, Variant::Sleep { kill_delay_ms }] {
            n += 1;
            let tenant = tenant_id(TAG, n);
            let api = StorageApi::new(cluster.client(cluster.live_ids()[0]));
            api.create_tenant(&tenant_create_body(&tenant, OLD_COUNT, 1))
                .await
                .unwrap_or_else(|e| panic!("create {tenant}: {e}"));
            let parents: BTreeMap<String, Attachment> =
                wait_settled(&api, &sims, std::slice::from_ref(&tenant), SETTLE_DEADLINE)
                    .await
                    .unwrap_or_else(|e| panic!("{tenant} settled before its split: {e:#}"));
            // Data on every parent: detaching a parent or a child then asks the controller to
            // validate its generation, which the history checker watches.
            for (shard, a) in &parents {
                let (status, body) = sims
                    .request(
                        a.node,
                        Method::POST,
                        &format!("/v1/tenant/{shard}/timeline"),
                        Some(&json!({"new_timeline_id": TIMELINE})),
                    )
                    .await
                    .expect("timeline create");
                assert_eq!(status, 201, "{shard}: {body}");
            }
            rows.push(
                kill_mid_split(
                    Fleet {
                        cluster: &cluster,
                        sims: &sims,
                        bystander: &bystander,
                        bystander_before: &bystander_before,
                    },
                    &tenant,
                    &parents,
                    phase,
                    variant,
                )
                .await,
            );
        }
    }

    // The bystander never moved, over every failover.
    let api = StorageApi::new(cluster.client(cluster.live_ids()[0]));
    let after = wait_settled(
        &api,
        &sims,
        std::slice::from_ref(&bystander),
        SETTLE_DEADLINE,
    )
    .await
    .expect("bystander settled at the end");
    assert_eq!(
        after, bystander_before,
        "bystander attachments and generations"
    );
    api.consistency_check().await.expect("consistency");
    let events = sims.all_history().expect("histories");
    history::ensure_safe(&events).expect("history safe");
    let validates = history::count_kind(&events, "validate");
    // A validate the controller answered (`reason` is the transport failure otherwise). Parents
    // are detached after the split commits, so the answer omits them (`valid` is `None`) and the
    // simulator keeps their data.
    let answered = events
        .iter()
        .filter(|e| e.kind == "validate" && e.reason.is_none())
        .count();
    // The safety check above judged real traffic: every split detaches parents that hold data,
    // and each detach asks the controller to validate.
    assert!(validates > 0, "no validate reached the history checker");
    assert!(answered > 0, "the controller answered no validate");
    // Killed replicas were restarted; a SIGKILL by the harness is not a crash.
    cluster.check_no_crashes().expect("no replica crashed");
    sims.check_no_crashes().expect("no simulator crashed");

    eprintln!(
        "\n{:<30} {:<6} {:>10} {:<15} {:>8} {:>10}  in-flight call",
        "phase", "variant", "kill delay", "outcome", "leader", "settled"
    );
    for r in &rows {
        let (variant, delay) = match r.variant {
            Variant::Pause => ("pause", "-".to_string()),
            Variant::Sleep { kill_delay_ms } => ("sleep", format!("{kill_delay_ms} ms")),
        };
        let outcome = match r.outcome {
            Outcome::RolledBack => "rolled back",
            Outcome::RolledForward => "rolled forward",
        };
        let call = match &r.call {
            CallResult::Succeeded => "200".to_string(),
            CallResult::Failed(e) => e.clone(),
        };
        eprintln!(
            "{:<30} {:<7} {:>10} {:<15} {:>8} {:>9.1?}  {call}",
            r.phase,
            variant,
            delay,
            outcome,
            format!("{}->{}", r.old_leader, r.new_leader),
            r.kill_to_settled,
        );
    }
    eprintln!(
        "split_leader_kill: {} runs in {:.1?}; {validates} validates by \
         detaching simulators, {answered} answered by the controller",
        rows.len(),
        test_started.elapsed()
    );
}
