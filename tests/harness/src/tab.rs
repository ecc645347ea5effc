//! One browser tab and the record of what it did.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::audits::{self, EventIssueAdded};
use chromiumoxide::cdp::browser_protocol::dom::ScrollIntoViewIfNeededParams;
use chromiumoxide::cdp::browser_protocol::emulation::{
    SetDeviceMetricsOverrideParams, SetScriptExecutionDisabledParams,
};
use chromiumoxide::cdp::browser_protocol::log::EventEntryAdded;
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::error::HarnessError;

/// Deadline of a navigation, so that a stuck page fails the test instead of hanging it.
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of other DevTools commands.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// A request the page made, as the Network domain reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    /// HTTP method.
    pub method: String,
    /// Full URL, including `data:` URLs.
    pub url: String,
    /// DevTools resource type (`Document`, `Stylesheet`, `Image`, ...), if reported.
    pub resource_type: Option<String>,
}

/// A console message or log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleMessage {
    /// `error`, `warning`, `info`, `verbose`, or a console API call type such as `log`.
    pub level: String,
    /// Where it came from: a Log domain source (`security`, `network`, `javascript`, ...),
    /// `console-api` or `exception`.
    pub source: String,
    /// The message text.
    pub text: String,
}

impl ConsoleMessage {
    /// Whether this is an error: an error-level entry, a `console.error` call or an uncaught
    /// exception.
    pub fn is_error(&self) -> bool {
        self.level == "error" || self.source == "exception"
    }
}

#[derive(Debug, Default)]
struct Record {
    requests: Vec<NetworkRequest>,
    console: Vec<ConsoleMessage>,
    csp_violations: Vec<String>,
    issues: Vec<String>,
}

