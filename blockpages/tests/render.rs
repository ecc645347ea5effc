#![allow(clippy::unwrap_used)]
//! Rendering without a browser: escaping, headers, status codes, languages, configuration.

use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};
use swg_blockpages::{
    BrandingConfig, CertificateProblem, Page, PageContext, Pages, PagesConfig, PagesError,
    UpstreamErrorKind, WarnForm,
};

fn body(response: &http::Response<bytes::Bytes>) -> String {
    String::from_utf8(response.body().to_vec()).unwrap()
}

fn branded_config() -> PagesConfig {
    toml::from_str(
        r##"
        [default_branding]
        name = "Example Corp"
        contact_email = "helpdesk@example.com"
        support_url = "https://help.example.com/web"

        [branding.acme]
        name = "ACME Ltd"
        primary_color = "#f5d90a"
        message = "Questions? Ask the ACME service desk."
        "##,
    )
    .unwrap()
}

fn hostile_context() -> PageContext {
    PageContext {
        tenant_id: Some("acme".to_owned()),
        category: Some("phishing\"><script>alert(1)</script>".to_owned()),
        reason: Some("it's <b>bad</b> & \"quoted\"".to_owned()),
        rule_id: Some("rule'1".to_owned()),
        user: Some("<img src=x onerror=alert(1)>@example.com\u{202e}moc.live".to_owned()),
        device: Some("dev\u{2066}ice\u{0}".to_owned()),
        ..PageContext::new(
            "javascript:alert(1)//\"><script>alert(2)</script>\u{202e}gpj.exe",
            "req-\u{202e}42",
        )
    }
}

/// Every `href="…"` value in the page.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[test]
fn hostile_values_render_inert_in_every_page() {
    let pages = Pages::new(&branded_config(), Path::new(".")).unwrap();
    let context = hostile_context();
    let all = [
        Page::Block(context.clone()),
        Page::Warn(context.clone(), WarnForm::new("tok\"en")),
        Page::Inspection(context.clone()),
        Page::Unidentified(context.clone()),
        Page::UpstreamError(
            context.clone(),
            UpstreamErrorKind::Certificate(CertificateProblem::SelfSigned),
        ),
    ];
    for page in &all {
        let html = body(&pages.render(page, None, true));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains('\u{202e}'), "bidi override survived");
        assert!(!html.contains('\u{2066}'), "bidi isolate survived");
        assert!(!html.contains('\u{0}'), "NUL survived");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("it&#x27;s &lt;b&gt;bad&lt;&#x2f;b&gt; &amp; &quot;quoted&quot;"));
        assert!(
            html.contains("%E2%80%AEgpj.exe"),
            "URL bidi override is not shown encoded"
        );
        for href in hrefs(&html) {
            let allowed = href == "data:,"
                || href == "about:blank"
                || href.starts_with("mailto:helpdesk@example.com")
                || href == "https:&#x2f;&#x2f;help.example.com&#x2f;web";
            assert!(allowed, "unexpected href {href:?}");
        }
    }
}

#[test]
fn hostile_values_render_inert_in_text_form() {
    let pages = Pages::new(&branded_config(), Path::new(".")).unwrap();
    let response = pages.render(&Page::Block(hostile_context()), None, false);
    let text = body(&response);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert!(!text.contains('\u{202e}'));
    // Control characters cannot forge extra lines.
    assert!(
        text.contains("User: <img src=x onerror=alert(1)>@example.com\u{fffd}moc.live\n"),
        "{text}"
    );
    assert!(text.starts_with("This page is blocked\n\n"), "{text}");
}

#[test]
fn long_url_shortened_with_details() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    let url = format!("https://example.com/{}", "x".repeat(10_000));
    let html = body(&pages.render(
        &Page::Block(PageContext::new(url.clone(), "r1")),
        None,
        true,
    ));
    let full = url.replace('/', "&#x2f;");
    assert!(html.contains(&format!("<code class=\"full-url\">{full}</code>")));
    assert!(html.contains("<details><summary>Show the full address</summary>"));
    assert!(html.contains("<bdi>https:&#x2f;&#x2f;example.com&#x2f;xxx"));
}

