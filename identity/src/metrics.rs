//! Prometheus metrics of the identity crate.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::{Purpose, Rejection};

/// Counters of rejected device tokens and other signed values.
#[derive(Clone)]
pub(crate) struct Metrics {
    token_rejections: IntCounterVec,
    signed_value_rejections: IntCounterVec,
}

impl Metrics {
    /// Creates the counters and registers them with `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let token_rejections = IntCounterVec::new(
            Opts::new(
                "swg_identity_token_rejections_total",
                "Device tokens rejected, by reason",
            ),
            &["reason"],
        )?;
        let signed_value_rejections = IntCounterVec::new(
            Opts::new(
                "swg_identity_signed_value_rejections_total",
                "Cookies, tickets and form tokens rejected, by purpose and reason",
            ),
            &["purpose", "reason"],
        )?;
        registry.register(Box::new(token_rejections.clone()))?;
        registry.register(Box::new(signed_value_rejections.clone()))?;
        Ok(Self {
            token_rejections,
            signed_value_rejections,
        })
    }

    /// Counts one rejection of a value made for `purpose`.
    pub(crate) fn count(&self, purpose: Purpose, rejection: Rejection) {
        if purpose == Purpose::DeviceToken {
            self.token_rejections
                .with_label_values(&[rejection.reason()])
                .inc();
        } else {
            self.signed_value_rejections
                .with_label_values(&[purpose.label(), rejection.reason()])
                .inc();
        }
    }
}
