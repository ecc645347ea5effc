//! Errors raised while loading pages configuration, templates, catalogues and logos.

use std::path::PathBuf;

/// Why [`crate::Pages::new`] or [`crate::PagesConfig::validate`] rejected the configuration.
///
/// Every variant names the configuration key or file involved, so an operator can fix it
/// from the message alone. Rendering a page never fails with this type: by then every
/// template has been compiled and trial-rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PagesError {
    /// A configuration value is outside its allowed form or range.
    #[error("invalid pages configuration: `{key}` {message}")]
    InvalidConfig {
        /// The key, e.g. `pages.branding.acme.primary_color`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// A file named by the configuration could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A logo file is not a PNG, SVG, JPEG or GIF image, or is too large.
    #[error("invalid logo {path}: {message}")]
    InvalidLogo {
        /// The logo file.
        path: PathBuf,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// A template failed to compile or to render with sample values.
    #[error("template {file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template {
        /// The template file: a path for an operator's file, the template name for a built-in one.
        file: String,
        /// The 1-based line of the problem, when the template engine knows it.
        line: Option<usize>,
        /// The template engine's description of the problem.
        message: String,
    },

    /// A message catalogue is not valid TOML, lacks keys that English has, or has unknown keys.
    #[error("message catalogue {file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Catalogue {
        /// The catalogue file: a path for an operator's file, `lang/<tag>.toml` for a built-in one.
        file: String,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

impl PagesError {
    pub(crate) fn invalid_config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            key: key.into(),
            message: message.into(),
        }
    }
}
