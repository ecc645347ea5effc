//! Fills an SQLite activity store with synthetic events over 30 days, reporting the
//! insert rate, then times the console's queries against it.
//!
//! ```text
//! cargo run --release -p swg-activity --example store_benchmark -- [EVENTS] [DB] [PAGE]
//! ```
//!
//! EVENTS defaults to 10 000 000, DB to `target/activity-bench.db` and PAGE, the
//! page size of the queries, to the default of [`Query::new`], 100. An existing
//! DB with at least EVENTS events is reused, so the queries can be rerun without
//! generating again.

#[path = "support/generate.rs"]
#[allow(dead_code)]
mod generate;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use swg_activity::{Action, ActivityStore, Query, SqliteStore};
use time::OffsetDateTime;

const BATCH: usize = 10_000;
const DAYS: i64 = 30;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000_000);
    let path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/activity-bench.db".to_owned()),
    );

    let page_size: Option<usize> = args.next().map(|a| a.parse()).transpose()?;

    let store = SqliteStore::open(&path)?;
    let now = OffsetDateTime::now_utc();
    let existing = count_events(&path)?;
    if existing < total as i64 {
        fill(&store, total - existing as usize, now)?;
        store.optimize()?;
    } else {
        println!("reusing {} with {existing} events", path.display());
    }
    let size = std::fs::metadata(&path)?.len();
    println!("store file: {:.2} GiB", size as f64 / (1u64 << 30) as f64);

    run_queries(&store, now, page_size)?;
    Ok(())
}

fn count_events(path: &std::path::Path) -> rusqlite::Result<i64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("SELECT next_event_id - 1 FROM writer_state", [], |row| {
        row.get(0)
    })
}

/// Inserts `count` events spread evenly over the last 30 days, oldest first, as the
/// writer would, and prints the rate for each million.
fn fill(
    store: &SqliteStore,
    count: usize,
    now: OffsetDateTime,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = generate::Rng::new(7);
    let start = now - time::Duration::days(DAYS);
    let step_ns = (DAYS * 86_400 * 1_000_000_000) as f64 / count as f64;
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let mut window = Instant::now();
    let mut insert_time = Duration::ZERO;
    let mut window_insert_time = Duration::ZERO;
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..count {
        let time = start + time::Duration::nanoseconds((i as f64 * step_ns) as i64);
        batch.push(generate::event(&mut rng, time));
        if batch.len() == BATCH || i + 1 == count {
            let t = Instant::now();
            store.insert_batch(&batch)?;
            insert_time += t.elapsed();
            window_insert_time += t.elapsed();
            batch.clear();
        }
        if (i + 1) % 1_000_000 == 0 {
            println!(
                "inserted {:>9} events; last million at {:.0} events/s of insert time ({:.1} s wall)",
                i + 1,
                1_000_000.0 / window_insert_time.as_secs_f64(),
                window.elapsed().as_secs_f64()
            );
            window = Instant::now();
            window_insert_time = Duration::ZERO;
        }
    }
    let cpu = cpu_seconds() - cpu_started;
    println!(
        "inserted {count} events in {:.1} s wall; store write rate {:.0} events/s of insert time; \
         {:.1} CPU seconds including generation ({:.0} events per CPU second)",
        started.elapsed().as_secs_f64(),
        count as f64 / insert_time.as_secs_f64(),
        cpu,
        count as f64 / cpu
    );
    Ok(())
}

/// CPU time (user and system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    // The kernel reports CPU time in clock ticks of 1/100 s on Linux.
    ticks / 100.0
}

/// Runs `f` a few times and prints the median and maximum time.
fn time_it<T>(name: &str, runs: usize, mut f: impl FnMut() -> T, describe: impl Fn(&T) -> String) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let value = f();
        times.push(t.elapsed());
        last = Some(value);
    }
    times.sort();
    let description = last.as_ref().map(&describe).unwrap_or_default();
    println!(
        "{name:<52} median {:>8.2} ms  max {:>8.2} ms  {description}",
        times[runs / 2].as_secs_f64() * 1e3,
        times[runs - 1].as_secs_f64() * 1e3
    );
}

