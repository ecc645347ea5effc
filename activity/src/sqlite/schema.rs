//! The SQLite schema and its versioned migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Each migration runs
//! in its own transaction together with the version bump, so a crash leaves the
//! store at one version or the next, never in between.
//!
//! Layout, and the query each part serves. Inserts must stay cheap at 100 000
//! events per second, so `events` and its index grow at their end (keys that start
//! with the tenant and the time, or with few distinct values). An index led by a
//! column with thousands of values, such as the device, would dirty one page per
//! event and cut the insert rate by more than half.
//! - `events`: one row per event, stored in page order: a `WITHOUT ROWID` table
//!   keyed by `(tenant_id, time_ms, id)`, so that the table is its own time index
//!   and an insert updates one tree instead of a table and a time index. Tenants
//!   are stored as small integers from `tenants` so that keys stay short. Every
//!   filtered column (`host`, `device`, `user`, `app`, `action`) sits before
//!   `payload`, which packs the fields no query filters on (see
//!   [`super::payload`]). `host` is the request's host name in lowercase, for the
//!   domain filter and the top-domains chart. `id` comes from `writer_state`.
//! - `writer_state`: one row holding the id of the next event, read and updated
//!   by each insert batch.
//! - `hourly_presence (tenant_id, hour, kind, value)`: the hours in which a user,
//!   device, app or action has events. A page filtered on one of these probes its hours
//!   newest first and scans `events` only within them. New keys land at
//!   the end of the table, and the writer skips keys it stored this hour.
//! - `hosts (tenant_id, name)`: each tenant's distinct host names, with an id and
//!   the last slot (see below) each was seen in. A domain filter searches this
//!   small table for names containing its text.
//! - `host_slots (slot, host_id)`: the 10-minute slots in which a host has events.
//!   A domain filter that matches few hosts probes their slots newest first and
//!   scans `events` only within those, so a rare host costs one slot's
//!   scan per page row at most. Keys start with the slot, so new rows land at the
//!   end, and the writer adds one only for the first event of a host in a slot.
//!   Slots are shorter than the hours of `hourly_presence` because hosts are far
//!   more numerous than users and devices, so their rare members are rarer.
//! - Pages filtered on the action alone probe `hourly_presence` for the hours that
//!   have the action, like a user filter, and check it on the rows of `events`.
//!   An index led by the action cost about a sixth of the insert time, while
//!   every action has events in nearly every hour.
//! - `events_by_device_alert`: a partial index of block and warn events by device,
//!   for the agent's activity list; it takes one insert per blocked or warned
//!   event only.
//! - `event_categories`: one row per (event, category), keyed for the category
//!   filter.
//! - `daily_actions`, `daily_blocked_hosts`, `daily_blocked_categories`: per-day
//!   counts kept up to date by each insert batch, so charts never scan events.

use rusqlite::{Connection, TransactionBehavior};

/// The oldest schema version a store may have and still be opened. Version 1 was a
/// development layout that was changed in place, so its variants cannot be
/// distinguished. Such stores are rejected instead of being written with the wrong
/// tables.
pub(crate) const FIRST_SUPPORTED_VERSION: i64 = 2;

/// Migrations in order; `MIGRATIONS[n]` moves the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1: the retired development layout. A new store passes through it as an
    // empty step; a store found at version 1 is refused before migrating.
    "",
    // Version 2: the current schema. Every later change goes into a new migration.
    "
    CREATE TABLE tenants (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE categories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE events (
        tenant_id INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        id INTEGER NOT NULL,
        host TEXT NOT NULL,
        device TEXT,
        user TEXT,
        app TEXT,
        action TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (tenant_id, time_ms, id)
    ) WITHOUT ROWID;
    CREATE TABLE writer_state (
        next_event_id INTEGER NOT NULL
    );
    INSERT INTO writer_state (next_event_id) VALUES (1);
    CREATE INDEX events_by_device_alert ON events (tenant_id, device, time_ms, id)
        WHERE action IN ('block', 'warn');
    CREATE TABLE hourly_presence (
        tenant_id INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (tenant_id, hour, kind, value)
    ) WITHOUT ROWID;
    CREATE TABLE hosts (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        last_slot INTEGER NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE host_slots (
        slot INTEGER NOT NULL,
        host_id INTEGER NOT NULL,
        PRIMARY KEY (slot, host_id)
    ) WITHOUT ROWID;
    CREATE TABLE event_categories (
        tenant_id INTEGER NOT NULL,
        category_id INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, category_id, time_ms, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE daily_actions (
        tenant_id INTEGER NOT NULL,
        day INTEGER NOT NULL,
        action TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, day, action)
    ) WITHOUT ROWID;
    CREATE TABLE daily_blocked_hosts (
        tenant_id INTEGER NOT NULL,
        day INTEGER NOT NULL,
        host TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, day, host)
    ) WITHOUT ROWID;
    CREATE TABLE daily_blocked_categories (
        tenant_id INTEGER NOT NULL,
        day INTEGER NOT NULL,
        category_id INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, day, category_id)
    ) WITHOUT ROWID;
    ",
];

/// The schema version this build creates and reads.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads the schema version of the open store.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Applies the migrations after `current`, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection, current: i64) -> rusqlite::Result<()> {
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "migrated activity store schema");
    }
    Ok(())
}
