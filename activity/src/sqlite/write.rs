//! Inserting batches and deleting expired rows.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::OffsetDateTime;

use super::{payload, WriterState};
use crate::error::ActivityError;
use crate::event::{Action, Event};
use crate::host::host_text;

pub(crate) const MS_PER_DAY: i64 = 86_400_000;
pub(crate) const MS_PER_HOUR: i64 = 3_600_000;
/// Length of a `host_slots` slot: 10 minutes.
pub(crate) const MS_PER_HOST_SLOT: i64 = 600_000;

/// `hourly_presence.kind` of a user id.
pub(crate) const PRESENCE_USER: i64 = 1;
/// `hourly_presence.kind` of a device id.
pub(crate) const PRESENCE_DEVICE: i64 = 2;
/// `hourly_presence.kind` of an app bundle id.
pub(crate) const PRESENCE_APP: i64 = 3;
/// `hourly_presence.kind` of an action, stored in its string form.
pub(crate) const PRESENCE_ACTION: i64 = 5;
/// Users and devices the writer remembers before it starts over; at about 100
/// bytes each, this bounds the cache to some 20 MB.
const MAX_CACHED_PRESENCE: usize = 200_000;

const INSERT_EVENT: &str =
    "INSERT INTO events (tenant_id, time_ms, id, host, device, user, app, action, payload) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const INSERT_EVENT_CATEGORY: &str =
    "INSERT OR IGNORE INTO event_categories (tenant_id, category_id, time_ms, event_id) VALUES (?1, ?2, ?3, ?4)";
const INSERT_PRESENCE: &str =
    "INSERT OR IGNORE INTO hourly_presence (tenant_id, hour, kind, value) VALUES (?1, ?2, ?3, ?4)";
const UPSERT_HOST: &str = "INSERT INTO hosts (tenant_id, name, last_slot) VALUES (?1, ?2, ?3) \
     ON CONFLICT (tenant_id, name) DO UPDATE SET last_slot = max(last_slot, excluded.last_slot) \
     RETURNING id";
const INSERT_HOST_SLOT: &str = "INSERT OR IGNORE INTO host_slots (slot, host_id) VALUES (?1, ?2)";
const ADD_DAILY_ACTION: &str =
    "INSERT INTO daily_actions (tenant_id, day, action, count) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (tenant_id, day, action) DO UPDATE SET count = count + excluded.count";
const ADD_DAILY_HOST: &str =
    "INSERT INTO daily_blocked_hosts (tenant_id, day, host, count) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (tenant_id, day, host) DO UPDATE SET count = count + excluded.count";
const ADD_DAILY_CATEGORY: &str =
    "INSERT INTO daily_blocked_categories (tenant_id, day, category_id, count) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (tenant_id, day, category_id) DO UPDATE SET count = count + excluded.count";