#[test]
fn status_codes_follow_page_kind() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    let context = PageContext::new("https://example.com/", "r1");
    let cases = [
        (Page::Block(context.clone()), 403),
        (Page::Warn(context.clone(), WarnForm::new("t")), 403),
        (Page::Inspection(context.clone()), 403),
        (Page::Unidentified(context.clone()), 403),
        (
            Page::UpstreamError(
                context.clone(),
                UpstreamErrorKind::Certificate(CertificateProblem::Expired),
            ),
            502,
        ),
        (
            Page::UpstreamError(context.clone(), UpstreamErrorKind::Unreachable),
            502,
        ),
        (
            Page::UpstreamError(context.clone(), UpstreamErrorKind::InvalidResponse),
            502,
        ),
        (
            Page::UpstreamError(context.clone(), UpstreamErrorKind::TimedOut),
            504,
        ),
        (
            Page::UpstreamError(context.clone(), UpstreamErrorKind::ResponseTooLarge),
            502,
        ),
        (
            Page::UpstreamError(context.clone(), UpstreamErrorKind::RequestTooLarge),
            413,
        ),
        (
            Page::UpstreamError(context.clone(), UpstreamErrorKind::DestinationRefused),
            403,
        ),
        (
            Page::UpstreamError(context.clone(), UpstreamErrorKind::Overloaded),
            503,
        ),
    ];
    for (page, status) in cases {
        assert_eq!(pages.render(&page, None, true).status(), status, "{page:?}");
        assert_eq!(
            pages.render(&page, None, false).status(),
            status,
            "{page:?} as text"
        );
    }
}

#[test]
fn html_headers_are_strict() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    let response = pages.render(
        &Page::Block(PageContext::new("https://example.com/", "r1")),
        None,
        true,
    );
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["content-language"], "en");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(
        csp.ends_with("img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
        "{csp}"
    );
}

#[test]
fn csp_hash_matches_the_inline_style() {
    let pages = Pages::new(&branded_config(), Path::new(".")).unwrap();
    for tenant in [None, Some("acme".to_owned())] {
        let context = PageContext {
            tenant_id: tenant,
            ..PageContext::new("https://example.com/", "r1")
        };
        let response = pages.render(&Page::Warn(context, WarnForm::new("t")), None, true);
        let html = body(&response);
        assert_eq!(html.matches("<style>").count(), 1);
        assert!(
            !html.contains("style=\""),
            "inline style attributes need their own CSP hash"
        );
        let css = html
            .split("<style>")
            .nth(1)
            .unwrap()
            .split("</style>")
            .next()
            .unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(css.as_bytes()));
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    }
}

#[test]
fn page_is_self_contained() {
    let pages = Pages::new(&branded_config(), Path::new(".")).unwrap();
    let html = body(&pages.render(
        &Page::Block(PageContext::new("https://example.com/", "r1")),
        None,
        true,
    ));
    assert!(!html.contains("<script"));
    assert!(!html.contains("<link rel=\"stylesheet\""));
    assert!(!html.contains("src=\"http"));
    assert!(!html.contains("@import"));
    assert!(!html.contains("url("));
    assert!(
        html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    );
    assert_eq!(html.matches("<h1>").count(), 1);
    assert!(html.contains("<main>"));
}

#[test]
fn accept_language_selects_german() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    let page = Page::Block(PageContext::new("https://example.com/", "r1"));
    let response = pages.render(&page, Some("fr-CH, fr;q=0.9, de;q=0.8, en;q=0.7"), true);
    let html = body(&response);
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"de\">"));
    assert!(html.contains("<h1>Diese Seite ist gesperrt</h1>"));
    assert_eq!(response.headers()["content-language"], "de");

    let english = body(&pages.render(&page, Some("de;q=0, en"), true));
    assert!(english.contains("<h1>This page is blocked</h1>"));
}

