//! Tenant and generation commands applied to [`State`].

use crate::command::{Rejection, Response};
use crate::ids::{ShardCount, TenantId, TenantShardId};
use crate::limits;
use crate::node::{NodeId, NodeSchedulingPolicy};
use crate::rows::{self, Mutation};
use crate::state::State;
use crate::tenant::{
    CreateTenant, Generation, Intent, PlacementPolicy, ShardSchedulingPolicy, TenantShard,
};

type Applied = Result<(Response, Vec<Mutation>), Rejection>;

/// The generation after the shard's current one (after the state's generation floor for a
/// shard without one). Refused at the end of the range: reusing the last value would let two
/// nodes hold the same generation.
pub(crate) fn next_generation(
    shard: &TenantShard,
    floor: Generation,
) -> Result<Generation, Rejection> {
    let current = shard.generation.unwrap_or(floor);
    current.next().ok_or_else(|| {
        Rejection::Conflict(format!(
            "{}: generation {current} cannot be increased",
            shard.id
        ))
    })
}

/// `config` with `patch` applied: a `null` removes a field, a value sets it.
fn patched(
    config: serde_json::Value,
    patch: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    let mut config = match config {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            config.remove(key);
        } else {
            config.insert(key.clone(), value.clone());
        }
    }
    serde_json::Value::Object(config)
}

fn not_found(tenant_id: TenantId) -> Rejection {
    Rejection::NotFound(format!("Tenant {tenant_id} not found"))
}

impl State {
    /// Shards of one tenant, in shard order.
    pub fn tenant_shards(&self, tenant_id: TenantId) -> impl Iterator<Item = &TenantShard> {
        let start = TenantShardId {
            tenant_id,
            shard_number: 0,
            shard_count: ShardCount(0),
        };
        let end = TenantShardId {
            tenant_id,
            shard_number: u8::MAX,
            shard_count: ShardCount(u8::MAX),
        };
        self.shards.range(start..=end).map(|(_, s)| s)
    }

    fn tenant_ids(&self, tenant_id: TenantId) -> Vec<TenantShardId> {
        self.tenant_shards(tenant_id).map(|s| s.id).collect()
    }

    /// Replaces a shard and returns the row mutation for it.
    pub(crate) fn put_shard(&mut self, shard: TenantShard) -> Mutation {
        let m = rows::put(rows::shard_key(&shard.id), &shard);
        self.shards.insert(shard.id, shard);
        m
    }

