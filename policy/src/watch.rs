//! Hot reload: a tokio task polls the policy files and feed files and swaps in a new
//! [`PolicySet`] when they change. Readers load the current set through `arc-swap`, so
//! they never wait on a lock and never see half a policy. A set that fails validation is
//! logged and counted, and the previous set stays in force.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::error::{DiagnosticKind, LoadErrors};
use crate::set::PolicySet;
use crate::tenant::Tenant;
use crate::upload::Upload;

/// How often the files are checked by default.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How often a set that failed because a file was missing is retried although nothing
/// that is watched changed (the missing file itself is not watched yet).
const MISSING_FILE_RETRY: Duration = Duration::from_secs(5);

/// The policy metrics.
#[derive(Debug, Clone)]
pub struct PolicyMetrics {
    reloads: IntCounterVec,
    rules: IntGaugeVec,
}

impl PolicyMetrics {
    /// Creates and registers `swg_policy_reload_total{result}` and
    /// `swg_policy_rules{tenant,kind}`.
    pub fn new(registry: &Registry) -> Result<PolicyMetrics, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "swg_policy_reload_total",
                "Policy reloads by result (ok, error)",
            ),
            &["result"],
        )?;
        let rules = IntGaugeVec::new(
            Opts::new(
                "swg_policy_rules",
                "Loaded policy rules per tenant and kind",
            ),
            &["tenant", "kind"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(rules.clone()))?;
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        Ok(PolicyMetrics { reloads, rules })
    }

    fn loaded(&self, set: &PolicySet) {
        self.rules.reset();
        for tenant in set.tenants() {
            let stats = tenant.stats();
            for (kind, value) in [
                ("policies", stats.policies),
                ("block", stats.block_entries),
                ("allow", stats.allow_entries),
                ("exceptions", stats.exceptions),
                ("locations", stats.locations),
                ("feed_entries", stats.feed_entries),
                ("feed_skipped", stats.feed_skipped),
            ] {
                self.rules
                    .with_label_values(&[tenant.id(), kind])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }

    fn count(&self, result: &str) {
        self.reloads.with_label_values(&[result]).inc();
    }
}

/// Reasons a replacement policy was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The new text does not validate; nothing was written.
    #[error("the new policy is invalid: {0}")]
    Invalid(LoadErrors),
    /// The path is not one of the watched policy files.
    #[error("{0} is not one of the loaded policy files")]
    UnknownFile(PathBuf),
    /// No loaded tenant has this id.
    #[error("no tenant `{0}` is loaded")]
    UnknownTenant(String),
    /// The tenant's file contains other tenants too, which a per-tenant replacement
    /// would overwrite.
    #[error("tenant `{tenant}` shares {} with other tenants; replace the whole file instead", file.display())]
    SharedFile {
        /// The tenant.
        tenant: String,
        /// Its file.
        file: PathBuf,
    },
    /// The new text defines other tenants than the one being replaced.
    #[error("the new policy must define exactly tenant `{expected}`; it defines: {found}")]
    WrongTenant {
        /// The tenant being replaced.
        expected: String,
        /// The tenant ids the text defines.
        found: String,
    },
    /// Writing the file failed; the old file is unchanged.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The policy file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// State of one file at its last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    hash: u64,
}

#[derive(Debug, Default)]
struct WatchState {
    fingerprints: HashMap<PathBuf, Fingerprint>,
    /// The errors of the last failed attempt, to log a failure once, not every poll.
    last_failure: Option<(LoadErrors, Instant)>,
}

/// The current policy set of a running process and the task that reloads it.
#[derive(Debug)]
pub struct PolicyWatcher {
    paths: Vec<PathBuf>,
    poll_interval: Duration,
    current: ArcSwap<PolicySet>,
    metrics: PolicyMetrics,
    /// Serializes reloads and replacements; readers never take it.
    state: Mutex<WatchState>,
}

