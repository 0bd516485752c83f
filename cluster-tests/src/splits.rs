//! Checks for split scenarios: a tenant ends at one shard count, on the controller and on every
//! running simulator, with every shard where its intent says.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;

use crate::placement::{Attachment, wait_settled};
use crate::sims::{SimLocation, Sims};
use crate::storage_api::StorageApi;
use crate::wait::wait_until;

/// The `new_shards` of a split answer's body.
pub fn new_shards(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("split answer is JSON");
    v["new_shards"]
        .as_array()
        .expect("new_shards")
        .iter()
        .map(|s| s.as_str().expect("id").to_string())
        .collect()
}

/// Shard ids of `tenant` that some running simulator holds, with the nodes holding each.
pub fn held_shards(
    view: &BTreeMap<String, BTreeMap<u64, SimLocation>>,
    tenant: &str,
) -> BTreeMap<String, Vec<u64>> {
    view.iter()
        .filter(|(id, _)| id.starts_with(tenant))
        .map(|(id, nodes)| (id.clone(), nodes.keys().copied().collect()))
        .collect()
}

/// Fails unless the controller describes `tenant` with exactly `expected` shard ids and no
/// running simulator holds any other shard of it (no parent or child left behind).
pub async fn ensure_one_shard_count(
    api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    expected: &[String],
) -> anyhow::Result<()> {
    let described = api.describe_tenant(tenant).await?;
    let ids: Vec<String> = described
        .shards
        .iter()
        .map(|s| s.tenant_shard_id.clone())
        .collect();
    ensure!(ids == expected, "{tenant}: controller has {ids:?}");
    ensure!(
        described.shards.iter().all(|s| !s.is_splitting),
        "{tenant}: still splitting"
    );
    let view = sims.view().await?;
    let strays: Vec<_> = held_shards(&view, tenant)
        .into_iter()
        .filter(|(id, _)| !expected.contains(id))
        .collect();
    ensure!(
        strays.is_empty(),
        "{tenant}: simulators still hold {strays:?}"
    );
    Ok(())
}

/// Waits until `tenant` is at exactly the `expected` shards everywhere and it and `others` are
/// settled (see [`wait_settled`]). Returns every shard's attachment.
pub async fn wait_split_settled(
    api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    expected: &[String],
    others: &[String],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, Attachment>> {
    wait_until(
        "the split tenant at one shard count everywhere",
        timeout,
        async || ensure_one_shard_count(api, sims, tenant, expected).await,
    )
    .await?;
    let mut tenants = vec![tenant.to_string()];
    tenants.extend(others.iter().cloned());
    wait_settled(api, sims, &tenants, timeout).await
}

/// [`wait_split_settled`], and every shard of `tenant` has exactly `secondaries` secondaries in
/// its intent: a rolled-back split gives the parents back the secondaries `BeginSplit` dropped,
/// a finished one gives the children theirs. Returns every shard's attachment.
pub async fn wait_split_settled_with_secondaries(
    api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    expected: &[String],
    others: &[String],
    secondaries: usize,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, Attachment>> {
    let check_secondaries = async || {
        let described = api.describe_tenant(tenant).await?;
        let wrong: Vec<_> = described
            .shards
            .iter()
            .filter(|s| s.node_secondary.len() != secondaries)
            .map(|s| (s.tenant_shard_id.clone(), s.node_secondary.clone()))
            .collect();
        ensure!(
            wrong.is_empty(),
            "{tenant}: shards without {secondaries} secondaries: {wrong:?}"
        );
        anyhow::Ok(())
    };
    wait_until(
        "the split tenant at one shard count, with its secondaries",
        timeout,
        async || {
            ensure_one_shard_count(api, sims, tenant, expected).await?;
            check_secondaries().await
        },
    )
    .await?;
    let settled = wait_split_settled(api, sims, tenant, expected, others, timeout).await?;
    check_secondaries().await?;
    Ok(settled)
}

/// [`wait_split_settled_with_secondaries`] with one secondary per shard and the usual deadline,
/// panicking with `what` if it does not settle; then checks that no attachment in `unmoved`
/// changed. Returns every shard's attachment and the time it took to settle.
pub async fn expect_settled(
    api: &StorageApi,
    sims: &Sims,
    tenant: &str,
    expected: &[String],
    others: &[String],
    unmoved: &[&BTreeMap<String, Attachment>],
    what: &str,
) -> (BTreeMap<String, Attachment>, Duration) {
    let started = std::time::Instant::now();
    let settled = wait_split_settled_with_secondaries(
        api,
        sims,
        tenant,
        expected,
        others,
        1,
        crate::placement::SETTLE_DEADLINE,
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    for (id, a) in unmoved.iter().flat_map(|m| m.iter()) {
        assert_eq!(settled[id], *a, "{what}: {id} moved");
    }
    (settled, started.elapsed())
}

/// Checks a rolled-back split: each parent is attached where it was. A pageserver that split
/// a parent dropped its location, so attaching it again took a new generation; a parent no
/// pageserver split is kept as it was. Returns the parents a pageserver dropped.
pub fn check_rolled_back(
    sims: &Sims,
    tenant: &str,
    before: &BTreeMap<String, Attachment>,
    settled: &BTreeMap<String, Attachment>,
    what: &str,
) -> Vec<String> {
    let removed: Vec<String> = sims
        .all_history()
        .expect("histories")
        .iter()
        .filter(|e| e.kind == "split_parent_removed" && e.accepted)
        .filter_map(|e| e.tenant_shard_id.clone())
        .filter(|id| id.starts_with(tenant))
        .collect();
    for (id, was) in before {
        let now = &settled[id];
        assert_eq!(now.node, was.node, "{what}: {id} moved");
        if removed.contains(id) {
            assert!(now.generation > was.generation, "{what}: {id}: {now:?}");
        } else {
            assert_eq!(now, was, "{what}: {id} changed");
        }
    }
    removed
}
