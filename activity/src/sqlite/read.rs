//! Queries: pages of events, per-day totals, top lists and a device's recent blocks.

use std::str::FromStr;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use time::{Date, Duration, OffsetDateTime};

use super::payload;
#[cfg(test)]
use super::write::unix_day;
use super::write::{
    host_slot, unix_ms, MS_PER_HOST_SLOT, MS_PER_HOUR, PRESENCE_ACTION, PRESENCE_APP,
    PRESENCE_DEVICE, PRESENCE_USER,
};
use crate::error::ActivityError;
use crate::event::{Action, Event};
use crate::query::{Cursor, DailyTotal, Page, Query, TopEntry, MAX_PAGE_SIZE};

/// Columns read into an [`Event`] by [`event_from_row`], in its order.
const EVENT_COLUMNS: &str = "e.id, e.time_ms, e.user, e.device, e.app, e.action, e.payload";

/// Julian day number of 1970-01-01, to turn Unix days into dates.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// How far back the device's activity list reaches.
const DEVICE_RECENT_DAYS: i64 = 30;

/// Most hosts a domain filter probes the slots of; beyond this it scans the range.
/// Probing 32 hosts in each of the 4 464 slots of 31 days costs an estimated 40 to
/// 70 ms on 10 million events (docs/benchmarks.md).
const MAX_WINDOW_HOSTS: usize = 32;

/// The tenant's hosts that contain a text; instr avoids LIKE's wildcard characters.
const FIND_HOSTS: &str =
    "SELECT id FROM hosts WHERE tenant_id = ?1 AND instr(name, ?2) > 0 LIMIT ?3";
/// The last slot in which a host was seen.
const HOST_LAST_SLOT: &str = "SELECT last_slot FROM hosts WHERE id = ?1";

/// A statement with its parameters.
struct Statement {
    sql: String,
    params: Vec<Value>,
}

/// The access path of a page query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// Walk `events` itself, whose key is the page order.
    Time,
    /// Walk this index of `events` in page order.
    Index(&'static str),
    /// Walk `event_categories` for the category and join each row to its event.
    Categories,
    /// Probe `hourly_presence` for the hours of this user, device, app or action
    /// (kind), newest first, and walk `events` within each of them.
    Presence(i64),
}

/// Picks the driver for `query`: the most selective filter present leads.
fn driver(query: &Query) -> Driver {
    let alert = matches!(query.action, Some(Action::Block | Action::Warn));
    if query.device.is_some() && alert {
        Driver::Index("events_by_device_alert")
    } else if query.device.is_some() {
        Driver::Presence(PRESENCE_DEVICE)
    } else if query.user.is_some() {
        Driver::Presence(PRESENCE_USER)
    } else if query.category.is_some() {
        Driver::Categories
    } else if query.app.is_some() {
        Driver::Presence(PRESENCE_APP)
    } else if query.action.is_some() && query.domain.is_none() {
        // With a domain filter, the slots of the matching hosts are the narrower
        // windows, and the action is checked on the rows in them.
        Driver::Presence(PRESENCE_ACTION)
    } else {
        Driver::Time
    }
}

/// Ids of the tenant and category a query names.
struct Ids {
    tenant: i64,
    category: i64,
}

pub(super) fn query(conn: &Connection, query: &Query) -> Result<Page, ActivityError> {
    let Some(ids) = resolve_ids(conn, query)? else {
        return Ok(Page {
            events: Vec::new(),
            next_cursor: None,
        });
    };
    let page_size = query.page_size();
    // One row beyond the page shows whether another page follows.
    let wanted = page_size + 1;
    let mut rows = Vec::with_capacity(wanted);

    match time_windows(conn, query, &ids)? {
        Some(windows) => {
            for (start, end) in windows {
                if rows.len() >= wanted {
                    break;
                }
                let statement =
                    build_statement(query, &ids, Some((start, end)), wanted - rows.len());
                read_rows(conn, &statement, &query.tenant, &mut rows)?;
            }
        }
        None => {
            let statement = build_statement(query, &ids, None, wanted);
            read_rows(conn, &statement, &query.tenant, &mut rows)?;
        }
    }

    let more = rows.len() > page_size;
    rows.truncate(page_size);
    let next_cursor = if more {
        rows.last()
            .map(|(id, time_ms, _)| Cursor::after(*time_ms, *id))
    } else {
        None
    };
    Ok(Page {
        events: rows.into_iter().map(|(_, _, event)| event).collect(),
        next_cursor,
    })
}

