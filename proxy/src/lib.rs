//! The inspection proxy: TLS landing, plain-HTTP landing, explicit proxy, upstream client.
//!
//! Every request is tied to an identity (a device token on the explicit proxy; on
//! the landings the signed `__swg_id` cookie, a correlation hint, or a ticket from
//! swg's auth host), judged by policy on its full URL, and then
//! forwarded to its origin through swg's own resolver and a destination check that
//! keeps the proxy out of private networks, or refused with a page.

pub mod adapters;
mod auth_host;
mod blocked;
mod body;
pub mod boundary;
mod budget;
mod config;
mod connection;
mod cookies;
pub mod destination;
mod headers;
pub mod host;
mod identify;
mod idle;
mod listener;
mod malformed;
mod metrics;
mod preface;
mod prefixed;
mod request;
mod reserved;
pub mod resolve;
mod send_queue;
mod server;
mod signed;
mod stall;
mod target;
mod tunnel;
pub mod upstream;
mod warn;
mod websocket;

pub use body::{BodyError, BoxError, ProxyBody};
pub use config::{ConfigError, LimitConfig, ProxyConfig, TimeoutConfig};
pub use connection::Listener;
pub use metrics::ProxyMetrics;
pub use request::RESERVED_PREFIX;
pub use server::{Listeners, Proxy, ProxyBuilder, ProxyError};
pub use signed::SignedValues;
