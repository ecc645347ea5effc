//! Bounds of the agent's local DNS proxy: queries in flight, TCP connections and
//! timeouts, so that a flood on one listener costs bounded memory and leaves the
//! other listeners answered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits and timeouts of the local DNS proxy.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// Queries one listener handles at once, UDP and TCP together. Over it, UDP
    /// queries are dropped and TCP queries get SERVFAIL. It matches the resolver's
    /// default HTTP/2 stream limit per connection (`max_queries_per_connection`), so
    /// that one flooded listener cannot take every stream of the shared DoH
    /// connection. NOTE: against a resolver with a lower stream limit, a flood on
    /// one listener delays the others' queries, at worst until `query_deadline`.
    pub queries_per_listener: usize,
    /// Queries all listeners of the agent handle at once.
    pub queries_in_flight: usize,
    /// Open TCP connections per listener; further connections are closed at once.
    pub tcp_connections_per_listener: usize,
    /// Time a TCP connection may stay without a query before it is closed.
    pub tcp_idle_timeout: Duration,
    /// Time for the rest of a TCP message once its length prefix arrived, and for
    /// writing one response.
    pub tcp_io_timeout: Duration,
    /// Deadline of one query, through DoH or the system resolvers. The client gets
    /// SERVFAIL after it. It is shorter than the 5 s a glibc stub resolver waits, so
    /// that the SERVFAIL reaches the client before it gives up.
    pub query_deadline: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            queries_per_listener: 64,
            queries_in_flight: 256,
            tcp_connections_per_listener: 64,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_io_timeout: Duration::from_secs(5),
            query_deadline: Duration::from_secs(4),
        }
    }
}

/// Permits of the agent-wide query limit, shared by every listener.
#[derive(Debug, Clone)]
pub(crate) struct AgentQueries(Arc<Semaphore>);

impl AgentQueries {
    pub(crate) fn new(limits: &ProxyLimits) -> Self {
        AgentQueries(Arc::new(Semaphore::new(limits.queries_in_flight.max(1))))
    }
}

/// The admission of one listener's queries: a budget of its own within the
/// agent-wide budget.
#[derive(Debug)]
pub(crate) struct Admission {
    listener: Arc<Semaphore>,
    agent: AgentQueries,
}

/// The right to handle one query, released when dropped.
#[derive(Debug)]
pub(crate) struct QueryPermit {
    _listener: OwnedSemaphorePermit,
    _agent: OwnedSemaphorePermit,
}

impl Admission {
    pub(crate) fn new(limits: &ProxyLimits, agent: AgentQueries) -> Self {
        Admission {
            listener: Arc::new(Semaphore::new(limits.queries_per_listener.max(1))),
            agent,
        }
    }

    /// Admits one query, or returns `None` when the listener or the agent is at
    /// its limit.
    pub(crate) fn try_admit(&self) -> Option<QueryPermit> {
        let listener = self.listener.clone().try_acquire_owned().ok()?;
        let agent = self.agent.0.clone().try_acquire_owned().ok()?;
        Some(QueryPermit {
            _listener: listener,
            _agent: agent,
        })
    }
}

/// Minimum interval between two log lines about the same listener's rejections.
pub(crate) const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts the queries and connections a listener rejected at its limits, and logs
/// the counts at most once per [`REJECTION_LOG_INTERVAL`].
///
/// The first rejection after a quiet interval is logged at once. Later ones are
/// counted, and logged by the next rejection or [`RejectionLog::flush`] once the
/// interval has passed.
#[derive(Debug)]
pub(crate) struct RejectionLog {
    listen: SocketAddr,
    app: Option<String>,
    queries: AtomicU64,
    connections: AtomicU64,
    last_line: Mutex<Option<Instant>>,
}

impl RejectionLog {
    pub(crate) fn new(listen: SocketAddr, app: Option<String>) -> Self {
        RejectionLog {
            listen,
            app,
            queries: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            last_line: Mutex::new(None),
        }
    }