fn read_rows(
    conn: &Connection,
    statement: &Statement,
    tenant: &str,
    rows: &mut Vec<(i64, i64, Event)>,
) -> Result<(), ActivityError> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    let mut result = prepared.query(params_from_iter(statement.params.iter()))?;
    while let Some(row) = result.next()? {
        rows.push(event_from_row(row, tenant)?);
    }
    Ok(())
}

/// A lazy sequence of time windows (start and end in milliseconds), newest first.
type Windows<'q> = Box<dyn Iterator<Item = (i64, i64)> + 'q>;

/// Returns the time windows a query must scan, newest first, or none when one
/// statement over the whole range serves it.
///
/// A user, device or app filter scans the hours in which that id has events
/// (`hourly_presence`). A domain filter on the time or action index scans the slots
/// in which a host containing the text has events (`host_slots`), unless the text
/// matches too many hosts; see [`host_windows`].
fn time_windows<'q>(
    conn: &'q Connection,
    query: &'q Query,
    ids: &Ids,
) -> Result<Option<Windows<'q>>, ActivityError> {
    let tenant = ids.tenant;
    match driver(query) {
        Driver::Presence(kind) => {
            let value = match kind {
                PRESENCE_DEVICE => query.device.clone(),
                PRESENCE_USER => query.user.clone(),
                PRESENCE_ACTION => query.action.map(|action| action.as_str().to_owned()),
                _ => query.app.clone(),
            }
            .unwrap_or_default();
            let windows = probed_windows(
                conn,
                query,
                "hourly_presence",
                "hour",
                MS_PER_HOUR,
                tenant,
                move |hour| {
                    conn.prepare_cached(
                    "SELECT 1 FROM hourly_presence WHERE tenant_id = ?1 AND hour = ?2 AND kind = ?3 AND value = ?4",
                )?
                .exists(params![tenant, hour, kind, value])
                },
            )?;
            Ok(Some(windows))
        }
        Driver::Time if query.domain.is_some() => host_windows(conn, query, tenant),
        _ => Ok(None),
    }
}

/// Returns the slots in which a host containing the query's domain text has events,
/// newest first, or none when more than [`MAX_WINDOW_HOSTS`] hosts match.
///
/// Each slot costs one `host_slots` probe for all matching hosts, and the probing stops
/// once the page is full. Text that matches many hosts nearly always matches many
/// events, so one statement over the whole range fills a page quickly there.
///
/// NOTE: text that matches more than [`MAX_WINDOW_HOSTS`] hosts, all of them rare,
/// still scans the whole range: about 1 s on 10 million events.
fn host_windows<'q>(
    conn: &'q Connection,
    query: &Query,
    tenant: i64,
) -> Result<Option<Windows<'q>>, ActivityError> {
    let text = domain_text(query);
    let hosts: Vec<i64> = conn
        .prepare_cached(FIND_HOSTS)?
        .query_map(params![tenant, text, MAX_WINDOW_HOSTS as i64 + 1], |row| {
            row.get(0)
        })?
        .collect::<Result<_, _>>()?;
    if hosts.len() > MAX_WINDOW_HOSTS {
        return Ok(None);
    }
    let mut last_seen = None;
    for host_id in &hosts {
        let last_slot: i64 = conn
            .prepare_cached(HOST_LAST_SLOT)?
            .query_row([host_id], |row| row.get(0))?;
        last_seen = last_seen.max(Some(last_slot));
    }
    let Some(last_seen) = last_seen else {
        return Ok(Some(Box::new(std::iter::empty())));
    };
    let stored_first: Option<i64> = conn
        .prepare_cached("SELECT min(slot) FROM host_slots")?
        .query_row([], |row| row.get(0))?;
    let Some(stored_first) = stored_first else {
        return Ok(Some(Box::new(std::iter::empty())));
    };

    let from_ms = unix_ms(query.from);
    let mut to_ms = unix_ms(query.to);
    if let Some(cursor) = query.cursor {
        // The cursor's own millisecond may contain more rows with smaller ids.
        to_ms = to_ms.min(cursor.time_ms + 1);
    }
    let first = host_slot(from_ms).max(stored_first);
    let last = host_slot(to_ms - 1).min(last_seen);
    // One statement per slot probes every host; the ids are integers from the
    // store, written into the text so that the statement takes any number of them.
    let mut probe = conn.prepare(&host_slot_probe(&hosts))?;
    let windows = (first..=last).rev().filter_map(move |slot| {
        let found = probe.exists([slot]);
        // A failed probe scans the slot rather than hiding its rows.
        match found {
            Ok(false) => None,
            Ok(true) | Err(_) => Some((
                (slot * MS_PER_HOST_SLOT).max(from_ms),
                ((slot + 1) * MS_PER_HOST_SLOT).min(to_ms),
            )),
        }
    });
    Ok(Some(Box::new(windows)))
}

