//! The embedded [`SecretStore`]: one SQLite database file.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension as _};

use crate::secrets::sha256_hex;
use crate::{
    AdminTokenRecord, AuthenticationKey, BoxFuture, DisablerPassword, DisablerPasswords, Role,
    SecretStore, StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS authentication_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS authentication_keys_tenant ON authentication_keys (tenant);
CREATE TABLE IF NOT EXISTS disabler_passwords (
    tenant TEXT NOT NULL,
    slot TEXT NOT NULL CHECK (slot IN ('current', 'previous')),
    password TEXT NOT NULL,
    salt TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, slot)
);
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_tokens_tenant ON admin_tokens (tenant);
";

/// Tenants' secrets in a SQLite database.
///
/// Calls run on tokio's blocking thread pool, one at a time. That suffices because
/// console state changes are rare and the hot paths read snapshots such as
/// [`crate::LiveKeys`], not this store.
#[derive(Clone)]
pub struct SqliteSecretStore {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSecretStore").finish_non_exhaustive()
    }
}

fn database_error(error: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &error {
        if failure.code == rusqlite::ErrorCode::ConstraintViolation {
            return StoreError::Duplicate("key or token");
        }
    }
    StoreError::Database(error.to_string())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl SqliteSecretStore {
    /// Opens the database at `path`, creating it (mode 0600, because it contains
    /// authentication keys and disabler passwords in clear) and its tables if
    /// needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::Open {
                    path: path.to_owned(),
                    source,
                })?;
            }
            match crate::signing_keys::write_new_private_file(path, b"") {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(StoreError::Open {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        }
        let connection = Connection::open(path).map_err(database_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(database_error)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(database_error)?;
        Self::with_connection(connection)
    }

    /// Opens a private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(database_error)?)
    }

    fn with_connection(connection: Connection) -> Result<Self, StoreError> {
        connection.execute_batch(SCHEMA).map_err(database_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` with the connection on the blocking thread pool.
    fn run<T, F>(&self, work: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut connection = connection
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                work(&mut connection)
            })
            .await
            .map_err(|error| StoreError::Database(format!("store task failed: {error}")))?
        })
    }
}

fn read_authentication_key(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuthenticationKey> {
    Ok(AuthenticationKey {
        id: row.get(0)?,
        tenant: row.get(1)?,
        key: row.get(2)?,
        created_at: to_u64(row.get(3)?),
    })
}

fn read_admin_token(row: &rusqlite::Row<'_>) -> rusqlite::Result<(AdminTokenRecord, String)> {
    let role: String = row.get(2)?;
    Ok((
        AdminTokenRecord {
            id: row.get(0)?,
            tenant: row.get(1)?,
            role: Role::ReadOnly,
            token_sha256: row.get(3)?,
            created_at: to_u64(row.get(4)?),
        },
        role,
    ))
}

/// Fills in the role read as text, rejecting names this version does not know.
fn with_role(
    (mut record, role): (AdminTokenRecord, String),
) -> Result<AdminTokenRecord, StoreError> {
    record.role = Role::parse(&role).ok_or(StoreError::InvalidValue {
        column: "admin_tokens.role",
        value: role,
    })?;
    Ok(record)
}

fn read_disabler(
    connection: &Connection,
    tenant: &str,
) -> Result<Option<DisablerPasswords>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT slot, password, salt, created_at FROM disabler_passwords WHERE tenant = ?1",
        )
        .map_err(database_error)?;
    let rows = statement
        .query_map(params![tenant], |row| {
            Ok((
                row.get::<_, String>(0)?,
                DisablerPassword {
                    password: row.get(1)?,
                    salt: row.get(2)?,
                    created_at: to_u64(row.get(3)?),
                },
            ))
        })
        .map_err(database_error)?;
    let mut current = None;
    let mut previous = None;
    for row in rows {
        let (slot, password) = row.map_err(database_error)?;
        match slot.as_str() {
            "current" => current = Some(password),
            _ => previous = Some(password),
        }
    }
    Ok(current.map(|current| DisablerPasswords { current, previous }))
}

impl SecretStore for SqliteSecretStore {
    fn insert_authentication_key<'a>(
        &'a self,
        key: &'a AuthenticationKey,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = key.clone();
        self.run(move |connection| {
            connection
                .execute(
                    "INSERT INTO authentication_keys (id, tenant, key, key_sha256, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        key.id,
                        key.tenant,
                        key.key,
                        sha256_hex(key.key.as_bytes()),
                        to_i64(key.created_at)
                    ],
                )
                .map_err(database_error)?;
            Ok(())
        })
    }

    fn list_authentication_keys<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AuthenticationKey>, StoreError>> {
        let tenant = tenant.to_owned();
        self.run(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, tenant, key, created_at FROM authentication_keys \
                     WHERE tenant = ?1 ORDER BY created_at, id",
                )
                .map_err(database_error)?;
            let keys = statement
                .query_map(params![tenant], read_authentication_key)
                .map_err(database_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(database_error)?;
            Ok(keys)
        })
    }

    fn find_authentication_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<AuthenticationKey>, StoreError>> {
        let key_sha256 = sha256_hex(key.as_bytes());
        self.run(move |connection| {
            connection
                .query_row(
                    "SELECT id, tenant, key, created_at FROM authentication_keys \
                     WHERE key_sha256 = ?1",
                    params![key_sha256],
                    read_authentication_key,
                )
                .optional()
                .map_err(database_error)
        })
    }

    fn delete_authentication_key<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.run(move |connection| {
            let deleted = connection
                .execute(
                    "DELETE FROM authentication_keys WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                )
                .map_err(database_error)?;
            Ok(deleted > 0)
        })
    }

    fn live_key_ids(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, StoreError>> {
        self.run(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT tenant, id FROM authentication_keys")
                .map_err(database_error)?;
            let ids = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(database_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(database_error)?;
            Ok(ids)
        })
    }

    fn disabler_passwords<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Option<DisablerPasswords>, StoreError>> {
        let tenant = tenant.to_owned();
        self.run(move |connection| read_disabler(connection, &tenant))
    }

    fn rotate_disabler_password<'a>(
        &'a self,
        tenant: &'a str,
        password: &'a DisablerPassword,
    ) -> BoxFuture<'a, Result<DisablerPasswords, StoreError>> {
        let (tenant, password) = (tenant.to_owned(), password.clone());
        self.run(move |connection| {
            let transaction = connection.transaction().map_err(database_error)?;
            transaction
                .execute(
                    "DELETE FROM disabler_passwords WHERE tenant = ?1 AND slot = 'previous'",
                    params![tenant],
                )
                .map_err(database_error)?;
            transaction
                .execute(
                    "UPDATE disabler_passwords SET slot = 'previous' \
                     WHERE tenant = ?1 AND slot = 'current'",
                    params![tenant],
                )
                .map_err(database_error)?;
            transaction
                .execute(
                    "INSERT INTO disabler_passwords (tenant, slot, password, salt, created_at) \
                     VALUES (?1, 'current', ?2, ?3, ?4)",
                    params![
                        tenant,
                        password.password,
                        password.salt,
                        to_i64(password.created_at)
                    ],
                )
                .map_err(database_error)?;
            let passwords = read_disabler(&transaction, &tenant)?;
            transaction.commit().map_err(database_error)?;
            passwords.ok_or(StoreError::Database(
                "disabler password missing right after it was written".to_owned(),
            ))
        })
    }

    fn insert_admin_token<'a>(
        &'a self,
        record: &'a AdminTokenRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let record = record.clone();
        self.run(move |connection| {
            connection
                .execute(
                    "INSERT INTO admin_tokens (id, tenant, role, token_sha256, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        record.id,
                        record.tenant,
                        record.role.as_str(),
                        record.token_sha256,
                        to_i64(record.created_at)
                    ],
                )
                .map_err(database_error)?;
            Ok(())
        })
    }

    fn find_admin_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<AdminTokenRecord>, StoreError>> {
        let token_sha256 = sha256_hex(token.as_bytes());
        self.run(move |connection| {
            connection
                .query_row(
                    "SELECT id, tenant, role, token_sha256, created_at FROM admin_tokens \
                     WHERE token_sha256 = ?1",
                    params![token_sha256],
                    read_admin_token,
                )
                .optional()
                .map_err(database_error)?
                .map(with_role)
                .transpose()
        })
    }

    fn list_admin_tokens<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AdminTokenRecord>, StoreError>> {
        let tenant = tenant.to_owned();
        self.run(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, tenant, role, token_sha256, created_at FROM admin_tokens \
                     WHERE tenant = ?1 ORDER BY created_at, id",
                )
                .map_err(database_error)?;
            let rows = statement
                .query_map(params![tenant], read_admin_token)
                .map_err(database_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(database_error)?;
            rows.into_iter().map(with_role).collect()
        })
    }

    fn delete_admin_token<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.run(move |connection| {
            let deleted = connection
                .execute(
                    "DELETE FROM admin_tokens WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                )
                .map_err(database_error)?;
            Ok(deleted > 0)
        })
    }
}