    /// Counts one query dropped (UDP) or given SERVFAIL (TCP) at the query limits.
    pub(crate) fn query_rejected(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.flush();
    }

    /// Counts one TCP connection closed at the connection limit.
    pub(crate) fn connection_rejected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.flush();
    }

    /// Logs the rejections counted since the last line, if there are any and the
    /// interval since that line has passed. The listener calls it once per
    /// interval, so that the end of a flood is logged too.
    pub(crate) fn flush(&self) {
        if self.queries.load(Ordering::Relaxed) == 0
            && self.connections.load(Ordering::Relaxed) == 0
        {
            return;
        }
        let now = Instant::now();
        {
            let Ok(mut last_line) = self.last_line.lock() else {
                return;
            };
            if last_line.is_some_and(|at| now.duration_since(at) < REJECTION_LOG_INTERVAL) {
                return;
            }
            *last_line = Some(now);
        }
        let queries = self.queries.swap(0, Ordering::Relaxed);
        let connections = self.connections.swap(0, Ordering::Relaxed);
        tracing::warn!(
            listen = %self.listen,
            app = self.app.as_deref().unwrap_or("none"),
            rejected_queries = queries,
            rejected_connections = connections,
            "local DNS listener over its limits: rejected queries (UDP dropped, TCP \
             SERVFAIL) and closed connections since the last such line"
        );
    }

    /// Returns the rejections not logged yet, as (queries, connections).
    #[cfg(test)]
    fn pending(&self) -> (u64, u64) {
        (
            self.queries.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_listener: usize, in_flight: usize) -> ProxyLimits {
        ProxyLimits {
            queries_per_listener: per_listener,
            queries_in_flight: in_flight,
            ..ProxyLimits::default()
        }
    }

    #[test]
    fn listener_admits_up_to_its_limit() {
        let limits = limits(3, 100);
        let admission = Admission::new(&limits, AgentQueries::new(&limits));

        let permits: Vec<_> = (0..3).filter_map(|_| admission.try_admit()).collect();
        assert_eq!(permits.len(), 3);
        assert!(admission.try_admit().is_none());

        drop(permits);
        assert!(admission.try_admit().is_some());
    }

    #[test]
    fn agent_limit_is_shared_by_listeners() {
        let limits = limits(3, 4);
        let agent = AgentQueries::new(&limits);
        let first = Admission::new(&limits, agent.clone());
        let second = Admission::new(&limits, agent);

        let held: Vec<_> = (0..3).filter_map(|_| first.try_admit()).collect();
        assert_eq!(held.len(), 3);
        assert!(second.try_admit().is_some_and(|permit| {
            // The agent's fourth and last permit: neither listener gets another.
            let rejected = second.try_admit().is_none() && first.try_admit().is_none();
            drop(permit);
            rejected
        }));
        assert!(second.try_admit().is_some());
    }

    #[test]
    fn rejection_log_counts_between_lines() {
        let log = RejectionLog::new(SocketAddr::from(([127, 0, 0, 1], 5300)), None);

        // The first rejection is logged at once, so nothing stays pending.
        log.query_rejected();
        assert_eq!(log.pending(), (0, 0));

        // Within the interval the rejections are only counted.
        for _ in 0..5 {
            log.query_rejected();
        }
        log.connection_rejected();
        assert_eq!(log.pending(), (5, 1));

        // A flush within the interval logs nothing either.
        log.flush();
        assert_eq!(log.pending(), (5, 1));
    }

    #[test]
    fn rejection_log_flush_without_rejections_keeps_quiet() {
        let log = RejectionLog::new(SocketAddr::from(([127, 0, 0, 1], 5300)), None);

        // A flush with nothing to log must not delay the line of the next rejection.
        log.flush();
        log.query_rejected();
        assert_eq!(log.pending(), (0, 0));
    }
}
