//! Starts the gateway's components on top of the root CA and the leaf cache: the policy
//! watcher, the activity log, identity, the block pages, and the console, resolver and
//! proxy listeners.
//!
//! Everything that can fail here fails before the gateway reports ready, with an error
//! that names the component and its own cause.

use std::sync::Arc;
use std::time::Duration;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rustls::server::ResolvesServerCert;
use swg_activity::{ActivityLog, Recorder};
use swg_dns::gateway::{ActivityEvents, HintRecorder, PolicySource, SwgIdentifier, SwgPolicy};
use swg_dns::upstream::{system_upstreams, UpstreamAddr};
use swg_dns::{Backends, DnsServer};
use swg_identity::{
    CorrelationHints, InProcessHints, InProcessSpentTickets, LiveKeys, SecretStore, Signer,
    SqliteSecretStore,
};
use swg_policy::PolicyWatcher;
use swg_proxy::adapters::{ActivityRecorder, BlockPages, CaLeaves, IdentityAdapter, PolicyDecider};
use swg_proxy::boundary::Collaborators;
use swg_proxy::{Proxy, SignedValues};
use tokio::task::JoinSet;

use crate::app::{App, StartError};

/// How often a replica reloads the authentication key ids, so that a key deleted through
/// another replica stops working here too.
const LIVE_KEYS_REFRESH: Duration = Duration::from_secs(30);

/// How long open proxy connections may take to finish after a shutdown signal.
const PROXY_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Correlation hints kept in memory at most; each is small, so this bounds the hints to
/// tens of megabytes.
const HINT_CAPACITY: u64 = 500_000;

/// Spent one-time tickets, return URLs and form tokens remembered in memory at most.
/// Each is remembered only until it would have expired anyway.
const SPENT_TICKET_CAPACITY: u64 = 1_000_000;

/// File name of the console state (tenants' keys, disabler passwords, admin tokens) in the
/// data folder.
pub(crate) const CONSOLE_DATABASE: &str = "console.db";

/// The started components that shutdown must reach.
pub(crate) struct Components {
    /// Flushed on shutdown after every listener has stopped.
    pub(crate) activity: ActivityLog,
    /// The resolver's UDP, TCP and DoH listeners, stopped on shutdown.
    pub(crate) dns: DnsServer,
    /// Background tasks that stop when they see the shutdown token, plus the listeners.
    pub(crate) tasks: JoinSet<()>,
    /// Background tasks that run until aborted.
    pub(crate) aborted_on_shutdown: Vec<tokio::task::JoinHandle<()>>,
}

