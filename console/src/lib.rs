//! The console: the admin API and the agent API on one HTTPS listener.
//!
//! - Agents enrol with an authentication key (`POST /api/agent/enroll`), then call
//!   renewal, settings and activity with their device token as a bearer token.
//! - Administrators call the admin API with an admin token as a bearer token;
//!   read-only tokens may read everything and change nothing (403).
//!
//! `docs/openapi.yaml` describes every route, and `docs/console.md` names the file
//! or API that is the source of truth for each setting.
//!
//! Wiring, as the binary does it:
//!
//! ```no_run
//! # async fn wire(
//! #     data_dir: &std::path::Path,
//! #     policy: std::sync::Arc<swg_policy::PolicyWatcher>,
//! #     activity: std::sync::Arc<dyn swg_activity::ActivityStore>,
//! #     leaves: std::sync::Arc<swg_ca::LeafCache>,
//! #     registry: &prometheus::Registry,
//! #     shutdown: tokio_util::sync::CancellationToken,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! let identity = swg_identity::IdentityConfig::default();
//! let config = swg_console::ConsoleConfig::default();
//! let signer = swg_identity::Signer::new(identity.load_signing_keys(data_dir)?, &identity, registry)?;
//! let secrets = Arc::new(swg_identity::SqliteSecretStore::open(&data_dir.join("console.db"))?);
//! for (tenant, created) in swg_console::seed_policy_tenants(secrets.as_ref(), &policy).await? {
//!     // Print created.authentication_key and created.admin_token for the operator.
//! #   let _ = (tenant, created);
//! }
//! let live_keys = Arc::new(swg_identity::LiveKeys::new());
//! live_keys.refresh(secrets.as_ref()).await?;
//!
//! let state = swg_console::ConsoleState {
//!     config: Arc::new(config.clone()),
//!     signer,
//!     live_keys,
//!     secrets,
//!     policy,
//!     activity,
//!     root_certificate: Arc::new(leaves.root().certificate().clone()),
//! };
//! let tls = swg_console::tls_config(&leaves, &config.host_name)?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! swg_console::serve(listener, tls, state, shutdown).await?;
//! # Ok(())
//! # }
//! ```

mod activity_api;
mod admin;
mod agent;
mod auth;
mod body;
mod config;
mod error;
mod lingering;
mod listener;
mod policy_api;
mod profile;
mod query;
mod router;
mod seed;
mod state;

pub use config::{ConfigError, ConsoleConfig};
pub use error::{ApiError, UNAUTHORIZED_MESSAGE};
pub use listener::{serve, tls_config};
pub use profile::Mdm;
pub use router::{route_table, router};
pub use seed::seed_policy_tenants;
pub use state::ConsoleState;
