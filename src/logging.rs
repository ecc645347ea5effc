//! Log output: human-readable lines on standard error, filtered by
//! `RUST_LOG` (default [`DEFAULT_FILTER`]).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The filter without `RUST_LOG`: swg's own messages from `info` up. rustls logs a
/// warning for each malformed ClientHello, which any client can send, so only its
/// errors are shown; swg counts and logs failed handshakes itself.
const DEFAULT_FILTER: &str = "info,rustls=error";

/// Installs the global tracing subscriber.
pub(crate) fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A second initialisation (only possible in tests) keeps the first one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal())
        // A failed log write (standard error closed by a departed log collector) must
        // not become a panic inside whichever task was logging.
        .log_internal_errors(false)
        .try_init();
}