/// Milliseconds since the Unix epoch, the unit of `time_ms`.
pub(crate) fn unix_ms(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Hours since the Unix epoch, the unit of `hourly_presence.hour`.
pub(crate) fn unix_hour(time_ms: i64) -> i64 {
    time_ms.div_euclid(MS_PER_HOUR)
}

/// Slots of [`MS_PER_HOST_SLOT`] since the Unix epoch, the unit of `host_slots.slot`.
pub(crate) fn host_slot(time_ms: i64) -> i64 {
    time_ms.div_euclid(MS_PER_HOST_SLOT)
}

/// Days since the Unix epoch in UTC, the unit of the `day` columns.
pub(crate) fn unix_day(time_ms: i64) -> i64 {
    time_ms.div_euclid(MS_PER_DAY)
}

/// Time the writer runs before it offers its core to other threads, about 100
/// inserts.
const RUN_BEFORE_YIELD: Duration = Duration::from_micros(100);
/// Time after which a batch stops offering its core. Each offer can cost a whole
/// time slice when CPU-bound threads share the cores, and the queue must not
/// overflow meanwhile.
const MAX_YIELDING: Duration = Duration::from_millis(50);
/// Inserts between two reads of the clock.
const EVENTS_PER_CLOCK_READ: u32 = 16;

/// Offers the writer's core to other threads every [`RUN_BEFORE_YIELD`] within a
/// batch, for at most [`MAX_YIELDING`].
///
/// A batch takes milliseconds. On a machine with two cores the scheduler can leave
/// a resolver thread that just woke waiting behind the writer for most of a time
/// slice. In the benchmark those waits were the slowest 1 % of cached DNS answers. `sched_yield` lets a waiting thread run and returns at once when none
/// waits. Lowering the writer's nice value did not shorten the waits.
struct Pacer {
    enabled: bool,
    started: Instant,
    since_yield: Instant,
    events: u32,
}

impl Pacer {
    /// Creates a pacer that never yields unless `enabled`.
    fn new(enabled: bool) -> Self {
        let now = Instant::now();
        Pacer {
            enabled,
            started: now,
            since_yield: now,
            events: 0,
        }
    }

    /// Counts one insert and yields when the writer has run long enough.
    fn event_done(&mut self) {
        if !self.enabled {
            return;
        }
        self.events += 1;
        if self.events < EVENTS_PER_CLOCK_READ {
            return;
        }
        self.events = 0;
        let now = Instant::now();
        if now.duration_since(self.started) >= MAX_YIELDING {
            self.enabled = false;
            return;
        }
        if now.duration_since(self.since_yield) >= RUN_BEFORE_YIELD {
            std::thread::yield_now();
            self.since_yield = Instant::now();
        }
    }
}

/// Per-day counts gathered over one batch, written with one upsert per key.
#[derive(Default)]
struct DailyCounts {
    actions: HashMap<(i64, i64, Action), i64>,
    blocked_hosts: HashMap<(i64, i64, String), i64>,
    blocked_categories: HashMap<(i64, i64, i64), i64>,
}

/// The writer's cached id and stored keys of one tenant, so that repeated keys cost
/// no statement.
struct TenantCache {
    name: String,
    id: i64,
    /// The last hour stored in `hourly_presence` per user, device and app id.
    users: HashMap<String, i64>,
    devices: HashMap<String, i64>,
    apps: HashMap<String, i64>,
    /// The last hour stored per action, by its position in [`Action::ALL`].
    actions: [i64; Action::ALL.len()],
    /// The last slot stored in `host_slots` per host name.
    hosts: HashMap<String, i64>,
}

impl TenantCache {
    fn new(name: &str, id: i64) -> Self {
        TenantCache {
            name: name.to_owned(),
            id,
            users: HashMap::new(),
            devices: HashMap::new(),
            apps: HashMap::new(),
            actions: [i64::MIN; Action::ALL.len()],
            hosts: HashMap::new(),
        }
    }

    fn entries(&self) -> usize {
        self.users.len() + self.devices.len() + self.apps.len() + self.hosts.len()
    }
}

/// The ids the writer has looked up and the keys it has stored, so that inserts
/// do not query `tenants` and `categories`, or repeat presence rows, for every
/// event.
#[derive(Default)]
pub(super) struct WriterCache {
    tenants: Vec<TenantCache>,
    tenant_index: HashMap<String, usize>,
    category_ids: HashMap<String, i64>,
}

impl WriterCache {
    fn clear(&mut self) {
        self.tenants.clear();
        self.tenant_index.clear();
        self.category_ids.clear();
    }

    /// Returns the position in `tenants` of the tenant named `name`, looking its
    /// id up or adding it to `tenants` when not cached. `last` is the previous
    /// event's position: consecutive events mostly share a tenant.
    fn tenant(&mut self, conn: &Connection, name: &str, last: usize) -> rusqlite::Result<usize> {
        if self
            .tenants
            .get(last)
            .is_some_and(|tenant| tenant.name == name)
        {
            return Ok(last);
        }
        if let Some(index) = self.tenant_index.get(name) {
            return Ok(*index);
        }
        let mut ids = HashMap::new();
        let id = lookup_id(conn, &mut ids, "tenants", name)?;
        self.tenants.push(TenantCache::new(name, id));
        self.tenant_index
            .insert(name.to_owned(), self.tenants.len() - 1);
        Ok(self.tenants.len() - 1)
    }
}

/// Records that `value` is stored for `unit` (an hour or a host slot) and returns
/// whether it was not yet.
fn first_in_unit(known: &mut HashMap<String, i64>, value: &str, unit: i64) -> bool {
    match known.get_mut(value) {
        Some(stored) if *stored == unit => false,
        Some(stored) => {
            *stored = unit;
            true
        }
        None => {
            known.insert(value.to_owned(), unit);
            true
        }
    }
}

/// Inserts `events` in one transaction, offering the core to other threads now and
/// then when `yielding` (see [`Pacer`]).
pub(super) fn insert_batch(
    state: &mut WriterState,
    events: &[Event],
    yielding: bool,
) -> Result<(), ActivityError> {
    if events.is_empty() {
        return Ok(());
    }
    let result = insert_in_transaction(state, events, yielding);
    if result.is_err() {
        // Ids cached during the failed transaction may name rows that were rolled back.
        state.cache.clear();
    }
    result
}

fn insert_in_transaction(
    state: &mut WriterState,
    events: &[Event],
    yielding: bool,
) -> Result<(), ActivityError> {
    let WriterState { conn, cache } = state;
    if cache
        .tenants
        .iter()
        .map(TenantCache::entries)
        .sum::<usize>()
        > MAX_CACHED_PRESENCE
    {
        cache.clear();
    }
    let transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read inside the transaction, so that another store on the same file, which
    // writes only while it holds the write lock, never hands out the same ids.
    let mut event_id: i64 = transaction
        .prepare_cached("SELECT next_event_id FROM writer_state")?
        .query_row([], |row| row.get(0))?;
    let mut daily = DailyCounts::default();
    let mut packed = Vec::with_capacity(512);
    {
        let mut insert_event = transaction.prepare_cached(INSERT_EVENT)?;
        let mut insert_category = transaction.prepare_cached(INSERT_EVENT_CATEGORY)?;
        let mut insert_presence = transaction.prepare_cached(INSERT_PRESENCE)?;
        let mut upsert_host = transaction.prepare_cached(UPSERT_HOST)?;
        let mut insert_host_slot = transaction.prepare_cached(INSERT_HOST_SLOT)?;
        let mut last_tenant = usize::MAX;
        let mut pacer = Pacer::new(yielding);
        for original in events {
            pacer.event_done();
            let cleaned;
            let event = if original.is_clean() {
                original
            } else {
                let mut copy = original.clone();
                copy.sanitize();
                cleaned = copy;
                &cleaned
            };

            last_tenant = cache.tenant(&transaction, &event.tenant, last_tenant)?;
            let tenant = &mut cache.tenants[last_tenant];
            let tenant_id = tenant.id;
            let time_ms = unix_ms(event.time);
            let host = host_of(&event.request);
            payload::encode(event, &mut packed);
            insert_event.execute(params![
                tenant_id,
                time_ms,
                event_id,
                &host,
                &event.device,
                &event.user,
                &event.app,
                event.action.as_str(),
                packed,
            ])?;

            let hour = unix_hour(time_ms);
            for (kind, value, known) in [
                (PRESENCE_USER, &event.user, &mut tenant.users),
                (PRESENCE_DEVICE, &event.device, &mut tenant.devices),
                (PRESENCE_APP, &event.app, &mut tenant.apps),
            ] {
                if let Some(value) = value {
                    if first_in_unit(known, value, hour) {
                        insert_presence.execute(params![tenant_id, hour, kind, value])?;
                    }
                }
            }
            let action_hour = &mut tenant.actions[event.action as usize];
            if *action_hour != hour {
                insert_presence.execute(params![
                    tenant_id,
                    hour,
                    PRESENCE_ACTION,
                    event.action.as_str()
                ])?;
                *action_hour = hour;
            }

            let slot = host_slot(time_ms);
            if first_in_unit(&mut tenant.hosts, &host, slot) {
                let host_id: i64 =
                    upsert_host.query_row(params![tenant_id, &host, slot], |row| row.get(0))?;
                insert_host_slot.execute(params![slot, host_id])?;
            }
            let day = unix_day(time_ms);
            *daily
                .actions
                .entry((tenant_id, day, event.action))
                .or_default() += 1;
            let blocked = event.action == Action::Block;
            if blocked {
                *daily
                    .blocked_hosts
                    .entry((tenant_id, day, host.into_owned()))
                    .or_default() += 1;
            }
            for category in &event.categories {
                let category_id = lookup_id(
                    &transaction,
                    &mut cache.category_ids,
                    "categories",
                    category,
                )?;
                insert_category.execute(params![tenant_id, category_id, time_ms, event_id])?;
                if blocked {
                    *daily
                        .blocked_categories
                        .entry((tenant_id, day, category_id))
                        .or_default() += 1;
                }
            }
            event_id += 1;
        }
        write_daily_counts(&transaction, daily)?;
        transaction
            .prepare_cached("UPDATE writer_state SET next_event_id = ?1")?
            .execute([event_id])?;
    }
    transaction.commit()?;
    Ok(())
}

/// Returns the lowercase host name of `request`, borrowed when it is lowercase
/// already, as nearly every host is.
fn host_of(request: &str) -> Cow<'_, str> {
    let host = host_text(request);
    if host
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(host)
    } else {
        Cow::Owned(host.to_lowercase())
    }
}

