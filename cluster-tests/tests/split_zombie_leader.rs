//! A leader frozen in the middle of a split (SIGSTOP, as a long pause or a partition would) while
//! the others elect a new leader, then thawed: the old leader must not be able to finish what
//! it started.
//!
//! The leader is paused at `split-after-pageserver-split`, after the first parent's pageserver
//! made its children. The new leader aborts the recorded split: the tenant settles at its old
//! shard count everywhere, the children detached. Then the old leader continues (SIGCONT, its
//! failpoint released): whatever it still tries, no simulator accepts a request carrying its old
//! term (they have all heard the new leader's term through heartbeats), it commits nothing, and
//! it ends up a follower of the new term. The tenant is still at its old count afterwards, the
//! histories are generation-safe, and a retried split succeeds.

use std::time::Duration;

use cluster_tests::client::http_client;
use cluster_tests::fixture::ControllerFixture;
use cluster_tests::history;
use cluster_tests::placement::SETTLE_DEADLINE;
use cluster_tests::splits::{ensure_one_shard_count, new_shards, wait_split_settled};
use cluster_tests::storage_api::{shard_ids, tenant_create_body, tenant_id};
use cluster_tests::{Client, StorageApi, wait_until};

const TAG: u32 = 0x5b1d;
const FAILPOINT: &str = "split-after-pageserver-split";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_zombie_leader() {
    let fx = ControllerFixture::start(&[(1, "az-a"), (2, "az-a"), (3, "az-b")], SETTLE_DEADLINE)
        .await
        .expect("a formed cluster with Active simulators");
    let old_leader = fx.leader;
    let via = fx.follower;
    let other = fx
        .cluster
        .ids()
        .into_iter()
        .find(|id| *id != old_leader && *id != via)
        .expect("a third replica");
    let api = StorageApi::new(fx.cluster.client(via));
    let tenant = tenant_id(TAG, 1);
    api.create_tenant(&tenant_create_body(&tenant, 2, 1))
        .await
        .expect("create");
    let old_ids = shard_ids(&tenant, 2);
    wait_split_settled(&api, &fx.sims, &tenant, &old_ids, &[], SETTLE_DEADLINE)
        .await
        .expect("settled before the split");
    let old_term = fx.cluster.status_of(old_leader).await.expect("status").term;

    for id in fx.cluster.ids() {
        StorageApi::new(fx.cluster.client(id))
            .set_failpoint(FAILPOINT, "pause")
            .await
            .expect("failpoint");
    }
    let leader_api = StorageApi::new(fx.cluster.client(old_leader));
    let baseline = leader_api
        .failpoint_hits(FAILPOINT)
        .await
        .expect("failpoints");
    // The forwarded call waits on a frozen leader: give it a client that outlasts the freeze.
    let call = {
        let api = StorageApi::new(Client::new(
            http_client(Duration::from_secs(120)),
            fx.cluster.url(via),
        ));
        let tenant = tenant.clone();
        tokio::spawn(async move { api.split_tenant(&tenant, 4, None).await })
    };
    wait_until("the leader paused mid-split", SETTLE_DEADLINE, async || {
        let hits = leader_api.failpoint_hits(FAILPOINT).await?;
        anyhow::ensure!(hits > baseline, "{hits} hits");
        Ok(())
    })
    .await
    .expect("paused after the first pageserver split");
    fx.cluster.pause(old_leader).expect("SIGSTOP the leader");
    for id in [via, other] {
        StorageApi::new(fx.cluster.client(id))
            .set_failpoint(FAILPOINT, "off")
            .await
            .expect("failpoint off on a survivor");
    }

    // The survivors elect a leader of a newer term (only they are polled: the frozen one would
    // hang every request).
    let new_term = wait_until(
        "a new leader among the survivors",
        SETTLE_DEADLINE,
        async || {
            let status = fx.cluster.status_of(via).await?;
            let leader = status
                .leader_id
                .filter(|l| *l != old_leader && status.term > old_term);
            anyhow::ensure!(leader.is_some(), "{status:?}");
            Ok(status.term)
        },
    )
    .await
    .expect("new leader");
    wait_split_settled(&api, &fx.sims, &tenant, &old_ids, &[], SETTLE_DEADLINE)
        .await
        .expect("the new leader rolled the split back");
    // Every simulator has heard the new term (heartbeats carry it) before the thaw.
    wait_until(
        "every simulator at the new term",
        SETTLE_DEADLINE,
        async || {
            for node in fx.sims.ids() {
                let state = fx.sims.state(node).await?;
                let seen = state["max_term"].as_u64();
                anyhow::ensure!(seen >= Some(new_term), "node {node} at term {seen:?}");
            }
            Ok(())
        },
    )
    .await
    .expect("simulators fenced");

    let thawed_at = chrono::Utc::now();
    fx.cluster.resume(old_leader).expect("SIGCONT");
    leader_api
        .set_failpoint(FAILPOINT, "off")
        .await
        .expect("failpoint off on the old leader");
    wait_until(
        "the old leader follows the new term",
        SETTLE_DEADLINE,
        async || {
            let status = fx.cluster.status_of(old_leader).await?;
            anyhow::ensure!(
                status.term >= new_term && status.leader_id.is_some_and(|l| l != old_leader),
                "{status:?}"
            );
            Ok(())
        },
    )
    .await
    .expect("the old leader stepped down");
    let answer = tokio::time::timeout(Duration::from_secs(150), call)
        .await
        .expect("the frozen call ends")
        .expect("split task");
    if let Ok(raw) = &answer {
        assert_ne!(
            raw.status, 200,
            "the old leader finished the split: {raw:?}"
        );
    }

    // Nothing the old leader did after the thaw was accepted anywhere.
    let events = fx.sims.all_history().expect("histories");
    let late: Vec<_> = events
        .iter()
        .filter(|e| e.accepted && e.term == Some(old_term))
        .filter(|e| {
            chrono::DateTime::parse_from_rfc3339(&e.ts)
                .is_ok_and(|t| t.with_timezone(&chrono::Utc) >= thawed_at)
        })
        .collect();
    assert!(late.is_empty(), "accepted from the old leader: {late:?}");
    let refused = events
        .iter()
        .filter(|e| !e.accepted && e.term == Some(old_term))
        .count();
    // The thawed leader did try its old term (its frozen call went on), and was refused.
    assert!(
        refused > 0,
        "no simulator refused a request of the old term"
    );
    ensure_one_shard_count(&api, &fx.sims, &tenant, &old_ids)
        .await
        .expect("still rolled back after the thaw");

    let raw = api.split_tenant(&tenant, 4, None).await.expect("retry");
    assert_eq!(raw.status, 200, "retried split: {raw:?}");
    let new_ids = shard_ids(&tenant, 4);
    assert_eq!(new_shards(&raw.body), new_ids);
    wait_split_settled(&api, &fx.sims, &tenant, &new_ids, &[], SETTLE_DEADLINE)
        .await
        .expect("settled after the retry");
    history::ensure_safe(&fx.sims.all_history().expect("histories")).expect("history safe");
    api.consistency_check().await.expect("consistency");
    fx.cluster.check_no_crashes().expect("no replica crashed");
    fx.sims.check_no_crashes().expect("no simulator crashed");
    eprintln!(
        "split_zombie_leader: old term {old_term}, new term {new_term}; the frozen call ended \
         with {:?}; {refused} requests of the old term refused by simulators",
        answer.map(|r| r.status)
    );
}
