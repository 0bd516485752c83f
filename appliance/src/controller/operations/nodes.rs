//! The pageserver registry.
//!
//! - register (`POST /control/v1/node`, and inline in a re-attach): check the request (an
//!   `node_ip_addr` must be an IP address), commit
//!   `RegisterNode` (409 for another address or AZ under the same id).
//! - configure (`PUT /control/v1/node/:id/config`): the path and body ids agree and the node is
//!   registered; commit the scheduling policy if given; then apply the availability override
//!   (leader soft state): `Offline` fails its shards over at once, `Active` runs the activation
//!   check (412 if it fails), `WarmingUp` waits for the next heartbeat.
//! - shards (`GET /control/v1/node/:id/shards`): every shard intended or observed on the node
//!   (`State::node_shards`); an unknown node has none.

use std::collections::BTreeMap;
use std::time::Instant;

use state_machine::ids::TenantShardId;
use state_machine::{Command, NodeAvailability, NodeId, NodeRegisterRequest};
use storcon_api::wire::{LocationConfigMode, NodeConfigureRequest, NodeShardResponse};
use storcon_http::OperationError;

use crate::controller::nodes::Avail;
use crate::controller::{Controller, lock};

impl Controller {
    pub(super) async fn node_register(
        &self,
        req: NodeRegisterRequest,
    ) -> Result<(), OperationError> {
        req.check_node_ip_addr()?;
        req.validate()?;
        let response = self.propose_request(Command::RegisterNode(req)).await?;
        tracing::info!(?response, "node register");
        Ok(())
    }

    pub(super) async fn node_configure(
        &self,
        id: NodeId,
        req: NodeConfigureRequest,
    ) -> Result<(), OperationError> {
        if req.node_id != id {
            return Err(OperationError::Invalid(format!(
                "path node id {id} differs from body node_id {}",
                req.node_id
            )));
        }
        if self.state.read().node(id).is_none() {
            return Err(OperationError::NodeNotFound(id));
        }
        // Upstream: no configuration while a drain or fill runs anywhere.
        if let Some(op) = self.state.read().node_operation() {
            return Err(OperationError::PreconditionFailed(format!(
                "Background operation ongoing for node {} ({:?}); cancel it first",
                op.node, op.kind
            )));
        }
        if let Some(policy) = req.scheduling {
            self.propose_request(Command::SetNodeScheduling {
                node_id: id,
                policy,
            })
            .await?;
        }
        if let Some(availability) = req.availability {
            self.set_availability(id, availability).await?;
        }
        Ok(())
    }

    async fn set_availability(
        &self,
        node: NodeId,
        availability: NodeAvailability,
    ) -> Result<(), OperationError> {
        let record = self
            .state
            .read()
            .node(node)
            .cloned()
            .ok_or(OperationError::NodeNotFound(node))?;
        match availability {
            NodeAvailability::Offline => self.node_offline(node).await,
            NodeAvailability::Active => {
                self.activate(&record)
                    .await
                    .map_err(|e| OperationError::Activation {
                        node,
                        reason: e.to_string(),
                    })?
            }
            NodeAvailability::WarmingUp => {
                if let Some(n) = self.nodes.states().get_mut(&node) {
                    n.avail = Avail::WarmingUp {
                        since: Instant::now(),
                    };
                }
            }
        }
        Ok(())
    }

    pub(super) async fn node_shards(
        &self,
        id: NodeId,
    ) -> Result<NodeShardResponse, OperationError> {
        // Observed: `Some(true)` secondary, `Some(false)` attached, `None` uncertain.
        let observed: BTreeMap<TenantShardId, Option<bool>> = lock(&self.observed)
            .on_node(id)
            .into_iter()
            .map(|(sid, l)| {
                (
                    sid,
                    l.known().map(|c| c.mode == LocationConfigMode::Secondary),
                )
            })
            .collect();
        // An unknown node has no shards: 200 with an empty list, as upstream.
        let shards = self.state.read().node_shards(id, &observed);
        Ok(NodeShardResponse {
            node_id: id,
            shards,
        })
    }
}
