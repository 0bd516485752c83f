//! The simulated pageserver's state and its pure transitions (no I/O, no clock): handlers clone
//! the state, apply a transition here, persist the result and only then publish it.
//!
//! Invariants:
//! - a stored location is never `Detached` (detach removes it);
//! - an attached location has a generation, a secondary has none;
//! - `max_generation[id]` is the highest generation ever held for `id`; it survives detach and
//!   only grows, which is what lets the simulator refuse a stale attach;
//! - data (timelines) of an attached location is only dropped once the controller validated its
//!   generation; otherwise it moves to `retained`, as a real pageserver defers the deletion.

use std::collections::BTreeMap;

use imbl::OrdMap;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::ids::TenantShardId;
use crate::wire::{
    LocationConfig, Lsn, Mode, ReAttachResponse, SecondaryProgress, TopTenantShardItem,
    TopTenantShardsRequest,
};

/// Layers each timeline has in a heatmap, and their size; nothing is really fetched.
pub const LAYERS_PER_TIMELINE: u64 = 10;
pub const LAYER_BYTES: u64 = 1 << 20;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SimState {
    /// Highest `x-storcon-term` seen; lower terms are refused.
    #[serde(default)]
    pub max_term: Option<u64>,
    /// Persistent maps of shared values: copying the state for a transaction, and comparing
    /// the copy with the published state, cost what the transaction changed.
    #[serde(default)]
    pub locations: OrdMap<TenantShardId, Shared<Location>>,
    #[serde(default)]
    pub max_generation: OrdMap<TenantShardId, u32>,
    /// Data whose deletion the controller did not confirm.
    #[serde(default)]
    pub retained: Vec<RetainedData>,
}

/// An immutable value shared between copies of the state; [`Shared::make_mut`] copies it on
/// write. Serialized as the value itself.
#[derive(Debug)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared(Arc::new(value))
    }

    /// Whether both are the same allocation (so certainly equal).
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: Clone> Shared<T> {
    pub fn make_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }

    pub fn into_inner(self) -> T {
        Arc::unwrap_or_clone(self.0)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.same(other) || *self.0 == *other.0
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (*self.0).serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Shared::new)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Location {
    pub mode: Mode,
    pub generation: Option<u32>,
    pub stripe_size: u32,
    #[serde(default)]
    pub secondary_conf: Option<Value>,
    #[serde(default)]
    pub tenant_conf: Value,
    /// Some for secondaries only.
    #[serde(default)]
    pub progress: Option<Progress>,
    #[serde(default)]
    pub timelines: BTreeMap<String, Timeline>,
}

/// A secondary's download of what its heatmap lists.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Progress {
    pub layers_downloaded: u64,
    /// Layers the heatmap listed when last looked at (0: no heatmap yet).
    #[serde(default)]
    pub layers_total: u64,
    pub heatmap_mtime: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Timeline {
    pub last_record_lsn: Lsn,
    pub disk_consistent_lsn: Lsn,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub gc_blocked: bool,
    #[serde(default)]
    pub invisible: bool,
    /// The timeline's logical size in bytes, tenant-wide (every shard's copy holds the same
    /// value, as upstream's is the tenant's): set by tests (`PUT
    /// /debug/sim/tenant/:tenant_id/logical_size`), inherited by split children, uploaded with
    /// the timeline's index. 0 for a new timeline.
    #[serde(default)]
    pub logical_size: u64,
}

