//! Assertions shared by the scenario tests, as functions returning errors that say what differed.

use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;

use crate::api::{NodeDescription, NodeRegisterRequest};
use crate::client::{RawResponse, ReadMode};
use crate::cluster::Cluster;
use crate::storage_api::{expect_keys, fields};
use crate::wait::wait_until;

/// The descriptions `GET /control/v1/node` should list for `registered`, sorted by id.
pub fn expected_nodes(registered: &[NodeRegisterRequest]) -> Vec<NodeDescription> {
    let mut nodes: Vec<NodeDescription> = registered
        .iter()
        .map(NodeRegisterRequest::expected_description)
        .collect();
    nodes.sort_by_key(|n| n.id);
    nodes
}

/// The durable part of replica `id`'s node list, in the order the server returned it.
pub async fn node_list(
    cluster: &Cluster,
    id: u64,
    mode: ReadMode,
) -> anyhow::Result<Vec<NodeDescription>> {
    let nodes = cluster
        .client(id)
        .list_nodes(mode)
        .await
        .with_context(|| format!("listing nodes on replica {id} ({mode:?})"))?;
    Ok(nodes.iter().map(|n| n.durable()).collect())
}

/// Checks that replica `id` lists exactly `registered` (sorted by id, as the contract says) and
/// describes each of them with `GET /control/v1/node/:id`, reading with `mode`.
pub async fn check_nodes_on(
    cluster: &Cluster,
    id: u64,
    mode: ReadMode,
    registered: &[NodeRegisterRequest],
) -> anyhow::Result<()> {
    let expected = expected_nodes(registered);
    let listed = node_list(cluster, id, mode).await?;
    if listed != expected {
        let listed_ids: Vec<u64> = listed.iter().map(|n| n.id).collect();
        let expected_ids: Vec<u64> = expected.iter().map(|n| n.id).collect();
        return Err(anyhow!(
            "replica {id} ({mode:?}) lists ids {listed_ids:?}, expected {expected_ids:?}; \
             first difference: {:?}",
            listed.iter().zip(&expected).find(|(l, e)| l != e)
        ));
    }
    let client = cluster.client(id);
    // A few requests at a time: every node, but without a burst of hundreds of connections.
    stream::iter(expected.iter())
        .map(|node| {
            let client = client.clone();
            async move {
                let got = client
                    .get_node(node.id, mode)
                    .await
                    .with_context(|| format!("GET node {} on replica {id} ({mode:?})", node.id))?;
                ensure!(
                    got.durable() == *node,
                    "replica {id} ({mode:?}) describes node {} as {got:?}, expected {node:?}",
                    node.id
                );
                Ok(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// [`check_nodes_on`] for every live replica, both forwarded and local reads.
pub async fn check_nodes_everywhere(
    cluster: &Cluster,
    registered: &[NodeRegisterRequest],
) -> anyhow::Result<()> {
    for id in cluster.live_ids() {
        for mode in [ReadMode::Forwarded, ReadMode::Local] {
            check_nodes_on(cluster, id, mode, registered).await?;
        }
    }
    Ok(())
}

/// Waits until replica `id`'s own applied state (a local read) lists exactly `registered`.
pub async fn wait_nodes_local(
    cluster: &Cluster,
    id: u64,
    registered: &[NodeRegisterRequest],
    timeout: Duration,
) -> anyhow::Result<()> {
    let expected = expected_nodes(registered);
    wait_until(
        &format!("replica {id} to hold {} nodes locally", expected.len()),
        timeout,
        async || {
            let listed = node_list(cluster, id, ReadMode::Local).await?;
            ensure!(
                listed == expected,
                "replica {id} holds {} nodes locally (ids {:?}..), expected {}",
                listed.len(),
                listed.iter().take(5).map(|n| n.id).collect::<Vec<_>>(),
                expected.len()
            );
            Ok(())
        },
    )
    .await
}

/// Why `resp` is not `want` with a JSON `{"msg"}` body (a non-empty string), if it is not.
pub fn judge_error(resp: &RawResponse, want: u16) -> Option<String> {
    if resp.status != want {
        return Some(format!("HTTP {}, expected {want}", resp.status));
    }
    judge_error_body(resp.status, &resp.body)
}

/// Why `body`, answered with `status`, is not a JSON `{"msg"}` body (a non-empty string), if it
/// is not.
pub fn judge_error_body(status: u16, body: &str) -> Option<String> {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Some(format!("HTTP {status} with a non-JSON body"));
    };
    if let Err(e) = expect_keys(&value, fields::ERROR) {
        return Some(format!("HTTP {status}, error body: {e}"));
    }
    match value["msg"].as_str() {
        Some(msg) if !msg.trim().is_empty() => None,
        _ => Some(format!("HTTP {status} with an empty or non-string msg")),
    }
}

/// Panics with every collected failure, one a line, after `<count> <what>:`, unless there are
/// none.
#[track_caller]
pub fn assert_no_failures(failures: &[String], what: &str) {
    assert!(
        failures.is_empty(),
        "{} {what}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