fn write_daily_counts(conn: &Connection, daily: DailyCounts) -> rusqlite::Result<()> {
    let mut add_action = conn.prepare_cached(ADD_DAILY_ACTION)?;
    for ((tenant_id, day, action), count) in daily.actions {
        add_action.execute(params![tenant_id, day, action.as_str(), count])?;
    }
    let mut add_host = conn.prepare_cached(ADD_DAILY_HOST)?;
    for ((tenant_id, day, host), count) in daily.blocked_hosts {
        add_host.execute(params![tenant_id, day, host, count])?;
    }
    let mut add_category = conn.prepare_cached(ADD_DAILY_CATEGORY)?;
    for ((tenant_id, day, category_id), count) in daily.blocked_categories {
        add_category.execute(params![tenant_id, day, category_id, count])?;
    }
    Ok(())
}

/// Returns the id of `name` in the dictionary `table` (`tenants` or `categories`),
/// adding it if missing.
fn lookup_id(
    conn: &Connection,
    cache: &mut HashMap<String, i64>,
    table: &'static str,
    name: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(name) {
        return Ok(*id);
    }
    let existing = conn
        .prepare_cached(&format!("SELECT id FROM {table} WHERE name = ?1"))?
        .query_row([name], |row| row.get(0))
        .optional()?;
    let id = match existing {
        Some(id) => id,
        None => {
            conn.prepare_cached(&format!("INSERT INTO {table} (name) VALUES (?1)"))?
                .execute([name])?;
            conn.last_insert_rowid()
        }
    };
    cache.insert(name.to_owned(), id);
    Ok(id)
}

