//! `POST /debug/v1/attach-hook` (upstream's test hook) as a command: attach a shard to a node
//! in a new generation, creating the shard if needed, or detach it.
//!
//! Invariants kept: generations never decrease and no two nodes are issued the same one (an
//! override not above the current generation is refused unless it repeats it for the same
//! node); a tenant stays at one shard count; a splitting tenant is left alone.

use crate::command::{Rejection, Response};
use crate::ids::TenantShardId;
use crate::node::NodeId;
use crate::rows::Mutation;
use crate::state::State;
use crate::tenant::{
    DEFAULT_STRIPE_SIZE, Generation, Intent, PlacementPolicy, ShardSchedulingPolicy, TenantShard,
};

type Applied = Result<(Response, Vec<Mutation>), Rejection>;

impl State {
    pub(crate) fn attach_hook(
        &mut self,
        id: TenantShardId,
        node_id: Option<NodeId>,
        generation_override: Option<Generation>,
        config: Option<&serde_json::Value>,
    ) -> Applied {
        self.refuse_if_splitting(id.tenant_id)?;
        if let Some(n) = node_id
            && !self.nodes.contains_key(&n)
        {
            return Err(Rejection::NotFound(format!("Node {n} not registered")));
        }
        if let Some(c) = config {
            crate::limits::check_tenant_config(c)?;
        }
        let sibling = self.tenant_shards(id.tenant_id).next().cloned();
        if let Some(s) = &sibling
            && s.id.shard_count != id.shard_count
        {
            return Err(Rejection::Conflict(format!(
                "Tenant {} has shard count {}, not {}",
                id.tenant_id, s.id.shard_count.0, id.shard_count.0
            )));
        }
        let mut shard = match self.shards.get(&id) {
            Some(s) => s.clone(),
            None => TenantShard {
                id,
                stripe_size: sibling
                    .as_ref()
                    .map_or(DEFAULT_STRIPE_SIZE, |s| s.stripe_size),
                generation: None,
                generation_pageserver: None,
                placement: PlacementPolicy::Attached(0),
                config: sibling
                    .as_ref()
                    .map_or_else(|| serde_json::json!({}), |s| s.config.clone()),
                scheduling: ShardSchedulingPolicy::Active,
                preferred_az: sibling.as_ref().and_then(|s| s.preferred_az.clone()),
                intent: Intent::default(),
                splitting: false,
            },
        };
        if let Some(c) = config {
            shard.config = c.clone();
        }
        let floor = self.generation_floor();
        let answer = match node_id {
            Some(node) => {
                let generation = match generation_override {
                    // Reusing the current generation is only a repeat for the same node: two
                    // nodes must never hold one generation.
                    Some(g)
                        if shard.generation.is_some_and(|current| {
                            g < current
                                || (g == current && shard.generation_pageserver != Some(node))
                        }) =>
                    {
                        return Err(Rejection::Conflict(format!(
                            "{id}: generation {g} is not newer than the current {:?}",
                            shard.generation
                        )));
                    }
                    Some(g) => g,
                    None => crate::tenants::next_generation(&shard, floor)?,
                };
                shard.generation = Some(generation);
                shard.generation_pageserver = Some(node);
                shard.placement = PlacementPolicy::Attached(0);
                shard.intent = Intent {
                    attached: Some(node),
                    secondaries: Vec::new(),
                };
                Some(generation)
            }
            None => {
                shard.placement = PlacementPolicy::Detached;
                shard.generation_pageserver = None;
                shard.intent = Intent::default();
                None
            }
        };
        let m = self.put_shard(shard);
        Ok((Response::AttachHook(answer), vec![m]))
    }
}