#[test]
fn certificate_error_names_the_failed_check() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    let context = PageContext::new("https://expired.example/", "r1");
    let cases = [
        (
            CertificateProblem::Expired,
            "The certificate has expired or is not yet valid.",
        ),
        (
            CertificateProblem::WrongName,
            "The certificate was issued for a different site name.",
        ),
        (
            CertificateProblem::UntrustedIssuer,
            "The certificate was issued by an authority that is not trusted.",
        ),
        (
            CertificateProblem::SelfSigned,
            "The certificate is self-signed, so no trusted authority vouches for it.",
        ),
    ];
    for (problem, expected) in cases {
        let page = Page::UpstreamError(context.clone(), UpstreamErrorKind::Certificate(problem));
        let html = body(&pages.render(&page, None, true));
        assert!(html.contains(expected), "{problem:?}");
        let text = body(&pages.render(&page, None, false));
        assert!(
            text.contains(&format!("Failed check: {expected}")),
            "{text}"
        );
    }
}

#[test]
fn warn_form_posts_token_and_hidden_fields() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    let form = WarnForm {
        hidden_fields: vec![(
            "url".to_owned(),
            "https://example.com/?a=1&b=\"2\"".to_owned(),
        )],
        ..WarnForm::new("v1.abc\"def")
    };
    let html = body(&pages.render(
        &Page::Warn(PageContext::new("https://example.com/", "r1"), form),
        None,
        true,
    ));
    assert!(
        html.contains("<form method=\"post\" action=\"&#x2f;.swg&#x2f;continue\">"),
        "{html}"
    );
    assert!(html.contains("<input type=\"hidden\" name=\"token\" value=\"v1.abc&quot;def\">"));
    assert!(html.contains(
        "<input type=\"hidden\" name=\"url\" value=\"https:&#x2f;&#x2f;example.com&#x2f;?a=1&amp;b=&quot;2&quot;\">"
    ));
    assert!(html
        .contains("<button type=\"submit\" class=\"button secondary\">Continue to site</button>"));
    assert!(html.contains("<a class=\"button primary\" href=\"about:blank\">Go back</a>"));
}

#[test]
fn warn_form_rejects_foreign_action() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    for action in [
        "https://evil.example/steal",
        "//evil.example/x",
        "javascript:alert(1)",
        "/\\evil.example",
        "/a b",
    ] {
        let form = WarnForm {
            continue_action: action.to_owned(),
            ..WarnForm::new("t")
        };
        let html = body(&pages.render(
            &Page::Warn(PageContext::new("https://example.com/", "r1"), form),
            None,
            true,
        ));
        assert!(
            html.contains("action=\"&#x2f;.swg&#x2f;continue\""),
            "{action}"
        );
    }
}

#[test]
fn report_link_prefills_details() {
    let pages = Pages::new(&branded_config(), Path::new(".")).unwrap();
    let context = PageContext {
        category: Some("gambling".to_owned()),
        rule_id: Some("r-7".to_owned()),
        user: Some("zoë@example.com".to_owned()),
        time: time::macros::datetime!(2026-12-04 19:56:16 UTC),
        ..PageContext::new("https://casino.example/?a=1&b=2", "req-42")
    };
    let html = body(&pages.render(&Page::Block(context), None, true));
    let report = hrefs(&html)
        .into_iter()
        .find(|href| href.contains("subject="))
        .unwrap()
        .replace("&amp;", "&");
    assert!(report.starts_with(
        "mailto:helpdesk@example.com?subject=Web%20access%3A%20possible%20mistake&body="
    ));
    assert!(
        report.contains("Address%3A%20https%3A%2F%2Fcasino.example%2F%3Fa%3D1%26b%3D2%0D%0A"),
        "{report}"
    );
    assert!(report.contains("Category%3A%20gambling%0D%0A"));
    assert!(report.contains("Rule%3A%20r-7%0D%0A"));
    assert!(report.contains("User%3A%20zo%C3%AB%40example.com%0D%0A"));
    assert!(report.contains("Time%3A%202026-12-04%2019%3A56%3A16%20UTC%0D%0A"));
    assert!(report.contains("Request%20ID%3A%20req-42"));
}

