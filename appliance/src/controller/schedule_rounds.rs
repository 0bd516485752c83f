//! Scheduling in rounds: callers that wait for the scheduling lock at the same time are served
//! by one pass and one commit.
//!
//! A pass computes intents from the applied state and commits them through Raft while it holds
//! the scheduling lock (two passes at once could decide on the same stale loads). With one pass
//! per caller, concurrent tenant creations queue on that lock one Raft round each. Here a caller
//! adds its tenants to the pending round and then waits for the lock; whoever gets the lock
//! first schedules every tenant pending at that moment, and each caller of that round takes its
//! own part of the result. The loads a pass decides on are as fresh as before: every pass still
//! starts after the previous one committed.
//!
//! Invariant: a caller's tenants are scheduled by a pass that began after the caller enqueued
//! them (its round, or a later one if its round's result was taken by nobody).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use raft_store::ProposeError;
use state_machine::ids::TenantId;

use super::Scheduled;
use super::lock;

/// Rounds of tenants to schedule and the results callers have not collected yet.
#[derive(Default)]
pub struct Rounds {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The round the next pass serves, and its tenants.
    open: u64,
    pending: BTreeSet<TenantId>,
    /// Callers per round that have not collected its result (or given up) yet.
    waiting: BTreeMap<u64, usize>,
    done: BTreeMap<u64, Result<Scheduled, ProposeError>>,
}

/// A caller's place in a round. Dropped without collecting (the caller was cancelled), it
/// leaves the round all the same, so results are never kept for nobody.
pub struct Joined<'a> {
    rounds: &'a Rounds,
    round: u64,
    tenants: &'a BTreeSet<TenantId>,
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        lock(&self.rounds.inner).leave(self.round);
    }
}

/// What a caller does once it holds the scheduling lock.
pub enum Turn {
    /// Its round was served by another caller's pass.
    Served(Result<Scheduled, ProposeError>),
    /// It runs the pass of round `round` over `tenants` (its own among them) and reports it
    /// with [`Rounds::finish`].
    Pass {
        round: u64,
        tenants: BTreeSet<TenantId>,
    },
}

impl Rounds {
    /// Joins the open round with `tenants`.
    pub fn join<'a>(&'a self, tenants: &'a BTreeSet<TenantId>) -> Joined<'a> {
        let mut inner = lock(&self.inner);
        let round = inner.open;
        inner.pending.extend(tenants.iter().copied());
        *inner.waiting.entry(round).or_default() += 1;
        Joined {
            rounds: self,
            round,
            tenants,
        }
    }

    /// Under the scheduling lock: the result of `joined`'s round if a pass served it, else
    /// the open round to run, with `joined`'s tenants in it even if the pass that took them
    /// was cancelled before it finished.
    pub fn turn(&self, joined: &Joined<'_>) -> Turn {
        let mut inner = lock(&self.inner);
        if let Some(result) = inner.done.get(&joined.round) {
            return Turn::Served(result.clone());
        }
        let round = inner.open;
        inner.open += 1;
        let mut tenants = std::mem::take(&mut inner.pending);
        tenants.extend(joined.tenants.iter().copied());
        Turn::Pass { round, tenants }
    }

    /// Under the scheduling lock, after the pass of `round`: its callers collect `result`.
    pub fn finish(&self, round: u64, result: &Result<Scheduled, ProposeError>) {
        let mut inner = lock(&self.inner);
        if inner.waiting.contains_key(&round) {
            inner.done.insert(round, result.clone());
        }
    }
}

impl Inner {
    fn leave(&mut self, round: u64) {
        if let Some(n) = self.waiting.get_mut(&round) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&round);
                self.done.remove(&round);
            }
        }
    }
}

/// `all`'s result as one caller of the round sees it: only the shards of its `tenants`.
pub fn part_of(
    all: Result<Scheduled, ProposeError>,
    tenants: &BTreeSet<TenantId>,
) -> Result<Scheduled, ProposeError> {
    let all = all?;
    Ok(Scheduled {
        changed: all
            .changed
            .into_iter()
            .filter(|id| tenants.contains(&id.tenant_id))
            .collect(),
        unschedulable: all
            .unschedulable
            .into_iter()
            .filter(|(id, _)| tenants.contains(&id.tenant_id))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_machine::ids::{ShardCount, TenantShardId};

    fn t(n: u8) -> TenantId {
        TenantId([n; 16])
    }

    fn shard(n: u8) -> TenantShardId {
        TenantShardId {
            tenant_id: t(n),
            shard_number: 0,
            shard_count: ShardCount(0),
        }
    }

    fn pass(turn: Turn) -> (u64, BTreeSet<TenantId>) {
        match turn {
            Turn::Pass { round, tenants } => (round, tenants),
            Turn::Served(_) => panic!("served, not a pass"),
        }
    }

    #[test]
    fn one_pass_serves_everyone_who_joined_before_it_began() {
        let rounds = Rounds::default();
        let (ta, tb, tc) = ([t(1)].into(), [t(2)].into(), [t(3)].into());
        let a = rounds.join(&ta);
        let b = rounds.join(&tb);
        // The first to get the lock takes both tenants.
        let (round, taken) = pass(rounds.turn(&a));
        assert_eq!(taken, BTreeSet::from([t(1), t(2)]));
        // A caller joining now waits for the next round.
        let c = rounds.join(&tc);
        let result = Ok(Scheduled {
            changed: vec![shard(1), shard(2)],
            unschedulable: vec![],
        });
        rounds.finish(round, &result);
        drop(a);
        // The second caller of the round collects it and sees only its own shards.
        let Turn::Served(got) = rounds.turn(&b) else {
            panic!("b's round was served");
        };
        let mine = part_of(got, &tb).expect("ok");
        assert_eq!(mine.changed, vec![shard(2)]);
        drop(b);
        // Everyone left round `a`: its result is gone; `c` is the next pass's to run.
        assert!(lock(&rounds.inner).done.is_empty());
        assert_eq!(pass(rounds.turn(&c)).1, tc);
    }

    #[test]
    fn a_cancelled_pass_leaves_its_callers_to_schedule_themselves() {
        let rounds = Rounds::default();
        let (ta, tb) = ([t(1)].into(), [t(2)].into());
        let a = rounds.join(&ta);
        let b = rounds.join(&tb);
        let (round, _) = pass(rounds.turn(&a));
        // `a` is cancelled mid-pass: no result for its round, ever.
        drop(a);
        let (next, tenants) = pass(rounds.turn(&b));
        assert!(next > round);
        assert_eq!(tenants, tb, "b's tenants are in the pass b runs");
        rounds.finish(
            next,
            &Ok(Scheduled {
                changed: vec![],
                unschedulable: vec![],
            }),
        );
        drop(b);
        let inner = lock(&rounds.inner);
        assert!(inner.waiting.is_empty() && inner.done.is_empty());
    }
}
