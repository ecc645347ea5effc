use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use swg_identity::{CorrelationHints, Identity, LiveKeys, Signer};

use crate::boundary::{AppClass, ClientIdentity, Discovery, Identify};

/// Device tokens verified by swg-identity's signer, and correlation hints from its
/// hint store.
pub struct IdentityAdapter {
    signer: Arc<Signer>,
    live_keys: Arc<LiveKeys>,
    hints: Arc<dyn CorrelationHints>,
}

impl IdentityAdapter {
    /// Creates the adapter.
    pub fn new(
        signer: Arc<Signer>,
        live_keys: Arc<LiveKeys>,
        hints: Arc<dyn CorrelationHints>,
    ) -> IdentityAdapter {
        IdentityAdapter {
            signer,
            live_keys,
            hints,
        }
    }
}

fn from_hint(identity: Identity) -> ClientIdentity {
    ClientIdentity {
        tenant: identity.tenant,
        user: identity.user,
        device: identity.device,
        app_bundle_id: identity.app_bundle_id,
        app_class: AppClass::from_code(identity.app_class.code()),
        discovery: Discovery::Correlation,
    }
}

impl Identify for IdentityAdapter {
    fn identify_device_token(&self, token: &str) -> Option<ClientIdentity> {
        let claims = self
            .signer
            .verify_device_token(token, swg_identity::unix_now(), &self.live_keys)
            .ok()?;
        // NOTE: a device token names no app. Explicit-proxy clients are browsers
        // configured by PAC or by hand, so they are treated as browsers.
        Some(ClientIdentity {
            tenant: claims.tenant,
            user: claims.user,
            device: claims.device,
            app_bundle_id: None,
            app_class: AppClass::Browser,
            discovery: Discovery::Token,
        })
    }

    fn identify_correlation_hint<'a>(
        &'a self,
        client: IpAddr,
        host: &'a str,
    ) -> BoxFuture<'a, Option<ClientIdentity>> {
        Box::pin(async move {
            match self.hints.lookup_host(client, host).await {
                Ok(Some(identity)) => return Some(from_hint(identity)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "correlation hint lookup failed");
                    return None;
                }
            }
            match self.hints.lookup_ip(client).await {
                Ok(found) => found.map(from_hint),
                Err(error) => {
                    tracing::warn!(%error, "correlation hint lookup failed");
                    None
                }
            }
        })
    }
}
