//! Block, warn, inspection and error pages of the swg proxy.
//!
//! [`Pages::new`] loads the `[pages]` configuration ([`PagesConfig`]) once at start: built-in
//! templates and message catalogues embedded in the binary, optional operator overrides from
//! a template folder, and per-tenant branding. [`Pages::render`] turns a [`Page`] into a
//! complete `http::Response<Bytes>` with the status, a Content-Security-Policy that allows only
//! the page's own inline style, `Cache-Control: no-store` and the other security headers.
//!
//! Pages are self-contained: no scripts, no external styles, fonts or images (the logo is a
//! `data:` URI). Every value from the request is escaped and cleaned of bidirectional control
//! characters, and the only links are ones this crate builds from validated configuration.
//!
//! ```
//! use swg_blockpages::{Page, PageContext, Pages, PagesConfig};
//!
//! let pages = Pages::new(&PagesConfig::default(), std::path::Path::new("."))?;
//! let page = Page::Block(PageContext {
//!     category: Some("gambling".to_owned()),
//!     ..PageContext::new("https://casino.example/", "req-1")
//! });
//! let response = pages.render(&page, Some("de-DE,de;q=0.9"), true);
//! assert_eq!(response.status(), 403);
//! assert_eq!(response.headers()["content-language"], "de");
//! # Ok::<(), swg_blockpages::PagesError>(())
//! ```

mod branding;
mod color;
mod config;
mod error;
mod language;
mod logo;
mod mailto;
mod page;
mod pages;
mod response;
mod sanitize;
mod templates;

pub use config::{BrandingConfig, PagesConfig};
pub use error::PagesError;
pub use page::{CertificateProblem, Page, PageContext, UpstreamErrorKind, WarnForm};
pub use pages::Pages;
