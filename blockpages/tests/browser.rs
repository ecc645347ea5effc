#![allow(clippy::unwrap_used)]
//! Pages in a real headless Chromium: visible text, no fetches, no console errors or CSP
//! violations, the warn form posting its token, and screenshots at phone and desktop widths.
//!
//! Run with `cargo test -p swg-blockpages --test browser -- --ignored`; needs the Debian
//! package `chromium` (or `$SWG_CHROMIUM`).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use swg_blockpages::{
    CertificateProblem, Page, PageContext, Pages, PagesConfig, UpstreamErrorKind, WarnForm,
};
use swg_test_harness::{
    screenshot_path, BrowserOptions, Chromium, RecordedHttpRequest, RecordingServer, Tab,
};

const LOGO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" viewBox="0 0 40 40"><path d="M20 2 36 8v12c0 9-7 16-16 18C11 36 4 29 4 20V8z" fill="#fff"/><path d="M14 20l5 5 8-10" stroke="#1f4e8c" stroke-width="3" fill="none"/></svg>"##;

/// Pages with a logo, a contact address and a support link, as an operator would set them up.
fn branded_pages() -> Arc<Pages> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("logo.svg"), LOGO_SVG).unwrap();
    let config: PagesConfig = toml::from_str(
        r##"
        [default_branding]
        name = "Example Corp"
        logo_file = "logo.svg"
        contact_email = "helpdesk@example.com"
        support_url = "https://help.example.com/web"
        message = "Web access is filtered according to the Example Corp acceptable use policy."
        "##,
    )
    .unwrap();
    Arc::new(Pages::new(&config, dir.path()).unwrap())
}

fn context(url: &str) -> PageContext {
    PageContext {
        category: Some("phishing".to_owned()),
        reason: Some("Listed in the phishing feed".to_owned()),
        rule_id: Some("security/phishing".to_owned()),
        user: Some("alice@example.com".to_owned()),
        device: Some("C02XL0GHJGH5".to_owned()),
        time: time::macros::datetime!(2026-12-04 19:56:16 UTC),
        ..PageContext::new(url, "7f3c9a2e-41d8-4b51-9c1e-0a5d2e6f8b10")
    }
}

/// The page each test path shows, with the text its heading must have.
fn page_for(path: &str) -> Option<(Page, &'static str)> {
    let long_url = format!(
        "https://login.example-bank.test/session/{}?continue=%2Faccount",
        "a1b2c3d4".repeat(40)
    );
    let page = match path {
        "/block" => (
            Page::Block(context("https://casino.example/games?table=7")),
            "This page is blocked",
        ),
        "/warn" => (
            Page::Warn(
                context(&long_url),
                WarnForm {
                    hidden_fields: vec![("url".to_owned(), long_url.clone())],
                    ..WarnForm::new("v1.form-token-123")
                },
            ),
            "This page may be risky",
        ),
        "/inspection" => (
            Page::Inspection(context("https://news.example/")),
            "Allow cookies to continue",
        ),
        "/unidentified" => (
            Page::Unidentified(PageContext::new("https://news.example/", "r-unidentified")),
            "Your device could not be identified",
        ),
        "/certificate" => (
            Page::UpstreamError(
                context("https://expired.example/"),
                UpstreamErrorKind::Certificate(CertificateProblem::Expired),
            ),
            "This site's certificate is not valid",
        ),
        "/timeout" => (
            Page::UpstreamError(
                context("https://slow.example/"),
                UpstreamErrorKind::TimedOut,
            ),
            "This site took too long to respond",
        ),
        "/refused" => (
            Page::UpstreamError(
                context("http://169.254.169.254/latest/meta-data/"),
                UpstreamErrorKind::DestinationRefused,
            ),
            "This destination is not allowed",
        ),
        "/hostile" => (
            Page::Block(PageContext {
                user: Some("<img src=/pwned.png onerror=alert(1)>".to_owned()),
                reason: Some("</dd></dl><script>console.error('pwned')</script>".to_owned()),
                ..context(
                    "https://evil.example/\"><link rel=stylesheet href=/pwned.css>\u{202e}gpj.exe",
                )
            }),
            "This page is blocked",
        ),
        _ => return None,
    };
    Some(page)
}

