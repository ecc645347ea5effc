//! The `[policy]` section of `swg.toml`.

use std::path::PathBuf;
use std::time::Duration;

/// Shortest allowed poll interval, in milliseconds.
pub const MIN_POLL_INTERVAL_MS: u64 = 100;

/// Longest allowed poll interval, in milliseconds.
pub const MAX_POLL_INTERVAL_MS: u64 = 60_000;

/// Policy sources and the interval at which they are checked for changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy files, loaded together (tenant ids unique across them). Default: none, in
    /// which case the binary uses its built-in demo policy.
    pub files: Vec<PathBuf>,
    /// How often the files and their feeds are checked for changes, in milliseconds
    /// (100 to 60 000; default 500).
    pub poll_interval_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            files: Vec::new(),
            poll_interval_ms: 500,
        }
    }
}

/// A `[policy]` key outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    /// `policy.poll_interval_ms` is out of range.
    #[error(
        "policy.poll_interval_ms = {0} is out of range; allowed: {MIN_POLL_INTERVAL_MS} to {MAX_POLL_INTERVAL_MS}"
    )]
    PollInterval(u64),
    /// A `policy.files` entry is empty.
    #[error("policy.files contains an empty path")]
    EmptyPath,
}

impl PolicyConfig {
    /// Checks every key against its allowed range.
    pub fn validate(&self) -> Result<(), PolicyConfigError> {
        if !(MIN_POLL_INTERVAL_MS..=MAX_POLL_INTERVAL_MS).contains(&self.poll_interval_ms) {
            return Err(PolicyConfigError::PollInterval(self.poll_interval_ms));
        }
        if self.files.iter().any(|path| path.as_os_str().is_empty()) {
            return Err(PolicyConfigError::EmptyPath);
        }
        Ok(())
    }

    /// Returns the poll interval as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = PolicyConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.poll_interval(), Duration::from_millis(500));
    }

    #[test]
    fn keys_parse_and_ranges_are_checked() {
        let config: PolicyConfig =
            toml::from_str("files = [\"a.toml\"]\npoll_interval_ms = 50\n").unwrap();
        assert_eq!(config.files, vec![PathBuf::from("a.toml")]);
        assert_eq!(config.validate(), Err(PolicyConfigError::PollInterval(50)));
        assert!(toml::from_str::<PolicyConfig>("fils = []\n").is_err());
    }
}
