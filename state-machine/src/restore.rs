//! Raising generations when a state is restored from a backup or recovered after quorum loss.
//!
//! The hazard: the state a restore (or a forced recovery) starts from is a point in the old
//! cluster's log. The old cluster may have issued generations after that point (or committed
//! them on a majority the survivor was not in). Those are unknown here, and handing one out
//! again would let two pageservers hold one shard in one generation.
//!
//! The operation ([`State::raise_generations`]), pure like `apply`:
//! 1. checks the gap: at least 1, and no shard's generation (nor the floor) may pass
//!    `u32::MAX` (refused before anything changes, so a refusal changes nothing);
//! 2. raises every shard's generation by the gap (a shard without one gets the new floor);
//! 3. raises the generation floor by the gap: a shard unknown to this state (a tenant created
//!    after the backup and created again now) starts above it;
//! 4. records the restore ([`RestoreRecord`], row `meta/restored_from`) with the log point and
//!    the gap, so cluster status can show it.
//!
//! Guarantee: if the old cluster issued at most `gap` generations per tenant shard after the
//! log point the state was taken at, every generation the restored cluster issues is strictly
//! above every generation the old cluster issued for that shard. A known shard at generation
//! `g` in the backup was issued at most `g + gap` by the old cluster and next gets
//! `g + gap + 1`; a shard unknown to the backup started at most at `floor + 1` in the old
//! cluster, so it reached at most `floor + gap`, and now starts at `floor + gap + 1`.

use serde::{Deserialize, Serialize};

use crate::rows::{self, Mutation, RESTORED_FROM_KEY};
use crate::state::State;
use crate::tenant::Generation;

/// The default gap: far more generations than a cluster issues per shard between a backup and
/// its restore (one per attach, re-attach or migration), and room for about 4000 restores.
pub const DEFAULT_GENERATION_GAP: u32 = 1_000_000;

/// How the state came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreKind {
    /// `storcon restore` from a backup document.
    Restore,
    /// `storcon recover --force` on a surviving replica's data dir.
    Recover,
}

/// The log point a restored state was taken at (the old cluster's log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPoint {
    pub term: u64,
    pub index: u64,
}

/// The last restore of this state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub kind: RestoreKind,
    /// The point of the old cluster's log the state was taken at.
    pub taken_at: LogPoint,
    pub generation_gap: u32,
    /// Shards without a generation, and shards unknown to this state, start above this.
    pub generation_floor: Generation,
    /// How many restores or recoveries this state has been through, this one included.
    pub restores: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GapError {
    #[error("the generation gap must be at least 1")]
    Zero,
    #[error(
        "a generation gap of {gap} would overflow generations: {what} is at {at}, and the \
         largest generation is {max}; choose a gap of at most {room}"
    )]
    Overflow {
        gap: u32,
        what: String,
        at: u32,
        max: u32,
        room: u32,
    },
}

impl State {
    /// The last restore, if this state was ever restored or recovered.
    pub fn restored_from(&self) -> Option<&RestoreRecord> {
        self.restored_from.as_ref()
    }

    /// The generation a shard counts from when it has none: a shard's first generation is the
    /// one after it. 0 unless the state was restored.
    pub fn generation_floor(&self) -> Generation {
        self.restored_from
            .as_ref()
            .map_or(Generation(0), |r| r.generation_floor)
    }

    /// See the module docs. All or nothing: an error changes nothing.
    pub fn raise_generations(
        &mut self,
        kind: RestoreKind,
        taken_at: LogPoint,
        gap: u32,
    ) -> Result<Vec<Mutation>, GapError> {
        if gap == 0 {
            return Err(GapError::Zero);
        }
        let floor = self.generation_floor();
        let highest = self
            .shards
            .values()
            .filter_map(|s| s.generation.map(|g| (g, s.id.to_string())))
            .max_by_key(|(g, _)| *g)
            .filter(|(g, _)| *g > floor)
            .unwrap_or((floor, "the generation floor".to_string()));
        if highest.0.0.checked_add(gap).is_none() {
            return Err(GapError::Overflow {
                gap,
                what: highest.1,
                at: highest.0.0,
                max: u32::MAX,
                room: u32::MAX - highest.0.0,
            });
        }
        let new_floor = Generation(floor.0 + gap);
        let mut muts = Vec::with_capacity(self.shards.len() + 1);
        let ids: Vec<_> = self.shards.keys().copied().collect();
        for id in ids {
            if let Some(mut shard) = self.shards.get(&id).cloned() {
                shard.generation = Some(match shard.generation {
                    // Checked above: no generation is above `highest`.
                    Some(g) => Generation(g.0 + gap),
                    None => new_floor,
                });
                muts.push(self.put_shard(shard));
            }
        }
        let record = RestoreRecord {
            kind,
            taken_at,
            generation_gap: gap,
            generation_floor: new_floor,
            restores: self
                .restored_from
                .as_ref()
                .map_or(1, |r| r.restores.saturating_add(1)),
        };
        muts.push(rows::put(RESTORED_FROM_KEY.to_string(), &record));
        self.restored_from = Some(record);
        Ok(muts)
    }
}