/// Builds the statement that tells whether any of `host_ids` has events in a slot.
fn host_slot_probe(host_ids: &[i64]) -> String {
    let ids: Vec<String> = host_ids.iter().map(i64::to_string).collect();
    format!(
        "SELECT 1 FROM host_slots WHERE slot = ?1 AND host_id IN ({})",
        ids.join(", ")
    )
}

/// The domain filter's text as hosts are stored: trimmed and in lowercase.
fn domain_text(query: &Query) -> String {
    query
        .domain
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

/// Returns the windows of `unit_ms` (an hour or a day) within the query's range
/// and cursor for which `probe` finds a row, newest first.
///
/// The probes stop at the oldest unit stored in `table`, so a range reaching far
/// into the past costs nothing extra.
fn probed_windows<'q>(
    conn: &'q Connection,
    query: &Query,
    table: &'static str,
    column: &'static str,
    unit_ms: i64,
    tenant: i64,
    probe: impl Fn(i64) -> rusqlite::Result<bool> + 'q,
) -> Result<Windows<'q>, ActivityError> {
    // Two statements, because SQLite computes a lone min() or max() from the index
    // but scans every row for both in one statement.
    let stored_first: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT min({column}) FROM {table} WHERE tenant_id = ?1"
        ))?
        .query_row([tenant], |row| row.get(0))?;
    let stored_last: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT max({column}) FROM {table} WHERE tenant_id = ?1"
        ))?
        .query_row([tenant], |row| row.get(0))?;
    let (Some(stored_first), Some(stored_last)) = (stored_first, stored_last) else {
        return Ok(Box::new(std::iter::empty()));
    };

    let from_ms = unix_ms(query.from);
    let mut to_ms = unix_ms(query.to);
    if let Some(cursor) = query.cursor {
        // The cursor's own millisecond may contain more rows with smaller ids.
        to_ms = to_ms.min(cursor.time_ms + 1);
    }
    let first = from_ms.div_euclid(unit_ms).max(stored_first);
    let last = (to_ms - 1).div_euclid(unit_ms).min(stored_last);

    let windows = (first..=last).rev().filter_map(move |unit| {
        // A failed probe scans the unit rather than hiding its rows.
        match probe(unit) {
            Ok(false) => None,
            Ok(true) | Err(_) => Some((
                (unit * unit_ms).max(from_ms),
                ((unit + 1) * unit_ms).min(to_ms),
            )),
        }
    });
    Ok(Box::new(windows))
}

pub(super) fn query_plan(conn: &Connection, query: &Query) -> Result<Vec<String>, ActivityError> {
    // The plan is the same whether or not the tenant exists, but building the
    // statement needs ids, so stand in 0 when a name is unknown.
    let ids = Ids {
        tenant: tenant_id(conn, &query.tenant)?.unwrap_or(0),
        category: 0,
    };
    let window = match driver(query) {
        Driver::Presence(_) => Some((unix_ms(query.from), unix_ms(query.to))),
        Driver::Time if query.domain.is_some() => Some((unix_ms(query.from), unix_ms(query.to))),
        _ => None,
    };
    let statement = build_statement(query, &ids, window, query.page_size() + 1);
    let mut plan = explain(conn, &statement)?;
    if window.is_some() {
        let probe = match driver(query) {
            Driver::Presence(_) => Statement {
                sql: "SELECT 1 FROM hourly_presence WHERE tenant_id = ?1 AND hour = ?2 AND kind = ?3 AND value = ?4"
                    .to_owned(),
                params: vec![Value::Integer(0), Value::Integer(0), Value::Integer(0), Value::Text(String::new())],
            },
            _ => {
                plan.extend(explain(
                    conn,
                    &Statement {
                        sql: FIND_HOSTS.to_owned(),
                        params: vec![Value::Integer(0), Value::Text(String::new()), Value::Integer(1)],
                    },
                )?);
                Statement {
                    sql: host_slot_probe(&[1, 2]),
                    params: vec![Value::Integer(0)],
                }
            }
        };
        plan.extend(explain(conn, &probe)?);
    }
    Ok(plan)
}