fn run_queries(
    store: &SqliteStore,
    now: OffsetDateTime,
    page_size: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut base = Query::new(
        generate::MAIN_TENANT,
        now - time::Duration::days(DAYS + 1),
        now + time::Duration::hours(1),
    );
    if let Some(page_size) = page_size {
        base.limit = page_size;
    }
    let page = |edit: &dyn Fn(&mut Query)| {
        let mut query = base.clone();
        edit(&mut query);
        query
    };
    let cases: Vec<(&str, Query)> = vec![
        ("first page, no filter", page(&|_| {})),
        ("user", page(&|q| q.user = Some(generate::user_name(1_200)))),
        (
            "device (busy)",
            page(&|q| q.device = Some(generate::device_name(0))),
        ),
        (
            "device (quiet)",
            page(&|q| q.device = Some(generate::device_name(2_999))),
        ),
        ("action block", page(&|q| q.action = Some(Action::Block))),
        (
            "action unfiltered (rare)",
            page(&|q| q.action = Some(Action::Unfiltered)),
        ),
        (
            "app (rare)",
            page(&|q| q.app = Some(generate::app_name(59))),
        ),
        (
            "app (unknown, no match)",
            page(&|q| q.app = Some("com.nobody.app".to_owned())),
        ),
        (
            "category malware",
            page(&|q| q.category = Some("malware".to_owned())),
        ),
        (
            "category cat59 (rare)",
            page(&|q| q.category = Some("cat59".to_owned())),
        ),
        (
            "domain substring 'example1'",
            page(&|q| q.domain = Some("example1".to_owned())),
        ),
        (
            "domain substring 'site19999.' (rare)",
            page(&|q| q.domain = Some("site19999.".to_owned())),
        ),
        (
            "domain substring 'site1999' (11 hosts)",
            page(&|q| q.domain = Some("site1999".to_owned())),
        ),
        (
            "domain substring 'site19' (1 111 hosts)",
            page(&|q| q.domain = Some("site19".to_owned())),
        ),
        (
            "domain, no match, 1 day",
            page(&|q| {
                q.domain = Some("no-such-host".to_owned());
                q.from = now - time::Duration::days(1);
            }),
        ),
        (
            "domain, no match, 30 days",
            page(&|q| q.domain = Some("no-such-host".to_owned())),
        ),
        (
            "device + block",
            page(&|q| {
                q.device = Some(generate::device_name(3));
                q.action = Some(Action::Block);
            }),
        ),
        (
            "app + domain",
            page(&|q| {
                q.app = Some(generate::app_name(5));
                q.domain = Some("example3".to_owned());
            }),
        ),
    ];
    println!(
        "query pages of {} events over {DAYS} days for tenant {}:",
        base.page_size(),
        generate::MAIN_TENANT
    );
    for (name, query) in &cases {
        time_it(
            name,
            7,
            || store.query(query).map(|p| p.events.len()),
            |n| format!("{n:?} events"),
        );
    }

    let mut deep = base.clone();
    time_it(
        "page 200 (following cursors)",
        1,
        || {
            let mut pages = 0;
            let t = Instant::now();
            let mut last = Duration::ZERO;
            while pages < 200 {
                let started = Instant::now();
                let page = store.query(&deep).expect("query");
                last = started.elapsed();
                pages += 1;
                match page.next_cursor {
                    Some(cursor) => deep.cursor = Some(cursor),
                    None => break,
                }
            }
            (pages, t.elapsed(), last)
        },
        |(pages, _, last)| {
            format!(
                "{pages} pages; last page {:.2} ms",
                last.as_secs_f64() * 1e3
            )
        },
    );

    let from = (now - time::Duration::days(DAYS)).date();
    let to = now.date();
    let tenant = generate::MAIN_TENANT;
    time_it(
        "daily totals, 30 days",
        7,
        || store.daily_totals(tenant, from, to).map(|t| t.len()),
        |n| format!("{n:?} rows"),
    );
    time_it(
        "top 10 blocked domains, 30 days",
        7,
        || {
            store
                .top_blocked_domains(tenant, from, to, 10)
                .map(|t| t.len())
        },
        |n| format!("{n:?} rows"),
    );
    time_it(
        "top 10 blocked categories, 30 days",
        7,
        || {
            store
                .top_blocked_categories(tenant, from, to, 10)
                .map(|t| t.len())
        },
        |n| format!("{n:?} rows"),
    );
    time_it(
        "device recent block/warn (busy device)",
        7,
        || {
            store
                .device_recent(
                    tenant,
                    &generate::device_name(0),
                    &generate::user_name(0),
                    now,
                    500,
                )
                .map(|e| e.len())
        },
        |n| format!("{n:?} events"),
    );
    time_it(
        "device recent block/warn (quiet device)",
        7,
        || {
            store
                .device_recent(
                    tenant,
                    &generate::device_name(2_999),
                    &generate::user_name(2_999),
                    now,
                    500,
                )
                .map(|e| e.len())
        },
        |n| format!("{n:?} events"),
    );

    let mut export = base.clone();
    export.device = Some(generate::device_name(0));
    export.limit = 1_000;
    time_it(
        "CSV export, busy device, 30 days",
        1,
        || {
            let mut sink = CountingSink(0);
            swg_activity::write_csv(store, export.clone(), &mut sink)
        },
        |bytes| format!("{bytes:?} bytes"),
    );

    let mut retention_store = Instant::now();
    let deleted = store.delete_older_than(now - time::Duration::days(DAYS + 5), 10_000)?;
    println!(
        "retention chunk with nothing expired: {:.2} ms ({deleted} rows)",
        retention_store.elapsed().as_secs_f64() * 1e3
    );
    retention_store = Instant::now();
    let _ = retention_store;
    Ok(())
}

/// Discards bytes, counting them, so the export is timed without disk writes.
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
