//! Launching and closing headless Chromium.

use std::path::PathBuf;
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::error::HarnessError;
use crate::tab::Tab;

/// Environment variable naming the Chromium executable.
pub const CHROMIUM_ENV: &str = "SWG_CHROMIUM";
/// Chromium executable used when `$SWG_CHROMIUM` is not set (Debian's `chromium` package).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Flags that keep Chromium headless, quiet and off the network except where a test sends it.
const BASE_ARGS: [&str; 14] = [
    "disable-gpu",
    "disable-quic",
    "no-first-run",
    "no-default-browser-check",
    "disable-background-networking",
    "disable-component-update",
    "disable-sync",
    "disable-default-apps",
    "disable-domain-reliability",
    "disable-client-side-phishing-detection",
    "disable-breakpad",
    "disable-dev-shm-usage",
    "no-pings",
    "metrics-recording-only",
];

/// How to launch Chromium.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The executable; default `$SWG_CHROMIUM`, else [`DEFAULT_CHROMIUM`].
    pub executable: PathBuf,
    /// `--host-resolver-rules`, e.g. `MAP * 127.0.0.1` to send every host name to loopback.
    pub host_resolver_rules: Option<String>,
    /// Base64 SHA-256 hashes of SubjectPublicKeyInfo that Chromium accepts even if their
    /// certificates do not chain to a trusted root (`--ignore-certificate-errors-spki-list`),
    /// e.g. a test CA's key.
    pub ignore_certificate_errors_spki_list: Vec<String>,
    /// `--proxy-server`, e.g. `http://127.0.0.1:3128`.
    pub proxy_server: Option<String>,
    /// Further flags, with or without the leading `--` (e.g. `--lang=de`).
    pub extra_args: Vec<String>,
    /// How long to wait for Chromium to start.
    pub launch_timeout: Duration,
    /// Deadline of each DevTools command, including navigations.
    pub request_timeout: Duration,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        let executable = std::env::var_os(CHROMIUM_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
        BrowserOptions {
            executable,
            host_resolver_rules: None,
            ignore_certificate_errors_spki_list: Vec::new(),
            proxy_server: None,
            extra_args: Vec::new(),
            launch_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl BrowserOptions {
    /// Every flag passed to Chromium besides the headless, sandbox, profile and DevTools port
    /// flags that chromiumoxide adds, without the leading `--`.
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = BASE_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
        if let Some(rules) = &self.host_resolver_rules {
            args.push(format!("host-resolver-rules={rules}"));
        }
        if !self.ignore_certificate_errors_spki_list.is_empty() {
            args.push(format!(
                "ignore-certificate-errors-spki-list={}",
                self.ignore_certificate_errors_spki_list.join(",")
            ));
        }
        if let Some(proxy) = &self.proxy_server {
            args.push(format!("proxy-server={proxy}"));
        }
        for arg in &self.extra_args {
            args.push(arg.trim_start_matches('-').to_owned());
        }
        args
    }
}

/// A running headless Chromium with its own temporary profile.
///
/// Call [`Chromium::close`] at the end of a test; dropping it kills the process too, but
/// without waiting for it.
pub struct Chromium {
    browser: Browser,
    handler: JoinHandle<()>,
    // Dropped last: the profile folder must outlive the process.
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("websocket", self.browser.websocket_address())
            .finish_non_exhaustive()
    }
}

impl Chromium {
    /// Launches Chromium headless with `--no-sandbox` and a fresh `--user-data-dir`.
    ///
    /// # Errors
    /// [`HarnessError::ChromiumNotFound`] if the executable is missing (tests that need
    /// Chromium fail rather than skip), [`HarnessError::Launch`] if it does not start.
    pub async fn launch(options: BrowserOptions) -> Result<Self, HarnessError> {
        if !options.executable.exists() {
            return Err(HarnessError::ChromiumNotFound {
                path: options.executable,
            });
        }
        let profile = tempfile::Builder::new()
            .prefix("swg-chromium-")
            .tempdir()
            .map_err(HarnessError::io(
                "cannot create a temporary Chromium profile",
            ))?;

        let config = BrowserConfig::builder()
            .chrome_executable(&options.executable)
            .no_sandbox()
            .disable_default_args()
            .disable_https_first()
            .user_data_dir(profile.path())
            .launch_timeout(options.launch_timeout)
            .request_timeout(options.request_timeout)
            .viewport(None)
            .args(options.args())
            .build()
            .map_err(HarnessError::Launch)?;
        tracing::debug!(executable = %options.executable.display(), args = ?options.args(), "launching chromium");

        let (browser, mut handler) = Browser::launch(config)
            .await
            .map_err(|e| HarnessError::Launch(e.to_string()))?;
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(error) = event {
                    tracing::debug!(%error, "devtools handler error");
                }
            }
        });

        Ok(Chromium {
            browser,
            handler,
            _profile: profile,
        })
    }

    /// Opens a new tab on `about:blank`, recording its events from the start.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if DevTools rejects the command.
    pub async fn new_tab(&self) -> Result<Tab, HarnessError> {
        let page = self
            .browser
            .new_page("about:blank")
            .await
            .map_err(HarnessError::cdp("open a new tab"))?;
        Tab::attach(page).await
    }

    /// Closes the browser and waits for the process to exit.
    pub async fn close(mut self) {
        if let Err(error) = self.browser.close().await {
            tracing::debug!(%error, "closing chromium over devtools failed; killing it");
            self.browser.kill().await;
        }
        if let Err(error) = self.browser.wait().await {
            tracing::debug!(%error, "waiting for chromium to exit failed");
        }
        self.handler.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_include_test_network_flags() {
        let options = BrowserOptions {
            host_resolver_rules: Some("MAP * 127.0.0.1".to_owned()),
            ignore_certificate_errors_spki_list: vec!["AAAA".to_owned(), "BBBB".to_owned()],
            proxy_server: Some("http://127.0.0.1:3128".to_owned()),
            extra_args: vec!["--lang=de".to_owned(), "accept-lang=de".to_owned()],
            ..BrowserOptions::default()
        };
        let args = options.args();
        for expected in [
            "disable-quic",
            "disable-background-networking",
            "disable-component-update",
            "host-resolver-rules=MAP * 127.0.0.1",
            "ignore-certificate-errors-spki-list=AAAA,BBBB",
            "proxy-server=http://127.0.0.1:3128",
            "lang=de",
            "accept-lang=de",
        ] {
            assert!(
                args.iter().any(|arg| arg == expected),
                "{expected} missing from {args:?}"
            );
        }
    }

    #[tokio::test]
    async fn launch_fails_for_missing_executable() {
        let options = BrowserOptions {
            executable: PathBuf::from("/nonexistent/chromium"),
            ..BrowserOptions::default()
        };
        let err = Chromium::launch(options).await.unwrap_err();
        assert!(
            matches!(err, HarnessError::ChromiumNotFound { .. }),
            "{err}"
        );
    }
}
