//! Records events at a fixed rate through the full activity log (recorder, queue,
//! writer, SQLite) and reports drops, queue depth and memory as it goes.
//!
//! ```text
//! cargo run --release -p swg-activity --example sustained_recording -- [RATE] [SECONDS] [DB] [QUEUE] [BATCH] [INTERVAL_MS]
//! ```
//!
//! RATE defaults to 100 000 events per second, SECONDS to 60, DB to
//! `target/activity-sustained.db` (deleted first), and QUEUE, BATCH and INTERVAL_MS
//! to the defaults of `queue_capacity`, `batch_size` and `batch_interval_ms`. The
//! rest of the configuration is the default `[activity]` section. Exits with status
//! 1 if any event was dropped.
//!
//! At the end it prints the process CPU time (user and system, from
//! `/proc/self/stat`) per 100 000 events, split by thread, and the CPU time the
//! producer spends cloning 100 000 events from its pool. That clone takes the place
//! of the caller building its event, so the activity log's own cost is the total minus it.
//! Before the timed run, it records 200 000 events, cloned beforehand, as fast as it
//! can, twice, and prints the CPU time of `Recorder::record` alone in the second
//! round, the cost on the caller's thread once the queue has grown.

#[path = "support/generate.rs"]
#[allow(dead_code)]
mod generate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use swg_activity::{ActivityConfig, ActivityLog};
use time::OffsetDateTime;

/// Distinct events cycled through, so generating them does not dominate the
/// producer's time.
const POOL: usize = 50_000;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/activity-sustained.db".to_owned()),
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let registry = prometheus::Registry::new();
    let mut config = ActivityConfig::default();
    if let Some(queue) = args.next().and_then(|a| a.parse().ok()) {
        config.queue_capacity = queue;
    }
    if let Some(batch) = args.next().and_then(|a| a.parse().ok()) {
        config.batch_size = batch;
    }
    if let Some(interval) = args.next().and_then(|a| a.parse().ok()) {
        config.batch_interval_ms = interval;
    }
    let (log, recorder) = {
        let _guard = runtime.enter();
        ActivityLog::open(&path, &config, &registry).expect("open activity log")
    };

    let mut rng = generate::Rng::new(11);
    let pool: Vec<_> = (0..POOL)
        .map(|_| generate::event(&mut rng, OffsetDateTime::now_utc()))
        .collect();
    println!(
        "recording {rate} events/s for {seconds} s into {} (queue {}, batch {} or {} ms)",
        path.display(),
        config.queue_capacity,
        config.batch_size,
        config.batch_interval_ms
    );
    println!(
        "{:>6} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9}",
        "time_s", "recorded", "written", "dropped", "queue", "rss_mib", "wal_mib"
    );

    let build_cpu = build_cost(&pool);
    // The first round grows the queue's vectors, which then keep their capacity.
    record_cost(&recorder, &pool);
    runtime.block_on(log.flush());
    let record_cpu = record_cost(&recorder, &pool);
    runtime.block_on(log.flush());
    let cpu_started = cpu_seconds();
    let threads_started = thread_cpu_seconds();
    let started = Instant::now();
    let total = rate * seconds;
    let mut recorded = 0u64;
    let mut next_report = Duration::from_secs(5);
    while recorded < total {
        let elapsed = started.elapsed();
        let due = ((elapsed.as_secs_f64() * rate as f64) as u64).min(total);
        if recorded < due {
            let now = OffsetDateTime::now_utc();
            while recorded < due {
                let mut event = pool[(recorded % POOL as u64) as usize].clone();
                event.time = now;
                recorder.record(event);
                recorded += 1;
            }
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        if elapsed >= next_report {
            report(&registry, elapsed, recorded, &path);
            next_report += Duration::from_secs(5);
        }
    }
    let recording = started.elapsed();

    let flush_started = Instant::now();
    runtime.block_on(log.shutdown());
    let flush = flush_started.elapsed();
    report(&registry, started.elapsed(), recorded, &path);

    let dropped = sample(&registry, "swg_activity_dropped_total");
    let written = sample(&registry, "swg_activity_written_total");
    println!(
        "recorded {recorded} in {:.2} s ({:.0} events/s); written {written}; dropped {dropped}; \
         shutdown flushed the rest in {:.2} s",
        recording.as_secs_f64(),
        recorded as f64 / recording.as_secs_f64(),
        flush.as_secs_f64()
    );
    println!(
        "batch writes: {} batches, mean {:.1} ms",
        sample(&registry, "swg_activity_write_seconds_count"),
        1e3 * sample(&registry, "swg_activity_write_seconds_sum")
            / sample(&registry, "swg_activity_write_seconds_count").max(1.0)
    );
    print_cpu(
        recorded,
        cpu_seconds() - cpu_started,
        &threads_started,
        build_cpu,
    );
    println!(
        "caller side: Recorder::record costs {record_cpu:.3} CPU s per 100 000 events ({:.2} us per event)",
        record_cpu * 10.0
    );
    if dropped > 0.0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report(
    registry: &prometheus::Registry,
    elapsed: Duration,
    recorded: u64,
    path: &std::path::Path,
) {
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{:>6.1} {:>10} {:>10} {:>8} {:>8} {:>9.1} {:>9.1}",
        elapsed.as_secs_f64(),
        recorded,
        sample(registry, "swg_activity_written_total"),
        sample(registry, "swg_activity_dropped_total"),
        sample(registry, "swg_activity_queue_depth"),
        rss_mib(),
        wal as f64 / (1u64 << 20) as f64
    );
}

