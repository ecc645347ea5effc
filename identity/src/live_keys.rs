//! The set of authentication key ids that still exist, for token revocation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::{SecretStore, StoreError};

/// A snapshot of the live authentication key ids of every tenant.
///
/// Device tokens name the key they were issued under; verification looks the key
/// up here instead of in the store, so the DoH hot path never waits for a
/// database. The console refreshes the snapshot after every key change; other
/// replicas learn of a deletion at their next periodic refresh (see
/// [`LiveKeys::spawn_refresh`]), so a deleted key's tokens stop working there
/// within one refresh interval.
#[derive(Debug, Default)]
pub struct LiveKeys {
    by_tenant: ArcSwap<HashMap<String, HashSet<String>>>,
}

impl LiveKeys {
    /// Creates an empty snapshot in which no token is valid.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the snapshot with `(tenant, key id)` pairs.
    pub fn replace<I>(&self, ids: I)
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut by_tenant: HashMap<String, HashSet<String>> = HashMap::new();
        for (tenant, key_id) in ids {
            by_tenant.entry(tenant).or_default().insert(key_id);
        }
        self.by_tenant.store(Arc::new(by_tenant));
    }

    /// Returns whether `tenant` still has the authentication key `key_id`.
    pub fn is_live(&self, tenant: &str, key_id: &str) -> bool {
        self.by_tenant
            .load()
            .get(tenant)
            .is_some_and(|keys| keys.contains(key_id))
    }

    /// Reloads the snapshot from `store`; on failure the old snapshot stays.
    pub async fn refresh(&self, store: &dyn SecretStore) -> Result<(), StoreError> {
        let ids = store.live_key_ids().await?;
        self.replace(ids);
        Ok(())
    }

    /// Spawns a task that refreshes the snapshot from `store` every `interval`
    /// until the returned handle is aborted; failures are logged and retried at
    /// the next interval.
    pub fn spawn_refresh(
        self: Arc<Self>,
        store: Arc<dyn SecretStore>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = self.refresh(store.as_ref()).await {
                    tracing::warn!(%error, "failed to refresh authentication key ids; keeping the previous set");
                }
            }
        })
    }
}
