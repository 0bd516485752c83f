//! The controller's intent (tenant descriptions) checked against what the simulated
//! pageservers actually hold, and waiting until the two agree.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure};

use crate::history;
use crate::sims::{SimLocation, Sims};
use crate::storage_api::{StorageApi, TenantDescribeResponse};
use crate::wait::wait_until;

/// Where one shard is attached, as the simulators hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub node: u64,
    pub generation: u32,
}

/// Checks `tenant` against `view` (shard -> running node -> location):
/// - every shard's `node_attached` is set, runs, and holds the shard `AttachedSingle`;
/// - no other running simulator holds the shard in an attached mode;
/// - every running `node_secondary` holds the shard `Secondary`, and no running node outside the
///   intent holds it at all;
/// - nothing is reconciling and there is no `last_error`.
///
/// Returns each shard's attachment.
pub fn check_tenant(
    tenant: &TenantDescribeResponse,
    view: &BTreeMap<String, BTreeMap<u64, SimLocation>>,
    live: &[u64],
) -> anyhow::Result<BTreeMap<String, Attachment>> {
    let mut out = BTreeMap::new();
    let empty = BTreeMap::new();
    for shard in &tenant.shards {
        let id = &shard.tenant_shard_id;
        let held = view.get(id).unwrap_or(&empty);
        let attached = shard
            .node_attached
            .ok_or_else(|| anyhow!("{id}: no attached node in the intent"))?;
        ensure!(
            live.contains(&attached),
            "{id}: intent attached on node {attached}, which is not running"
        );
        let loc = held
            .get(&attached)
            .ok_or_else(|| anyhow!("{id}: node {attached} does not hold it (held: {held:?})"))?;
        ensure!(
            loc.mode == "AttachedSingle",
            "{id}: node {attached} holds it as {}",
            loc.mode
        );
        let generation = loc
            .generation
            .ok_or_else(|| anyhow!("{id}: attached on node {attached} without a generation"))?;
        for (node, loc) in held {
            if *node == attached {
                continue;
            }
            ensure!(
                !loc.mode.starts_with("Attached"),
                "{id}: also attached on node {node} ({loc:?})"
            );
            ensure!(
                shard.node_secondary.contains(node),
                "{id}: node {node} holds it as {} but is not in the intent {:?}",
                loc.mode,
                shard.node_secondary
            );
        }
        for node in &shard.node_secondary {
            ensure!(
                *node != attached,
                "{id}: node {node} attached and secondary"
            );
            if !live.contains(node) {
                continue;
            }
            let mode = held.get(node).map(|l| l.mode.as_str());
            ensure!(
                mode == Some("Secondary"),
                "{id}: intended secondary on node {node}, which holds {mode:?}"
            );
        }
        ensure!(!shard.is_reconciling, "{id}: still reconciling");
        ensure!(
            shard.last_error.is_empty(),
            "{id}: last_error {:?}",
            shard.last_error
        );
        out.insert(
            id.clone(),
            Attachment {
                node: attached,
                generation,
            },
        );
    }
    Ok(out)
}

/// Waits until, through `api`, every tenant in `tenants` passes [`check_tenant`] against the
/// running simulators, each attachment is in the newest generation any simulator ever accepted
/// for the shard, and `consistency_check` answers 200. Returns every shard's attachment.
pub async fn wait_settled(
    api: &StorageApi,
    sims: &Sims,
    tenants: &[String],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, Attachment>> {
    wait_until(
        "the controller and the simulators to agree",
        timeout,
        async || {
            let live = sims.live_ids();
            let view = sims.view().await?;
            let mut all = BTreeMap::new();
            for tenant in tenants {
                let described = api.describe_tenant(tenant).await?;
                all.extend(check_tenant(&described, &view, &live)?);
            }
            let generations = history::attach_generations(&sims.all_history()?);
            for (shard, attachment) in &all {
                let newest = generations
                    .get(shard)
                    .and_then(|g| g.keys().next_back().copied());
                ensure!(
                    newest == Some(attachment.generation),
                    "{shard}: attached in generation {} on node {}, newest accepted is {newest:?}",
                    attachment.generation,
                    attachment.node
                );
            }
            api.consistency_check().await?;
            Ok(all)
        },
    )
    .await
}

/// How long the controller may take to bring every shard where it belongs (creates, failovers,
/// a new leader's startup) in a debug build on a busy machine.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
