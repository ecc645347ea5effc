//! The agent-facing resolver: DoH, UDP and TCP listeners, per-app steering, upstream
//! forwarding.
//!
//! [`DnsServer::start`] binds the listeners; every query goes to one [`Resolver`],
//! which identifies the client (device token or location), reads the app from the
//! [context option](context), resolves upstream through a shared cache, and applies the
//! tenant's verdict for the app class. What the resolver needs from the policy,
//! identity and activity components comes in through the traits of [`backends`].

pub mod agent;
pub mod answer;
pub mod backends;
pub mod cache;
pub mod config;
pub mod connections;
pub mod context;
pub mod doh;
pub mod gateway;
pub mod metrics;
pub mod ratelimit;
pub mod resolver;
mod secure_upstream;
pub mod server;
pub mod tcp;
pub mod udp;
pub mod upstream;
pub mod wire;

pub use backends::{
    AppRef, AppTreatment, Client, ClientIdentifier, Decision, DnsPolicy, EventAction, EventSink,
    HintSink, Identification, QueryEvent, SteerHint, TokenRejection, Verdict,
};
pub use config::{AppBlockAnswer, ConfigError, DnsConfig};
pub use context::{AppClass, QueryContext, CONTEXT_OPTION_CODE};
pub use resolver::{Backends, Resolver, Transport};
pub use server::{DnsServer, ServerError};
