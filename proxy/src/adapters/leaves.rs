use std::sync::Arc;

use rustls::sign::CertifiedKey;
use swg_ca::LeafCache;

use crate::boundary::LeafSource;

/// Leaves from swg-ca's cache.
pub struct CaLeaves(pub Arc<LeafCache>);

impl LeafSource for CaLeaves {
    fn leaf(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        match self.0.get(host) {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                tracing::debug!(host, %error, "no leaf for host");
                None
            }
        }
    }
}
