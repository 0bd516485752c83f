//! The controller's locks on operations.
//!
//! Invariants:
//! - at most one scheduling pass at a time: intents are computed from the applied state and
//!   committed later, so two passes at once could commit a decision made on stale state;
//! - at most one tenant operation (a split, its abort) per tenant at a time, held for the whole
//!   operation; the lock of a deleted tenant is dropped once nobody holds or awaits it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use state_machine::ids::TenantId;
use tokio::sync::OwnedMutexGuard;

use super::lock;

#[derive(Default)]
pub struct TenantLocks {
    schedule: tokio::sync::Mutex<()>,
    tenants: Mutex<BTreeMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
}

impl TenantLocks {
    pub async fn schedule(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.schedule.lock().await
    }

    pub async fn tenant(&self, tenant: TenantId) -> OwnedMutexGuard<()> {
        let m = lock(&self.tenants).entry(tenant).or_default().clone();
        m.lock_owned().await
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