impl Components {
    /// Starts every component. Must run inside the tokio runtime.
    ///
    /// `operations` is the bound address of the operations listener, which the
    /// proxy refuses as a destination like every other listener of the process.
    pub(crate) async fn start(app: &App, operations: SocketAddr) -> Result<Components, StartError> {
        let config = &app.config;
        let mut tasks = JoinSet::new();
        let mut aborted_on_shutdown = Vec::new();

        let state_files = StateFiles::inspect(config);
        let policy =
            PolicyWatcher::spawn_from_config(&config.policy, &app.registry, app.shutdown.clone())
                .map_err(|error| StartError::component("policy")(Box::new(error)))?;
        log_tenants(&policy);

        let database = config.activity.database_path(&config.data_dir);
        let (activity, recorder) = ActivityLog::open(&database, &config.activity, &app.registry)
            .map_err(|error| StartError::component("activity log")(Box::new(error)))?;
        tracing::info!(database = %database.display(), "activity log open");

        let keys = config
            .identity
            .load_signing_keys(&config.data_dir)
            .map_err(|error| StartError::component("identity")(Box::new(error)))?;
        state_files.warn_if_signing_key_was_lost();
        let signer = Signer::new(keys, &config.identity, &app.registry)
            .map_err(|error| StartError::component("identity")(Box::new(error)))?;
        let secrets: Arc<dyn SecretStore> = Arc::new(
            SqliteSecretStore::open(&state_files.console)
                .map_err(|error| StartError::component("console state")(Box::new(error)))?,
        );
        state_files.warn_if_console_state_was_lost();
        let endpoints = public_endpoints(config);
        let console_url = endpoints.console_url.clone();
        let live_keys = Arc::new(LiveKeys::new());

        let console_state = swg_console::ConsoleState {
            config: Arc::new(endpoints),
            signer: signer.clone(),
            live_keys: Arc::clone(&live_keys),
            secrets: Arc::clone(&secrets),
            policy: Arc::clone(&policy),
            activity: activity.store(),
            root_certificate: Arc::new(app.root.certificate().clone()),
        };
        let tls = swg_console::tls_config(&app.leaves, &config.console.host_name)
            .map_err(|error| StartError::component("console")(Box::new(error)))?;
        let console_listener = bind("console", config.console.listen).await?;
        let mut own_listeners = vec![operations];
        own_listeners.extend(console_listener.local_addr().ok());

        let hints: Arc<dyn CorrelationHints> = Arc::new(InProcessHints::new(
            Duration::from_secs(config.identity.hint_ttl_secs),
            HINT_CAPACITY,
        ));
        let dns = start_dns(app, &policy, &signer, &live_keys, &recorder, &hints).await?;
        let proxy = build_proxy(app, &policy, &signer, &live_keys, &recorder, &hints)?;
        // With loopback or the host's network in `allowed_destinations`, clients
        // could otherwise reach the console, the metrics and the resolver through
        // the proxy.
        own_listeners.push(dns.tcp_addr());
        own_listeners.extend(dns.doh_addr());
        proxy.add_own_listeners(own_listeners);
        let listeners = proxy
            .bind()
            .await
            .map_err(|error| StartError::component("proxy")(Box::new(error)))?;

        // The first secrets are created, and printed once, only when everything
        // that reads files or binds addresses has started: a start that fails
        // on the configuration must not show secrets that the next start won't.
        seed_tenants(secrets.as_ref(), &policy, &console_url).await?;
        live_keys
            .refresh(secrets.as_ref())
            .await
            .map_err(|error| StartError::component("console state")(Box::new(error)))?;
        aborted_on_shutdown
            .push(Arc::clone(&live_keys).spawn_refresh(Arc::clone(&secrets), LIVE_KEYS_REFRESH));

        let shutdown = app.shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) =
                swg_console::serve(console_listener, tls, console_state, shutdown).await
            {
                tracing::error!(%error, "console listener failed");
            }
        });
        let shutdown = app.shutdown.clone();
        tasks.spawn(async move {
            proxy
                .serve(listeners, shutdown.cancelled_owned(), PROXY_DRAIN_DEADLINE)
                .await;
        });

        Ok(Components {
            activity,
            dns,
            tasks,
            aborted_on_shutdown,
        })
    }
}

/// The files that show whether the data folder was used before, and which of them
/// existed before this start created any.
///
/// A missing signing key file or console state is normal on a first start. In a
/// folder that other state shows was used before, swg still creates them, because
/// stopping would leave the gateway down, but it warns: the old device tokens, keys
/// and admin tokens no longer work. The root CA does not count as such state,
/// because `swg ca init` may create it before the first start.
struct StateFiles {
    /// The console state store.
    console: PathBuf,
    /// The signing key file, unless the keys are inline in the configuration.
    signing_key: Option<PathBuf>,
    /// Those of the files above that existed before this start.
    existed: Vec<PathBuf>,
}

impl StateFiles {
    /// Notes which state files exist; must run before any of them is created.
    fn inspect(config: &crate::config::Config) -> Self {
        let activity = config.activity.database_path(&config.data_dir);
        let console = config.data_dir.join(CONSOLE_DATABASE);
        let signing_key = config
            .identity
            .signing_keys
            .is_empty()
            .then(|| config.data_dir.join(&config.identity.signing_key_file));
        let existed = [Some(&activity), Some(&console), signing_key.as_ref()]
            .into_iter()
            .flatten()
            .filter(|path| path.exists())
            .cloned()
            .collect();
        Self {
            console,
            signing_key,
            existed,
        }
    }

    /// Returns the files other than `missing` that existed, joined for a log field,
    /// or `None` when `missing` existed too or nothing else did.
    fn other_state(&self, missing: &Path) -> Option<String> {
        if self.existed.iter().any(|path| path == missing) {
            return None;
        }
        let others: Vec<String> = self
            .existed
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        (!others.is_empty()).then(|| others.join(", "))
    }

    /// Warns when this start generated the signing key file in a used data folder.
    fn warn_if_signing_key_was_lost(&self) {
        let Some(path) = &self.signing_key else {
            return;
        };
        if let Some(found) = self.other_state(path) {
            tracing::warn!(
                path = %path.display(),
                found = %found,
                consequence = "device tokens, cookies and tickets signed with the old key are \
                               rejected, so every agent must enrol again",
                "signing key file was missing in a used data folder; generated a new key"
            );
        }
    }