    /// Applies `f` to every shard of a tenant; NotFound when it has none.
    fn update_tenant(
        &mut self,
        tenant_id: TenantId,
        mut f: impl FnMut(&mut TenantShard),
    ) -> Result<Vec<Mutation>, Rejection> {
        let ids = self.tenant_ids(tenant_id);
        if ids.is_empty() {
            return Err(not_found(tenant_id));
        }
        let mut muts = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(mut shard) = self.shards.get(&id).cloned() {
                f(&mut shard);
                muts.push(self.put_shard(shard));
            }
        }
        Ok(muts)
    }

    pub(crate) fn create_tenant(&mut self, c: &CreateTenant) -> Applied {
        if c.shard_count > 0 && c.stripe_size == 0 {
            return Err(Rejection::BadRequest("stripe_size must be positive".into()));
        }
        limits::check_tenant_config(&c.config)?;
        let existing: Vec<ShardCount> = self
            .tenant_shards(c.tenant_id)
            .map(|s| s.id.shard_count)
            .collect();
        if let Some(count) = existing.first() {
            if *count == ShardCount(c.shard_count) {
                return Ok((Response::TenantCreated { created: false }, vec![]));
            }
            return Err(Rejection::Conflict(format!(
                "Tenant {} already exists with shard count {}",
                c.tenant_id, count.0
            )));
        }
        let generation = match c.placement {
            PlacementPolicy::Secondary => c.generation,
            // Counts from the floor: 0, or above every generation a restored state may not know.
            _ => Some(c.generation.unwrap_or(self.generation_floor())),
        };
        let muts = (0..ShardCount(c.shard_count).count())
            .map(|number| {
                self.put_shard(TenantShard {
                    id: TenantShardId {
                        tenant_id: c.tenant_id,
                        shard_number: number,
                        shard_count: ShardCount(c.shard_count),
                    },
                    stripe_size: c.stripe_size,
                    generation,
                    generation_pageserver: None,
                    placement: c.placement,
                    config: c.config.clone(),
                    scheduling: ShardSchedulingPolicy::Active,
                    preferred_az: c.preferred_az.clone(),
                    intent: Intent::default(),
                    splitting: false,
                })
            })
            .collect();
        Ok((Response::TenantCreated { created: true }, muts))
    }

    pub(crate) fn delete_tenant(&mut self, tenant_id: TenantId) -> Applied {
        self.refuse_if_splitting(tenant_id)?;
        let ids = self.tenant_ids(tenant_id);
        if ids.is_empty() {
            return Err(not_found(tenant_id));
        }
        let muts = ids
            .into_iter()
            .map(|id| {
                self.shards.remove(&id);
                rows::delete(rows::shard_key(&id))
            })
            .collect();
        Ok((Response::Done, muts))
    }

    pub(crate) fn set_tenant_policy(
        &mut self,
        tenant_id: TenantId,
        placement: Option<PlacementPolicy>,
        scheduling: Option<ShardSchedulingPolicy>,
    ) -> Applied {
        if placement.is_some() {
            self.refuse_if_splitting(tenant_id)?;
        }
        let muts = self.update_tenant(tenant_id, |s| {
            if let Some(p) = placement {
                s.placement = p;
                // Upstream: detaching or demoting a tenant re-enables scheduling for it.
                if matches!(p, PlacementPolicy::Detached | PlacementPolicy::Secondary) {
                    s.scheduling = ShardSchedulingPolicy::Active;
                    // No node may attach it any more: a re-attach must not hand one a generation.
                    s.generation_pageserver = None;
                }
            }
            if let Some(policy) = scheduling {
                s.scheduling = policy;
            }
        })?;
        Ok((Response::Done, muts))
    }

    pub(crate) fn set_preferred_azs(&mut self, azs: &[(TenantShardId, Option<String>)]) -> Applied {
        for (id, az) in azs {
            if !self.shards.contains_key(id) {
                return Err(Rejection::NotFound(format!("Tenant shard {id} not found")));
            }
            if let Some(az) = az
                && !self.nodes().any(|n| &n.availability_zone_id == az)
            {
                return Err(Rejection::BadRequest(format!(
                    "No pageserver is registered in AZ {az}"
                )));
            }
        }
        let mut updated = Vec::new();
        let mut muts = Vec::new();
        for (id, az) in azs {
            let Some(shard) = self.shards.get(id).filter(|s| &s.preferred_az != az) else {
                continue;
            };
            let mut shard = shard.clone();
            shard.preferred_az = az.clone();
            updated.push(*id);
            muts.push(self.put_shard(shard));
        }
        updated.sort();
        updated.dedup();
        Ok((Response::PreferredAzsSet(updated), muts))
    }

    pub(crate) fn set_tenant_config(
        &mut self,
        tenant_id: TenantId,
        config: &serde_json::Value,
    ) -> Applied {
        limits::check_tenant_config(config)?;
        let muts = self.update_tenant(tenant_id, |s| s.config = config.clone())?;
        Ok((Response::Done, muts))
    }

    pub(crate) fn patch_tenant_config(
        &mut self,
        tenant_id: TenantId,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> Applied {
        // Every shard holds the same config, so the first one's patched is every shard's.
        let current = self
            .tenant_shards(tenant_id)
            .next()
            .map(|s| s.config.clone())
            .ok_or_else(|| not_found(tenant_id))?;
        let config = patched(current, patch);
        limits::check_tenant_config(&config)?;
        let muts = self.update_tenant(tenant_id, |s| s.config = config.clone())?;
        Ok((Response::Done, muts))
    }

    /// Onboarding of a known tenant: policy, config and generation change together or not at
    /// all. Checked in full before any shard is touched.
    pub(crate) fn onboard_tenant(
        &mut self,
        tenant_id: TenantId,
        placement: PlacementPolicy,
        config: &serde_json::Value,
        generation: Option<crate::tenant::Generation>,
    ) -> Applied {
        limits::check_tenant_config(config)?;
        let (_, mut muts) = self.set_tenant_policy(tenant_id, Some(placement), None)?;
        muts.extend(self.update_tenant(tenant_id, |s| {
            s.config = config.clone();
            if s.generation.is_none() {
                s.generation = generation;
            }
        })?);
        Ok((Response::Done, muts))
    }

    /// Gives shards without a generation the one the control plane used (onboarding of a
    /// tenant first created as Secondary); shards that have one keep it.
    pub(crate) fn adopt_generation(
        &mut self,
        tenant_id: TenantId,
        generation: crate::tenant::Generation,
    ) -> Applied {
        let muts = self.update_tenant(tenant_id, |s| {
            if s.generation.is_none() {
                s.generation = Some(generation);
            }
        })?;
        Ok((Response::Done, muts))
    }

    pub(crate) fn set_intents(&mut self, intents: &[(TenantShardId, Intent)]) -> Applied {
        let mut muts = Vec::new();
        for (id, intent) in intents {
            // An intent naming a node that is not registered (removed meanwhile) is skipped
            // like one for a deleted shard; the next scheduling pass replaces it.
            if intent.nodes().any(|n| !self.nodes.contains_key(&n)) {
                continue;
            }
            // A splitting shard's intent belongs to the split; a pass planned before it began
            // must not restore the secondaries it dropped.
            if let Some(mut shard) = self.shards.get(id).cloned().filter(|s| !s.splitting) {
                shard.intent = intent.clone().normalized();
                muts.push(self.put_shard(shard));
            }
        }
        Ok((Response::Done, muts))
    }

    pub(crate) fn increment_generation(&mut self, id: TenantShardId, node_id: NodeId) -> Applied {
        let Some(mut shard) = self.shards.get(&id).cloned() else {
            return Err(Rejection::NotFound(format!("Tenant shard {id} not found")));
        };
        if shard.splitting {
            return Err(Rejection::Conflict(format!("{id} is splitting")));
        }
        if !self.nodes.contains_key(&node_id) {
            return Err(Rejection::NotFound(format!(
                "Node {node_id} not registered"
            )));
        }
        let next = next_generation(&shard, self.generation_floor())?;
        shard.generation = Some(next);
        shard.generation_pageserver = Some(node_id);
        let m = self.put_shard(shard);
        Ok((Response::Generation(next), vec![m]))
    }

    pub(crate) fn re_attach(&mut self, node_id: NodeId) -> Applied {
        // An unregistered node holds no generation (only registered nodes are issued one), so
        // it gets an empty answer, as upstream: a pageserver retries a refusal forever.
        if self.tombstones.contains_key(&node_id) {
            return Err(Rejection::Conflict(format!(
                "Node {node_id} was deleted; it may not re-attach"
            )));
        }
        let Some(node) = self.nodes.get(&node_id).cloned() else {
            return Ok((Response::ReAttached(Vec::new()), Vec::new()));
        };
        let mut muts = Vec::new();
        // A restart ends whatever pause a node was in (upstream resets these in memory).
        if matches!(
            node.scheduling,
            NodeSchedulingPolicy::PauseForRestart
                | NodeSchedulingPolicy::Draining
                | NodeSchedulingPolicy::Filling
        ) {
            let mut node = node;
            node.scheduling = NodeSchedulingPolicy::Active;
            muts.push(rows::put(rows::node_key(node_id), &node));
            self.nodes.insert(node_id, node);
        }
        // Only shards meant to be attached get a new generation; the rest are Secondary or
        // detached from the pageserver's point of view.
        let ids: Vec<TenantShardId> = self
            .shards
            .on_node(node_id)
            .issued
            .iter()
            .filter_map(|id| self.shards.get(id))
            .filter(|s| matches!(s.placement, PlacementPolicy::Attached(_)))
            .map(|s| s.id)
            .collect();
        let mut issued = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(mut shard) = self.shards.get(&id).cloned() {
                let Ok(next) = next_generation(&shard, self.generation_floor()) else {
                    continue;
                };
                shard.generation = Some(next);
                issued.push((id, next));
                muts.push(self.put_shard(shard));
            }
        }
        Ok((Response::ReAttached(issued), muts))
    }

    pub(crate) fn set_node_scheduling(
        &mut self,
        node_id: NodeId,
        policy: NodeSchedulingPolicy,
    ) -> Applied {
        let Some(mut node) = self.nodes.get(&node_id).cloned() else {
            return Err(Rejection::NotFound(format!(
                "Node {node_id} not registered"
            )));
        };
        node.scheduling = policy;
        let m = rows::put(rows::node_key(node_id), &node);
        self.nodes.insert(node_id, node);
        Ok((Response::Done, vec![m]))
    }
}
