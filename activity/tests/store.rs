#![allow(clippy::unwrap_used)]
//! The SQLite store against real files: writes, queries, plans, retention and bad files.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use swg_activity::event::{MAX_REASON_BYTES, MAX_REQUEST_BYTES};
use swg_activity::sqlite::SCHEMA_VERSION;
use swg_activity::{
    text_from_bytes, write_csv, Action, ActivityError, ActivityStore, AppClass, Discovery, Event,
    Query, SqliteStore, Via,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const BASE: OffsetDateTime = datetime!(2026-11-20 12:00 UTC);

fn event(tenant: &str, minutes: i64, host: &str, action: Action) -> Event {
    let mut event = Event::new(tenant, Via::Dns, host, action);
    event.time = BASE + Duration::minutes(minutes);
    event.user = Some("alice@example.com".to_owned());
    event.device = Some("DEV-1".to_owned());
    event.discovery = Discovery::Token;
    event.app = Some("com.apple.mobilesafari".to_owned());
    event.app_class = AppClass::Browser;
    event.client_ip = Some("203.0.113.7".parse().unwrap());
    event.device_ip = Some("10.1.2.3".parse().unwrap());
    event
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("activity.db")).unwrap()
}

fn day_range() -> Query {
    Query::new("acme", BASE - Duration::days(1), BASE + Duration::days(1))
}

#[test]
fn stored_event_reads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut original = event(
        "acme",
        0,
        "https://Shop.Example.com/cart?id=1",
        Action::Warn,
    );
    original.via = Via::Proxy;
    original.categories = vec!["shopping".to_owned(), "newly-seen".to_owned()];
    original.policy = Some("default".to_owned());
    original.rule = Some("r-17".to_owned());
    original.reason = "category shopping".to_owned();
    original.device_ip = Some("fd00::5".parse::<IpAddr>().unwrap());

    store.insert_batch(std::slice::from_ref(&original)).unwrap();
    let page = store.query(&day_range()).unwrap();

    assert_eq!(page.events, vec![original]);
    assert_eq!(page.next_cursor, None);
}

#[test]
fn pages_are_newest_first_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Several events share one millisecond, so the cursor must break ties by id.
    let events: Vec<Event> = (0..25)
        .map(|i| event("acme", i / 3, &format!("h{i}.example"), Action::Allow))
        .collect();
    store.insert_batch(&events).unwrap();

    let mut query = day_range();
    query.limit = 4;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.query(&query).unwrap();
        pages += 1;
        seen.extend(page.events.iter().map(|e| e.request.clone()));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor.to_string().parse().unwrap()),
            None => break,
        }
    }

    let expected: Vec<String> = (0..25).rev().map(|i| format!("h{i}.example")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 7);
}

#[test]
fn filters_select_matching_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut events = Vec::new();
    for i in 0..40 {
        let action = if i % 4 == 0 {
            Action::Block
        } else {
            Action::Allow
        };
        let mut e = event(
            "acme",
            i,
            &format!("https://www{}.Example.org/p", i % 5),
            action,
        );
        e.user = Some(format!("user{}", i % 3));
        e.device = Some(format!("dev{}", i % 2));
        e.app = Some(
            if i % 5 == 0 {
                "com.evil.app"
            } else {
                "com.apple.mobilesafari"
            }
            .to_owned(),
        );
        if i % 10 == 0 {
            e.categories = vec!["Phishing".to_owned()];
        }
        events.push(e);
    }
    events.push(event("other", 1, "www1.example.org", Action::Block));
    store.insert_batch(&events).unwrap();

    let count = |edit: &dyn Fn(&mut Query)| {
        let mut query = day_range();
        query.limit = 1000;
        edit(&mut query);
        store.query(&query).unwrap().events.len()
    };
    assert_eq!(count(&|_| {}), 40);
    assert_eq!(count(&|q| q.user = Some("user1".to_owned())), 13);
    assert_eq!(count(&|q| q.device = Some("dev0".to_owned())), 20);
    assert_eq!(count(&|q| q.action = Some(Action::Block)), 10);
    assert_eq!(count(&|q| q.app = Some("com.evil.app".to_owned())), 8);
    assert_eq!(count(&|q| q.category = Some("phishing".to_owned())), 4);
    assert_eq!(count(&|q| q.category = Some("gambling".to_owned())), 0);
    assert_eq!(count(&|q| q.domain = Some("WWW1.example".to_owned())), 8);
    assert_eq!(count(&|q| q.domain = Some("%".to_owned())), 0);
    assert_eq!(
        count(&|q| {
            q.device = Some("dev0".to_owned());
            q.action = Some(Action::Block);
            q.category = Some("phishing".to_owned());
        }),
        2
    );
    assert_eq!(count(&|q| q.to = BASE + Duration::minutes(10)), 10);
    assert_eq!(count(&|q| q.tenant = "nobody".to_owned()), 0);
}

