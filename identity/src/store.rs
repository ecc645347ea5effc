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
    /// The database file or its folder cannot be written. SQLite would open such a
    /// file read-only, and every change would fail later.
    #[error(
        "console state store {path} is not writable ({reason}); give the swg user write \
         access to the file and its folder"
    )]
    NotWritable {
        /// The database file.
        path: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
    /// The database file is damaged or is not an SQLite database. It is left in place.
    #[error(
        "console state store {path} is corrupt or not an SQLite database ({reason}). Restore \
         it from a backup, or move it aside with its -wal and -shm files to start with an \
         empty store. An empty store loses every authentication key, admin token and \
         disabler password, so every agent must enrol again with new keys."
    )]
    Corrupt {
        /// The database file.
        path: std::path::PathBuf,
        /// SQLite's error message, or the problems its quick check found.
        reason: String,
    },
    /// The database was written by a newer swg whose layout this version cannot read.
    #[error(
        "console state store {path} has schema version {found}, but this swg reads versions \
         up to {supported}; run a newer swg"
    )]
    NewerSchema {
        /// The database file.
        path: std::path::PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build can read.
        supported: i64,
    },
    /// The admin token was kept because it is the tenant's last token with the
    /// admin role. Without one, no token could change the tenant's settings.
    #[error("this is the tenant's last admin token; create another one first")]
    LastAdminToken,
}

/// Storage for tenants' authentication keys, disabler passwords and admin tokens.
///
/// This is the source of truth for these secrets; policy files hold everything
/// else about a tenant. Implementations: [`crate::SqliteSecretStore`] (embedded);
/// a PostgreSQL one is planned for clusters. Every method is atomic, also against
/// other processes that share the store.
///
/// The store also records which tenants were seeded: a tenant counts as seeded
/// once it has had an authentication key or an admin token, and stays seeded
/// after they are deleted, so that [`crate::seed_tenant`] never recreates them.
pub trait SecretStore: Send + Sync {
    /// Stores a tenant's first authentication key, admin token and disabler password
    /// and records the tenant as seeded, unless it was seeded before. Returns whether
    /// it stored them.
    ///
    /// `key`, `token` and `disabler` must all belong to `tenant`. A disabler password
    /// the tenant already has is kept.
    fn insert_first_secrets<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a AuthenticationKey,
        token: &'a AdminTokenRecord,
        disabler: &'a DisablerPassword,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Returns whether `tenant` was ever seeded or given a key or an admin token.
    fn is_seeded<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Stores a new authentication key and records its tenant as seeded.
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

    /// Stores a new admin token record (only its hash) and records its tenant as
    /// seeded.
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

    /// Deletes `tenant`'s admin token `id` and returns whether it existed. Fails with
    /// [`StoreError::LastAdminToken`], deleting nothing, when it is the tenant's last
    /// token with the admin role.
    ///
    /// The check and the deletion are one atomic step, so two concurrent calls that
    /// delete the last two admin tokens cannot both succeed.
    fn delete_admin_token<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}
