#![allow(clippy::unwrap_used)]
//! The activity log end to end: recorder, queue, writer task, shutdown and metrics.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use swg_activity::{
    Action, ActivityConfig, ActivityError, ActivityLog, ActivityStore, DailyTotal, Event, Page,
    Query, SqliteStore, TopEntry, Via,
};
use time::{Date, OffsetDateTime};

fn config() -> ActivityConfig {
    ActivityConfig {
        queue_capacity: 1_024,
        batch_size: 100,
        batch_interval_ms: 20,
        ..ActivityConfig::default()
    }
}

fn stored(store: &dyn ActivityStore, tenant: &str) -> usize {
    let now = OffsetDateTime::now_utc();
    let mut query = Query::new(
        tenant,
        now - time::Duration::hours(1),
        now + time::Duration::hours(1),
    );
    query.limit = 1_000;
    let mut total = 0;
    loop {
        let page = store.query(&query).unwrap();
        total += page.events.len();
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return total,
        }
    }
}

/// Reads one sample from the text exposition, which looks the same whichever
/// prometheus features the workspace enables.
fn metric(registry: &prometheus::Registry, sample: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let line = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some(sample))
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_writes_every_recorded_event() {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let (log, recorder) =
        ActivityLog::open(&dir.path().join("activity.db"), &config(), &registry).unwrap();

    for i in 0..950 {
        recorder.record(Event::new(
            "acme",
            Via::Dns,
            format!("h{i}.example"),
            Action::Allow,
        ));
    }
    log.flush().await;

    assert_eq!(stored(log.store().as_ref(), "acme"), 950);
    assert_eq!(metric(&registry, "swg_activity_written_total"), 950.0);
    assert_eq!(metric(&registry, "swg_activity_dropped_total"), 0.0);
    // The writer takes a backlog in one batch, so the count of batches depends on
    // timing; at least one batch was timed.
    assert!(metric(&registry, "swg_activity_write_seconds_count") >= 1.0);
    assert_eq!(metric(&registry, "swg_activity_queue_depth"), 0.0);
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_is_written_after_interval() {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let (log, recorder) =
        ActivityLog::open(&dir.path().join("activity.db"), &config(), &registry).unwrap();

    for i in 0..3 {
        recorder.record(Event::new(
            "acme",
            Via::Dns,
            format!("h{i}.example"),
            Action::Allow,
        ));
    }
    let mut waited = Duration::ZERO;
    while stored(log.store().as_ref(), "acme") < 3 && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }

    assert_eq!(stored(log.store().as_ref(), "acme"), 3);
    assert!(
        waited < Duration::from_secs(1),
        "batch of 3 waited {waited:?} with a 20 ms interval"
    );
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_queue_and_later_records_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    let registry = prometheus::Registry::new();
    let config = ActivityConfig {
        queue_capacity: 20_000,
        batch_size: 500,
        batch_interval_ms: 1_000,
        ..config()
    };
    let (log, recorder) = ActivityLog::open(&path, &config, &registry).unwrap();

    for i in 0..20_000 {
        recorder.record(Event::new(
            "acme",
            Via::Proxy,
            format!("https://h{i}.example/"),
            Action::Allow,
        ));
    }
    log.shutdown().await;
    recorder.record(Event::new("acme", Via::Dns, "late.example", Action::Allow));
    log.shutdown().await;

    assert_eq!(metric(&registry, "swg_activity_dropped_total"), 1.0);
    assert_eq!(metric(&registry, "swg_activity_written_total"), 20_000.0);
    drop(log);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(stored(&reopened, "acme"), 20_000);
}

