//! First-start secrets for every tenant of the policy.

use swg_identity::{seed_tenant, unix_now, SecretStore, SeededSecrets, StoreError};
use swg_policy::PolicyWatcher;

/// Gives every tenant of the policy in force an authentication key, an admin token
/// and a disabler password if it lacks them, and returns the secrets created, per
/// tenant, so that `swg serve` can print them once.
///
/// Tenants that already had everything are left out of the result.
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
