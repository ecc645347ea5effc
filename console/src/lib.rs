//! The console: the admin API and the agent API on one HTTPS listener.
//!
//! - Agents enrol with an authentication key (`POST /api/agent/enroll`), then call
//!   renewal, settings and activity with their device token as a bearer token.
//! - Administrators call the admin API with an admin token as a bearer token;
//!   read-only tokens may read everything and change nothing (403).
//!
//! `docs/openapi.yaml` describes every route, and `docs/console.md` names the file
//! or API that is the source of truth for each setting. Build the state ([`ConsoleState`]),
//! the TLS configuration ([`tls_config`]) and call [`serve`].

mod activity_api;
mod admin;
mod agent;
mod auth;
mod body;
mod config;
mod error;
mod listener;
mod policy_api;
mod profile;
mod router;
mod state;

pub use config::{ConfigError, ConsoleConfig};
pub use error::{ApiError, UNAUTHORIZED_MESSAGE};
pub use listener::{serve, tls_config};
pub use profile::Mdm;
pub use router::{route_table, router};
pub use state::ConsoleState;