fn explain(conn: &Connection, statement: &Statement) -> Result<Vec<String>, ActivityError> {
    let mut prepared = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql))?;
    let lines = prepared
        .query_map(params_from_iter(statement.params.iter()), |row| {
            row.get::<_, String>(3)
        })?
        .collect::<Result<_, _>>()?;
    Ok(lines)
}

/// Looks up the ids the query names, or returns none when the tenant or category
/// has never been stored, so nothing can match.
fn resolve_ids(conn: &Connection, query: &Query) -> Result<Option<Ids>, ActivityError> {
    let Some(tenant) = tenant_id(conn, &query.tenant)? else {
        return Ok(None);
    };
    let category = match &query.category {
        Some(name) => match category_id(conn, &name.to_lowercase())? {
            Some(id) => id,
            None => return Ok(None),
        },
        None => 0,
    };
    Ok(Some(Ids { tenant, category }))
}

/// Builds the SQL for `query`, limited to `window` (a time range in milliseconds)
/// when given, returning at most `limit` rows.
///
/// A statement on the device index names it instead of leaving the choice to
/// SQLite, whose planner has no statistics on a fresh store and may pick another
/// access path. The key of `events` and of every index used ends in `time_ms` and
/// the event id, so rows come out in page order without sorting and the walk
/// stops after one page.
/// Pages continue with a keyset condition on `(time_ms, id)` rather than an OFFSET.
fn build_statement(
    query: &Query,
    ids: &Ids,
    window: Option<(i64, i64)>,
    limit: usize,
) -> Statement {
    let driver = driver(query);
    let mut statement = Statement {
        sql: String::new(),
        params: vec![Value::Integer(ids.tenant)],
    };
    let (time_column, id_column) = match driver {
        Driver::Categories => {
            // CROSS JOIN keeps event_categories as the outer loop.
            statement.sql = format!(
                "SELECT {EVENT_COLUMNS} FROM event_categories c CROSS JOIN events e \
                 ON e.tenant_id = c.tenant_id AND e.time_ms = c.time_ms AND e.id = c.event_id \
                 WHERE c.tenant_id = ?1"
            );
            statement.push(" AND c.category_id = #", Value::Integer(ids.category));
            ("c.time_ms", "c.event_id")
        }
        Driver::Index(index) => {
            statement.sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events e INDEXED BY {index} WHERE e.tenant_id = ?1"
            );
            ("e.time_ms", "e.id")
        }
        Driver::Time | Driver::Presence(_) => {
            statement.sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.tenant_id = ?1");
            ("e.time_ms", "e.id")
        }
    };

    let (from_ms, to_ms) = window.unwrap_or((unix_ms(query.from), unix_ms(query.to)));
    statement.push(&format!(" AND {time_column} >= #"), Value::Integer(from_ms));
    statement.push(&format!(" AND {time_column} < #"), Value::Integer(to_ms));
    if let Some(cursor) = query.cursor {
        let time_index = statement.push(
            &format!(" AND {time_column} <= #"),
            Value::Integer(cursor.time_ms),
        );
        statement.push(
            &format!(" AND ({time_column} < ?{time_index} OR {id_column} < #)"),
            Value::Integer(cursor.id),
        );
    }
    if driver == Driver::Index("events_by_device_alert") {
        // Repeats the partial index's condition so SQLite accepts the index.
        statement.sql.push_str(" AND e.action IN ('block', 'warn')");
    }
    if let Some(user) = &query.user {
        statement.push(" AND e.user = #", Value::Text(user.clone()));
    }
    if let Some(device) = &query.device {
        statement.push(" AND e.device = #", Value::Text(device.clone()));
    }
    if let Some(action) = query.action {
        statement.push(" AND e.action = #", Value::Text(action.as_str().to_owned()));
    }
    if let Some(app) = &query.app {
        statement.push(" AND e.app = #", Value::Text(app.clone()));
    }
    if query.category.is_some() && driver != Driver::Categories {
        statement.push(
            " AND EXISTS (SELECT 1 FROM event_categories c WHERE c.tenant_id = ?1 AND c.category_id = # \
             AND c.time_ms = e.time_ms AND c.event_id = e.id)",
            Value::Integer(ids.category),
        );
    }
    if let Some(domain) = &query.domain {
        // Hosts are stored in lowercase; instr avoids LIKE's wildcard characters.
        statement.push(
            " AND instr(e.host, #) > 0",
            Value::Text(domain.trim().to_lowercase()),
        );
    }
    statement.push(
        &format!(" ORDER BY {time_column} DESC, {id_column} DESC LIMIT #"),
        Value::Integer(limit as i64),
    );
    statement
}

