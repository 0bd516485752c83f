//! The controller's locks on operations.
//!
//! Invariants:
//! - at most one scheduling pass at a time: intents are computed from the applied state and
//!   committed later, so two passes at once could commit a decision made on stale state;
//! - a tenant's shape-changing operation (a split, its abort, a delete) holds the tenant's lock
//!   exclusively for the whole operation, so nothing else of that tenant interleaves; timeline
//!   operations and passthroughs hold it shared, so they run together but never during a split
//!   (upstream's shared/exclusive tenant op-locks). The lock of a deleted tenant is dropped once
//!   nobody holds or awaits it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use state_machine::ids::TenantId;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::lock;

#[derive(Default)]
pub struct TenantLocks {
    schedule: tokio::sync::Mutex<()>,
    tenants: Mutex<BTreeMap<TenantId, Arc<RwLock<()>>>>,
    /// Tenants a delete is running for: a second delete answers "in progress" at once.
    deleting: Mutex<BTreeSet<TenantId>>,
}

/// Marks a tenant's delete as running until dropped.
pub struct DeleteMark<'a> {
    locks: &'a TenantLocks,
    tenant: TenantId,
}

impl Drop for DeleteMark<'_> {
    fn drop(&mut self) {
        lock(&self.locks.deleting).remove(&self.tenant);
    }
}

impl TenantLocks {
    pub async fn schedule(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.schedule.lock().await
    }

    fn tenant_lock(&self, tenant: TenantId) -> Arc<RwLock<()>> {
        lock(&self.tenants).entry(tenant).or_default().clone()
    }

    pub async fn tenant_exclusive(&self, tenant: TenantId) -> OwnedRwLockWriteGuard<()> {
        self.tenant_lock(tenant).write_owned().await
    }

    pub async fn tenant_shared(&self, tenant: TenantId) -> OwnedRwLockReadGuard<()> {
        self.tenant_lock(tenant).read_owned().await
    }

    /// Marks the tenant's delete as running; `None` if one already is.
    pub fn start_delete(&self, tenant: TenantId) -> Option<DeleteMark<'_>> {
        // The guard must be gone before a mark exists: a mark's drop takes the same lock. (An
        // eager `then_some(mark)` built and dropped one under the guard when a delete already
        // ran: a deadlock, and the running delete's mark removed.)
        let started = lock(&self.deleting).insert(tenant);
        started.then(|| DeleteMark {
            locks: self,
            tenant,
        })
    }

    /// Drops the lock of a deleted tenant unless someone holds or awaits it.
    pub fn forget(&self, tenant: TenantId) {
        let mut tenants = lock(&self.tenants);
        if tenants
            .get(&tenant)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            tenants.remove(&tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_delete_is_refused_without_ending_the_first() {
        let locks = TenantLocks::default();
        let tenant: TenantId = "0123456789abcdef0123456789abcdef".parse().expect("id");
        let first = locks.start_delete(tenant).expect("first starts");
        assert!(
            locks.start_delete(tenant).is_none(),
            "second while first runs"
        );
        assert!(locks.start_delete(tenant).is_none(), "the first still runs");
        drop(first);
        assert!(
            locks.start_delete(tenant).is_some(),
            "after the first ended"
        );
    }
}