/// Serves `page_for(path)` as a navigation with the browser's Accept-Language and accepts the
/// warn form's POST. Anything else gets 404, which the request checks would report.
async fn page_server(pages: Arc<Pages>) -> RecordingServer {
    RecordingServer::start(move |request: &RecordedHttpRequest| {
        if request.path_and_query == "/.swg/continue" {
            return Response::new(Bytes::from_static(b"accepted"));
        }
        let accept_language = request
            .headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        match page_for(&request.path_and_query) {
            Some((page, _)) => pages.render(&page, accept_language, true),
            None => {
                let mut response = Response::new(Bytes::from_static(b"not found"));
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                response
            }
        }
    })
    .await
    .unwrap()
}

/// Loads `path` at `width` and checks that the page fetched nothing, logged nothing and
/// fits the width; writes a screenshot and prints its path.
async fn load_and_check(tab: &Tab, server: &RecordingServer, path: &str, width: u32) -> String {
    let mobile = width < 600;
    tab.set_viewport(width, if mobile { 844 } else { 800 }, mobile)
        .await
        .unwrap();
    tab.clear_record();
    let before = server.requests().len();
    let url = server.url(path);
    tab.goto(&url).await.unwrap();

    // The logo is a `data:` URI, which DevTools lists as a request although nothing is fetched.
    let (data, fetched): (Vec<_>, Vec<_>) = tab
        .requests()
        .into_iter()
        .partition(|r| r.url.starts_with("data:"));
    let fetched: Vec<String> = fetched.into_iter().map(|r| r.url).collect();
    assert_eq!(
        fetched,
        std::slice::from_ref(&url),
        "{path} at {width}px fetched more than the page"
    );
    for request in data {
        assert!(
            request.url.starts_with("data:image/svg+xml;base64,"),
            "unexpected {}",
            request.url
        );
    }
    let received: Vec<String> = server.requests()[before..]
        .iter()
        .map(|r| r.path_and_query.clone())
        .collect();
    assert_eq!(received, [path], "the server saw other requests");
    // Chromium logs the page's own 403 or 5xx status as "Failed to load resource". The page
    // is the only thing fetched (checked above), so that entry is expected.
    let errors: Vec<_> = tab
        .console_errors()
        .into_iter()
        .filter(|m| {
            !(m.source == "network"
                && m.text
                    .starts_with("Failed to load resource: the server responded with a status of"))
        })
        .collect();
    assert_eq!(errors, [], "{path} at {width}px logged errors");
    assert_eq!(
        tab.csp_violations(),
        Vec::<String>::new(),
        "{path} at {width}px violated its CSP"
    );

    let issues = tab.issues();
    assert!(
        !issues.iter().any(|code| code == "LowTextContrastIssue"),
        "{path} at {width}px has low text contrast: {issues:?}"
    );

    let scroll_width = tab
        .evaluate_number("document.documentElement.scrollWidth")
        .await
        .unwrap();
    assert!(
        scroll_width <= f64::from(width),
        "{path} is {scroll_width}px wide at {width}px"
    );

    // The language is part of the name so tests in other languages do not overwrite these.
    let lang = tab
        .evaluate_string("document.documentElement.lang")
        .await
        .unwrap();
    let name = format!("blockpages{}-{lang}-{width}.png", path.replace('/', "-"));
    let file = screenshot_path(&name).unwrap();
    tab.screenshot(&file).await.unwrap();
    println!("screenshot: {}", file.display());

    tab.visible_text().await.unwrap()
}

#[tokio::test]
#[ignore = "needs chromium; run by .ci/run"]
async fn pages_render_in_chromium_without_fetching_anything() {
    let server = page_server(branded_pages()).await;
    let chromium = Chromium::launch(BrowserOptions::default()).await.unwrap();
    let tab = chromium.new_tab().await.unwrap();
    tab.set_javascript_enabled(false).await.unwrap();

    for path in [
        "/block",
        "/warn",
        "/inspection",
        "/unidentified",
        "/certificate",
        "/timeout",
        "/refused",
    ] {
        let (_, heading) = page_for(path).unwrap();
        for width in [390, 1280] {
            let text = load_and_check(&tab, &server, path, width).await;
            assert!(text.contains(heading), "{path}: {text}");
            assert!(text.contains("Example Corp"), "{path}: {text}");
        }
        let h1 = tab
            .evaluate_string("document.querySelector('main h1').innerText")
            .await
            .unwrap();
        assert_eq!(h1, heading);
    }

    let text = load_and_check(&tab, &server, "/block", 1280).await;
    for expected in [
        "https://casino.example/games?table=7",
        "phishing",
        "Listed in the phishing feed",
        "security/phishing",
        "alice@example.com",
        "C02XL0GHJGH5",
        "2026-12-04 19:56:16 UTC",
        "7f3c9a2e-41d8-4b51-9c1e-0a5d2e6f8b10",
        "helpdesk@example.com",
        "Report a mistake",
        "Web access is filtered according to the Example Corp acceptable use policy.",
    ] {
        assert!(
            text.contains(expected),
            "block page lacks {expected:?}: {text}"
        );
    }
    let text = load_and_check(&tab, &server, "/certificate", 1280).await;
    assert!(
        text.contains("Failed check: The certificate has expired or is not yet valid."),
        "{text}"
    );

    drop(tab);
    chromium.close().await;
}

