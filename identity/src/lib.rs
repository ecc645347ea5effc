//! Tenants' secrets, device tokens, signed cookies and tickets, correlation hints.
//!
//! Everything a device or a browser presents to swg to say who it is passes through
//! this crate:
//!
//! - [`Signer`] issues and verifies every signed value: device tokens for agents,
//!   the `__swg_id` identity cookie, the `__swg_ack` warn acknowledgement cookie,
//!   one-time tickets, "continue" form tokens, the auth host's gateway cookie and
//!   its signed return URL. Each value carries a purpose, an audience and an expiry,
//!   and its MAC is domain-separated by purpose, so a value is useless for another
//!   purpose, host or tenant. See [`signed`] for the wire format.
//! - [`SigningKeys`] holds the HMAC keys, loaded from the data folder or the
//!   configuration so that every replica accepts the same tokens.
//! - [`SecretStore`] stores tenants' authentication keys, disabler passwords and
//!   hashed admin tokens; [`SqliteSecretStore`] is the embedded implementation.
//! - [`SpentTickets`] enforces single use of tickets and form tokens.
//! - [`CorrelationHints`] lets the proxy learn from the resolver which device asked
//!   for a host.
//! - [`client_network`] gives the network a client address is counted under by
//!   per-client limits, and [`ClientSlots`] counts open connections per client.
//!
//! This crate depends on no other swg crate.

mod clients;
mod clock;
mod config;
mod cookie;
mod device_token;
mod hints;
mod identity;
mod live_keys;
mod metrics;
mod random;
mod rejection;
mod secrets;
pub mod signed;
mod signing_keys;
mod spent;
mod sqlite_store;
mod store;
mod ticket;

pub use clients::{
    client_network, ClientSlot, ClientSlots, SlotLimit, DEFAULT_IPV6_CLIENT_PREFIX_LEN,
    IPV6_CLIENT_PREFIX_LENS,
};
pub use clock::unix_now;
pub use config::{ConfigError, IdentityConfig, InlineSigningKey};
pub use cookie::{
    registrable_domain, AckCookie, AckEntry, GatewayCookie, IdentityCookie, MAX_ACK_ENTRIES,
};
pub use device_token::{DeviceClaims, IssuedDeviceToken};
pub use hints::{CorrelationHints, HintsError, InProcessHints};
pub use identity::{AppClass, Discovery, Identity};
pub use live_keys::LiveKeys;
pub use rejection::Rejection;
pub use secrets::{
    seed_tenant, sha256_hex, AdminTokenRecord, AuthenticationKey, DisablerPassword,
    DisablerPasswords, NewAdminToken, Role, SaltedHash, SeededSecrets,
};
pub use signed::{Purpose, Signer, MAX_SIGNED_VALUE_LEN};
pub use signing_keys::{SigningKeyError, SigningKeys};
pub use spent::{InProcessSpentTickets, SpentTickets, SpentTicketsError};
pub use sqlite_store::SqliteSecretStore;
pub use store::{BoxFuture, SecretStore, StoreError};
pub use ticket::{ContinueForm, ReturnUrl, Ticket, UrlTooLong};