/// Deletes up to `max_rows` expired events and up to `max_rows` expired category
/// rows, plus the per-day counts of days before the cutoff day, in one transaction.
pub(super) fn delete_older_than(
    state: &mut WriterState,
    cutoff: OffsetDateTime,
    max_rows: usize,
) -> Result<u64, ActivityError> {
    let cutoff_ms = unix_ms(cutoff);
    let max_rows = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
    let transaction = state
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut deleted = 0u64;
    {
        // Deleting per tenant keeps every statement on an index range; a plain
        // `time_ms < ?` across tenants would scan the whole table.
        let tenant_ids: Vec<i64> = transaction
            .prepare_cached("SELECT id FROM tenants")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut delete_events = transaction.prepare_cached(
            "DELETE FROM events WHERE (tenant_id, time_ms, id) IN \
             (SELECT tenant_id, time_ms, id FROM events WHERE tenant_id = ?1 AND time_ms < ?2 \
              ORDER BY time_ms LIMIT ?3)",
        )?;
        for tenant_id in &tenant_ids {
            let budget = max_rows - deleted as i64;
            if budget <= 0 {
                break;
            }
            deleted += delete_events.execute(params![tenant_id, cutoff_ms, budget])? as u64;
        }

        let category_ids: Vec<i64> = transaction
            .prepare_cached("SELECT id FROM categories")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut delete_categories = transaction.prepare_cached(
            "DELETE FROM event_categories WHERE (tenant_id, category_id, time_ms, event_id) IN \
             (SELECT tenant_id, category_id, time_ms, event_id FROM event_categories \
              WHERE tenant_id = ?1 AND category_id = ?2 AND time_ms < ?3 ORDER BY time_ms LIMIT ?4)",
        )?;
        let mut deleted_categories = 0i64;
        'tenants: for tenant_id in &tenant_ids {
            for category_id in &category_ids {
                let budget = max_rows - deleted_categories;
                if budget <= 0 {
                    break 'tenants;
                }
                deleted_categories +=
                    delete_categories.execute(params![tenant_id, category_id, cutoff_ms, budget])?
                        as i64;
            }
        }
        deleted += deleted_categories as u64;

        let mut delete_presence = transaction.prepare_cached(
            "DELETE FROM hourly_presence WHERE (tenant_id, hour, kind, value) IN \
             (SELECT tenant_id, hour, kind, value FROM hourly_presence \
              WHERE tenant_id = ?1 AND hour < ?2 ORDER BY hour LIMIT ?3)",
        )?;
        let mut deleted_presence = 0i64;
        for tenant_id in &tenant_ids {
            let budget = max_rows - deleted_presence;
            if budget <= 0 {
                break;
            }
            deleted_presence +=
                delete_presence.execute(params![tenant_id, unix_hour(cutoff_ms), budget])? as i64;
        }
        deleted += deleted_presence as u64;

        deleted += delete_host_slots(&transaction, host_slot(cutoff_ms), max_rows)?;

        let cutoff_day = unix_day(cutoff_ms);
        for table in [
            "daily_actions",
            "daily_blocked_hosts",
            "daily_blocked_categories",
        ] {
            transaction.execute(&format!("DELETE FROM {table} WHERE day < ?1"), [cutoff_day])?;
        }
    }
    transaction.commit()?;
    Ok(deleted)
}

/// Deletes up to `max_rows` `host_slots` rows before `cutoff_slot`, and up to
/// `max_rows` hosts last seen before it, returning the rows deleted.
///
/// A deleted host that is seen again gets a new id: the writer's cache holds the
/// slot in which it stored a host, which is before the cutoff, so the next event of
/// that host upserts it again.
fn delete_host_slots(conn: &Connection, cutoff_slot: i64, max_rows: i64) -> rusqlite::Result<u64> {
    let slots = conn
        .prepare_cached(
            "DELETE FROM host_slots WHERE (slot, host_id) IN \
             (SELECT slot, host_id FROM host_slots WHERE slot < ?1 ORDER BY slot LIMIT ?2)",
        )?
        .execute(params![cutoff_slot, max_rows])?;
    // hosts is small (one row per distinct name), so this scan is cheap.
    let hosts = conn
        .prepare_cached(
            "DELETE FROM hosts WHERE id IN (SELECT id FROM hosts WHERE last_slot < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff_slot, max_rows])?;
    Ok((slots + hosts) as u64)
}