/// Reads one sample from the text exposition of `registry`.
fn sample(registry: &prometheus::Registry, name: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_default();
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Resident set size from /proc/self/status, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Clones and drops 1 000 000 events from `pool`, as the recording loop does, and
/// returns the CPU seconds of this thread it took per 100 000.
fn build_cost(pool: &[swg_activity::Event]) -> f64 {
    let started = thread_cpu_now();
    for index in 0..1_000_000 {
        let event = std::hint::black_box(pool[index % pool.len()].clone());
        drop(event);
    }
    (thread_cpu_now() - started) / 10.0
}

/// Records 200 000 events cloned beforehand from `pool` as fast as possible, and
/// returns the CPU seconds of this thread that `Recorder::record` took per
/// 100 000. The writer writes them meanwhile on the runtime's threads.
fn record_cost(recorder: &swg_activity::Recorder, pool: &[swg_activity::Event]) -> f64 {
    let events: Vec<_> = (0..200_000)
        .map(|index| pool[index % pool.len()].clone())
        .collect();
    let started = thread_cpu_now();
    for event in events {
        recorder.record(event);
    }
    (thread_cpu_now() - started) / 2.0
}

/// Prints the process CPU time per 100 000 events, in total and per thread name.
fn print_cpu(recorded: u64, cpu: f64, threads_started: &[(String, f64)], build_cpu: f64) {
    let per = |seconds: f64| seconds * 100_000.0 / recorded.max(1) as f64;
    println!(
        "process CPU {cpu:.2} s: {:.3} CPU s per 100 000 events ({:.2} us per event); \
         building events costs {build_cpu:.3} s per 100 000, so the activity log costs \
         {:.3} s per 100 000 ({:.2} us per event)",
        per(cpu),
        per(cpu) * 10.0,
        per(cpu) - build_cpu,
        (per(cpu) - build_cpu) * 10.0
    );
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for (name, seconds) in thread_cpu_seconds() {
        let before: f64 = threads_started
            .iter()
            .filter(|(started, _)| *started == name)
            .map(|(_, s)| s)
            .sum();
        match by_name.iter_mut().find(|(known, _)| *known == name) {
            Some((_, total)) => *total += seconds - before,
            None => by_name.push((name, seconds - before)),
        }
    }
    for (name, seconds) in by_name {
        println!(
            "  thread {name:<24} {:.3} CPU s per 100 000 events",
            per(seconds)
        );
    }
}

/// CPU time (user and system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU time of the calling thread with nanosecond precision, from
/// /proc/thread-self/schedstat (its first field is the time spent running).
fn thread_cpu_now() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .map(|nanoseconds| nanoseconds / 1e9)
        .unwrap_or(0.0)
}

/// CPU time per live thread, summed over threads of the same name.
fn thread_cpu_seconds() -> Vec<(String, f64)> {
    let mut threads: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map(|(name, _)| name.to_owned())
            .unwrap_or_default();
        let seconds = stat_cpu_seconds(&stat);
        match threads.iter_mut().find(|(known, _)| *known == name) {
            Some((_, total)) => *total += seconds,
            None => threads.push((name, seconds)),
        }
    }
    threads
}

/// Reads utime and stime from a `stat` line of /proc.
fn stat_cpu_seconds(stat: &str) -> f64 {
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