#[test]
fn query_plans_use_indexes_without_table_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .insert_batch(&[event("acme", 0, "a.example", Action::Block)])
        .unwrap();

    let mut cases: Vec<(Query, &str)> = Vec::new();
    cases.push((day_range(), "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.cursor = Some(swg_activity::Cursor::after(1, 1));
    cases.push((q, "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.user = Some("alice@example.com".to_owned());
    cases.push((q, "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.device = Some("DEV-1".to_owned());
    q.cursor = Some(swg_activity::Cursor::after(1, 1));
    cases.push((q, "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.action = Some(Action::Block);
    cases.push((q, "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.action = Some(Action::Block);
    q.domain = Some("example".to_owned());
    cases.push((q, "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.app = Some("com.apple.mobilesafari".to_owned());
    cases.push((q, "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.domain = Some("example".to_owned());
    cases.push((q, "SEARCH e USING PRIMARY KEY"));
    let mut q = day_range();
    q.category = Some("phishing".to_owned());
    cases.push((q, "SEARCH c USING PRIMARY KEY"));
    let mut q = day_range();
    q.category = Some("phishing".to_owned());
    q.device = Some("DEV-1".to_owned());
    q.action = Some(Action::Block);
    cases.push((q, "events_by_device_alert"));
    let mut q = day_range();
    q.app = Some("com.apple.mobilesafari".to_owned());
    q.action = Some(Action::Block);
    q.domain = Some("example".to_owned());
    cases.push((q, "SEARCH e USING PRIMARY KEY"));

    let mut q = day_range();
    q.domain = Some("a.exa".to_owned());
    let plan = store.query_plan(&q).unwrap().join("\n");
    for step in [
        "SEARCH hosts USING COVERING INDEX sqlite_autoindex_hosts_1 (tenant_id=?)",
        "SEARCH host_slots USING PRIMARY KEY (slot=? AND host_id=?)",
    ] {
        assert!(plan.contains(step), "domain plan lacks {step:?}:\n{plan}");
    }

    for (query, index) in cases {
        let lines = store.query_plan(&query).unwrap();
        let plan = lines.join("\n");
        assert!(
            lines[0].contains(index),
            "plan for {query:?} is not driven by {index}:\n{plan}"
        );
        assert!(
            !plan.contains("SCAN "),
            "plan for {query:?} scans a table:\n{plan}"
        );
        assert!(
            !plan.contains("TEMP B-TREE"),
            "plan for {query:?} sorts:\n{plan}"
        );
    }
}

#[test]
fn daily_totals_and_top_lists_count_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut events = Vec::new();
    for (minutes, host, action, category) in [
        (0, "bad.example", Action::Block, "malware"),
        (1, "bad.example", Action::Block, "malware"),
        (2, "worse.example", Action::Block, "phishing"),
        (3, "ok.example", Action::Allow, "news"),
        (24 * 60, "bad.example", Action::Block, "malware"),
        (24 * 60 + 1, "warn.example", Action::Warn, "gambling"),
    ] {
        let mut e = event("acme", minutes, host, action);
        e.categories = vec![category.to_owned()];
        events.push(e);
    }
    // Two batches, so the per-day counts must add up across upserts.
    store.insert_batch(&events[..3]).unwrap();
    store.insert_batch(&events[3..]).unwrap();

    let today = BASE.date();
    let tomorrow = today.next_day().unwrap();
    let totals = store.daily_totals("acme", today, tomorrow).unwrap();
    let summary: Vec<(String, &str, u64)> = totals
        .iter()
        .map(|t| (t.day.to_string(), t.action.as_str(), t.count))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("2026-11-20".to_owned(), "allow", 1),
            ("2026-11-20".to_owned(), "block", 3),
            ("2026-11-21".to_owned(), "block", 1),
            ("2026-11-21".to_owned(), "warn", 1),
        ]
    );

    let domains = store
        .top_blocked_domains("acme", today, tomorrow, 10)
        .unwrap();
    let domains: Vec<(&str, u64)> = domains.iter().map(|e| (e.name.as_str(), e.count)).collect();
    assert_eq!(domains, vec![("bad.example", 3), ("worse.example", 1)]);
    let only_today = store.top_blocked_domains("acme", today, today, 1).unwrap();
    assert_eq!(only_today[0].name, "bad.example");
    assert_eq!(only_today[0].count, 2);

    let categories = store
        .top_blocked_categories("acme", today, tomorrow, 10)
        .unwrap();
    let categories: Vec<(&str, u64)> = categories
        .iter()
        .map(|e| (e.name.as_str(), e.count))
        .collect();
    assert_eq!(categories, vec![("malware", 3), ("phishing", 1)]);
}

#[test]
fn device_recent_returns_block_and_warn_of_last_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = BASE + Duration::days(40);
    let window_start = now - Duration::days(30);
    let event_at = |time: OffsetDateTime, host: &str, action: Action| {
        let mut event = event("acme", 0, host, action);
        event.time = time;
        event
    };
    let mut other_device = event("acme", 22 * 24 * 60, "other-device.example", Action::Block);
    other_device.device = Some("DEV-2".to_owned());
    let mut other_user = event("acme", 24 * 24 * 60, "other-user.example", Action::Warn);
    other_user.user = Some("bob@example.com".to_owned());
    let mut no_user = event("acme", 24 * 24 * 60, "no-user.example", Action::Block);
    no_user.user = None;
    let events = vec![
        event("acme", 0, "too-old.example", Action::Block),
        event_at(
            window_start - Duration::milliseconds(1),
            "before-window.example",
            Action::Block,
        ),
        event_at(window_start, "first-millisecond.example", Action::Warn),
        event("acme", 20 * 24 * 60, "blocked.example", Action::Block),
        event("acme", 21 * 24 * 60, "allowed.example", Action::Allow),
        event("acme", 22 * 24 * 60, "warned.example", Action::Warn),
        event("acme", 23 * 24 * 60, "accepted.example", Action::Accepted),
        event("acme", 25 * 24 * 60, "blocked-again.example", Action::Block),
        event_at(now, "last-millisecond.example", Action::Block),
        event_at(
            now + Duration::milliseconds(1),
            "after-now.example",
            Action::Block,
        ),
    ];
    store.insert_batch(&events).unwrap();
    store
        .insert_batch(&[other_device, other_user, no_user])
        .unwrap();

    let recent = store
        .device_recent("acme", "DEV-1", "alice@example.com", now, 100)
        .unwrap();
    let hosts: Vec<&str> = recent.iter().map(|e| e.request.as_str()).collect();

    assert!(!hosts.contains(&"other-user.example"), "{hosts:?}");
    assert!(!hosts.contains(&"no-user.example"), "{hosts:?}");
    assert!(!hosts.contains(&"other-device.example"), "{hosts:?}");
    assert!(!hosts.contains(&"allowed.example"), "{hosts:?}");
    assert!(!hosts.contains(&"accepted.example"), "{hosts:?}");
    assert!(!hosts.contains(&"too-old.example"), "{hosts:?}");
    assert!(!hosts.contains(&"before-window.example"), "{hosts:?}");
    assert!(!hosts.contains(&"after-now.example"), "{hosts:?}");
    assert_eq!(
        hosts,
        vec![
            "last-millisecond.example",
            "blocked-again.example",
            "warned.example",
            "blocked.example",
            "first-millisecond.example",
        ]
    );

    let newest_two = store
        .device_recent("acme", "DEV-1", "alice@example.com", now, 2)
        .unwrap();
    let hosts: Vec<&str> = newest_two.iter().map(|e| e.request.as_str()).collect();
    assert_eq!(
        hosts,
        vec!["last-millisecond.example", "blocked-again.example"]
    );

    let bob = store
        .device_recent("acme", "DEV-1", "bob@example.com", now, 100)
        .unwrap();
    let hosts: Vec<&str> = bob.iter().map(|e| e.request.as_str()).collect();
    assert_eq!(hosts, vec!["other-user.example"]);
}

#[test]
fn retention_deletes_only_expired_rows_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = OffsetDateTime::now_utc();
    let mut events = Vec::new();
    for i in 0..30 {
        let mut old = event(
            if i % 2 == 0 { "acme" } else { "beta" },
            0,
            "old.example",
            Action::Block,
        );
        old.time = now - Duration::days(40) + Duration::minutes(i);
        old.categories = vec!["malware".to_owned()];
        events.push(old);
    }
    let mut fresh = event("acme", 0, "fresh.example", Action::Block);
    fresh.time = now - Duration::days(1);
    fresh.categories = vec!["malware".to_owned()];
    events.push(fresh);
    store.insert_batch(&events).unwrap();

    let cutoff = now - Duration::days(30);
    let first = store.delete_older_than(cutoff, 10).unwrap();
    assert!(
        first >= 20,
        "first chunk deleted {first}: want 10 events, 10 category rows and presence rows"
    );
    let mut total = first;
    loop {
        let deleted = store.delete_older_than(cutoff, 10).unwrap();
        if deleted == 0 {
            break;
        }
        total += deleted;
    }
    assert!(
        total >= 60,
        "deleted {total}: want 30 events and 30 category rows, plus presence rows"
    );

    let query = Query::new("acme", now - Duration::days(90), now);
    let left: Vec<String> = store
        .query(&query)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.request)
        .collect();
    assert_eq!(left, vec!["fresh.example"]);
    let mut by_category = query.clone();
    by_category.category = Some("malware".to_owned());
    assert_eq!(store.query(&by_category).unwrap().events.len(), 1);
    let mut by_device = query.clone();
    by_device.device = Some("DEV-1".to_owned());
    assert_eq!(store.query(&by_device).unwrap().events.len(), 1);
    assert_eq!(store.delete_older_than(cutoff, 10).unwrap(), 0);

    // The expired host is gone from the domain search, and comes back when it is
    // seen again.
    let mut by_domain = query.clone();
    by_domain.domain = Some("old.exa".to_owned());
    assert!(store.query(&by_domain).unwrap().events.is_empty());
    let mut again = event("acme", 0, "old.example", Action::Allow);
    again.time = now - Duration::hours(2);
    store.insert_batch(&[again]).unwrap();
    let found: Vec<String> = store
        .query(&by_domain)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.request)
        .collect();
    assert_eq!(found, vec!["old.example"]);
    let old_day = (now - Duration::days(40)).date();
    assert!(store
        .daily_totals("acme", old_day, old_day)
        .unwrap()
        .is_empty());
}

#[test]
fn hostile_fields_are_stored_bounded_and_clean() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut hostile = event("acme", 0, "", Action::Block);
    hostile.request = text_from_bytes(b"https://x.example/\xff\xfe\x00\x1b[2J", MAX_REQUEST_BYTES);
    hostile.user = Some("eve\u{202E}gpj.exe".to_owned());
    hostile.reason = "r\n".repeat(10_000);
    let mut long = event(
        "acme",
        1,
        &format!("https://long.example/{}", "a".repeat(100_000)),
        Action::Allow,
    );
    long.app = Some("x".repeat(100_000));
    store.insert_batch(&[hostile, long]).unwrap();

    let page = store.query(&day_range()).unwrap();
    let long = &page.events[0];
    assert_eq!(long.request.len(), MAX_REQUEST_BYTES);
    assert_eq!(long.app.as_ref().unwrap().len(), 256);
    let hostile = &page.events[1];
    assert_eq!(
        hostile.request,
        "https://x.example/\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}[2J"
    );
    assert_eq!(hostile.user.as_deref(), Some("eve\u{FFFD}gpj.exe"));
    assert!(hostile.reason.len() <= MAX_REASON_BYTES);
    assert!(!hostile.reason.contains('\n'));
}

#[test]
fn csv_export_streams_every_page_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ActivityStore> = Arc::new(open(dir.path()));
    let mut events: Vec<Event> = (0..250)
        .map(|i| event("acme", i, &format!("h{i}.example"), Action::Allow))
        .collect();
    events[0].reason = "=cmd|' /C calc'!A0".to_owned();
    events[0].user = Some("-2+3, \"quoted\"".to_owned());
    store.insert_batch(&events).unwrap();

    let mut query = day_range();
    query.limit = 100;
    let mut out = Vec::new();
    let written = write_csv(store.as_ref(), query, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();

    assert_eq!(written as usize, text.len());
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.len(), 252, "header, 250 rows and the empty tail");
    assert!(lines[0].starts_with("time,tenant,user,device,"));
    assert!(lines[1].contains(",h249.example,"));
    let first_event = lines[250];
    assert!(
        first_event.contains(",\"'-2+3, \"\"quoted\"\"\","),
        "{first_event}"
    );
    assert!(
        first_event.contains(",'=cmd|' /C calc'!A0,"),
        "{first_event}"
    );
}

#[test]
fn garbage_file_is_reported_corrupt_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    let garbage =
        b"this is not an sqlite database, but it is long enough to have a header page ".repeat(100);
    std::fs::write(&path, &garbage).unwrap();

    let error = SqliteStore::open(&path).err().unwrap();

    assert!(matches!(error, ActivityError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()));
    assert!(error.to_string().contains("move it aside"));
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn damaged_pages_are_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .insert_batch(&[event("acme", 0, "a.example", Action::Allow)])
            .unwrap();
    }
    // Overwrite the schema page after the 100-byte header.
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[100..4096] {
        *byte = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();

    let error = SqliteStore::open(&path).err().unwrap();

    assert!(matches!(error, ActivityError::Corrupt { .. }), "{error}");
}

#[test]
fn damage_found_after_open_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let events: Vec<Event> = (0..5_000)
            .map(|i| event("acme", i % 600, &format!("h{i}.example"), Action::Allow))
            .collect();
        store.insert_batch(&events).unwrap();
    }
    // Overwrite pages in the middle of the file, past the schema pages the open reads.
    let mut bytes = std::fs::read(&path).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages > 40, "{pages} pages");
    for byte in &mut bytes[20 * 4096..(pages - 10) * 4096] {
        *byte = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();

    let store = SqliteStore::open(&path).unwrap();
    let error = store.query(&day_range()).err().unwrap();

    assert!(matches!(error, ActivityError::Corrupt { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
    assert!(message.contains("move it aside"), "{message}");
}

#[test]
fn newer_schema_is_rejected_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);

    let error = SqliteStore::open(&path).err().unwrap();

    match &error {
        ActivityError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other}"),
    }
    assert!(error.to_string().contains("activity.db"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
}

#[test]
fn retired_development_schema_is_rejected_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE events (id INTEGER PRIMARY KEY, time_ms INTEGER);")
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);

    let error = SqliteStore::open(&path).err().unwrap();

    assert!(
        matches!(error, ActivityError::RetiredSchema { found: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("move the file aside"), "{error}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 1);
}

#[test]
fn reopening_keeps_events_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    SqliteStore::open(&path)
        .unwrap()
        .insert_batch(&[event("acme", 0, "a.example", Action::Allow)])
        .unwrap();

    let store = SqliteStore::open(&path).unwrap();

    assert_eq!(store.query(&day_range()).unwrap().events.len(), 1);
    assert_eq!(store.integrity_check().unwrap(), vec!["ok"]);
}

#[test]
fn two_stores_on_one_file_keep_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let second = open(dir.path());

    // Events in the same millisecond differ only by their id.
    for _ in 0..3 {
        first
            .insert_batch(&[event("acme", 0, "a.example", Action::Allow)])
            .unwrap();
        second
            .insert_batch(&[event("acme", 0, "b.example", Action::Allow)])
            .unwrap();
    }

    let page = first.query(&day_range()).unwrap();
    assert_eq!(page.events.len(), 6);
    let hosts: Vec<&str> = page.events.iter().map(|e| e.request.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "b.example",
            "a.example",
            "b.example",
            "a.example",
            "b.example",
            "a.example"
        ]
    );
}

/// Clears the immutable flag set by the read-only test, even when it fails.
struct Mutable<'a>(&'a Path);