#[tokio::test]
#[ignore = "needs chromium; run by .ci/run"]
async fn warn_continue_posts_form_token_by_keyboard_and_click() {
    let server = page_server(branded_pages()).await;
    let chromium = Chromium::launch(BrowserOptions::default()).await.unwrap();
    let tab = chromium.new_tab().await.unwrap();
    tab.set_javascript_enabled(false).await.unwrap();
    tab.set_viewport(1280, 800, false).await.unwrap();

    // Keyboard: Tab to "Go back", Tab to "Continue to site", Enter.
    tab.goto(&server.url("/warn")).await.unwrap();
    tab.press_key("Tab").await.unwrap();
    tab.press_key("Tab").await.unwrap();
    let focused = tab
        .evaluate_string("document.activeElement.innerText")
        .await
        .unwrap();
    assert_eq!(focused, "Continue to site");
    tab.press_key("Enter").await.unwrap();
    tab.wait_for_navigation().await.unwrap();
    assert_eq!(tab.url().await.unwrap(), server.url("/.swg/continue"));
    assert_eq!(tab.visible_text().await.unwrap(), "accepted");

    // Mouse: click the button, in a fresh tab because with chromiumoxide 0.9 a second
    // navigation does not finish in a tab whose last navigation was a form POST.
    let mouse_tab = chromium.new_tab().await.unwrap();
    mouse_tab.set_javascript_enabled(false).await.unwrap();
    mouse_tab.goto(&server.url("/warn")).await.unwrap();
    mouse_tab
        .click_and_wait_for_navigation("button[type=submit]")
        .await
        .unwrap();
    assert_eq!(mouse_tab.visible_text().await.unwrap(), "accepted");
    drop(mouse_tab);

    let posts: Vec<RecordedHttpRequest> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::POST)
        .collect();
    assert_eq!(posts.len(), 2);
    for post in posts {
        assert_eq!(post.path_and_query, "/.swg/continue");
        assert_eq!(
            post.headers[http::header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        let body = String::from_utf8(post.body.to_vec()).unwrap();
        assert!(body.starts_with("token=v1.form-token-123&url=https%3A%2F%2Flogin.example-bank.test%2Fsession%2Fa1b2"), "{body}");
    }

    drop(tab);
    chromium.close().await;
}

#[tokio::test]
#[ignore = "needs chromium; run by .ci/run"]
async fn hostile_values_stay_inert_in_chromium() {
    let server = page_server(branded_pages()).await;
    let chromium = Chromium::launch(BrowserOptions::default()).await.unwrap();
    let tab = chromium.new_tab().await.unwrap();

    // JavaScript stays on here: an injected script would run and log.
    let text = load_and_check(&tab, &server, "/hostile", 1280).await;
    assert!(
        text.contains("<img src=/pwned.png onerror=alert(1)>"),
        "{text}"
    );
    assert!(
        text.contains("</dd></dl><script>console.error('pwned')</script>"),
        "{text}"
    );
    assert!(text.contains("%E2%80%AEgpj.exe"), "{text}");
    assert_eq!(
        tab.evaluate_number("document.scripts.length")
            .await
            .unwrap(),
        0.0
    );
    assert_eq!(
        tab.evaluate_number("document.images.length").await.unwrap(),
        1.0,
        "only the logo"
    );
    assert_eq!(
        tab.evaluate_number("document.querySelectorAll('link[rel=stylesheet]').length")
            .await
            .unwrap(),
        0.0
    );

    drop(tab);
    chromium.close().await;
}

#[tokio::test]
#[ignore = "needs chromium; run by .ci/run"]
async fn full_url_opens_without_javascript() {
    let server = page_server(branded_pages()).await;
    let chromium = Chromium::launch(BrowserOptions::default()).await.unwrap();
    let tab = chromium.new_tab().await.unwrap();
    tab.set_javascript_enabled(false).await.unwrap();
    tab.set_viewport(390, 844, true).await.unwrap();
    tab.goto(&server.url("/warn")).await.unwrap();

    let is_open = "String(document.querySelector('details').open)";
    let full_path = "a1b2c3d4".repeat(40);
    assert_eq!(tab.evaluate_string(is_open).await.unwrap(), "false");
    assert!(!tab.visible_text().await.unwrap().contains(&full_path));
    tab.click("details summary").await.unwrap();
    tab.settle().await;
    assert_eq!(tab.evaluate_string(is_open).await.unwrap(), "true");
    let text = tab.visible_text().await.unwrap();
    assert!(text.contains(&full_path), "{text}");

    let file = screenshot_path("blockpages-warn-full-url-en-390.png").unwrap();
    tab.screenshot(&file).await.unwrap();
    println!("screenshot: {}", file.display());
    let fetched = tab
        .requests()
        .into_iter()
        .filter(|r| !r.url.starts_with("data:"))
        .count();
    assert_eq!(fetched, 1);

    drop(tab);
    chromium.close().await;
}

#[tokio::test]
#[ignore = "needs chromium; run by .ci/run"]
async fn german_page_follows_browser_language() {
    let server = page_server(branded_pages()).await;
    let options = BrowserOptions {
        extra_args: vec![
            "--accept-lang=de-DE,de".to_owned(),
            "--lang=de-DE".to_owned(),
        ],
        ..BrowserOptions::default()
    };
    let chromium = Chromium::launch(options).await.unwrap();
    let tab = chromium.new_tab().await.unwrap();

    let text = load_and_check(&tab, &server, "/warn", 390).await;
    assert!(
        text.contains("Diese Seite könnte gefährlich sein"),
        "{text}"
    );
    assert!(text.contains("Weiter zur Seite"), "{text}");
    assert_eq!(
        tab.evaluate_string("document.documentElement.lang")
            .await
            .unwrap(),
        "de"
    );
    let sent = server.requests().last().unwrap().headers[http::header::ACCEPT_LANGUAGE].clone();
    assert!(sent.to_str().unwrap().starts_with("de-DE"), "{sent:?}");

    drop(tab);
    chromium.close().await;
}

/// The checks above are only worth something if the harness notices violations: this page
/// breaks its own CSP and loads a subresource, and both must be recorded.
#[tokio::test]
#[ignore = "needs chromium; run by .ci/run"]
async fn harness_records_csp_violation_and_subresource() {
    let server = RecordingServer::start(|request: &RecordedHttpRequest| {
        let mut response = Response::new(Bytes::from_static(
            b"<!DOCTYPE html><html><head><style>body{color:red}</style></head><body><p>x</p><img src=\"/pixel.gif\"></body></html>",
        ));
        if request.path_and_query == "/" {
            response.headers_mut().insert("content-type", "text/html".parse().unwrap());
            response
                .headers_mut()
                .insert("content-security-policy", "default-src 'none'; img-src 'self'".parse().unwrap());
        }
        response
    })
    .await
    .unwrap();
    let chromium = Chromium::launch(BrowserOptions::default()).await.unwrap();
    let tab = chromium.new_tab().await.unwrap();
    tab.goto(&server.url("/")).await.unwrap();

    let violations = tab.csp_violations();
    assert!(
        !violations.is_empty(),
        "the inline style violation was not recorded"
    );
    let urls: Vec<String> = tab.requests().into_iter().map(|r| r.url).collect();
    // Without an icon link Chromium also requests /favicon.ico; the pages prevent that with
    // `<link rel="icon" href="data:,">`.
    assert_eq!(
        urls,
        [
            server.url("/"),
            server.url("/pixel.gif"),
            server.url("/favicon.ico")
        ]
    );

    drop(tab);
    chromium.close().await;
}

#[test]
fn screenshot_folder_is_under_workspace_target() {
    if std::env::var_os(swg_test_harness::SCREENSHOT_DIR_ENV).is_none() {
        let dir = swg_test_harness::screenshot_dir().unwrap();
        assert!(
            dir.ends_with(Path::new("target/screenshots")),
            "{}",
            dir.display()
        );
    }
}
