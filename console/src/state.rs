//! The state shared by every handler.

use std::sync::Arc;

use swg_activity::ActivityStore;
use swg_ca::CaCertificate;
use swg_identity::{LiveKeys, SecretStore, Signer};
use swg_policy::PolicyWatcher;

use crate::ConsoleConfig;

/// Shared state of the console handlers; cheap to clone.
#[derive(Clone)]
pub struct ConsoleState {
    /// The `[console]` configuration.
    pub config: Arc<ConsoleConfig>,
    /// Issues and verifies device tokens.
    pub signer: Signer,
    /// Authentication key ids that still exist; refreshed after every key change.
    pub live_keys: Arc<LiveKeys>,
    /// Tenants' authentication keys, disabler passwords and admin tokens.
    pub secrets: Arc<dyn SecretStore>,
    /// The policy in force, and its validate-and-replace API.
    pub policy: Arc<PolicyWatcher>,
    /// The activity store, for queries and exports.
    pub activity: Arc<dyn ActivityStore>,
    /// The root CA certificate that administrators download.
    pub root_certificate: Arc<CaCertificate>,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ConsoleState {
    /// Checks that the console can serve, which needs a secret store that responds
    /// to a query; meant for the operations listener's `/readyz`.
    pub async fn check_ready(&self) -> Result<(), swg_identity::StoreError> {
        self.secrets.live_key_ids().await.map(|_| ())
    }
}