impl Drop for Mutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

#[test]
fn read_only_file_is_reported_not_writable() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    // Root ignores file modes, so make the file immutable too.
    let _guard = Mutable(&path);
    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chattr +i failed; run as a non-root user or with CAP_LINUX_IMMUTABLE"
        );
    }

    let error = SqliteStore::open(&path).err().unwrap();

    assert!(
        matches!(error, ActivityError::NotWritable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&path.display().to_string()));
}

#[test]
fn device_and_user_pages_span_hours_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 60 events, 7 minutes apart, so they span 7 hours; pairs share a millisecond.
    let events: Vec<Event> = (0..60)
        .map(|i| {
            let mut e = event(
                "acme",
                (i / 2) * 14,
                &format!("h{i}.example"),
                Action::Allow,
            );
            e.device = Some(format!("DEV-{}", i % 3));
            e.user = Some(format!("user{}", i % 2));
            e
        })
        .collect();
    store.insert_batch(&events[..30]).unwrap();
    store.insert_batch(&events[30..]).unwrap();

    for (device, user) in [
        (Some("DEV-1"), None),
        (None, Some("user0")),
        (Some("DEV-2"), Some("user1")),
    ] {
        let mut query = day_range();
        query.device = device.map(str::to_owned);
        query.user = user.map(str::to_owned);
        query.limit = 3;
        let mut seen = Vec::new();
        loop {
            let page = store.query(&query).unwrap();
            seen.extend(page.events.into_iter().map(|e| e.request));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        let expected: Vec<String> = (0..60)
            .rev()
            .filter(|i| device.is_none_or(|d| d == format!("DEV-{}", i % 3)))
            .filter(|i| user.is_none_or(|u| u == format!("user{}", i % 2)))
            .map(|i| format!("h{i}.example"))
            .collect();
        assert_eq!(seen, expected, "device {device:?}, user {user:?}");
    }
}