impl PolicyWatcher {
    /// Loads the files and registers the metrics. Fails when the files are invalid, since a
    /// process must not start without a policy.
    pub fn new(paths: Vec<PathBuf>, registry: &Registry) -> Result<Arc<PolicyWatcher>, WatchError> {
        let metrics = PolicyMetrics::new(registry).map_err(WatchError::Metrics)?;
        let set = PolicySet::load(&paths).map_err(WatchError::Invalid)?;
        metrics.loaded(&set);
        let mut state = WatchState::default();
        for path in paths.iter().chain(set.inputs()) {
            if let Some(fingerprint) = fingerprint(path, None) {
                state.fingerprints.insert(path.clone(), fingerprint);
            }
        }
        Ok(Arc::new(PolicyWatcher {
            paths,
            poll_interval: POLL_INTERVAL,
            current: ArcSwap::from_pointee(set),
            metrics,
            state: Mutex::new(state),
        }))
    }

    /// Loads the files, registers the metrics and starts the reload task, which stops when
    /// `shutdown` is cancelled. Must be called inside a tokio runtime.
    pub fn spawn(
        paths: Vec<PathBuf>,
        registry: &Registry,
        shutdown: CancellationToken,
    ) -> Result<Arc<PolicyWatcher>, WatchError> {
        let watcher = PolicyWatcher::new(paths, registry)?;
        watcher.start(shutdown);
        Ok(watcher)
    }

    /// Loads the files of a `[policy]` configuration and starts the reload task with its
    /// poll interval.
    pub fn spawn_from_config(
        config: &crate::PolicyConfig,
        registry: &Registry,
        shutdown: CancellationToken,
    ) -> Result<Arc<PolicyWatcher>, WatchError> {
        let mut watcher = PolicyWatcher::new(config.files.clone(), registry)?;
        if let Some(inner) = Arc::get_mut(&mut watcher) {
            inner.poll_interval = config.poll_interval();
        }
        watcher.start(shutdown);
        Ok(watcher)
    }

