//! Root CA loading, generation and export; leaf minting; the leaf cache.
//!
//! - [`RootCa`] is the signing CA, loaded from PEM files or generated
//!   ([`store`] keeps it in the data folder with the key file at mode 0600).
//! - [`LeafCache`] mints leaf certificates per host on demand with one
//!   process-wide P-256 leaf key and caches them as rustls `CertifiedKey`s;
//!   [`LeafResolver`] serves them to rustls by SNI.
//! - [`export`] turns the root certificate into PEM, DER or an Apple
//!   configuration profile.
//!
//! All TLS uses rustls with the ring provider, which [`crypto_provider`]
//! returns.
//!
//! A TLS listener presents leaves by SNI like this:
//!
//! ```
//! use std::sync::Arc;
//!
//! use swg_ca::{CaConfig, KeyType, LeafCache, LeafConfig, RootCa};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = prometheus::Registry::new();
//! let root = Arc::new(RootCa::generate(KeyType::EcdsaP256, &CaConfig::default())?);
//! let leaves = Arc::new(LeafCache::new(root, &LeafConfig::default(), &registry)?);
//!
//! // Clients send no SNI for IP addresses, so name the listener's own IP.
//! let resolver = leaves.resolver().with_default_host("127.0.0.1");
//! let config = rustls::ServerConfig::builder_with_provider(swg_ca::crypto_provider())
//!     .with_safe_default_protocol_versions()?
//!     .with_no_client_auth()
//!     .with_cert_resolver(Arc::new(resolver));
//! # let _ = config;
//!
//! // A proxy that already knows the host requests its leaf directly.
//! let leaf = leaves.get("www.example.com")?;
//! assert_eq!(leaf.cert.len(), 2, "leaf and root");
//! # Ok(())
//! # }
//! ```

mod cache;
mod config;
mod der;
pub mod export;
mod host;
mod key;
mod leaf;
mod pem;
mod root;
pub mod store;

use std::sync::Arc;

pub use cache::{LeafCache, LeafCacheError, LeafResolver};
pub use config::{
    CaConfig, ConfigError, KeyType, KeyTypeError, LeafConfig, MAX_LEAF_VALIDITY_DAYS, MIN_RSA_BITS,
};
pub use host::{normalize as normalize_host, HostError, LeafHost};
pub use key::KeyAlgorithm;
pub use leaf::{LeafError, LeafMinter, BACKDATE};
pub use root::{CaCertificate, CaError, RootCa};

/// Returns the rustls crypto provider swg uses everywhere: ring.
///
/// Listeners build their `ServerConfig` with
/// `ServerConfig::builder_with_provider(swg_ca::crypto_provider())` rather
/// than relying on a process-wide default provider.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
