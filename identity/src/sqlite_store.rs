//! The embedded [`SecretStore`]: one SQLite database file.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension as _, TransactionBehavior,
};

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
CREATE TABLE IF NOT EXISTS seeded_tenants (
    tenant TEXT PRIMARY KEY,
    seeded_at INTEGER NOT NULL
);
";

/// The schema version this build writes, kept in SQLite's `user_version`.
///
/// Version 0 had no `seeded_tenants`; version 1 added it.
const SCHEMA_VERSION: i64 = 1;

/// Records as seeded every tenant that has, or had, secrets in a version 0 store.
///
/// A disabler password counts, because seeding always created one and no API
/// deletes it, so it remains after the tenant's keys and tokens are gone.
const SEED_EXISTING_TENANTS: &str = "
INSERT OR IGNORE INTO seeded_tenants (tenant, seeded_at)
SELECT tenant, MIN(created_at) FROM (
    SELECT tenant, created_at FROM authentication_keys
    UNION ALL SELECT tenant, created_at FROM admin_tokens
    UNION ALL SELECT tenant, created_at FROM disabler_passwords
) GROUP BY tenant;
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
    /// needed, and migrating an older layout.
    ///
    /// Fails with [`StoreError::NotWritable`] when the file or its folder cannot be
    /// written, and with [`StoreError::Corrupt`] when SQLite's quick check finds
    /// damage, so that neither shows up only when an administrator changes something.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            check_writable(path)?;
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(open_error)?;
            }
            match crate::signing_keys::write_new_private_file(path, b"") {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
                Err(source) => return Err(open_error(source)),
            }
        }

        let classify = |error| classify_open_error(path, error);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut connection = Connection::open_with_flags(path, flags).map_err(classify)?;
        if connection.is_readonly("main").map_err(classify)? {
            return Err(StoreError::NotWritable {
                path: path.to_owned(),
                reason: "SQLite opened the file read-only".to_owned(),
            });
        }
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(classify)?;
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(classify)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWritable {
                path: path.to_owned(),
                reason: format!("SQLite kept journal mode {mode} instead of WAL"),
            });
        }
        check_integrity(&connection, path)?;

        migrate(&mut connection, Some(path))?;
        Ok(Self::with_connection(connection))
    }

    /// Opens a private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut connection = Connection::open_in_memory().map_err(database_error)?;
        migrate(&mut connection, None)?;
        Ok(Self::with_connection(connection))
    }

    fn with_connection(connection: Connection) -> Self {
        Self {
            connection: Arc::new(Mutex::new(connection)),
        }
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

/// Fails when the existing file at `path` cannot be opened for writing: SQLite
/// itself would silently open it read-only.
fn check_writable(path: &Path) -> Result<(), StoreError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Ok(()),
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Err(StoreError::NotWritable {
                path: path.to_owned(),
                reason: error.to_string(),
            })
        }
        Err(source) => Err(StoreError::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Maps an SQLite error met while opening `path` to the error an operator can act on.
fn classify_open_error(path: &Path, error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            reason: error.to_string(),
        },
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            StoreError::NotWritable {
                path: path.to_owned(),
                reason: error.to_string(),
            }
        }
        _ => StoreError::Database(format!("{}: {error}", path.display())),
    }
}

/// Runs SQLite's quick check, which reads every page: the file is small, and damage
/// found now stops the start instead of failing a later request.
fn check_integrity(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare("PRAGMA quick_check")
        .map_err(|error| classify_open_error(path, error))?;
    let problems = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(|error| classify_open_error(path, error))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|error| classify_open_error(path, error))?;
    if problems == ["ok"] {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_owned(),
        reason: problems.join("; "),
    })
}

/// Creates the tables and brings an older layout to [`SCHEMA_VERSION`], in one
/// transaction that holds the write lock, so that two processes opening the same
/// file migrate it once.
fn migrate(connection: &mut Connection, path: Option<&Path>) -> Result<(), StoreError> {
    let classify = |error| match path {
        Some(path) => classify_open_error(path, error),
        None => database_error(error),
    };
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let version: i64 = transaction
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(classify)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.map(Path::to_owned).unwrap_or_default(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }

    transaction.execute_batch(SCHEMA).map_err(classify)?;
    if version < 1 {
        transaction
            .execute_batch(SEED_EXISTING_TENANTS)
            .map_err(classify)?;
    }
    transaction
        .pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(classify)?;
    transaction.commit().map_err(classify)
}

