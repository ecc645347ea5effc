//! Errors of the harness.

use std::path::PathBuf;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The Chromium executable does not exist; install the `chromium` package or set
    /// `$SWG_CHROMIUM`.
    #[error(
        "chromium not found at {path} (install the Debian package `chromium` or set SWG_CHROMIUM)"
    )]
    ChromiumNotFound {
        /// The path that was tried.
        path: PathBuf,
    },

    /// Chromium did not start or did not offer a DevTools connection.
    #[error("chromium failed to launch: {0}")]
    Launch(String),

    /// A DevTools command failed.
    #[error("devtools command failed: {context}: {source}")]
    Cdp {
        /// What the harness was doing.
        context: String,
        /// The error from chromiumoxide.
        source: chromiumoxide::error::CdpError,
    },

    /// No element matches a CSS selector.
    #[error("no element matches {selector:?}")]
    ElementNotFound {
        /// The selector.
        selector: String,
    },

    /// A wait exceeded its deadline.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What the harness waited for.
        what: String,
        /// The deadline.
        seconds: u64,
    },

    /// A local I/O operation failed (temporary profile, screenshot file, server socket).
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl HarnessError {
    pub(crate) fn cdp(
        context: impl Into<String>,
    ) -> impl FnOnce(chromiumoxide::error::CdpError) -> Self {
        let context = context.into();
        move |source| HarnessError::Cdp { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }
}