#[test]
fn domain_pages_span_days_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Three days of events; "shop" hosts appear on the first and last day only.
    let events: Vec<Event> = (0..36)
        .map(|i| {
            let day = i / 12;
            let host = if day != 1 && i % 3 == 0 {
                format!("https://Shop{i}.example/x")
            } else {
                format!("news{i}.example")
            };
            let action = if i % 2 == 0 {
                Action::Block
            } else {
                Action::Allow
            };
            event("acme", day * 24 * 60 + i, &host, action)
        })
        .collect();
    store.insert_batch(&events).unwrap();

    let collect = |domain: &str, action: Option<Action>| {
        let mut query = Query::new("acme", BASE - Duration::days(1), BASE + Duration::days(4));
        query.domain = Some(domain.to_owned());
        query.action = action;
        query.limit = 2;
        let mut seen = Vec::new();
        loop {
            let page = store.query(&query).unwrap();
            seen.extend(page.events.into_iter().map(|e| e.request));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return seen,
            }
        }
    };

    let expected: Vec<String> = (0..36)
        .rev()
        .filter(|i| i / 12 != 1 && i % 3 == 0)
        .map(|i| format!("https://Shop{i}.example/x"))
        .collect();
    assert_eq!(collect("SHOP", None), expected);
    let blocked: Vec<String> = (0..36)
        .rev()
        .filter(|i| i / 12 != 1 && i % 6 == 0)
        .map(|i| format!("https://Shop{i}.example/x"))
        .collect();
    assert_eq!(collect("shop", Some(Action::Block)), blocked);
    assert!(collect("no-such-host", None).is_empty());
}

