//! The store of tenants' secrets.

use std::future::Future;
use std::pin::Pin;

use crate::{AdminTokenRecord, AuthenticationKey, DisablerPassword, DisablerPasswords};

/// A boxed future, so that the store traits stay usable as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Failures of a [`SecretStore`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("console state store: {0}")]
    Database(String),
    /// The database file could not be created or opened.
    #[error("console state store {path}: {source}")]
    Open {
        /// The database file.
        path: std::path::PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// A row holds a value this version cannot read (for example an unknown role).
    #[error("console state store holds an invalid value in {column}: {value:?}")]
    InvalidValue {
        /// The table and column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// A unique value (a key or token hash) already exists.
    #[error("console state store already holds this {0}")]
    Duplicate(&'static str),
}

/// Storage for tenants' authentication keys, disabler passwords and admin tokens.
///
/// This is the source of truth for these secrets; policy files hold everything
/// else about a tenant. Implementations: [`crate::SqliteSecretStore`] (embedded);
/// a PostgreSQL one is planned for clusters. Every method is atomic.
pub trait SecretStore: Send + Sync {
    /// Stores a new authentication key.
    fn insert_authentication_key<'a>(
        &'a self,
        key: &'a AuthenticationKey,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Returns a tenant's authentication keys, oldest first.
    fn list_authentication_keys<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AuthenticationKey>, StoreError>>;

    /// Returns the authentication key whose secret is `key`, looked up by its
    /// SHA-256 so the lookup time does not depend on how much of it matched.
    fn find_authentication_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<AuthenticationKey>, StoreError>>;

    /// Deletes `tenant`'s authentication key `id`; returns whether it existed.
    fn delete_authentication_key<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Returns the `(tenant, key id)` pairs of every authentication key.
    fn live_key_ids(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, StoreError>>;

    /// Returns a tenant's current and previous disabler passwords.
    fn disabler_passwords<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Option<DisablerPasswords>, StoreError>>;

    /// Makes `password` the tenant's current disabler password and the current one
    /// the previous (dropping the older previous), in one transaction.
    fn rotate_disabler_password<'a>(
        &'a self,
        tenant: &'a str,
        password: &'a DisablerPassword,
    ) -> BoxFuture<'a, Result<DisablerPasswords, StoreError>>;

    /// Stores a new admin token record (only its hash).
    fn insert_admin_token<'a>(
        &'a self,
        record: &'a AdminTokenRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Returns the record of the admin token `token`, looked up by its SHA-256.
    fn find_admin_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<AdminTokenRecord>, StoreError>>;

    /// Returns a tenant's admin token records, oldest first.
    fn list_admin_tokens<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AdminTokenRecord>, StoreError>>;

    /// Deletes `tenant`'s admin token `id`; returns whether it existed.
    fn delete_admin_token<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}
