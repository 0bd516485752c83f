//! Calls from pageservers.
//!
//! Re-attach (`POST /upcall/v1/re-attach`), what a pageserver calls when it starts:
//! 1. Register the node first if the request carries its registration.
//! 2. Commit `ReAttach`: every shard whose generation was issued to the node gets a new one.
//! 3. The node is WarmingUp until its next heartbeat; calls in flight to its previous life are
//!    abandoned, and what it holds is uncertain until its locations are listed again (or, with
//!    `empty_local_disk`, known to be nothing). An unregistered node gets an empty answer.
//! 4. Answer AttachedSingle in the new generation for those shards, and Secondary (no
//!    generation) for the node's secondary intents.
//!
//! Validate (`POST /upcall/v1/validate`): after a ReadIndex round, a generation is valid when
//! it is the shard's latest. Unknown shards are left out of the answer, as upstream, so the
//! pageserver keeps their data.

use std::time::Instant;

use state_machine::ids::TenantShardId;
use state_machine::{Command, Generation, NodeId, Response};
use storcon_api::wire::{
    LocationConfigMode, ReAttachRequest, ReAttachResponse, ReAttachResponseTenant, ValidateRequest,
    ValidateResponse, ValidateResponseTenant,
};
use storcon_http::OperationError;

use crate::controller::nodes::{Avail, NodeState};
use crate::controller::observed::ObservedLocation;
use crate::controller::{Controller, lock};

impl Controller {
    pub(super) async fn re_attach(
        &self,
        req: ReAttachRequest,
    ) -> Result<ReAttachResponse, OperationError> {
        if let Some(register) = req.register {
            if register.node_id != req.node_id {
                return Err(OperationError::Invalid(format!(
                    "register.node_id {} differs from node_id {}",
                    register.node_id, req.node_id
                )));
            }
            self.node_register(register).await?;
        }
        let issued = match self
            .propose_request(Command::ReAttach {
                node_id: req.node_id,
            })
            .await?
        {
            Response::ReAttached(issued) => issued,
            other => {
                return Err(OperationError::Internal(format!(
                    "unexpected answer to ReAttach: {other:?}"
                )));
            }
        };
        if self.state.read().node(req.node_id).is_none() {
            // Not registered (and no `register`): nothing was issued to it; answer empty, as
            // upstream does, and keep no soft state for a node that may never register.
            tracing::info!(node = %req.node_id, "re-attach from an unregistered node");
            return Ok(ReAttachResponse {
                tenants: Vec::new(),
            });
        }
        let lost_disk = req.empty_local_disk.unwrap_or(false);
        self.node_re_attached(req.node_id, &issued, lost_disk);
        let state = self.state.read();
        let mut tenants: Vec<ReAttachResponseTenant> = issued
            .iter()
            .filter_map(|(id, generation)| {
                state.shard(id).map(|s| ReAttachResponseTenant {
                    id: *id,
                    r#gen: Some(*generation),
                    mode: LocationConfigMode::AttachedSingle,
                    stripe_size: s.stripe_size,
                })
            })
            .collect();
        tenants.extend(
            state
                .shards_on(req.node_id)
                .intended
                .iter()
                .filter_map(|id| state.shard(id))
                .filter(|s| s.intent.secondaries.contains(&req.node_id))
                .filter(|s| !issued.iter().any(|(id, _)| *id == s.id))
                .map(|s| ReAttachResponseTenant {
                    id: s.id,
                    r#gen: None,
                    mode: LocationConfigMode::Secondary,
                    stripe_size: s.stripe_size,
                }),
        );
        tracing::info!(
            node = %req.node_id,
            attached = issued.len(),
            total = tenants.len(),
            "re-attach"
        );
        Ok(ReAttachResponse { tenants })
    }

    /// Step 3 of re-attach: the leader's soft state for a node that restarted. A node that lost
    /// its local disk holds nothing: its observed locations are forgotten, so the reconciler
    /// sends every location again instead of reading back what is not there.
    fn node_re_attached(
        &self,
        node: NodeId,
        issued: &[(TenantShardId, Generation)],
        lost_disk: bool,
    ) {
        let warming = Avail::WarmingUp {
            since: Instant::now(),
        };
        self.nodes
            .states()
            .entry(node)
            .and_modify(|n| n.avail = warming)
            .or_insert(NodeState {
                avail: warming,
                last_seen: None,
                utilization_score: 1_000_000,
            });
        // Calls in flight to it answer for its previous life; abandon them.
        self.cancel_node_calls(node);
        // Until the activation check lists the node, what it holds is uncertain.
        let mut obs = lock(&self.observed);
        if lost_disk {
            obs.replace_node(node, &[]);
        } else {
            obs.mark_node_unknown(node);
        }
        for (id, _) in issued {
            obs.set(*id, node, ObservedLocation::Unknown);
        }
    }

    pub(super) async fn validate(
        &self,
        req: ValidateRequest,
    ) -> Result<ValidateResponse, OperationError> {
        let tenants = self
            .read_confirmed(|state| {
                req.tenants
                    .iter()
                    .filter_map(|t| {
                        state.shard(&t.id).map(|s| ValidateResponseTenant {
                            id: t.id,
                            valid: s.generation == Some(t.r#gen),
                        })
                    })
                    .collect()
            })
            .await?;
        Ok(ValidateResponse { tenants })
    }
}