/// A store whose first insert waits until the test opens the gate, standing in for
/// a slow disk.
struct GatedStore {
    inner: SqliteStore,
    gate: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl GatedStore {
    fn wait_until_writing(&self) {
        let mut state = self.gate.lock().unwrap();
        while !state.0 {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn open_gate(&self) {
        self.gate.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl ActivityStore for GatedStore {
    fn insert_batch(&self, events: &[Event]) -> Result<(), ActivityError> {
        let mut state = self.gate.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
        drop(state);
        self.inner.insert_batch(events)
    }
    fn query(&self, query: &Query) -> Result<Page, ActivityError> {
        self.inner.query(query)
    }
    fn daily_totals(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<DailyTotal>, ActivityError> {
        self.inner.daily_totals(tenant, from, to)
    }
    fn top_blocked_domains(
        &self,
        t: &str,
        f: Date,
        to: Date,
        n: usize,
    ) -> Result<Vec<TopEntry>, ActivityError> {
        self.inner.top_blocked_domains(t, f, to, n)
    }
    fn top_blocked_categories(
        &self,
        t: &str,
        f: Date,
        to: Date,
        n: usize,
    ) -> Result<Vec<TopEntry>, ActivityError> {
        self.inner.top_blocked_categories(t, f, to, n)
    }
    fn device_recent(
        &self,
        t: &str,
        d: &str,
        user: &str,
        now: OffsetDateTime,
        n: usize,
    ) -> Result<Vec<Event>, ActivityError> {
        self.inner.device_recent(t, d, user, now, n)
    }
    fn delete_older_than(
        &self,
        cutoff: OffsetDateTime,
        max_rows: usize,
    ) -> Result<u64, ActivityError> {
        self.inner.delete_older_than(cutoff, max_rows)
    }
}

/// Collects log output for the warning checks.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_counts_and_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore {
        inner: SqliteStore::open(&dir.path().join("activity.db")).unwrap(),
        gate: Mutex::new((false, false)),
        changed: Condvar::new(),
    });
    let registry = prometheus::Registry::new();
    let config = ActivityConfig {
        queue_capacity: 1_024,
        batch_size: 1,
        ..config()
    };
    let (log, recorder) = ActivityLog::start(store.clone(), &config, &registry).unwrap();

    // The writer takes the first event and then stalls inside the store.
    recorder.record(Event::new("acme", Via::Dns, "first.example", Action::Allow));
    let waiting = store.clone();
    tokio::task::spawn_blocking(move || waiting.wait_until_writing())
        .await
        .unwrap();

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..1_024 + 50 {
            recorder.record(Event::new(
                "acme",
                Via::Dns,
                format!("h{i}.example"),
                Action::Allow,
            ));
        }
    });

    assert_eq!(metric(&registry, "swg_activity_dropped_total"), 50.0);
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(output.matches("activity queue full").count(), 1, "{output}");
    assert!(output.contains("dropped=1"), "{output}");

    store.open_gate();
    log.shutdown().await;
    assert_eq!(metric(&registry, "swg_activity_written_total"), 1_025.0);
    assert_eq!(stored(store.as_ref(), "acme"), 1_025);
}

#[tokio::test]
async fn invalid_config_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = ActivityConfig {
        retention_days: 120,
        ..ActivityConfig::default()
    };
    let error = ActivityLog::open(
        &dir.path().join("activity.db"),
        &config,
        &prometheus::Registry::new(),
    )
    .err()
    .unwrap();
    assert!(matches!(error, ActivityError::Config(_)), "{error}");
    assert!(error.to_string().contains("retention_days"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    let mut old = Event::new("acme", Via::Dns, "old.example", Action::Block);
    old.time = OffsetDateTime::now_utc() - time::Duration::days(10);
    let fresh = Event::new("acme", Via::Dns, "fresh.example", Action::Block);
    SqliteStore::open(&path)
        .unwrap()
        .insert_batch(&[old, fresh])
        .unwrap();

    let config = ActivityConfig {
        retention_days: 7,
        ..config()
    };
    let (log, _recorder) = ActivityLog::open(&path, &config, &prometheus::Registry::new()).unwrap();
    let now = OffsetDateTime::now_utc();
    let everything = Query::new(
        "acme",
        now - time::Duration::days(90),
        now + time::Duration::hours(1),
    );
    let mut remaining = usize::MAX;
    for _ in 0..200 {
        remaining = log.store().query(&everything).unwrap().events.len();
        if remaining == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(remaining, 1);
    log.shutdown().await;
}