    /// Starts the reload task for an existing watcher.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let watcher = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(watcher.poll_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = interval.tick() => {}
                }
                let watcher = watcher.clone();
                // Stat, hash and rebuild on the blocking pool: a rebuild of a large feed
                // takes a second and must not stall the runtime's workers.
                if let Err(error) = tokio::task::spawn_blocking(move || watcher.check_now()).await {
                    tracing::error!(%error, "policy reload task failed");
                }
            }
            tracing::debug!("policy watcher stopped");
        })
    }

    /// Returns the policy set in force, without taking a lock; the set is always complete.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The watched policy files.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Checks the files once and reloads when they changed. Returns true when a new set
    /// is now in force.
    pub fn check_now(&self) -> bool {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.current();
        let watched: Vec<PathBuf> = self.paths.iter().chain(current.inputs()).cloned().collect();

        let mut changed = false;
        for path in &watched {
            let previous = state.fingerprints.get(path).copied();
            let now = fingerprint(path, previous);
            if now != previous {
                changed = true;
                match now {
                    Some(now) => state.fingerprints.insert(path.clone(), now),
                    None => state.fingerprints.remove(path),
                };
            }
        }
        let retry_missing = state.last_failure.as_ref().is_some_and(|(errors, at)| {
            at.elapsed() >= MISSING_FILE_RETRY
                && errors
                    .diagnostics
                    .iter()
                    .any(|d| matches!(d.kind, DiagnosticKind::MissingFeed | DiagnosticKind::Io))
        });
        if !changed && !retry_missing {
            return false;
        }

        match PolicySet::load(&self.paths) {
            Ok(set) => {
                for path in set.inputs() {
                    if let Some(fingerprint) =
                        fingerprint(path, state.fingerprints.get(path).copied())
                    {
                        state.fingerprints.insert(path.clone(), fingerprint);
                    }
                }
                self.install(set);
                state.last_failure = None;
                true
            }
            Err(errors) => {
                let repeated = state
                    .last_failure
                    .as_ref()
                    .is_some_and(|(last, _)| *last == errors);
                if !repeated {
                    self.metrics.count("error");
                    tracing::error!(
                        errors = errors.count(),
                        "policy reload rejected; the previous policy stays in force"
                    );
                    for diagnostic in &errors.diagnostics {
                        tracing::error!("{diagnostic}");
                    }
                }
                state.last_failure = Some((errors, Instant::now()));
                false
            }
        }
    }

    fn install(&self, set: PolicySet) {
        self.metrics.loaded(&set);
        self.metrics.count("ok");
        tracing::info!(
            tenants = set.tenants().len(),
            names = set.name_count(),
            feeds = set.feeds().len(),
            "policy loaded"
        );
        for feed in set.feeds() {
            let stats = &feed.stats;
            if stats.skipped == 0 {
                continue;
            }
            let first = stats.skipped_examples.first();
            // A feed that is mostly unusable was probably replaced by the wrong file.
            if stats.skipped > stats.entries {
                tracing::warn!(
                    feed = %feed.path.display(),
                    entries = stats.entries,
                    skipped = stats.skipped,
                    first_line = first.map(|line| line.line),
                    first_reason = first.map(|line| line.reason.as_str()),
                    "most lines of the feed were skipped"
                );
            } else {
                tracing::info!(
                    feed = %feed.path.display(),
                    entries = stats.entries,
                    skipped = stats.skipped,
                    "feed lines skipped"
                );
            }
        }
        // A renamed or deleted tenant locks its enrolled devices out: make that visible.
        let previous = self.current();
        for tenant in previous.tenants() {
            if set.tenant(tenant.id()).is_none() {
                tracing::warn!(
                    tenant = tenant.id(),
                    file = %tenant.file().display(),
                    "tenant is no longer in the policy; its enrolled devices are now rejected"
                );
            }
        }
        for tenant in set.tenants() {
            if previous.tenant(tenant.id()).is_none() && !previous.tenants().is_empty() {
                tracing::info!(tenant = tenant.id(), "tenant added to the policy");
            }
        }
        self.current.store(Arc::new(set));
    }

    /// Validates `text` as the new content of the policy file `path` (together with the
    /// other watched files), writes it atomically (temporary file and rename) and puts it
    /// in force. An invalid text changes nothing.
    pub fn replace_file(&self, path: &Path, text: &str) -> Result<Arc<PolicySet>, ReplaceError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !self.paths.iter().any(|p| p == path) {
            return Err(ReplaceError::UnknownFile(path.to_path_buf()));
        }
        let set = self.validate_replacement(path, text, &Upload::in_folder(path))?;
        self.write_and_install(path, text, set, &mut state)
    }

    /// Replaces the policy of one tenant whose file holds only that tenant. The new text
    /// must define exactly that tenant, and its feed paths must stay inside the folder
    /// of the tenant's file ([`Upload::in_folder`]).
    pub fn replace_tenant(&self, tenant: &str, text: &str) -> Result<Arc<PolicySet>, ReplaceError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (file, set) =
            self.tenant_replacement(tenant, text, |tenant| Upload::in_folder(tenant.file()))?;
        self.write_and_install(&file, text, set, &mut state)
    }

    /// Replaces the policy of one tenant with a text that the tenant uploaded, as
    /// [`PolicyWatcher::replace_tenant`] does, except that the text may name only the
    /// feed files that the tenant's policy in force names ([`Upload::for_tenant`]).
    /// Its diagnostics do not name other tenants, their networks or their files.
    pub fn replace_uploaded_tenant(
        &self,
        tenant: &str,
        text: &str,
    ) -> Result<Arc<PolicySet>, ReplaceError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (file, set) = self.tenant_replacement(tenant, text, Upload::for_tenant)?;
        self.write_and_install(&file, text, set, &mut state)
    }

    /// Runs every check of [`PolicyWatcher::replace_uploaded_tenant`] against the policy
    /// in force and the files on disk, and writes and installs nothing.
    pub fn check_uploaded_tenant(&self, tenant: &str, text: &str) -> Result<(), ReplaceError> {
        self.tenant_replacement(tenant, text, Upload::for_tenant)
            .map(|_| ())
    }

    /// Validates `text` as the new content of `tenant`'s policy file, together with the
    /// other watched files, under the rule that `upload` builds from the tenant in
    /// force. Returns the file and the new set.
    fn tenant_replacement(
        &self,
        tenant: &str,
        text: &str,
        upload: impl FnOnce(&Tenant) -> Upload,
    ) -> Result<(PathBuf, PolicySet), ReplaceError> {
        let current = self.current();
        let in_force = current
            .tenant(tenant)
            .ok_or_else(|| ReplaceError::UnknownTenant(tenant.to_string()))?;
        let file = in_force.file().to_path_buf();
        if current
            .tenants()
            .iter()
            .any(|t| t.file() == file && t.id() != tenant)
        {
            return Err(ReplaceError::SharedFile {
                tenant: tenant.to_string(),
                file,
            });
        }

        let set = self.validate_replacement(&file, text, &upload(in_force))?;
        let defined: Vec<&str> = set
            .tenants()
            .iter()
            .filter(|t| t.file() == file)
            .map(|t| t.id())
            .collect();
        if defined != [tenant] {
            return Err(ReplaceError::WrongTenant {
                expected: tenant.to_string(),
                found: defined.join(", "),
            });
        }
        Ok((file, set))
    }

    fn validate_replacement(
        &self,
        path: &Path,
        text: &str,
        upload: &Upload,
    ) -> Result<PolicySet, ReplaceError> {
        let mut files = Vec::with_capacity(self.paths.len());
        for other in &self.paths {
            let content = if other == path {
                text.to_string()
            } else {
                std::fs::read_to_string(other).map_err(|source| ReplaceError::Write {
                    path: other.clone(),
                    source,
                })?
            };
            files.push((other.clone(), content));
        }
        PolicySet::from_texts(&files, Some(upload)).map_err(ReplaceError::Invalid)
    }

    fn write_and_install(
        &self,
        path: &Path,
        text: &str,
        set: PolicySet,
        state: &mut WatchState,
    ) -> Result<Arc<PolicySet>, ReplaceError> {
        write_atomically(path, text.as_bytes()).map_err(|source| ReplaceError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        for input in self.paths.iter().chain(set.inputs()) {
            if let Some(fingerprint) = fingerprint(input, state.fingerprints.get(input).copied()) {
                state.fingerprints.insert(input.clone(), fingerprint);
            }
        }
        state.last_failure = None;
        self.install(set);
        Ok(self.current())
    }
}

/// Reasons the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The policy files are invalid.
    #[error("{0}")]
    Invalid(LoadErrors),
    /// The metrics could not be registered (for example, registered twice).
    #[error("cannot register the policy metrics: {0}")]
    Metrics(prometheus::Error),
}

/// Stats `path` and hashes its content when the size or modification time changed (or
/// when there is no previous fingerprint). `None` when the file cannot be read. A directory
/// (category feed) is fingerprinted by its metadata only; its files are watched one by one.
fn fingerprint(path: &Path, previous: Option<Fingerprint>) -> Option<Fingerprint> {
    let metadata = std::fs::metadata(path).ok()?;
    let modified = metadata.modified().ok();
    let len = metadata.len();
    if let Some(previous) = previous {
        if previous.modified == modified && previous.len == len {
            return Some(previous);
        }
    }
    let hash = if metadata.is_dir() {
        0
    } else {
        let bytes = std::fs::read(path).ok()?;
        let mut hasher = DefaultHasher::new();
        hasher.write(&bytes);
        hasher.finish()
    };
    Some(Fingerprint {
        modified,
        len,
        hash,
    })
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`,
/// so a reader sees the old content or the new one, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("policy.toml");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