#[test]
fn no_contact_means_no_report_link() {
    let pages = Pages::new(&PagesConfig::default(), Path::new(".")).unwrap();
    let html = body(&pages.render(
        &Page::Block(PageContext::new("https://example.com/", "r1")),
        None,
        true,
    ));
    assert!(!html.contains("mailto:"));
    assert!(!html.contains("Need help?"));
}

#[test]
fn tenant_branding_overrides_default() {
    let pages = Pages::new(&branded_config(), Path::new(".")).unwrap();
    let acme = PageContext {
        tenant_id: Some("acme".to_owned()),
        ..PageContext::new("https://example.com/", "r1")
    };
    let html = body(&pages.render(&Page::Block(acme), None, true));
    assert!(html.contains("<span class=\"org\">ACME Ltd</span>"));
    assert!(html.contains("Questions? Ask the ACME service desk."));
    // Inherited from the default branding.
    assert!(html.contains("mailto:helpdesk@example.com"));
    // Yellow primary gets black text.
    assert!(html.contains("background:#f5d90a;color:#000000"), "{html}");

    let other = PageContext {
        tenant_id: Some("unknown".to_owned()),
        ..PageContext::new("https://example.com/", "r1")
    };
    let html = body(&pages.render(&Page::Block(other), None, true));
    assert!(html.contains("<span class=\"org\">Example Corp</span>"));
    assert!(html.contains("background:#1f4e8c;color:#ffffff"));
}

#[test]
fn logo_is_embedded_as_data_uri() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>",
    )
    .unwrap();
    let config: PagesConfig =
        toml::from_str("[default_branding]\nlogo_file = \"logo.svg\"\n").unwrap();
    let pages = Pages::new(&config, dir.path()).unwrap();
    let html = body(&pages.render(
        &Page::Block(PageContext::new("https://example.com/", "r1")),
        None,
        true,
    ));
    assert!(
        html.contains("<img src=\"data:image&#x2f;svg+xml;base64,PHN2ZyB4bWxucz0"),
        "{html}"
    );
}

#[test]
fn logo_of_wrong_type_stops_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("logo.png"), "<html>not an image</html>").unwrap();
    let config: PagesConfig =
        toml::from_str("[branding.acme]\nlogo_file = \"logo.png\"\n").unwrap();
    let err = Pages::new(&config, dir.path()).unwrap_err();
    assert!(matches!(err, PagesError::InvalidLogo { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("logo.png: is not a PNG, SVG, JPEG or GIF image"),
        "{err}"
    );
}

#[test]
fn broken_template_stops_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("block.html");
    std::fs::write(&file, "{% extends \"layout.html\" %}\n{% block content %}\n<p>{{ t.block_advice }</p>\n{% endblock %}\n").unwrap();
    let config = PagesConfig {
        template_dir: Some(dir.path().to_owned()),
        ..PagesConfig::default()
    };
    let err = Pages::new(&config, Path::new(".")).unwrap_err();
    match &err {
        PagesError::Template {
            file: name, line, ..
        } => {
            assert_eq!(name, &file.display().to_string());
            assert_eq!(*line, Some(3));
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("template {}:3: syntax error", file.display())),
        "{err}"
    );
}

#[test]
fn template_with_unknown_variable_stops_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unidentified.html");
    std::fs::write(&file, "{% extends \"layout.html\" %}\n{% block content %}\n\n<p>{{ no_such_value.x }}</p>\n{% endblock %}\n").unwrap();
    let config = PagesConfig {
        template_dir: Some(dir.path().to_owned()),
        ..PagesConfig::default()
    };
    let err = Pages::new(&config, Path::new(".")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("template {}:4: undefined value", file.display())),
        "{err}"
    );
}

