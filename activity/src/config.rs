//! The `[activity]` section of `swg.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Settings of the activity log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivityConfig {
    /// Days an event is kept before retention deletes it (1 to 90, default 30).
    pub retention_days: u32,
    /// Events the in-memory queue holds before new ones are dropped (1 024 to
    /// 16 777 216, default 262 144). The default covers writer stalls of about 2.6 s at
    /// 100 000 events/s. A full queue takes an estimated 150 MB (about 600 bytes an
    /// event).
    pub queue_capacity: usize,
    /// Events that make the writer write a batch (1 to 100 000, default 10 000, at most
    /// `queue_capacity`). The writer looks at the queue every quarter of
    /// `batch_interval_ms` (at most every 50 ms) and writes when it finds this many
    /// events or events that have waited `batch_interval_ms`. It then takes every
    /// queued event, up to 50 000 or `batch_size` if larger, in one transaction.
    /// Larger batches cost less CPU per event.
    pub batch_size: usize,
    /// Time in milliseconds after which queued events are written even when fewer
    /// than `batch_size` (10 to 60 000, default 200). An event waits at most about
    /// this plus a quarter of it, or plus 50 ms when that is less.
    pub batch_interval_ms: u64,
    /// SQLite file of the store; a relative path is taken relative to the data folder
    /// (default `activity.db`).
    pub database: PathBuf,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            retention_days: 30,
            queue_capacity: 262_144,
            batch_size: 10_000,
            batch_interval_ms: 200,
            database: PathBuf::from("activity.db"),
        }
    }
}

/// A configuration value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("activity.{key} = {value} is {problem}; allowed: {allowed}")]
pub struct ConfigError {
    /// The key, without the `activity.` prefix.
    pub key: &'static str,
    /// The rejected value, as text.
    pub value: String,
    /// What is wrong with it, such as "out of range".
    pub problem: &'static str,
    /// The allowed values.
    pub allowed: &'static str,
}

impl ActivityConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "retention_days",
            u64::from(self.retention_days),
            1,
            90,
            "1 to 90",
        )?;
        check_range(
            "queue_capacity",
            self.queue_capacity as u64,
            1_024,
            16_777_216,
            "1024 to 16777216",
        )?;
        check_range(
            "batch_size",
            self.batch_size as u64,
            1,
            100_000,
            "1 to 100000",
        )?;
        if self.batch_size > self.queue_capacity {
            return Err(ConfigError {
                key: "batch_size",
                value: self.batch_size.to_string(),
                problem: "out of range",
                allowed: "at most activity.queue_capacity",
            });
        }
        check_range(
            "batch_interval_ms",
            self.batch_interval_ms,
            10,
            60_000,
            "10 to 60000",
        )?;
        if self.database.as_os_str().is_empty() {
            return Err(ConfigError {
                key: "database",
                value: "\"\"".to_owned(),
                problem: "empty",
                allowed: "a file path",
            });
        }
        Ok(())
    }

    /// Returns the database path, resolved against `data_dir` when relative.
    pub fn database_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.database)
    }
}

fn check_range(
    key: &'static str,
    value: u64,
    min: u64,
    max: u64,
    allowed: &'static str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError {
            key,
            value: value.to_string(),
            problem: "out of range",
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_documented_defaults() {
        let config: ActivityConfig = toml::from_str("").unwrap();
        assert_eq!(config, ActivityConfig::default());
        assert_eq!(config.retention_days, 30);
        assert_eq!(config.queue_capacity, 262_144);
        assert_eq!(config.batch_size, 10_000);
        assert_eq!(config.batch_interval_ms, 200);
        assert_eq!(config.database, PathBuf::from("activity.db"));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn retention_outside_range_names_key() {
        for days in [0, 91] {
            let config = ActivityConfig {
                retention_days: days,
                ..ActivityConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert_eq!(error.key, "retention_days");
            assert_eq!(
                error.to_string(),
                format!("activity.retention_days = {days} is out of range; allowed: 1 to 90")
            );
        }
        let config = ActivityConfig {
            retention_days: 90,
            ..ActivityConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn batch_larger_than_queue_is_rejected() {
        let config = ActivityConfig {
            queue_capacity: 2_000,
            batch_size: 5_000,
            ..ActivityConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "batch_size");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let result = toml::from_str::<ActivityConfig>("retention = 3");
        assert!(result.is_err());
    }

    #[test]
    fn relative_database_resolves_against_data_dir() {
        let config = ActivityConfig::default();
        assert_eq!(
            config.database_path(Path::new("/var/lib/swg")),
            PathBuf::from("/var/lib/swg/activity.db")
        );
        let absolute = ActivityConfig {
            database: PathBuf::from("/srv/a.db"),
            ..ActivityConfig::default()
        };
        assert_eq!(
            absolute.database_path(Path::new("/var/lib/swg")),
            PathBuf::from("/srv/a.db")
        );
    }
}
