//! Test harness shared by swg's tests.
//!
//! - [`Chromium`] launches a headless Chromium (from `$SWG_CHROMIUM` or `/usr/bin/chromium`,
//!   never downloaded) with a fresh profile and drives it over the DevTools protocol.
//! - [`Tab`] opens URLs and records what the page did: every network request, console
//!   messages, Content-Security-Policy violations and other DevTools issues. It reads the
//!   visible text, clicks, presses keys, sets the viewport and takes screenshots.
//! - [`RecordingServer`] is a small HTTP/1.1 server on 127.0.0.1 that answers from a handler
//!   and records every request it receives, so a test can check what a browser fetched.
//! - [`screenshot_path`] names screenshot files under `target/screenshots/` or
//!   `$SWG_SCREENSHOT_DIR`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), swg_test_harness::HarnessError> {
//! use swg_test_harness::{BrowserOptions, Chromium};
//!
//! let chromium = Chromium::launch(BrowserOptions::default()).await?;
//! let tab = chromium.new_tab().await?;
//! tab.goto("http://127.0.0.1:8080/").await?;
//! println!("{}", tab.visible_text().await?);
//! chromium.close().await;
//! # Ok(())
//! # }
//! ```

mod browser;
mod error;
mod screenshot;
mod server;
mod tab;

pub use browser::{BrowserOptions, Chromium, CHROMIUM_ENV, DEFAULT_CHROMIUM};
pub use error::HarnessError;
pub use screenshot::{screenshot_dir, screenshot_path, SCREENSHOT_DIR_ENV};
pub use server::{RecordedHttpRequest, RecordingServer};
pub use tab::{ConsoleMessage, NetworkRequest, Tab};