/// Records `tenant` as seeded at `now` unless it already is; returns whether it
/// was new.
fn record_seeded(connection: &Connection, tenant: &str, now: u64) -> Result<bool, StoreError> {
    let inserted = connection
        .execute(
            "INSERT OR IGNORE INTO seeded_tenants (tenant, seeded_at) VALUES (?1, ?2)",
            params![tenant, to_i64(now)],
        )
        .map_err(database_error)?;
    Ok(inserted > 0)
}

fn insert_key(connection: &Connection, key: &AuthenticationKey) -> Result<(), StoreError> {
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
}

fn insert_token(connection: &Connection, record: &AdminTokenRecord) -> Result<(), StoreError> {
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
    fn insert_first_secrets<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a AuthenticationKey,
        token: &'a AdminTokenRecord,
        disabler: &'a DisablerPassword,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (tenant, key, token, disabler) = (
            tenant.to_owned(),
            key.clone(),
            token.clone(),
            disabler.clone(),
        );
        self.run(move |connection| {
            // The write lock is taken at BEGIN, so another process seeding the same
            // tenant waits here and then finds it seeded.
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database_error)?;
            if !record_seeded(&transaction, &tenant, key.created_at)? {
                return Ok(false);
            }
            insert_key(&transaction, &key)?;
            insert_token(&transaction, &token)?;
            transaction
                .execute(
                    "INSERT OR IGNORE INTO disabler_passwords \
                     (tenant, slot, password, salt, created_at) \
                     VALUES (?1, 'current', ?2, ?3, ?4)",
                    params![
                        tenant,
                        disabler.password,
                        disabler.salt,
                        to_i64(disabler.created_at)
                    ],
                )
                .map_err(database_error)?;
            transaction.commit().map_err(database_error)?;
            Ok(true)
        })
    }

    fn is_seeded<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let tenant = tenant.to_owned();
        self.run(move |connection| {
            connection
                .query_row(
                    "SELECT 1 FROM seeded_tenants WHERE tenant = ?1",
                    params![tenant],
                    |_| Ok(()),
                )
                .optional()
                .map(|found| found.is_some())
                .map_err(database_error)
        })
    }

    fn insert_authentication_key<'a>(
        &'a self,
        key: &'a AuthenticationKey,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = key.clone();
        self.run(move |connection| {
            let transaction = connection.transaction().map_err(database_error)?;
            insert_key(&transaction, &key)?;
            record_seeded(&transaction, &key.tenant, key.created_at)?;
            transaction.commit().map_err(database_error)
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
            let transaction = connection.transaction().map_err(database_error)?;
            insert_token(&transaction, &record)?;
            record_seeded(&transaction, &record.tenant, record.created_at)?;
            transaction.commit().map_err(database_error)
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
            // The write lock is taken at BEGIN, so no other connection, in this
            // process or another, can delete an admin token between the count and
            // the deletion.
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database_error)?;
            let role: Option<String> = transaction
                .query_row(
                    "SELECT role FROM admin_tokens WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(database_error)?;
            let Some(role) = role else {
                return Ok(false);
            };
            if role == Role::Admin.as_str() {
                let admins: i64 = transaction
                    .query_row(
                        "SELECT COUNT(*) FROM admin_tokens WHERE tenant = ?1 AND role = ?2",
                        params![tenant, Role::Admin.as_str()],
                        |row| row.get(0),
                    )
                    .map_err(database_error)?;
                if admins <= 1 {
                    return Err(StoreError::LastAdminToken);
                }
            }
            transaction
                .execute(
                    "DELETE FROM admin_tokens WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                )
                .map_err(database_error)?;
            transaction.commit().map_err(database_error)?;
            Ok(true)
        })
    }
}
