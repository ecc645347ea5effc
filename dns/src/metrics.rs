//! Prometheus metrics of the resolver.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// The resolver's metrics, registered once in the binary's registry.
#[derive(Clone)]
pub struct DnsMetrics {
    /// `swg_dns_queries_total{transport,action}`: answered queries.
    pub queries: IntCounterVec,
    /// `swg_dns_upstream_seconds`: time for one upstream exchange.
    pub upstream_seconds: Histogram,
    /// `swg_dns_upstream_errors_total{transport}`: failed upstream exchanges (timeout,
    /// I/O, TLS, HTTP), by upstream transport (`udp`, `tcp`, `tls`, `https`).
    pub upstream_errors: IntCounterVec,
    /// `swg_dns_cache_hits_total`: queries answered from the shared cache.
    pub cache_hits: IntCounter,
    /// `swg_dns_refused_total{reason}`: refused or rejected queries, connections and
    /// TLS handshakes.
    pub refused: IntCounterVec,
    /// `swg_dns_dropped_total{reason}`: packets dropped without an answer, queries not
    /// resolved because `max_queries_in_flight` were in flight (UDP: no answer, TCP:
    /// SERVFAIL, DoH: 503), and connections closed because the client left a response
    /// unread for the write timeout.
    pub dropped: IntCounterVec,
}

impl DnsMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.queries.clone()))?;
        registry.register(Box::new(metrics.upstream_seconds.clone()))?;
        registry.register(Box::new(metrics.upstream_errors.clone()))?;
        registry.register(Box::new(metrics.cache_hits.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        Ok(metrics)
    }

    /// Creates metrics registered nowhere, for tools (the agent) that export none.
    pub fn standalone() -> Self {
        Self::unregistered().expect("metric names and labels are valid constants")
    }

    fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(DnsMetrics {
            queries: IntCounterVec::new(
                Opts::new(
                    "swg_dns_queries_total",
                    "DNS queries answered, by transport and action",
                ),
                &["transport", "action"],
            )?,
            upstream_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "swg_dns_upstream_seconds",
                    "Time of one upstream DNS exchange",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "swg_dns_upstream_errors_total",
                    "Failed upstream DNS exchanges, by upstream transport",
                ),
                &["transport"],
            )?,
            cache_hits: IntCounter::new(
                "swg_dns_cache_hits_total",
                "DNS queries answered from the cache",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "swg_dns_refused_total",
                    "DNS queries refused or rejected, by reason",
                ),
                &["reason"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "swg_dns_dropped_total",
                    "DNS queries dropped or not resolved, and connections closed with responses unread, by reason",
                ),
                &["reason"],
            )?,
        })
    }
}