#[test]
fn domain_pages_cover_rare_and_common_texts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // One event a minute for 10 hours; "rare.example" every 97 minutes, the rest
    // over 300 "bulkN" hosts, more than a domain filter probes the slots of.
    let host = |i: i64| {
        if i % 97 == 0 {
            "rare.example".to_owned()
        } else {
            format!("bulk{}.example", i % 300)
        }
    };
    let events: Vec<Event> = (0..600)
        .map(|i| event("acme", i, &host(i), Action::Allow))
        .collect();
    store.insert_batch(&events[..250]).unwrap();
    store.insert_batch(&events[250..]).unwrap();

    let collect = |domain: &str, limit: usize| {
        let mut query = Query::new("acme", BASE - Duration::days(1), BASE + Duration::days(1));
        query.domain = Some(domain.to_owned());
        query.limit = limit;
        let mut seen = Vec::new();
        loop {
            let page = store.query(&query).unwrap();
            seen.extend(page.events.into_iter().map(|e| e.request));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return seen,
            }
        }
    };
    let expected = |text: &str| -> Vec<String> {
        (0..600)
            .rev()
            .map(host)
            .filter(|h| h.contains(text))
            .collect()
    };

    assert_eq!(collect("RARE", 2), expected("rare"));
    assert_eq!(collect("rare", 2).len(), 7);
    assert_eq!(collect("bulk29", 3), expected("bulk29"));
    assert_eq!(collect("bulk", 100), expected("bulk"));
    assert_eq!(collect("bulk", 100).len(), 593);
    assert!(collect("nothing", 5).is_empty());
}

