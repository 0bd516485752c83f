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
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::ids::TenantShardId;
use crate::wire::{LocationConfig, Lsn, Mode, ReAttachResponse, SecondaryProgress};

/// Layers each timeline has in a heatmap, and their size; nothing is really fetched.
pub const LAYERS_PER_TIMELINE: u64 = 10;
pub const LAYER_BYTES: u64 = 1 << 20;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SimState {
    /// Highest `x-storcon-term` seen; lower terms are refused.
    #[serde(default)]
    pub max_term: Option<u64>,
    /// Shared so that copying the state for a transaction does not copy every location.
    #[serde(default)]
    pub locations: BTreeMap<TenantShardId, Shared<Location>>,
    #[serde(default)]
    pub max_generation: BTreeMap<TenantShardId, u32>,
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
}

impl Timeline {
    pub fn fresh(lsn: Lsn) -> Self {
        Timeline {
            last_record_lsn: lsn,
            disk_consistent_lsn: lsn,
            archived: false,
            gc_blocked: false,
            invisible: false,
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

    /// Creates the children of `parent` attached in its generation and mode, with its timelines.
    /// The parent stays until the controller detaches it. Children already attached in that
    /// generation (a repeated split request) are left as they are.
    pub fn split(
        &mut self,
        parent: TenantShardId,
        new_count: u8,
        new_stripe: Option<u32>,
    ) -> Result<Vec<TenantShardId>, ApiError> {
        let source = self.attached(parent)?.clone();
        let generation = source
            .generation
            .ok_or_else(|| ApiError::Internal(format!("attached {parent} has no generation")))?;
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
        Ok(children)
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

    /// Simulated local disk usage: one full set of layers per location.
    pub fn disk_usage_bytes(&self) -> u64 {
        self.locations
            .values()
            .map(|l| l.layers().max(LAYERS_PER_TIMELINE) * LAYER_BYTES)
            .sum()
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
    use crate::wire::ReAttachResponseTenant;

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
    fn split_children_follow_parent() {
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
        let children = st.split(parent, 4, Some(1024)).expect("split");
        assert_eq!(children, vec![id(1, 4), id(3, 4)]);
        for child in children {
            let loc = &st.locations[&child];
            assert_eq!(loc.generation, Some(7));
            assert_eq!(loc.stripe_size, 1024);
            assert!(loc.timelines.contains_key("t1"));
        }
        assert!(st.locations.contains_key(&parent));
        assert!(st.split(parent, 3, None).is_err());
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