    /// Warns when this start created the console state store in a used data folder.
    fn warn_if_console_state_was_lost(&self) {
        if let Some(found) = self.other_state(&self.console) {
            tracing::warn!(
                path = %self.console.display(),
                found = %found,
                consequence = "the old authentication keys, admin tokens and disabler \
                               passwords no longer exist, so every agent must enrol again \
                               with a new key",
                remedy = "to keep the old ones, stop swg and restore the file from a backup",
                "console state was missing in a used data folder; created an empty one with \
                 new first secrets"
            );
        }
    }
}

/// Starts the resolver's listeners with swg's policy, identity, activity log and
/// correlation hints behind them.
async fn start_dns(
    app: &App,
    policy: &Arc<PolicyWatcher>,
    signer: &Signer,
    live_keys: &Arc<LiveKeys>,
    recorder: &Recorder,
    hints: &Arc<dyn CorrelationHints>,
) -> Result<DnsServer, StartError> {
    let mut config = app.config.dns.clone();
    let auth_host = app.config.proxy.auth_host.trim_end_matches('.');
    if !auth_host.is_empty() {
        config.auth_host = Some(auth_host.to_ascii_lowercase());
    }
    let policies = PolicySource::Watcher(Arc::clone(policy));
    let backends = Backends {
        identifier: Arc::new(SwgIdentifier::new(
            Arc::new(signer.clone()),
            Arc::clone(live_keys),
            policies.clone(),
        )),
        policy: Arc::new(SwgPolicy::new(policies)),
        events: Arc::new(ActivityEvents::new(recorder.clone())),
        hints: Arc::new(HintRecorder::new(Arc::clone(hints))),
    };
    let certificates: Arc<dyn ResolvesServerCert> = Arc::new(
        app.leaves
            .resolver()
            .with_default_host(config.doh_host.clone()),
    );
    let server = DnsServer::start(config, backends, Some(certificates), &app.registry)
        .await
        .map_err(|error| StartError::component("resolver")(Box::new(error)))?;
    Ok(server)
}

/// Builds the inspection proxy on swg's policy, identity, pages, activity log and leaf
/// cache. When `[proxy] resolver_upstreams` is empty, origins are resolved through the
/// resolver's own upstreams, never through the system resolver, which may point back at
/// swg.
fn build_proxy(
    app: &App,
    policy: &Arc<PolicyWatcher>,
    signer: &Signer,
    live_keys: &Arc<LiveKeys>,
    recorder: &Recorder,
    hints: &Arc<dyn CorrelationHints>,
) -> Result<Proxy, StartError> {
    let mut config = app.config.proxy.clone();
    if config.resolver_upstreams.is_empty() {
        config.resolver_upstreams = resolver_upstreams(&app.config.dns)?;
    }
    let collaborators = Collaborators {
        identify: Arc::new(IdentityAdapter::new(
            Arc::new(signer.clone()),
            Arc::clone(live_keys),
            Arc::clone(hints),
        )),
        decide: Arc::new(PolicyDecider::watching(Arc::clone(policy))),
        pages: Arc::new(BlockPages(Arc::clone(&app.pages))),
        record: Arc::new(ActivityRecorder(recorder.clone())),
        leaves: Arc::new(CaLeaves(Arc::clone(&app.leaves))),
    };
    let signed = SignedValues {
        signer: Arc::new(signer.clone()),
        spent: Arc::new(InProcessSpentTickets::new(SPENT_TICKET_CAPACITY)),
    };
    Proxy::builder(config, collaborators)
        .signed_values(signed)
        .build(&app.registry)
        .map_err(|error| StartError::component("proxy")(Box::new(error)))
}

/// Returns the addresses of the resolver's plain UDP and TCP upstreams: `[dns] upstreams`,
/// or the `nameserver` lines of `/etc/resolv.conf` when that list is empty.
///
/// The proxy's resolver speaks plain DNS only, so DoT and DoH upstreams are left out, and a
/// list with only those is an error that points to `[proxy] resolver_upstreams`.
fn resolver_upstreams(dns: &swg_dns::DnsConfig) -> Result<Vec<SocketAddr>, StartError> {
    let mut upstreams = dns
        .upstream_addrs()
        .map_err(|error| StartError::component("proxy")(Box::new(error)))?;
    if upstreams.is_empty() {
        upstreams = system_upstreams(Path::new("/etc/resolv.conf"))
            .map_err(|error| StartError::component("proxy")(Box::new(error)))?;
    }
    let plain: Vec<SocketAddr> = upstreams
        .into_iter()
        .filter_map(|upstream| match upstream {
            UpstreamAddr::Udp(address) | UpstreamAddr::Tcp(address) => Some(address),
            UpstreamAddr::Tls { .. } | UpstreamAddr::Https { .. } => None,
        })
        .collect();
    if plain.is_empty() {
        return Err(StartError::component("proxy")(
            "[dns] upstreams has only tls:// or https:// entries, which the proxy's resolver \
             cannot use; set [proxy] resolver_upstreams to plain DNS servers"
                .into(),
        ));
    }
    Ok(plain)
}