#[test]
fn operator_template_and_catalogue_are_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("block.html"),
        "{% extends \"layout.html\" %}{% block content %}<p class=\"custom\">Ask {{ brand.name }} &amp; co.</p>{% endblock %}",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("lang")).unwrap();
    let english = include_str!("../lang/en.toml");
    let french = english.replace("This page is blocked", "Cette page est bloquée");
    std::fs::write(dir.path().join("lang/fr.toml"), french).unwrap();
    let config = PagesConfig {
        template_dir: Some("pages".into()),
        ..PagesConfig::default()
    };
    std::fs::rename(dir.path().join("block.html"), dir.path().join("block.tmp")).unwrap();
    std::fs::create_dir(dir.path().join("pages")).unwrap();
    std::fs::rename(
        dir.path().join("block.tmp"),
        dir.path().join("pages/block.html"),
    )
    .unwrap();
    std::fs::rename(dir.path().join("lang"), dir.path().join("pages/lang")).unwrap();

    let pages = Pages::new(&config, dir.path()).unwrap();
    let response = pages.render(
        &Page::Block(PageContext::new("https://example.com/", "r1")),
        Some("fr"),
        true,
    );
    let html = body(&response);
    assert!(
        html.contains("<p class=\"custom\">Ask Secure Web Gateway &amp; co.</p>"),
        "{html}"
    );
    assert!(html.contains("<h1>Cette page est bloquée</h1>"));
    assert!(html.contains("<html lang=\"fr\">"));
}

#[test]
fn operator_catalogue_with_missing_key_stops_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lang")).unwrap();
    let english = include_str!("../lang/en.toml");
    let partial: String = english
        .lines()
        .filter(|line| !line.starts_with("warn_continue"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("lang/fr.toml"), partial).unwrap();
    let config = PagesConfig {
        template_dir: Some(dir.path().to_owned()),
        ..PagesConfig::default()
    };
    let err = Pages::new(&config, Path::new(".")).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "fr.toml: `warn_continue` is missing (every key of the English catalogue is required)"
        ),
        "{err}"
    );
}

#[test]
fn missing_template_dir_stops_start() {
    let config = PagesConfig {
        template_dir: Some("/nonexistent/swg-pages".into()),
        ..PagesConfig::default()
    };
    let err = Pages::new(&config, Path::new(".")).unwrap_err();
    assert!(matches!(err, PagesError::ReadFile { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/swg-pages: "),
        "{err}"
    );
}

#[test]
fn config_rejects_invalid_values_naming_the_key() {
    let cases = [
        (
            "[branding.acme]\nprimary_color = \"red\"\n",
            "pages.branding.acme.primary_color",
        ),
        (
            "[default_branding]\nsupport_url = \"javascript:alert(1)\"\n",
            "pages.default_branding.support_url",
        ),
        (
            "[default_branding]\ncontact_email = \"a@b\"\n",
            "pages.default_branding.contact_email",
        ),
        (
            "[branding.x]\nhome_url = \"http://intranet.example/\"\n",
            "pages.branding.x.home_url",
        ),
        (
            "[default_branding]\nname = \"\"\n",
            "pages.default_branding.name",
        ),
    ];
    for (source, key) in cases {
        let config: PagesConfig = toml::from_str(source).unwrap();
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("invalid pages configuration: `{key}` ")),
            "{err}"
        );
    }
}

#[test]
fn config_rejects_unknown_keys() {
    let err =
        toml::from_str::<PagesConfig>("[default_branding]\ncolour = \"#000000\"\n").unwrap_err();
    assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    let config: PagesConfig = toml::from_str("").unwrap();
    assert_eq!(config, PagesConfig::default());
    assert_eq!(config.default_branding, BrandingConfig::default());
}

#[test]
fn pages_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pages>();
}
