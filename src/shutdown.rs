//! Shutdown: SIGTERM and Ctrl-C (SIGINT) cancel one token that every
//! listener watches.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
///
/// Returns an error when the signal handlers cannot be installed, in which
/// case the process could not be stopped cleanly and should not start.
pub(crate) fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            () = token.cancelled() => return,
        };
        // Cancel first: logging can fail (a closed standard error), and shutdown must not
        // depend on it.
        token.cancel();
        tracing::info!(signal = name, "shutting down");
    });
    Ok(())
}