/// Counts this process's open file descriptors on `database` and its WAL files.
fn descriptors_on(database: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            target
                .to_string_lossy()
                .starts_with(&*database.to_string_lossy())
        })
        .count()
}

#[test]
fn concurrent_queries_share_a_bounded_reader_pool() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("activity.db");
    let store = Arc::new(SqliteStore::open(&database).unwrap());
    let events: Vec<Event> = (0..20_000)
        .map(|i| event("acme", i % 600, &format!("h{i}.example"), Action::Allow))
        .collect();
    store.insert_batch(&events).unwrap();
    let before = descriptors_on(&database);

    // 64 threads query at once while a sampler counts the descriptors on the file.
    let queries = 64;
    let start = Arc::new(std::sync::Barrier::new(queries + 1));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (database, done) = (database.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(descriptors_on(&database));
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            max
        })
    };
    let readers: Vec<_> = (0..queries)
        .map(|_| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let mut query = day_range();
                query.domain = Some("h1999".to_owned());
                // Several queries each, so that the threads surely overlap.
                let counts: Vec<usize> = (0..5)
                    .map(|_| store.query(&query).unwrap().events.len())
                    .collect();
                counts.iter().copied().max().unwrap_or_default()
            })
        })
        .collect();
    start.wait();
    for reader in readers {
        // h1999 and h19990 to h19999.
        assert_eq!(reader.join().unwrap(), 11);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max = sampler.join().unwrap();

    // Each read connection keeps the database and its WAL open (the shared-memory
    // file is shared within the process), so 8 connections add at most 16 and
    // 64 unbounded ones would add about 128.
    assert!(
        max <= before + 24,
        "{max} descriptors, {before} before the queries"
    );
    assert!(descriptors_on(&database) <= before + 24);
}