/// Returns the console configuration with the endpoints handed to agents derived from
/// the listeners where the configuration leaves them at their defaults, so that agents
/// reach this gateway's actual ports.
fn public_endpoints(config: &crate::config::Config) -> swg_console::ConsoleConfig {
    let defaults = swg_console::ConsoleConfig::default();
    let mut console = config.console.clone();
    if console.doh_url == defaults.doh_url {
        console.doh_url = format!(
            "https://{}:{}/dns-query",
            config.dns.doh_host,
            config.dns.doh_listen.port()
        );
    }
    if console.proxy == defaults.proxy {
        let listen = config.proxy.explicit_listen;
        // "localhost" may resolve to 127.0.0.1 alone, which an IPv6-only listener
        // does not accept connections on.
        console.proxy = match listen.ip() {
            std::net::IpAddr::V6(ip) if ip.is_loopback() => format!("[::1]:{}", listen.port()),
            _ => format!("localhost:{}", listen.port()),
        };
    }
    if console.console_url == defaults.console_url {
        console.console_url = format!("https://{}:{}", console.host_name, console.listen.port());
    }
    console
}

/// Binds a TCP listener, naming the listener and address when that fails.
pub(crate) async fn bind(
    listener: &'static str,
    address: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            address,
            source,
        })
}

fn log_tenants(policy: &PolicyWatcher) {
    let set = policy.current();
    for tenant in set.tenants() {
        tracing::info!(
            tenant = tenant.id(),
            name = tenant.name(),
            "loaded tenant policy"
        );
    }
}

/// Prints what to try next after a tenant's first secrets, with this gateway's
/// console URL, as the README's "Try it" section explains.
fn write_next_steps(out: &mut dyn std::io::Write, console_url: &str) {
    let _ = writeln!(
        out,
        "Next steps (see \"Try it\" in README.md):
  swg ca export --format pem --out swg-root.pem
  swg agent run --server {console_url} --ca-file swg-root.pem --auth-key KEY \\
      --user alice@example.com --device laptop-1 \\
      --listen 127.0.0.1:5300=com.apple.mobilesafari --listen 127.0.0.1:5301=com.example.notes
  dig @127.0.0.1 -p 5300 example.com
A lost key or token is replaced with `swg secrets auth-key|admin-token --tenant ID`."
    );
}

/// Creates the first secrets of every tenant that lacks them and prints them once: the
/// admin token is stored hashed and cannot be shown again.
async fn seed_tenants(
    secrets: &dyn SecretStore,
    policy: &PolicyWatcher,
    console_url: &str,
) -> Result<(), StartError> {
    let seeded = swg_console::seed_policy_tenants(secrets, policy)
        .await
        .map_err(|error| StartError::component("console state")(Box::new(error)))?;
    for (tenant, created) in seeded {
        // Written with `writeln!`, not `println!`, so a closed standard output cannot panic.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Created the first secrets of tenant {tenant}; they are shown only now:"
        );
        if let Some(key) = &created.authentication_key {
            let _ = writeln!(
                out,
                "  authentication key (for agents and MDM profiles): {}",
                key.key
            );
        }
        if let Some(token) = &created.admin_token {
            let _ = writeln!(
                out,
                "  admin token (for the admin API):                  {}",
                token.token
            );
        }
        write_next_steps(&mut out, console_url);
        let _ = out.flush();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_endpoint_follows_explicit_listener() {
        let mut config = crate::config::Config::default();
        config.proxy.explicit_listen = "127.0.0.1:3128".parse().unwrap();
        assert_eq!(public_endpoints(&config).proxy, "localhost:3128");
        config.proxy.explicit_listen = "[::1]:3130".parse().unwrap();
        assert_eq!(public_endpoints(&config).proxy, "[::1]:3130");
        config.proxy.explicit_listen = "[::]:3131".parse().unwrap();
        assert_eq!(public_endpoints(&config).proxy, "localhost:3131");
    }
}