impl Timeline {
    pub fn fresh(lsn: Lsn) -> Self {
        Timeline {
            last_record_lsn: lsn,
            disk_consistent_lsn: lsn,
            archived: false,
            gc_blocked: false,
            invisible: false,
            logical_size: 0,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RetainedData {
    pub tenant_shard_id: TenantShardId,
    pub generation: Option<u32>,
    pub timelines: BTreeMap<String, Timeline>,
    pub reason: String,
}

/// What a shard split did.
#[derive(Debug, PartialEq)]
pub struct SplitOutcome {
    pub children: Vec<TenantShardId>,
    /// The parent's generation, which the children are attached in.
    pub generation: u32,
    /// False for a repeated request whose split had already happened.
    pub parent_removed: bool,
}

/// What re-attach did to one local location.
#[derive(Debug, PartialEq)]
pub struct ReattachOutcome {
    pub id: TenantShardId,
    /// `Detached` when the location was dropped.
    pub mode: Mode,
    pub generation: Option<u32>,
    /// False when the controller's answer was refused (older generation).
    pub accepted: bool,
    pub reason: Option<String>,
}

impl Progress {
    /// A former attachment holds every layer it had.
    fn complete(layers: u64, now: &str) -> Self {
        Progress {
            layers_downloaded: layers,
            layers_total: layers,
            heatmap_mtime: Some(now.to_owned()),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.layers_downloaded >= self.layers_total
    }

    pub fn to_wire(&self) -> SecondaryProgress {
        SecondaryProgress {
            heatmap_mtime: self.heatmap_mtime.clone(),
            layers_downloaded: self.layers_downloaded,
            layers_total: self.layers_total,
            bytes_downloaded: self.layers_downloaded * LAYER_BYTES,
            bytes_total: self.layers_total * LAYER_BYTES,
        }
    }
}

impl Location {
    /// Layers this location's heatmap lists.
    pub fn layers(&self) -> u64 {
        self.timelines.len() as u64 * LAYERS_PER_TIMELINE
    }

    /// The largest logical size of its timelines: the tenant's, as every shard holds the
    /// tenant-wide value.
    pub fn max_logical_size(&self) -> u64 {
        self.timelines
            .values()
            .map(|t| t.logical_size)
            .max()
            .unwrap_or(0)
    }

    /// This shard's share (rounded up) of its timelines' logical sizes.
    pub fn data_bytes(&self, id: TenantShardId) -> u64 {
        let shards = u64::from(id.effective_count());
        self.timelines
            .values()
            .map(|t| t.logical_size.div_ceil(shards))
            .fold(0, u64::saturating_add)
    }

    /// Bytes this location holds: its layers plus [`Location::data_bytes`].
    pub fn resident_bytes(&self, id: TenantShardId) -> u64 {
        (self.layers() * LAYER_BYTES).saturating_add(self.data_bytes(id))
    }

    /// Whether the attached location uploads heatmaps: only with a `heatmap_period` in its
    /// tenant config, as a real pageserver.
    pub fn uploads_heatmaps(&self) -> bool {
        self.mode.is_attached()
            && self
                .tenant_conf
                .get("heatmap_period")
                .is_some_and(|p| !p.is_null() && p.as_str() != Some("0s"))
    }

    pub fn to_wire(&self, id: TenantShardId) -> LocationConfig {
        LocationConfig {
            mode: self.mode,
            generation: self.generation,
            secondary_conf: self.secondary_conf.clone(),
            shard_number: id.number,
            shard_count: id.count,
            shard_stripe_size: self.stripe_size,
            tenant_conf: self.tenant_conf.clone(),
        }
    }

    fn secondary(
        previous: Option<&Location>,
        stripe_size: u32,
        conf: Option<Value>,
        now: &str,
    ) -> Self {
        // A secondary keeps whatever it had; a former attachment already has every layer.
        let progress = match previous {
            Some(prev) if prev.mode.is_attached() => Progress::complete(prev.layers(), now),
            Some(prev) => prev.progress.clone().unwrap_or_default(),
            None => Progress::default(),
        };
        Location {
            mode: Mode::Secondary,
            generation: None,
            stripe_size,
            secondary_conf: conf
                .or_else(|| previous.and_then(|p| p.secondary_conf.clone()))
                .or_else(|| Some(serde_json::json!({"warm": true}))),
            tenant_conf: previous
                .map(|p| p.tenant_conf.clone())
                .unwrap_or_else(empty_object),
            progress: Some(progress),
            timelines: previous.map(|p| p.timelines.clone()).unwrap_or_default(),
        }
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl SimState {
    /// Highest generation this simulator ever held for `id` (0 if none).
    pub fn held_generation(&self, id: TenantShardId) -> u32 {
        let current = self
            .locations
            .get(&id)
            .and_then(|l| l.generation)
            .unwrap_or(0);
        self.max_generation
            .get(&id)
            .copied()
            .unwrap_or(0)
            .max(current)
    }

    pub fn attached(&self, id: TenantShardId) -> Result<&Location, ApiError> {
        match self.locations.get(&id) {
            Some(loc) if loc.mode.is_attached() => Ok(loc),
            _ => Err(ApiError::NotFound(format!(
                "tenant shard {id} is not attached here"
            ))),
        }
    }

    fn attached_mut(&mut self, id: TenantShardId) -> Result<&mut Location, ApiError> {
        self.attached(id)?;
        self.locations
            .get_mut(&id)
            .map(Shared::make_mut)
            .ok_or_else(|| ApiError::NotFound(format!("tenant shard {id} is not attached here")))
    }

    pub fn secondary(&self, id: TenantShardId) -> Result<&Location, ApiError> {
        match self.locations.get(&id) {
            Some(loc) if loc.mode == Mode::Secondary => Ok(loc),
            _ => Err(ApiError::NotFound(format!(
                "tenant shard {id} is not a secondary here"
            ))),
        }
    }

    /// The shard and generation to validate before dropping `id`'s data, if it has any.
    pub fn deletion_to_validate(&self, id: TenantShardId) -> Option<(TenantShardId, u32)> {
        let loc = self.locations.get(&id)?;
        match (loc.mode.is_attached(), loc.generation) {
            (true, Some(generation)) if !loc.timelines.is_empty() => Some((id, generation)),
            _ => None,
        }
    }

    /// Applies a non-detach `location_config`, refusing what a real pageserver would.
    ///
    /// An attachment reads its timelines from remote storage (`remote`), as a pageserver
    /// loads the index on attach: whatever any earlier attachment uploaded.
    pub fn configure(
        &mut self,
        id: TenantShardId,
        conf: &LocationConfig,
        now: &str,
        remote: BTreeMap<String, Timeline>,
    ) -> Result<(), ApiError> {
        if conf.mode == Mode::Detached {
            return Err(ApiError::Internal("configure called for a detach".into()));
        }
        if (conf.shard_number, conf.shard_count) != (id.number, id.count) {
            return Err(ApiError::BadRequest(format!(
                "shard {}/{} in the body does not match {id}",
                conf.shard_number, conf.shard_count
            )));
        }
        let previous = self.locations.get(&id).map(Deref::deref);
        let location = if conf.mode.is_attached() {
            let generation = conf.generation.ok_or_else(|| {
                ApiError::BadRequest(format!("{:?} requires a generation", conf.mode))
            })?;
            let held = self.held_generation(id);
            // A real pageserver answers 400 for an attach older than one it held.
            if generation < held {
                return Err(ApiError::BadRequest(format!(
                    "generation {generation} for {id} is older than generation {held} held before"
                )));
            }
            Location {
                mode: conf.mode,
                generation: Some(generation),
                stripe_size: conf.shard_stripe_size,
                secondary_conf: conf.secondary_conf.clone(),
                tenant_conf: tenant_conf_or_empty(&conf.tenant_conf),
                progress: None,
                timelines: remote,
            }
        } else {
            let mut loc = Location::secondary(
                previous,
                conf.shard_stripe_size,
                conf.secondary_conf.clone(),
                now,
            );
            loc.tenant_conf = tenant_conf_or_empty(&conf.tenant_conf);
            loc
        };
        if let Some(generation) = location.generation {
            self.note_generation(id, generation);
        }
        self.locations.insert(id, Shared::new(location));
        Ok(())
    }

    /// Removes a location. Its attached data is kept in `retained` unless `validated` is
    /// `Some(true)` (the controller confirmed the generation).
    pub fn remove(&mut self, id: TenantShardId, validated: Option<bool>, reason: &str) -> bool {
        let Some(loc) = self.locations.remove(&id).map(Shared::into_inner) else {
            return false;
        };
        if loc.mode.is_attached() && !loc.timelines.is_empty() && validated != Some(true) {
            self.retained.push(RetainedData {
                tenant_shard_id: id,
                generation: loc.generation,
                timelines: loc.timelines,
                reason: format!("{reason}: deletion not validated ({validated:?})"),
            });
        }
        true
    }

    /// Applies the controller's re-attach answer to the LOCAL locations only.
    pub fn apply_reattach(
        &mut self,
        response: &ReAttachResponse,
        now: &str,
    ) -> Vec<ReattachOutcome> {
        let answers: BTreeMap<_, _> = response.tenants.iter().map(|t| (t.id, t)).collect();
        let local: Vec<TenantShardId> = self.locations.keys().copied().collect();
        let mut outcomes = Vec::new();
        for id in local {
            let outcome = match answers.get(&id) {
                None => self.reattach_drop(id, "absent from the re-attach response"),
                Some(t) if t.mode == Mode::Detached => {
                    self.reattach_drop(id, "Detached in the re-attach response")
                }
                Some(t) if t.mode == Mode::Secondary => {
                    self.reattach_secondary(id, t.stripe_size, true, None, now)
                }
                Some(t) => match t.r#gen {
                    None => self.reattach_secondary(
                        id,
                        t.stripe_size,
                        false,
                        Some(format!("{:?} without a generation", t.mode)),
                        now,
                    ),
                    Some(generation) => {
                        let held = self.held_generation(id);
                        if generation >= held {
                            self.reattach_attached(id, t.mode, generation, t.stripe_size)
                        } else {
                            self.reattach_secondary(
                                id,
                                t.stripe_size,
                                false,
                                Some(format!(
                                    "generation {generation} older than held {held}: demoted"
                                )),
                                now,
                            )
                        }
                    }
                },
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    fn reattach_drop(&mut self, id: TenantShardId, reason: &str) -> ReattachOutcome {
        // Only local state goes: re-attach never deletes remote data, so no validation.
        self.locations.remove(&id);
        ReattachOutcome {
            id,
            mode: Mode::Detached,
            generation: None,
            accepted: true,
            reason: Some(reason.to_owned()),
        }
    }

    fn reattach_secondary(
        &mut self,
        id: TenantShardId,
        stripe: Option<u32>,
        accepted: bool,
        reason: Option<String>,
        now: &str,
    ) -> ReattachOutcome {
        let previous = self.locations.get(&id).map(Deref::deref);
        let stripe = stripe.or(previous.map(|p| p.stripe_size)).unwrap_or(0);
        let loc = Location::secondary(previous, stripe, None, now);
        self.locations.insert(id, Shared::new(loc));
        ReattachOutcome {
            id,
            mode: Mode::Secondary,
            generation: None,
            accepted,
            reason,
        }
    }

    fn reattach_attached(
        &mut self,
        id: TenantShardId,
        mode: Mode,
        generation: u32,
        stripe: Option<u32>,
    ) -> ReattachOutcome {
        if let Some(loc) = self.locations.get_mut(&id).map(Shared::make_mut) {
            loc.mode = mode;
            loc.generation = Some(generation);
            loc.progress = None;
            if let Some(stripe) = stripe {
                loc.stripe_size = stripe;
            }
        }
        self.note_generation(id, generation);
        ReattachOutcome {
            id,
            mode,
            generation: Some(generation),
            accepted: true,
            reason: None,
        }
    }

    fn note_generation(&mut self, id: TenantShardId, generation: u32) {
        let max = self.max_generation.entry(id).or_insert(generation);
        *max = (*max).max(generation);
    }

    /// Splits `parent`, as a pageserver's `shard_split` does: the children are attached in the
    /// parent's generation and mode, with its timelines, and the parent leaves the tenant map
    /// (its local location only: remote storage keeps what it uploaded, and `max_generation`
    /// keeps its generation). Children already attached in that generation (the parent
    /// re-attached after an aborted split left them behind) are left as they are.
    ///
    /// A repeated request whose split already happened (the parent gone, every child attached
    /// in the generation the parent last held) answers the same children and changes nothing:
    /// the controller retries after losing an answer. Without the parent and without those
    /// children it is 404, as for any shard that is not attached here.
    pub fn split(
        &mut self,
        parent: TenantShardId,
        new_count: u8,
        new_stripe: Option<u32>,
    ) -> Result<SplitOutcome, ApiError> {
        let old_count = parent.effective_count();
        if new_count <= old_count || !new_count.is_multiple_of(old_count) {
            return Err(ApiError::BadRequest(format!(
                "cannot split {parent} from {old_count} into {new_count} shards"
            )));
        }
        let children: Vec<TenantShardId> = (0..new_count)
            .filter(|i| i % old_count == parent.number)
            .map(|number| TenantShardId {
                tenant: parent.tenant,
                number,
                count: new_count,
            })
            .collect();
        if !self.locations.contains_key(&parent) {
            return self.split_already_done(parent, children);
        }
        let source = self.attached(parent)?.clone();
        let generation = source
            .generation
            .ok_or_else(|| ApiError::Internal(format!("attached {parent} has no generation")))?;
        for child in &children {
            let held = self.held_generation(*child);
            if held > generation {
                return Err(ApiError::Conflict(format!(
                    "child {child} already held generation {held}, newer than parent's {generation}"
                )));
            }
        }
        for child in &children {
            let already = self
                .locations
                .get(child)
                .is_some_and(|l| l.mode.is_attached() && l.generation == Some(generation));
            if !already {
                let loc = Location {
                    mode: source.mode,
                    generation: Some(generation),
                    stripe_size: new_stripe.unwrap_or(source.stripe_size),
                    secondary_conf: None,
                    tenant_conf: source.tenant_conf.clone(),
                    progress: None,
                    timelines: source.timelines.clone(),
                };
                self.locations.insert(*child, Shared::new(loc));
            }
            self.note_generation(*child, generation);
        }
        // The children hold the parent's data now: nothing to retain or validate.
        self.locations.remove(&parent);
        self.note_generation(parent, generation);
        Ok(SplitOutcome {
            children,
            generation,
            parent_removed: true,
        })
    }

    /// The answer to a split of a parent that is no longer here: its children, if every one
    /// is attached in the generation the parent last held.
    fn split_already_done(
        &self,
        parent: TenantShardId,
        children: Vec<TenantShardId>,
    ) -> Result<SplitOutcome, ApiError> {
        let generation = self.max_generation.get(&parent).copied();
        let done = generation.is_some_and(|g| {
            children.iter().all(|c| {
                self.locations
                    .get(c)
                    .is_some_and(|l| l.mode.is_attached() && l.generation == Some(g))
            })
        });
        match generation {
            Some(generation) if done => Ok(SplitOutcome {
                children,
                generation,
                parent_removed: false,
            }),
            _ => Err(ApiError::NotFound(format!(
                "tenant shard {parent} is not attached here"
            ))),
        }
    }

    /// Creates a timeline at the initdb LSN; `false` when it already existed (idempotent).
    pub fn create_timeline(&mut self, id: TenantShardId, timeline: &str) -> Result<bool, ApiError> {
        let loc = self.attached_mut(id)?;
        if loc.timelines.contains_key(timeline) {
            return Ok(false);
        }
        loc.timelines
            .insert(timeline.to_owned(), Timeline::fresh(Lsn::INITDB));
        Ok(true)
    }

    /// Removes a timeline of an attached shard, retaining its data unless validated.
    pub fn delete_timeline(
        &mut self,
        id: TenantShardId,
        timeline: &str,
        validated: Option<bool>,
    ) -> Result<(), ApiError> {
        let loc = self.attached_mut(id)?;
        let generation = loc.generation;
        let data = loc
            .timelines
            .remove(timeline)
            .ok_or_else(|| ApiError::NotFound(format!("timeline {timeline} of {id} not found")))?;
        if validated != Some(true) {
            self.retained.push(RetainedData {
                tenant_shard_id: id,
                generation,
                timelines: BTreeMap::from([(timeline.to_owned(), data)]),
                reason: format!("timeline delete: deletion not validated ({validated:?})"),
            });
        }
        Ok(())
    }

    /// Simulated ingest: the named timelines that exist catch up to the wanted LSNs.
    /// 404 when none of them exists.
    pub fn wait_lsn(
        &mut self,
        id: TenantShardId,
        wanted: &BTreeMap<String, Lsn>,
    ) -> Result<(), ApiError> {
        let loc = self.attached_mut(id)?;
        let mut present = 0;
        for (timeline, lsn) in wanted {
            if let Some(tl) = loc.timelines.get_mut(timeline) {
                present += 1;
                tl.last_record_lsn = tl.last_record_lsn.max(*lsn);
                tl.disk_consistent_lsn = tl.disk_consistent_lsn.max(*lsn);
            }
        }
        if present == 0 {
            return Err(ApiError::NotFound(format!(
                "no requested timeline of {id} is present"
            )));
        }
        Ok(())
    }

    /// Records a secondary's download progress.
    pub fn set_progress(&mut self, id: TenantShardId, progress: Progress) -> Result<(), ApiError> {
        self.secondary(id)?;
        if let Some(loc) = self.locations.get_mut(&id).map(Shared::make_mut) {
            loc.progress = Some(progress);
        }
        Ok(())
    }

    /// Changes one timeline of an attached shard; 404 if it has no such timeline.
    pub fn update_timeline(
        &mut self,
        id: TenantShardId,
        timeline: &str,
        change: impl FnOnce(&mut Timeline),
    ) -> Result<Timeline, ApiError> {
        let loc = self.attached_mut(id)?;
        let tl = loc
            .timelines
            .get_mut(timeline)
            .ok_or_else(|| ApiError::NotFound(format!("timeline {timeline} of {id} not found")))?;
        change(tl);
        Ok(*tl)
    }

    /// Simulated local disk usage by layers alone: one full set of layers per location (at
    /// least a timeline's worth). What the utilization score is computed from, so that
    /// logical sizes set by tests do not change scheduling.
    pub fn layer_usage_bytes(&self) -> u64 {
        self.locations
            .values()
            .map(|l| l.layers().max(LAYERS_PER_TIMELINE) * LAYER_BYTES)
            .sum()
    }

    /// Simulated local disk usage as reported: the layers plus every location's share of its
    /// timelines' logical sizes.
    pub fn disk_usage_bytes(&self) -> u64 {
        let data: u64 = self
            .locations
            .iter()
            .map(|(id, l)| l.data_bytes(*id))
            .fold(0, u64::saturating_add);
        self.layer_usage_bytes().saturating_add(data)
    }

    /// Sets the logical size of `timeline` (or of every timeline) on every local location of
    /// `tenant`, attached or secondary. Returns the shards changed; 404 when none has such a
    /// timeline.
    pub fn set_logical_size(
        &mut self,
        tenant: u128,
        timeline: Option<&str>,
        bytes: u64,
    ) -> Result<Vec<TenantShardId>, ApiError> {
        let matches = |name: &String| timeline.is_none_or(|t| t == name);
        let changed: Vec<TenantShardId> = self
            .locations
            .iter()
            .filter(|(id, loc)| id.tenant == tenant && loc.timelines.keys().any(matches))
            .map(|(id, _)| *id)
            .collect();
        for id in &changed {
            if let Some(loc) = self.locations.get_mut(id) {
                for (_, tl) in loc
                    .make_mut()
                    .timelines
                    .iter_mut()
                    .filter(|(name, _)| matches(name))
                {
                    tl.logical_size = bytes;
                }
            }
        }
        if changed.is_empty() {
            return Err(ApiError::NotFound(match timeline {
                Some(t) => format!("no shard of tenant {tenant:032x} here has timeline {t}"),
                None => format!("no shard of tenant {tenant:032x} here has a timeline"),
            }));
        }
        Ok(changed)
    }

    /// `POST /v1/top_tenants` as upstream answers it: the attached shards only, those of
    /// tenants with fewer shards than `where_shards_lt` (an unsharded tenant counts as one,
    /// and so does a limit of 0) and whose `order_by` size is greater than `where_gt`, largest
    /// first (ties by shard id), at most `limit`.
    pub fn top_tenants(&self, request: &TopTenantShardsRequest) -> Vec<TopTenantShardItem> {
        let mut items: Vec<TopTenantShardItem> = self
            .locations
            .iter()
            .filter(|(_, loc)| loc.mode.is_attached())
            .filter(|(id, _)| {
                request
                    .where_shards_lt
                    .is_none_or(|lt| id.effective_count() < lt.max(1))
            })
            .map(|(id, loc)| {
                let max_logical_size = loc.max_logical_size();
                let resident = loc.resident_bytes(*id);
                TopTenantShardItem {
                    id: *id,
                    resident_size: resident,
                    physical_size: resident,
                    max_logical_size,
                    max_logical_size_per_shard: max_logical_size
                        .div_ceil(u64::from(id.effective_count())),
                }
            })
            .filter(|item| {
                request
                    .where_gt
                    .is_none_or(|gt| item.size(request.order_by) > gt)
            })
            .collect();
        items.sort_by(|a, b| {
            b.size(request.order_by)
                .cmp(&a.size(request.order_by))
                .then(a.id.cmp(&b.id))
        });
        items.truncate(request.limit);
        items
    }
}

/// Layers a download that started with `base` of `total` holds after `elapsed_ms`, at
/// `ms_per_layer` (0: instant).
pub fn layers_after(base: u64, total: u64, elapsed_ms: u64, ms_per_layer: u64) -> u64 {
    if ms_per_layer == 0 {
        return total;
    }
    (base + elapsed_ms / ms_per_layer)
        .min(total)
        .max(base.min(total))
}

/// The time secondary downloads run on: it stands still while downloads are paused, so a
/// download's progress is `elapsed()` since its start on this clock, and pausing and resuming
/// neither loses nor invents progress. Times are offsets from any fixed origin (pure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadClock {
    /// Download time accumulated before `running_since`.
    banked_ms: u64,
    /// When the clock last started running; `None` while paused.
    running_since_ms: Option<u64>,
}

impl DownloadClock {
    pub fn new(now_ms: u64, paused: bool) -> Self {
        DownloadClock {
            banked_ms: 0,
            running_since_ms: (!paused).then_some(now_ms),
        }
    }

    /// Download time at `now_ms`.
    pub fn at(&self, now_ms: u64) -> u64 {
        self.banked_ms
            + self
                .running_since_ms
                .map_or(0, |since| now_ms.saturating_sub(since))
    }

    pub fn set_paused(&mut self, paused: bool, now_ms: u64) {
        match (paused, self.running_since_ms) {
            (true, Some(_)) => {
                self.banked_ms = self.at(now_ms);
                self.running_since_ms = None;
            }
            (false, None) => self.running_since_ms = Some(now_ms),
            _ => {}
        }
    }
}

/// Layers a download that started with `base` of `total` holds after `elapsed_ms` of download
/// time at `ms_per_layer`; a paused instant download (rate 0) holds only `base`.
pub fn layers_now(base: u64, total: u64, elapsed_ms: u64, ms_per_layer: u64, paused: bool) -> u64 {
    if paused && ms_per_layer == 0 {
        return base.min(total);
    }
    layers_after(base, total, elapsed_ms, ms_per_layer)
}

/// How long a download that holds `base` of `total` layers still runs.
pub fn ms_until_complete(base: u64, total: u64, ms_per_layer: u64) -> u64 {
    total.saturating_sub(base) * ms_per_layer
}

fn tenant_conf_or_empty(conf: &Value) -> Value {
    if conf.is_null() {
        empty_object()
    } else {
        conf.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ReAttachResponseTenant, TopTenantsOrder};

    const NOW: &str = "2025-01-01T00:00:00.000Z";

    fn id(number: u8, count: u8) -> TenantShardId {
        TenantShardId {
            tenant: 0xabc,
            number,
            count,
        }
    }

    fn conf(mode: Mode, generation: Option<u32>, shard: TenantShardId) -> LocationConfig {
        LocationConfig {
            mode,
            generation,
            secondary_conf: None,
            shard_number: shard.number,
            shard_count: shard.count,
            shard_stripe_size: 2048,
            tenant_conf: Value::Null,
        }
    }

    #[test]
    fn refuses_generation_older_than_ever_held() {
        let mut st = SimState::default();
        let s = id(0, 0);
        st.configure(
            s,
            &conf(Mode::AttachedSingle, Some(5), s),
            NOW,
            BTreeMap::new(),
        )
        .expect("attach 5");
        assert!(st.remove(s, Some(true), "detach"));
        let err = st
            .configure(
                s,
                &conf(Mode::AttachedSingle, Some(4), s),
                NOW,
                BTreeMap::new(),
            )
            .expect_err("4 < 5");
        assert!(matches!(err, ApiError::BadRequest(_)), "{err:?}");
        st.configure(
            s,
            &conf(Mode::AttachedMulti, Some(5), s),
            NOW,
            BTreeMap::new(),
        )
        .expect("same generation");
        let err = st
            .configure(
                s,
                &conf(Mode::AttachedSingle, None, s),
                NOW,
                BTreeMap::new(),
            )
            .expect_err("no gen");
        assert!(matches!(err, ApiError::BadRequest(_)), "{err:?}");
    }

    #[test]
    fn unvalidated_detach_retains_data() {
        let mut st = SimState::default();
        let s = id(0, 1);
        st.configure(
            s,
            &conf(Mode::AttachedSingle, Some(1), s),
            NOW,
            BTreeMap::new(),
        )
        .expect("attach");
        st.create_timeline(s, "t1").expect("timeline");
        assert_eq!(st.deletion_to_validate(s), Some((s, 1)));
        st.remove(s, None, "detach");
        assert_eq!(st.retained.len(), 1);
    }

    #[test]
    fn reattach_applies_only_to_local_shards() {
        let mut st = SimState::default();
        let (a, b, c, d) = (id(0, 4), id(1, 4), id(2, 4), id(3, 4));
        for s in [a, b, c] {
            st.configure(
                s,
                &conf(Mode::AttachedSingle, Some(3), s),
                NOW,
                BTreeMap::new(),
            )
            .expect("attach");
        }
        let tenant = |id, r#gen, mode| ReAttachResponseTenant {
            id,
            r#gen,
            mode,
            stripe_size: Some(2048),
        };
        let response = ReAttachResponse {
            tenants: vec![
                tenant(a, Some(4), Mode::AttachedSingle),
                tenant(b, Some(2), Mode::AttachedSingle),
                tenant(d, Some(9), Mode::AttachedSingle),
            ],
        };
        let outcomes = st.apply_reattach(&response, NOW);
        assert_eq!(outcomes.len(), 3);
        assert_eq!(st.locations[&a].generation, Some(4));
        assert_eq!(st.locations[&b].mode, Mode::Secondary);
        assert!(!outcomes[1].accepted);
        assert!(!st.locations.contains_key(&c));
        assert!(!st.locations.contains_key(&d));
    }

    #[test]
    fn split_children_follow_parent_which_leaves() {
        let mut st = SimState::default();
        let parent = id(1, 2);
        st.configure(
            parent,
            &conf(Mode::AttachedSingle, Some(7), parent),
            NOW,
            BTreeMap::new(),
        )
        .expect("attach");
        st.create_timeline(parent, "t1").expect("timeline");
        st.set_logical_size(0xabc, None, 1000).expect("size");
        let done = st.split(parent, 4, Some(1024)).expect("split");
        assert_eq!(done.children, vec![id(1, 4), id(3, 4)]);
        assert_eq!((done.generation, done.parent_removed), (7, true));
        for child in &done.children {
            let loc = &st.locations[child];
            assert_eq!(loc.mode, Mode::AttachedSingle);
            assert_eq!(loc.generation, Some(7));
            assert_eq!(loc.stripe_size, 1024);
            assert_eq!(loc.timelines["t1"].logical_size, 1000, "inherited");
            assert_eq!(st.held_generation(*child), 7);
        }
        // The parent's local location is gone, not retained (its children hold the data), and
        // its generation is remembered.
        assert!(!st.locations.contains_key(&parent));
        assert!(st.retained.is_empty());
        assert_eq!(st.held_generation(parent), 7);
        assert_eq!(st.deletion_to_validate(parent), None);
        // The controller's cleanup detach finds nothing to remove.
        assert!(!st.remove(parent, None, "detach"));
        assert!(st.retained.is_empty());
    }

    #[test]
    fn repeated_split_answers_the_same_children() {
        let mut st = SimState::default();
        let parent = id(0, 0);
        st.configure(
            parent,
            &conf(Mode::AttachedSingle, Some(3), parent),
            NOW,
            BTreeMap::new(),
        )
        .expect("attach");
        let first = st.split(parent, 2, None).expect("split");
        let before = st.clone();
        let again = st
            .split(parent, 2, None)
            .expect("a retry after a lost answer");
        assert_eq!(again.children, first.children);
        assert_eq!((again.generation, again.parent_removed), (3, false));
        assert_eq!(st, before, "a retry changes nothing");
        // Another count was never split: not found.
        let err = st.split(parent, 4, None).expect_err("never split to 4");
        assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
        assert!(matches!(
            st.split(parent, 1, None),
            Err(ApiError::BadRequest(_))
        ));
        // A child gone (an abort detached it): the split is no longer done here.
        st.remove(id(1, 2), Some(true), "detach");
        let err = st.split(parent, 2, None).expect_err("half the children");
        assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
        // A shard this node never held is not found either.
        let err = st.split(id(5, 8), 16, None).expect_err("unknown");
        assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
    }

    #[test]
    fn split_after_an_abort_reuses_children_left_behind() {
        let mut st = SimState::default();
        let parent = id(0, 0);
        let attach = |st: &mut SimState, generation| {
            st.configure(
                parent,
                &conf(Mode::AttachedSingle, Some(generation), parent),
                NOW,
                BTreeMap::new(),
            )
        };
        attach(&mut st, 3).expect("attach");
        st.split(parent, 2, None).expect("split");
        // An abort re-attaches the parent (same generation) without detaching the children.
        attach(&mut st, 3).expect("parent back");
        let done = st.split(parent, 2, None).expect("split again");
        assert!(done.parent_removed);
        assert!(!st.locations.contains_key(&parent));
        // A child that held a newer generation than the parent's refuses the split.
        attach(&mut st, 3).expect("parent back again");
        st.configure(
            id(0, 2),
            &conf(Mode::AttachedSingle, Some(9), id(0, 2)),
            NOW,
            BTreeMap::new(),
        )
        .expect("child newer");
        let err = st.split(parent, 2, None).expect_err("stale parent");
        assert!(matches!(err, ApiError::Conflict(_)), "{err:?}");
        assert!(st.locations.contains_key(&parent), "refused: parent kept");
    }

    fn attach_with_sizes(st: &mut SimState, shard: TenantShardId, sizes: &[u64]) {
        st.configure(
            shard,
            &conf(Mode::AttachedSingle, Some(1), shard),
            NOW,
            BTreeMap::new(),
        )
        .expect("attach");
        for (i, bytes) in sizes.iter().enumerate() {
            let name = format!("t{i}");
            st.create_timeline(shard, &name).expect("timeline");
            st.update_timeline(shard, &name, |t| t.logical_size = *bytes)
                .expect("size");
        }
    }

    fn tenant(tenant: u128, number: u8, count: u8) -> TenantShardId {
        TenantShardId {
            tenant,
            number,
            count,
        }
    }

    fn top(
        st: &SimState,
        order_by: TopTenantsOrder,
        limit: usize,
        where_shards_lt: Option<u8>,
        where_gt: Option<u64>,
    ) -> Vec<(TenantShardId, u64)> {
        let request = TopTenantShardsRequest {
            order_by,
            limit,
            where_shards_lt,
            where_gt,
        };
        st.top_tenants(&request)
            .into_iter()
            .map(|i| (i.id, i.size(order_by)))
            .collect()
    }

    #[test]
    fn top_tenants_sorts_and_filters_as_upstream() {
        use TopTenantsOrder::*;
        let mut st = SimState::default();
        let (a, b0, b2, c) = (
            tenant(1, 0, 0),
            tenant(2, 0, 4),
            tenant(2, 2, 4),
            tenant(3, 1, 2),
        );
        attach_with_sizes(&mut st, a, &[100, 300]);
        attach_with_sizes(&mut st, b0, &[1000]);
        attach_with_sizes(&mut st, b2, &[1000]);
        attach_with_sizes(&mut st, c, &[401]);
        // A secondary is never listed, whatever its size.
        let sec = tenant(4, 0, 0);
        st.configure(sec, &conf(Mode::Secondary, None, sec), NOW, BTreeMap::new())
            .expect("secondary");
        if let Some(loc) = st.locations.get_mut(&sec).map(Shared::make_mut) {
            loc.timelines
                .insert("t0".into(), Timeline::fresh(Lsn::INITDB));
        }
        st.set_logical_size(4, None, 1 << 40).expect("size");

        // Largest first, ties by id; the tenant-wide size on every shard.
        assert_eq!(
            top(&st, MaxLogicalSize, 10, None, None),
            vec![(b0, 1000), (b2, 1000), (c, 401), (a, 300)]
        );
        // Per shard: divided by the effective count, rounded up (unsharded is 1 shard).
        assert_eq!(
            top(&st, MaxLogicalSizePerShard, 10, None, None),
            vec![(a, 300), (b0, 250), (b2, 250), (c, 201)]
        );
        // where_gt keeps strictly greater; limit cuts the sorted list.
        assert_eq!(
            top(&st, MaxLogicalSizePerShard, 10, None, Some(250)),
            vec![(a, 300)]
        );
        assert_eq!(
            top(&st, MaxLogicalSize, 2, None, Some(300)),
            vec![(b0, 1000), (b2, 1000)]
        );
        assert!(top(&st, MaxLogicalSize, 0, None, None).is_empty());
        // where_shards_lt: 2 keeps the unsharded tenant only (count 0 counts as 1 shard), 4 adds
        // the 2-shard one, 1 or 0 keeps nothing.
        assert_eq!(top(&st, MaxLogicalSize, 10, Some(2), None), vec![(a, 300)]);
        assert_eq!(
            top(&st, MaxLogicalSize, 10, Some(4), None),
            vec![(c, 401), (a, 300)]
        );
        assert!(top(&st, MaxLogicalSize, 10, Some(1), None).is_empty());
        assert!(top(&st, MaxLogicalSize, 10, Some(0), None).is_empty());
        // Resident size: the layers plus the shard's share of every timeline.
        let layers = LAYERS_PER_TIMELINE * LAYER_BYTES;
        assert_eq!(
            top(&st, ResidentSize, 10, None, None),
            vec![
                (a, 2 * layers + 400),
                (b0, layers + 250),
                (b2, layers + 250),
                (c, layers + 201)
            ]
        );
        let item = &st.top_tenants(&TopTenantShardsRequest {
            order_by: ResidentSize,
            limit: 1,
            where_shards_lt: None,
            where_gt: None,
        })[0];
        assert_eq!(item.physical_size, item.resident_size);
        assert_eq!(item.max_logical_size_per_shard, 300);
    }

    #[test]
    fn logical_sizes_count_in_disk_usage_not_in_layer_usage() {
        let mut st = SimState::default();
        let shard = tenant(9, 1, 2);
        attach_with_sizes(&mut st, shard, &[0, 0]);
        let layers = st.layer_usage_bytes();
        assert_eq!(layers, 2 * LAYERS_PER_TIMELINE * LAYER_BYTES);
        assert_eq!(st.disk_usage_bytes(), layers);
        // One timeline named: only it changes.
        assert_eq!(
            st.set_logical_size(9, Some("t1"), 2001)
                .expect("one timeline"),
            vec![shard]
        );
        let loc = &st.locations[&shard];
        assert_eq!(
            (
                loc.timelines["t0"].logical_size,
                loc.timelines["t1"].logical_size
            ),
            (0, 2001)
        );
        assert_eq!(st.layer_usage_bytes(), layers);
        assert_eq!(
            st.disk_usage_bytes(),
            layers + 1001,
            "half of it, rounded up"
        );
        assert!(matches!(
            st.set_logical_size(9, Some("t9"), 1),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            st.set_logical_size(10, None, 1),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn paused_download_clock_stands_still() {
        let mut clock = DownloadClock::new(1_000, false);
        assert_eq!(clock.at(1_500), 500);
        clock.set_paused(true, 1_500);
        assert_eq!(clock.at(9_000), 500, "no progress while paused");
        clock.set_paused(true, 9_500);
        assert_eq!(clock.at(9_500), 500, "pausing twice changes nothing");
        clock.set_paused(false, 10_000);
        assert_eq!(clock.at(10_200), 700, "resumes where it stopped");
        let start_paused = DownloadClock::new(0, true);
        assert_eq!(start_paused.at(5_000), 0);
        // 10 layers at 50 ms, 3 held: paused after 100 ms of download time, 5 held for good.
        let held = |elapsed| layers_now(3, 10, elapsed, 50, false);
        assert_eq!(held(clock_elapsed(100)), 5);
        // An instant download (rate 0) holds only what it had while paused.
        assert_eq!(layers_now(3, 10, 1_000_000, 0, true), 3);
        assert_eq!(layers_now(3, 10, 0, 0, false), 10);
        assert_eq!(layers_now(12, 10, 0, 0, true), 10);
    }

    fn clock_elapsed(ms: u64) -> u64 {
        let mut clock = DownloadClock::new(0, false);
        clock.set_paused(true, ms);
        clock.at(u64::MAX)
    }

    #[test]
    fn download_runs_at_its_rate() {
        // 10 layers at 50 ms each, 3 already held: complete 350 ms after the start.
        assert_eq!(layers_after(3, 10, 0, 50), 3);
        assert_eq!(layers_after(3, 10, 149, 50), 5);
        assert_eq!(layers_after(3, 10, 350, 50), 10);
        assert_eq!(layers_after(3, 10, 10_000, 50), 10);
        assert_eq!(ms_until_complete(3, 10, 50), 350);
        // A rate of 0 is instant; nothing to fetch is complete at once.
        assert_eq!(layers_after(0, 10, 0, 0), 10);
        assert_eq!(ms_until_complete(10, 10, 50), 0);
    }
}