/// A browser tab that records its network requests, console messages, CSP violations and
/// DevTools issues from the moment it is opened.
///
/// CSP violations are collected without any script in the page: Chromium reports them as
/// Log domain entries and as Audits `ContentSecurityPolicyIssue`s.
pub struct Tab {
    page: Page,
    record: Arc<Mutex<Record>>,
    listeners: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Tab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tab").finish_non_exhaustive()
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Appends to the record, tolerating a poisoned lock: a panicking test thread must not hide
/// what was recorded.
fn push<T>(record: &Mutex<Record>, field: impl FnOnce(&mut Record) -> &mut Vec<T>, item: T) {
    let mut guard = record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    field(&mut guard).push(item);
}

impl Tab {
    pub(crate) async fn attach(page: Page) -> Result<Self, HarnessError> {
        let record = Arc::new(Mutex::new(Record::default()));
        let mut listeners = Vec::new();

        let mut requests = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .map_err(HarnessError::cdp("listen for network requests"))?;
        let shared = Arc::clone(&record);
        listeners.push(tokio::spawn(async move {
            while let Some(event) = requests.next().await {
                let request = NetworkRequest {
                    method: event.request.method.clone(),
                    url: event.request.url.clone(),
                    resource_type: event.r#type.as_ref().map(|t| t.as_ref().to_owned()),
                };
                push(&shared, |r| &mut r.requests, request);
            }
        }));

        let mut log_entries = page
            .event_listener::<EventEntryAdded>()
            .await
            .map_err(HarnessError::cdp("listen for log entries"))?;
        let shared = Arc::clone(&record);
        listeners.push(tokio::spawn(async move {
            while let Some(event) = log_entries.next().await {
                let entry = &event.entry;
                if entry.text.contains("Content Security Policy") {
                    push(&shared, |r| &mut r.csp_violations, entry.text.clone());
                }
                let message = ConsoleMessage {
                    level: entry.level.as_ref().to_owned(),
                    source: entry.source.as_ref().to_owned(),
                    text: entry.text.clone(),
                };
                push(&shared, |r| &mut r.console, message);
            }
        }));

        let mut console_calls = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .map_err(HarnessError::cdp("listen for console calls"))?;
        let shared = Arc::clone(&record);
        listeners.push(tokio::spawn(async move {
            while let Some(event) = console_calls.next().await {
                let text = event
                    .args
                    .iter()
                    .map(|arg| match &arg.value {
                        Some(value) => value.to_string(),
                        None => arg.description.clone().unwrap_or_default(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                let level = event.r#type.as_ref().to_owned();
                push(
                    &shared,
                    |r| &mut r.console,
                    ConsoleMessage {
                        level,
                        source: "console-api".to_owned(),
                        text,
                    },
                );
            }
        }));

        let mut exceptions = page
            .event_listener::<EventExceptionThrown>()
            .await
            .map_err(HarnessError::cdp("listen for exceptions"))?;
        let shared = Arc::clone(&record);
        listeners.push(tokio::spawn(async move {
            while let Some(event) = exceptions.next().await {
                let details = &event.exception_details;
                let text = details
                    .exception
                    .as_ref()
                    .and_then(|e| e.description.clone())
                    .unwrap_or_else(|| details.text.clone());
                let message = ConsoleMessage {
                    level: "error".to_owned(),
                    source: "exception".to_owned(),
                    text,
                };
                push(&shared, |r| &mut r.console, message);
            }
        }));

        let mut issues = page
            .event_listener::<EventIssueAdded>()
            .await
            .map_err(HarnessError::cdp("listen for devtools issues"))?;
        let shared = Arc::clone(&record);
        listeners.push(tokio::spawn(async move {
            while let Some(event) = issues.next().await {
                let issue = &event.issue;
                let code = issue.code.as_ref().to_owned();
                if let Some(csp) = &issue.details.content_security_policy_issue_details {
                    let text = format!(
                        "{code}: directive {} blocked {}",
                        csp.violated_directive,
                        csp.blocked_url
                            .clone()
                            .unwrap_or_else(|| "inline content".to_owned())
                    );
                    push(&shared, |r| &mut r.csp_violations, text);
                }
                push(&shared, |r| &mut r.issues, code);
            }
        }));

        page.execute(audits::EnableParams::default())
            .await
            .map_err(HarnessError::cdp("enable the Audits domain"))?;

        Ok(Tab {
            page,
            record,
            listeners,
        })
    }

    /// The chromiumoxide page, for anything this API does not cover.
    pub fn page(&self) -> &Page {
        &self.page
    }

    /// Navigates to `url` and waits until the page has loaded, then briefly for late events.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if the navigation fails (e.g. connection refused),
    /// [`HarnessError::Timeout`] after 30 s.
    pub async fn goto(&self, url: &str) -> Result<(), HarnessError> {
        tokio::time::timeout(NAVIGATION_TIMEOUT, self.page.goto(url))
            .await
            .map_err(|_| HarnessError::Timeout {
                what: format!("navigation to {url}"),
                seconds: NAVIGATION_TIMEOUT.as_secs(),
            })?
            .map_err(HarnessError::cdp(format!("navigate to {url}")))?;
        self.settle().await;
        Ok(())
    }

    /// Waits briefly so that DevTools events caused by the last action reach the record.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Turns JavaScript off (or on) for this tab; DevTools evaluation keeps working.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if DevTools rejects the command.
    pub async fn set_javascript_enabled(&self, enabled: bool) -> Result<(), HarnessError> {
        self.page
            .execute(SetScriptExecutionDisabledParams::new(!enabled))
            .await
            .map_err(HarnessError::cdp("set script execution"))?;
        Ok(())
    }

    /// Sets the viewport in CSS pixels; `mobile` emulates a phone (the viewport meta tag
    /// applies, scale factor 3).
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if DevTools rejects the command.
    pub async fn set_viewport(
        &self,
        width: u32,
        height: u32,
        mobile: bool,
    ) -> Result<(), HarnessError> {
        let scale = if mobile { 3.0 } else { 1.0 };
        self.page
            .execute(SetDeviceMetricsOverrideParams::new(
                i64::from(width),
                i64::from(height),
                scale,
                mobile,
            ))
            .await
            .map_err(HarnessError::cdp("set the viewport"))?;
        Ok(())
    }

    /// Evaluates a JavaScript expression in the page and returns its value as a string.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if evaluation fails or the value is not a string.
    pub async fn evaluate_string(&self, expression: &str) -> Result<String, HarnessError> {
        let result = self
            .with_deadline(
                &format!("evaluate {expression}"),
                self.page.evaluate(expression),
            )
            .await?
            .map_err(HarnessError::cdp(format!("evaluate {expression}")))?;
        result
            .into_value::<String>()
            .map_err(|e| HarnessError::cdp(format!("read the value of {expression}"))(e.into()))
    }

    /// Evaluates a JavaScript expression in the page and returns its value as a number.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if evaluation fails or the value is not a number.
    pub async fn evaluate_number(&self, expression: &str) -> Result<f64, HarnessError> {
        let result = self
            .with_deadline(
                &format!("evaluate {expression}"),
                self.page.evaluate(expression),
            )
            .await?
            .map_err(HarnessError::cdp(format!("evaluate {expression}")))?;
        result
            .into_value::<f64>()
            .map_err(|e| HarnessError::cdp(format!("read the value of {expression}"))(e.into()))
    }

    /// The page's visible text (`document.body.innerText`).
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if evaluation fails.
    pub async fn visible_text(&self) -> Result<String, HarnessError> {
        self.evaluate_string("document.body.innerText").await
    }

    /// The current URL.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if DevTools rejects the command.
    pub async fn url(&self) -> Result<String, HarnessError> {
        self.page
            .url()
            .await
            .map(Option::unwrap_or_default)
            .map_err(HarnessError::cdp("read the URL"))
    }

    /// Clicks the centre of the first element matching `selector`, as a mouse would.
    ///
    /// Scrolling and hit-testing use DevTools DOM commands, not page JavaScript, so clicking
    /// works with JavaScript disabled (chromiumoxide's own `Element::click` waits on a script
    /// promise that never settles then).
    ///
    /// # Errors
    /// [`HarnessError::ElementNotFound`], [`HarnessError::Cdp`] or [`HarnessError::Timeout`].
    pub async fn click(&self, selector: &str) -> Result<(), HarnessError> {
        let element = self.find(selector).await?;
        let scroll = ScrollIntoViewIfNeededParams::builder()
            .backend_node_id(element.backend_node_id)
            .build();
        self.with_deadline(&format!("scroll to {selector}"), self.page.execute(scroll))
            .await?
            .map_err(HarnessError::cdp(format!("scroll to {selector}")))?;
        let point = self
            .with_deadline(&format!("locate {selector}"), element.clickable_point())
            .await?
            .map_err(HarnessError::cdp(format!("locate {selector}")))?;
        self.with_deadline(&format!("click {selector}"), self.page.click(point))
            .await?
            .map_err(HarnessError::cdp(format!("click {selector}")))?;
        Ok(())
    }

    /// Presses and releases a key on whatever has focus, e.g. `Tab` or `Enter`.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] if the key is unknown or DevTools refuses.
    pub async fn press_key(&self, key: &str) -> Result<(), HarnessError> {
        let body = self.find("body").await?;
        self.with_deadline(&format!("press {key}"), body.press_key(key))
            .await?
            .map_err(HarnessError::cdp(format!("press {key}")))?;
        Ok(())
    }

    /// Clicks the element matching `selector` (e.g. a submit button) and waits for the
    /// navigation it starts to finish.
    ///
    /// # Errors
    /// [`HarnessError::ElementNotFound`], [`HarnessError::Cdp`], or [`HarnessError::Timeout`]
    /// if no navigation finishes within 30 s.
    pub async fn click_and_wait_for_navigation(&self, selector: &str) -> Result<(), HarnessError> {
        self.click(selector).await?;
        self.wait_for_navigation().await
    }

    /// Waits for the current navigation to finish.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`], or [`HarnessError::Timeout`] after 30 s.
    pub async fn wait_for_navigation(&self) -> Result<(), HarnessError> {
        tokio::time::timeout(NAVIGATION_TIMEOUT, self.page.wait_for_navigation())
            .await
            .map_err(|_| HarnessError::Timeout {
                what: "a navigation".to_owned(),
                seconds: NAVIGATION_TIMEOUT.as_secs(),
            })?
            .map_err(HarnessError::cdp("wait for navigation"))?;
        self.settle().await;
        Ok(())
    }

    /// Writes a PNG screenshot of the whole page (beyond the viewport) to `path`.
    ///
    /// # Errors
    /// [`HarnessError::Cdp`] or [`HarnessError::Io`].
    pub async fn screenshot(&self, path: &Path) -> Result<(), HarnessError> {
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .full_page(true)
            .build();
        let png = self
            .with_deadline("take a screenshot", self.page.screenshot(params))
            .await?
            .map_err(HarnessError::cdp("take a screenshot"))?;
        std::fs::write(path, png)
            .map_err(HarnessError::io(format!("cannot write {}", path.display())))
    }

    /// Every network request since the tab opened or since [`Tab::clear_record`].
    pub fn requests(&self) -> Vec<NetworkRequest> {
        self.lock().requests.clone()
    }

    /// Every console message and log entry.
    pub fn console_messages(&self) -> Vec<ConsoleMessage> {
        self.lock().console.clone()
    }

    /// Console messages that are errors (see [`ConsoleMessage::is_error`]).
    pub fn console_errors(&self) -> Vec<ConsoleMessage> {
        self.lock()
            .console
            .iter()
            .filter(|m| m.is_error())
            .cloned()
            .collect()
    }

    /// Content-Security-Policy violations, from log entries and DevTools issues.
    pub fn csp_violations(&self) -> Vec<String> {
        self.lock().csp_violations.clone()
    }

    /// Codes of every DevTools issue reported (e.g. `ContentSecurityPolicyIssue`,
    /// `LowTextContrastIssue`).
    pub fn issues(&self) -> Vec<String> {
        self.lock().issues.clone()
    }

    /// Forgets everything recorded so far.
    pub fn clear_record(&self) {
        *self.lock() = Record::default();
    }

    async fn find(&self, selector: &str) -> Result<chromiumoxide::Element, HarnessError> {
        self.with_deadline(
            &format!("find {selector}"),
            self.page.find_element(selector),
        )
        .await?
        .map_err(|_| HarnessError::ElementNotFound {
            selector: selector.to_owned(),
        })
    }

    /// Runs `future` with [`COMMAND_TIMEOUT`], so a DevTools command that never returns
    /// fails the test instead of hanging it.
    async fn with_deadline<T>(
        &self,
        what: &str,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T, HarnessError> {
        tokio::time::timeout(COMMAND_TIMEOUT, future)
            .await
            .map_err(|_| HarnessError::Timeout {
                what: what.to_owned(),
                seconds: COMMAND_TIMEOUT.as_secs(),
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
