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
/// within one refresh interval. A key that is missing from the snapshot, such
/// as one created through another replica or `swg secrets`, makes the refresh
/// task reload early, at most once per [`EARLY_REFRESH_GAP`].
#[derive(Debug, Default)]
pub struct LiveKeys {
    by_tenant: ArcSwap<HashMap<String, HashSet<String>>>,
    /// Notified when a lookup misses.
    missed: tokio::sync::Notify,
}

/// The shortest time between two refreshes that lookups of missing keys start.
pub(crate) const EARLY_REFRESH_GAP: Duration = Duration::from_secs(1);

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

    /// Returns whether `tenant` still has the authentication key `key_id`. A
    /// miss makes the refresh task, if one runs, reload the snapshot early.
    pub fn is_live(&self, tenant: &str, key_id: &str) -> bool {
        let live = self
            .by_tenant
            .load()
            .get(tenant)
            .is_some_and(|keys| keys.contains(key_id));
        if !live {
            self.missed.notify_one();
        }
        live
    }

    /// Reloads the snapshot from `store`; on failure the old snapshot stays.
    pub async fn refresh(&self, store: &dyn SecretStore) -> Result<(), StoreError> {
        let ids = store.live_key_ids().await?;
        self.replace(ids);
        Ok(())
    }

    /// Spawns a task that refreshes the snapshot from `store` every `interval`,
    /// and early after a lookup missed (at most once per [`EARLY_REFRESH_GAP`]),
    /// until the returned handle is aborted. Failures are logged and retried at
    /// the next interval.
    pub fn spawn_refresh(
        self: Arc<Self>,
        store: Arc<dyn SecretStore>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = self.missed.notified() => {
                        tokio::time::sleep_until(last + EARLY_REFRESH_GAP).await;
                    }
                }
                last = tokio::time::Instant::now();
                if let Err(error) = self.refresh(store.as_ref()).await {
                    tracing::warn!(%error, "failed to refresh authentication key ids; keeping the previous set");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthenticationKey, SqliteSecretStore};

    #[tokio::test]
    async fn missing_key_refreshes_early() {
        let store: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::open_in_memory().unwrap());
        let live = Arc::new(LiveKeys::new());
        let refresh =
            Arc::clone(&live).spawn_refresh(Arc::clone(&store), Duration::from_secs(3600));
        // The first tick refreshes at once; a key stored after it is missing.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let key = AuthenticationKey::generate("acme", 0);
        store.insert_authentication_key(&key).await.unwrap();
        assert!(!live.is_live("acme", &key.id));

        let started = tokio::time::Instant::now();
        while !live.is_live("acme", &key.id) {
            assert!(
                started.elapsed() < EARLY_REFRESH_GAP * 5,
                "key not found by an early refresh"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        refresh.abort();
    }
}
