//! The signer and spent-ticket store of swg's signed values, and the proxy's
//! memory of auth host redirects.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use swg_identity::{Signer, SpentTickets};

/// Upper bound of remembered redirects of each kind; beyond it the oldest are
/// forgotten, which costs at most one more redirect each.
const FLOW_MEMORY_CAPACITY: u64 = 1_000_000;

/// The signer of the identity cookie, the acknowledgement cookie, tickets, return
/// URLs and warn form tokens, and the store that makes single-use values single-use.
///
/// In a cluster every replica needs the same signing keys and a shared store, so
/// that a ticket issued by one replica is redeemed, once, on another.
#[derive(Clone)]
pub struct SignedValues {
    /// Issues and verifies signed values.
    pub signer: Arc<Signer>,
    /// Records spent tickets, return URLs and form tokens.
    pub spent: Arc<dyn SpentTickets>,
}

/// Recent redirects to the auth host, kept in this process.
pub(crate) struct FlowMemory {
    /// `(client IP, host)` pairs sent to the auth host within the attempt window:
    /// a second navigation without identity gets the inspection page, not another
    /// redirect.
    attempts: moka::sync::Cache<(IpAddr, String), ()>,
    /// `(tenant, device)` pairs sent to the auth host to set the gateway cookie, so
    /// that each device takes that extra redirect once.
    registered: moka::sync::Cache<(String, String), ()>,
}

impl FlowMemory {
    pub(crate) fn new(attempt_window: Duration, gateway_lifetime: Duration) -> FlowMemory {
        FlowMemory {
            attempts: moka::sync::Cache::builder()
                .max_capacity(FLOW_MEMORY_CAPACITY)
                .time_to_live(attempt_window)
                .build(),
            registered: moka::sync::Cache::builder()
                .max_capacity(FLOW_MEMORY_CAPACITY)
                .time_to_live(gateway_lifetime)
                .build(),
        }
    }

    /// Records an identification attempt for `host` from `client`; returns `false`
    /// when one was already made within the attempt window.
    pub(crate) fn start_attempt(&self, client: IpAddr, host: &str) -> bool {
        self.attempts
            .entry((client, host.to_owned()))
            .or_insert(())
            .is_fresh()
    }

    /// Records that `device` of `tenant` is sent to set its gateway cookie; returns
    /// `false` when it already was.
    pub(crate) fn start_registration(&self, tenant: &str, device: &str) -> bool {
        self.registered
            .entry((tenant.to_owned(), device.to_owned()))
            .or_insert(())
            .is_fresh()
    }
}