impl Statement {
    /// Appends `condition` with its `#` replaced by a new parameter holding `value`,
    /// and returns that parameter's number.
    fn push(&mut self, condition: &str, value: Value) -> usize {
        self.params.push(value);
        let number = self.params.len();
        self.sql
            .push_str(&condition.replace('#', &format!("?{number}")));
        number
    }
}

pub(super) fn daily_totals(
    conn: &Connection,
    tenant: &str,
    from: Date,
    to: Date,
) -> Result<Vec<DailyTotal>, ActivityError> {
    let Some(tenant_id) = tenant_id(conn, tenant)? else {
        return Ok(Vec::new());
    };
    let mut statement = conn.prepare_cached(
        "SELECT day, action, count FROM daily_actions \
         WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY day, action",
    )?;
    let mut rows = statement.query(params![tenant_id, unix_day_of(from), unix_day_of(to)])?;
    let mut totals = Vec::new();
    while let Some(row) = rows.next()? {
        let day: i64 = row.get(0)?;
        let action: String = row.get(1)?;
        let count: i64 = row.get(2)?;
        totals.push(DailyTotal {
            day: date_of_unix_day(day)?,
            action: parse_column(&action, "action", day)?,
            count: count.max(0) as u64,
        });
    }
    Ok(totals)
}

pub(super) fn top_blocked_domains(
    conn: &Connection,
    tenant: &str,
    from: Date,
    to: Date,
    limit: usize,
) -> Result<Vec<TopEntry>, ActivityError> {
    top_entries(
        conn,
        tenant,
        "SELECT host, sum(count) AS total FROM daily_blocked_hosts \
         WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3 \
         GROUP BY host ORDER BY total DESC, host LIMIT ?4",
        from,
        to,
        limit,
    )
}

pub(super) fn top_blocked_categories(
    conn: &Connection,
    tenant: &str,
    from: Date,
    to: Date,
    limit: usize,
) -> Result<Vec<TopEntry>, ActivityError> {
    top_entries(
        conn,
        tenant,
        "SELECT c.name, sum(d.count) AS total FROM daily_blocked_categories d \
         JOIN categories c ON c.id = d.category_id \
         WHERE d.tenant_id = ?1 AND d.day BETWEEN ?2 AND ?3 \
         GROUP BY c.name ORDER BY total DESC, c.name LIMIT ?4",
        from,
        to,
        limit,
    )
}

