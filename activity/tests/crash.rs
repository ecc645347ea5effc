#![allow(clippy::unwrap_used)]
//! Kills a process that is writing batches and checks that the store it leaves
//! behind opens cleanly with whole batches only.
//!
//! This test has its own `main` (`harness = false`): run with the environment
//! variable `SWG_ACTIVITY_CRASH_CHILD` set to a store path, the binary becomes the
//! child that writes batches until it is killed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use swg_activity::{Action, ActivityStore, Event, SqliteStore, Via};

const CHILD_ENV: &str = "SWG_ACTIVITY_CRASH_CHILD";
const BATCH_SIZE: usize = 500;
const KILLS: usize = 4;

fn main() {
    match std::env::var_os(CHILD_ENV) {
        Some(path) => write_until_killed(Path::new(&path)),
        None => {
            kill_mid_batch_leaves_whole_batches();
            println!("test kill_mid_batch_leaves_whole_batches ... ok");
        }
    }
}

/// Child: writes batches forever, announcing the first commit on stdout.
fn write_until_killed(path: &Path) {
    let store = SqliteStore::open(path).unwrap();
    let mut batch_number = 0u64;
    loop {
        let batch: Vec<Event> = (0..BATCH_SIZE)
            .map(|i| {
                let mut event = Event::new(
                    "acme",
                    Via::Proxy,
                    format!("https://h{}.example/{batch_number}/{i}", i % 50),
                    if i % 10 == 0 {
                        Action::Block
                    } else {
                        Action::Allow
                    },
                );
                event.categories = vec!["news".to_owned()];
                event.reason = "x".repeat(200);
                event
            })
            .collect();
        store.insert_batch(&batch).unwrap();
        if batch_number == 0 {
            println!("ready");
        }
        batch_number += 1;
    }
}

fn kill_mid_batch_leaves_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activity.db");
    let mut previous = 0;

    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "child did not start writing");
        // Vary the moment of the kill so it lands at different points of a batch.
        std::thread::sleep(Duration::from_millis(150 + 97 * round as u64));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "child exited on its own: {status}");

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.integrity_check().unwrap(), vec!["ok".to_owned()]);
        drop(store);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .unwrap();
        let categories: i64 = conn
            .query_row("SELECT count(*) FROM event_categories", [], |row| {
                row.get(0)
            })
            .unwrap();
        let counted: i64 = conn
            .query_row("SELECT sum(count) FROM daily_actions", [], |row| row.get(0))
            .unwrap();

        assert_eq!(
            events % BATCH_SIZE as i64,
            0,
            "round {round}: {events} events is not whole batches"
        );
        assert!(events > previous, "round {round}: no batch committed");
        assert_eq!(
            categories, events,
            "round {round}: category rows out of step with events"
        );
        assert_eq!(
            counted, events,
            "round {round}: daily totals out of step with events"
        );
        previous = events;
    }
}
