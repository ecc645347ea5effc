//! First-start secrets for every tenant of the policy.

use swg_identity::{seed_tenant, unix_now, SecretStore, SeededSecrets, StoreError};
use swg_policy::PolicyWatcher;

/// Gives every tenant of the policy in force an authentication key, an admin token
/// and a disabler password if the store has never seeded it, and returns the
/// secrets created, per tenant, so that `swg serve` can print them once.
///
/// Tenants seeded before are left out of the result and keep what they have, even
/// with every key deleted.
pub async fn seed_policy_tenants(
    secrets: &dyn SecretStore,
    policy: &PolicyWatcher,
) -> Result<Vec<(String, SeededSecrets)>, StoreError> {
    let set = policy.current();
    let mut seeded = Vec::new();
    for tenant in set.tenants() {
        let created = seed_tenant(secrets, tenant.id(), unix_now()).await?;
        if created.authentication_key.is_some() || created.admin_token.is_some() {
            seeded.push((tenant.id().to_owned(), created));
        }
    }
    Ok(seeded)
}