fn top_entries(
    conn: &Connection,
    tenant: &str,
    sql: &str,
    from: Date,
    to: Date,
    limit: usize,
) -> Result<Vec<TopEntry>, ActivityError> {
    let Some(tenant_id) = tenant_id(conn, tenant)? else {
        return Ok(Vec::new());
    };
    let limit = limit.clamp(1, MAX_PAGE_SIZE) as i64;
    let mut statement = conn.prepare_cached(sql)?;
    let entries = statement
        .query_map(
            params![tenant_id, unix_day_of(from), unix_day_of(to), limit],
            |row| {
                Ok(TopEntry {
                    name: row.get(0)?,
                    count: row.get::<_, i64>(1)?.max(0) as u64,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(entries)
}

/// Builds the SQL of [`device_recent`]. Its parameters are the tenant id, the
/// device, the user, the window's first and last millisecond and the limit.
///
/// The partial index `events_by_device_alert` leads, named so that SQLite uses it
/// even without statistics. The index has no user column, so the user is checked
/// on each block or warn row of the device that the walk reaches.
fn device_recent_sql() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events e INDEXED BY events_by_device_alert \
         WHERE e.tenant_id = ?1 AND e.device = ?2 AND e.user = ?3 \
         AND e.time_ms >= ?4 AND e.time_ms <= ?5 \
         AND e.action IN ('block', 'warn') ORDER BY e.time_ms DESC, e.id DESC LIMIT ?6"
    )
}

pub(super) fn device_recent(
    conn: &Connection,
    tenant: &str,
    device: &str,
    user: &str,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Vec<Event>, ActivityError> {
    let Some(tenant_id) = tenant_id(conn, tenant)? else {
        return Ok(Vec::new());
    };
    let from = now - Duration::days(DEVICE_RECENT_DAYS);
    let mut statement = conn.prepare_cached(&device_recent_sql())?;
    let mut rows = statement.query(params![
        tenant_id,
        device,
        user,
        unix_ms(from),
        unix_ms(now),
        limit.clamp(1, MAX_PAGE_SIZE) as i64
    ])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(event_from_row(row, tenant)?.2);
    }
    Ok(events)
}

fn tenant_id(conn: &Connection, tenant: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM tenants WHERE name = ?1")?
        .query_row([tenant], |row| row.get(0))
        .optional()
}

fn category_id(conn: &Connection, category: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM categories WHERE name = ?1")?
        .query_row([category], |row| row.get(0))
        .optional()
}

/// Reads one row selected with [`EVENT_COLUMNS`] into `(id, time_ms, event)`.
fn event_from_row(row: &Row<'_>, tenant: &str) -> Result<(i64, i64, Event), ActivityError> {
    let id: i64 = row.get(0)?;
    let time_ms: i64 = row.get(1)?;
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ms) * 1_000_000)
        .map_err(|_| invalid(id, "time_ms", time_ms.to_string()))?;
    let packed = row
        .get_ref(6)?
        .as_blob()
        .map_err(|_| invalid(id, "payload", "not a blob".to_owned()))?;
    let payload = payload::decode(packed)
        .ok_or_else(|| invalid(id, "payload", format!("{} malformed bytes", packed.len())))?;

    let event = Event {
        time,
        tenant: tenant.to_owned(),
        user: row.get(2)?,
        device: row.get(3)?,
        discovery: payload.discovery,
        app: row.get(4)?,
        app_class: payload.app_class,
        client_ip: payload.client_ip,
        device_ip: payload.device_ip,
        via: payload.via,
        request: payload.request,
        categories: payload.categories,
        policy: payload.policy,
        rule: payload.rule,
        action: parse_column::<Action>(&row.get::<_, String>(5)?, "action", id)?,
        reason: payload.reason,
        request_id: payload.request_id,
    };
    Ok((id, time_ms, event))
}

fn parse_column<T: FromStr>(text: &str, column: &'static str, id: i64) -> Result<T, ActivityError> {
    text.parse()
        .map_err(|_| invalid(id, column, text.to_owned()))
}

fn invalid(id: i64, column: &'static str, value: String) -> ActivityError {
    ActivityError::InvalidRow { id, column, value }
}

fn unix_day_of(date: Date) -> i64 {
    i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
}

fn date_of_unix_day(day: i64) -> Result<Date, ActivityError> {
    i32::try_from(day + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|julian| Date::from_julian_day(julian).ok())
        .ok_or_else(|| invalid(0, "day", day.to_string()))
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn unix_days_convert_to_dates_and_back() {
        assert_eq!(unix_day_of(date!(1970 - 01 - 01)), 0);
        assert_eq!(unix_day_of(date!(2026 - 12 - 04)), 20_791);
        assert_eq!(date_of_unix_day(20_791).unwrap(), date!(2026 - 12 - 04));
        assert_eq!(
            unix_day(unix_ms(date!(2026 - 12 - 04).midnight().assume_utc()) + 1),
            20_791
        );
    }

    #[test]
    fn device_recent_walks_alert_index_without_sorting() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, 0).unwrap();
        let statement = Statement {
            sql: device_recent_sql(),
            params: vec![
                Value::Integer(1),
                Value::Text("DEV-1".to_owned()),
                Value::Text("alice@example.com".to_owned()),
                Value::Integer(0),
                Value::Integer(1),
                Value::Integer(500),
            ],
        };

        let plan = explain(&conn, &statement).unwrap().join("\n");

        assert!(
            plan.contains(
                "SEARCH e USING INDEX events_by_device_alert \
                 (tenant_id=? AND device=? AND time_ms>? AND time_ms<?)"
            ),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        assert!(!plan.contains("SCAN "), "{plan}");
    }
}
