//! App classes: which apps are browsers, ordinary apps, trusted apps or bypassed apps.

use std::fmt;

/// Bundle ids of the major iOS and macOS browsers, always treated as browsers.
///
/// Tenants add others with `additional_browsers`. Bundle ids are compared ignoring ASCII
/// case, because agents and MDM profiles do not agree on case.
pub const BUILT_IN_BROWSERS: &[(&str, &str)] = &[
    // iOS and iPadOS
    ("com.apple.mobilesafari", "Safari (iOS)"),
    ("com.google.chrome.ios", "Chrome (iOS)"),
    ("org.mozilla.ios.Firefox", "Firefox (iOS)"),
    ("org.mozilla.ios.Focus", "Firefox Focus (iOS)"),
    ("com.microsoft.msedge", "Edge (iOS)"),
    ("com.brave.ios.browser", "Brave (iOS)"),
    ("com.opera.OperaTouch", "Opera (iOS)"),
    ("com.duckduckgo.mobile.ios", "DuckDuckGo (iOS)"),
    // macOS
    ("com.apple.Safari", "Safari (macOS)"),
    (
        "com.apple.SafariTechnologyPreview",
        "Safari Technology Preview (macOS)",
    ),
    ("com.google.Chrome", "Chrome (macOS)"),
    ("org.mozilla.firefox", "Firefox (macOS)"),
    ("com.microsoft.edgemac", "Edge (macOS)"),
    ("com.brave.Browser", "Brave (macOS)"),
    ("com.operasoftware.Opera", "Opera (macOS)"),
    ("com.duckduckgo.macos.browser", "DuckDuckGo (macOS)"),
    ("com.vivaldi.Vivaldi", "Vivaldi (macOS)"),
];

/// The class of an app, which sets how its traffic is treated (see the app-class table
/// in `docs/policy.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppClass {
    /// No bundle id and no usable hint.
    Unknown,
    /// A browser: every allowed domain is sent to the proxy.
    Browser,
    /// An ordinary app: sent to the proxy only for suspicious domains.
    App,
    /// A trusted app: never sent to the proxy; its domains are allowed or blocked.
    TrustedApp,
    /// A bypassed app: no policy, not logged.
    BypassedApp,
}

impl AppClass {
    /// Stable name: `unknown`, `browser`, `app`, `trusted-app`, `bypassed-app`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppClass::Unknown => "unknown",
            AppClass::Browser => "browser",
            AppClass::App => "app",
            AppClass::TrustedApp => "trusted-app",
            AppClass::BypassedApp => "bypassed-app",
        }
    }

    /// Parses the class code of the agent's EDNS context option (`0` unknown, `1` browser,
    /// `2` app, `3` trusted app).
    pub fn from_wire(code: u8) -> Option<AppClass> {
        match code {
            0 => Some(AppClass::Unknown),
            1 => Some(AppClass::Browser),
            2 => Some(AppClass::App),
            3 => Some(AppClass::TrustedApp),
            _ => None,
        }
    }
}

impl fmt::Display for AppClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The app that asked: its bundle id when the agent sent one, and the agent's class hint,
/// used only when the bundle id is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct App<'a> {
    /// Bundle id, such as `com.apple.mobilesafari`.
    pub bundle_id: Option<&'a str>,
    /// The class the agent computed.
    pub class_hint: Option<AppClass>,
}

impl<'a> App<'a> {
    /// Creates an app known by its bundle id.
    pub fn bundle(bundle_id: &'a str) -> App<'a> {
        App {
            bundle_id: Some(bundle_id),
            class_hint: None,
        }
    }

    /// Creates an app known only by the agent's class hint.
    pub fn hinted(class: AppClass) -> App<'a> {
        App {
            bundle_id: None,
            class_hint: Some(class),
        }
    }
}

/// Returns true when `bundle_id` is one of [`BUILT_IN_BROWSERS`].
pub fn is_built_in_browser(bundle_id: &str) -> bool {
    BUILT_IN_BROWSERS
        .iter()
        .any(|(id, _)| id.eq_ignore_ascii_case(bundle_id))
}
