//! Prometheus metrics of the proxy.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The proxy's metrics, registered once in the binary's registry.
#[derive(Clone)]
pub struct ProxyMetrics {
    /// `swg_proxy_requests_total{listener,action}`.
    pub requests: IntCounterVec,
    /// `swg_proxy_upstream_seconds`: time from sending a request upstream to its response head.
    pub upstream_seconds: HistogramVec,
    /// `swg_proxy_tls_handshake_failures_total{reason}`.
    pub tls_handshake_failures: IntCounterVec,
    /// `swg_proxy_active_connections{listener}`.
    pub active_connections: IntGaugeVec,
    /// `swg_proxy_upstream_errors_total{kind}`.
    pub upstream_errors: IntCounterVec,
    /// `swg_proxy_rejected_connections_total{listener,reason}`: connections closed at accept.
    pub rejected_connections: IntCounterVec,
    /// `swg_proxy_upstream_resends_total{reason}`: requests sent to an HTTP/2 origin
    /// again because it did not process them.
    pub upstream_resends: IntCounterVec,
    /// `swg_proxy_stalled_responses_total`: response bodies ended because no frame
    /// moved for `timeouts.idle_ms`.
    pub stalled_responses: IntCounter,
    /// `swg_proxy_response_buffer_bytes`: bytes reserved by responses in flight
    /// from `limits.max_response_buffer_bytes`.
    pub response_buffer_bytes: IntGauge,
    /// `swg_proxy_request_buffer_bytes`: bytes of HTTP/2 connection windows offered
    /// to clients, reserved from `limits.max_request_buffer_bytes`.
    pub request_buffer_bytes: IntGauge,
    /// `swg_proxy_reduced_request_windows_total`: HTTP/2 client connections offered
    /// a smaller window than the largest because a request buffer budget was spent.
    pub reduced_request_windows: IntCounter,
    /// `swg_proxy_client_send_queue_bytes`: response DATA that hyper holds for
    /// HTTP/2 clients, not written to their connections yet.
    pub client_send_queue_bytes: IntGauge,
    /// `swg_proxy_client_send_queue_forgotten_bytes_total`: bytes the HTTP/2 send
    /// queues stopped counting because the connection could have written them.
    pub client_send_queue_forgotten_bytes: IntCounter,
}

impl ProxyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<ProxyMetrics, prometheus::Error> {
        let metrics = ProxyMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "swg_proxy_requests_total",
                    "Requests handled by the proxy, by listener and action",
                ),
                &["listener", "action"],
            )?,
            upstream_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "swg_proxy_upstream_seconds",
                    "Seconds from sending a request upstream to receiving its response head",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
                &[],
            )?,
            tls_handshake_failures: IntCounterVec::new(
                Opts::new(
                    "swg_proxy_tls_handshake_failures_total",
                    "Failed client TLS handshakes, by reason",
                ),
                &["reason"],
            )?,
            active_connections: IntGaugeVec::new(
                Opts::new(
                    "swg_proxy_active_connections",
                    "Open client connections, by listener",
                ),
                &["listener"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "swg_proxy_upstream_errors_total",
                    "Failed upstream requests, by kind",
                ),
                &["kind"],
            )?,
            rejected_connections: IntCounterVec::new(
                Opts::new(
                    "swg_proxy_rejected_connections_total",
                    "Client connections closed at accept, by listener and reason",
                ),
                &["listener", "reason"],
            )?,
            upstream_resends: IntCounterVec::new(
                Opts::new(
                    "swg_proxy_upstream_resends_total",
                    "Requests sent again after an HTTP/2 origin did not process them, by reason (refused_stream, goaway)",
                ),
                &["reason"],
            )?,
            stalled_responses: IntCounter::new(
                "swg_proxy_stalled_responses_total",
                "Response bodies ended because no frame moved for timeouts.idle_ms: the origin went quiet or the client stopped reading",
            )?,
            response_buffer_bytes: IntGauge::new(
                "swg_proxy_response_buffer_bytes",
                "Bytes reserved by responses in flight from limits.max_response_buffer_bytes, counting each response at the most it can buffer",
            )?,
            request_buffer_bytes: IntGauge::new(
                "swg_proxy_request_buffer_bytes",
                "Bytes of HTTP/2 connection windows offered to clients, reserved from limits.max_request_buffer_bytes",
            )?,
            reduced_request_windows: IntCounter::new(
                "swg_proxy_reduced_request_windows_total",
                "HTTP/2 client connections offered a smaller window than 8 MiB because a request buffer budget was spent",
            )?,
            client_send_queue_bytes: IntGauge::new(
                "swg_proxy_client_send_queue_bytes",
                "Response bytes queued for HTTP/2 clients and not written to their connections yet",
            )?,
            client_send_queue_forgotten_bytes: IntCounter::new(
                "swg_proxy_client_send_queue_forgotten_bytes_total",
                "Bytes the HTTP/2 send queues stopped counting because their connection could have written them for 200 ms: dropped with reset streams, or waiting for the client's windows",
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.upstream_seconds.clone()))?;
        registry.register(Box::new(metrics.tls_handshake_failures.clone()))?;
        registry.register(Box::new(metrics.active_connections.clone()))?;
        registry.register(Box::new(metrics.upstream_errors.clone()))?;
        registry.register(Box::new(metrics.rejected_connections.clone()))?;
        registry.register(Box::new(metrics.upstream_resends.clone()))?;
        registry.register(Box::new(metrics.stalled_responses.clone()))?;
        registry.register(Box::new(metrics.response_buffer_bytes.clone()))?;
        registry.register(Box::new(metrics.request_buffer_bytes.clone()))?;
        registry.register(Box::new(metrics.reduced_request_windows.clone()))?;
        registry.register(Box::new(metrics.client_send_queue_bytes.clone()))?;
        registry.register(Box::new(metrics.client_send_queue_forgotten_bytes.clone()))?;
        Ok(metrics)
    }
}
