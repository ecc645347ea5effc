//! The gateway as one value: configuration, the metrics registry, the root
//! CA, the leaf cache and the shutdown token that every listener takes.
//!
//! [`App::build`] does everything that can fail before any port opens;
//! [`App::run`] binds the listeners, marks the gateway ready, and returns
//! once a signal has stopped them all. A new listener is one more field (or
//! argument) here and one more task in [`App::run`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use swg_ca::store::{self, CaFiles, CaOrigin};
use swg_ca::{LeafCache, RootCa};
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::components::Components;
use crate::config::Config;
use crate::operations::{self, OperationsState, Readiness};

/// A component's own start-up error, boxed: each crate has its own error type.
pub(crate) type ComponentError = Box<dyn std::error::Error + Send + Sync>;

/// How long open connections may take to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Error that stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The data folder could not be created.
    #[error("cannot create data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The root CA could not be loaded or generated.
    #[error(transparent)]
    Ca(#[from] swg_ca::CaError),
    /// The leaf cache could not be built.
    #[error(transparent)]
    LeafCache(#[from] swg_ca::LeafCacheError),
    /// A listener could not bind its address.
    #[error("cannot listen on {address} for the {listener} listener: {source}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The configured address.
        address: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The root CA could not sign a test leaf.
    #[error("the root CA cannot sign leaf certificates: {0}")]
    LeafCheck(swg_ca::LeafError),
    /// Signal handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(std::io::Error),
    /// The demo policy could not be written into the data folder.
    #[error("cannot write the demo policy into {path}: {source}")]
    DemoPolicy {
        /// The data folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A component (policy, activity log, console, resolver, proxy, pages) failed to start.
    #[error("cannot start the {component}: {source}")]
    Component {
        /// Which component.
        component: &'static str,
        /// Its own error, which names the file or value at fault.
        source: ComponentError,
    },
}

impl StartError {
    /// Wraps a component's own error.
    pub(crate) fn component(component: &'static str) -> impl FnOnce(ComponentError) -> StartError {
        move |source| StartError::Component { component, source }
    }
}

/// The running gateway's shared parts.
#[derive(Debug)]
pub(crate) struct App {
    /// The validated configuration.
    pub(crate) config: Config,
    /// The process's one metrics registry; components register into it.
    pub(crate) registry: Registry,
    /// The root CA that signs leaves.
    pub(crate) root: Arc<RootCa>,
    /// Leaves for every TLS listener (proxy, DoH, console).
    pub(crate) leaves: Arc<LeafCache>,
    /// Cancelled on SIGTERM or Ctrl-C; every listener stops accepting then.
    pub(crate) shutdown: CancellationToken,
    /// Reported by `/readyz`.
    pub(crate) readiness: Readiness,
    /// Block, warn, inspection and error pages, checked at start.
    pub(crate) pages: Arc<swg_blockpages::Pages>,
}

impl App {
    /// Creates the data folder, loads or generates the root CA and builds
    /// the leaf cache.
    pub(crate) fn build(mut config: Config) -> Result<Self, StartError> {
        create_data_dir(&config.data_dir)?;
        if config.policy.files.is_empty() {
            let path = crate::demo::install(&config.data_dir).map_err(|source| {
                StartError::DemoPolicy {
                    path: config.data_dir.clone(),
                    source,
                }
            })?;
            tracing::info!(policy = %path.display(), "no policy files configured; using the demo tenant");
            config.policy.files = vec![path];
        }

        let files = CaFiles::new(&config.ca, &config.data_dir);
        let (root, origin) = store::load_or_generate(&config.ca, &files)?;
        match origin {
            CaOrigin::Generated => tracing::info!(
                cert = %files.cert.display(),
                key = %files.key.display(),
                subject = root.subject(),
                key_type = %root.key_algorithm(),
                sha256 = root.fingerprint_hex(),
                "generated a new root CA; install it on devices with `swg ca export`"
            ),
            CaOrigin::Loaded => tracing::info!(
                cert = %files.cert.display(),
                subject = root.subject(),
                key_type = %root.key_algorithm(),
                sha256 = root.fingerprint_hex(),
                not_after = %root.not_after().format(&Rfc3339).unwrap_or_default(),
                "loaded the root CA"
            ),
        }
        let root = Arc::new(root);

        // Relative paths in `[pages]` are relative to the working directory, like every
        // other path in the configuration.
        let pages = swg_blockpages::Pages::new(&config.pages, std::path::Path::new("."))
            .map_err(|error| StartError::component("block pages")(Box::new(error)))?;

        let registry = Registry::new();
        let leaves = Arc::new(LeafCache::new(Arc::clone(&root), &config.leaf, &registry)?);

        Ok(Self {
            config,
            registry,
            root,
            leaves,
            shutdown: CancellationToken::new(),
            readiness: Readiness::default(),
            pages: Arc::new(pages),
        })
    }

    /// Binds every listener, serves until SIGTERM or Ctrl-C, then waits for
    /// the listeners to drain.
    pub(crate) async fn run(self) -> Result<(), StartError> {
        self.check_leaf_signing()?;
        crate::shutdown::cancel_on_signal(self.shutdown.clone()).map_err(StartError::Signals)?;

        let address = self.config.operations.listen;
        let listener = operations::bind(address)
            .await
            .map_err(|source| StartError::Bind {
                listener: "operations",
                address,
                source,
            })?;
        let bound = listener.local_addr().unwrap_or(address);
        tracing::info!(listen = %bound, "operations listener started (/healthz, /readyz, /metrics)");

        let mut components = Components::start(&self, bound).await?;

        let state = OperationsState {
            registry: self.registry.clone(),
            readiness: self.readiness.clone(),
            activity: components.activity.write_status(),
        };
        components.tasks.spawn(operations::serve(
            listener,
            state,
            self.shutdown.clone(),
            DRAIN_DEADLINE,
        ));

        self.readiness.set(true);
        tracing::info!("swg is ready");
        self.shutdown.cancelled().await;
        self.readiness.set(false);
        components.dns.stop_accepting();
        components.dns.drain(DRAIN_DEADLINE).await;

        while let Some(result) = components.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a listener task failed during shutdown");
            }
        }
        for task in &components.aborted_on_shutdown {
            task.abort();
        }
        components.activity.shutdown().await;
        tracing::info!("activity log flushed");
        tracing::info!("swg stopped");
        Ok(())
    }
}

impl App {
    /// Mints one leaf before opening any port, so a CA key that cannot sign
    /// stops the start instead of failing every handshake later.
    fn check_leaf_signing(&self) -> Result<(), StartError> {
        self.leaves
            .get("localhost")
            .map_err(StartError::LeafCheck)?;
        tracing::debug!(
            ca = self.root.fingerprint_hex(),
            "leaf signing check passed"
        );
        Ok(())
    }
}

fn create_data_dir(path: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt as _;

    // The folder contains the CA key and other secrets, so only the owner may
    // list it. An existing folder keeps its mode.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| {
            // "File exists" alone does not say that the path is something else.
            let source = if path.exists() && !path.is_dir() {
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the path exists and is not a folder; choose another with --data-dir or data_dir",
                )
            } else {
                source
            };
            StartError::DataDir {
                path: path.to_owned(),
                source,
            }
        })
}
