//! [`Pages`]: loads configuration once and renders pages per request.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use http::Response;
use minijinja::value::{Serde, Value};
use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::branding::Branding;
use crate::config::PagesConfig;
use crate::error::PagesError;
use crate::language::{Catalogue, Catalogues};
use crate::mailto::mailto_link;
use crate::page::{CertificateProblem, Page, PageContext, UpstreamErrorKind, WarnForm};
use crate::response::{html_csp, html_response, text_response};
use crate::sanitize::{display_text, display_url, DisplayUrl, MAX_FIELD_CHARS};
use crate::templates::Templates;

/// Renders block, warn, inspection, unidentified and upstream error pages.
///
/// Everything that can fail (templates, catalogues, logos, branding values) is checked in
/// [`Pages::new`], including a trial render of every page; [`Pages::render`] then always
/// returns a response.
pub struct Pages {
    templates: Templates,
    catalogues: Catalogues,
    default_branding: StyledBranding,
    branding: BTreeMap<String, StyledBranding>,
}

/// A tenant's branding with its stylesheet rendered and the matching CSP.
struct StyledBranding {
    branding: Branding,
    css: String,
    csp: String,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("tenants_with_branding", &self.branding.len())
            .finish_non_exhaustive()
    }
}

impl Pages {
    /// Loads templates, catalogues and branding; `base_dir` anchors relative paths in `config`
    /// (normally the configuration file's folder).
    ///
    /// # Errors
    /// Any [`PagesError`]: an invalid value, an unreadable file, a logo of the wrong type or
    /// size, a catalogue or template that does not compile or does not render.
    pub fn new(config: &PagesConfig, base_dir: &Path) -> Result<Self, PagesError> {
        config.validate()?;
        let template_dir = config.template_dir.as_ref().map(|dir| base_dir.join(dir));
        let templates = Templates::load(template_dir.as_deref())?;
        let catalogues = Catalogues::load(template_dir.as_deref())?;

        let default_config = config.default_branding.clone();
        let default_branding = Branding::load(&default_config, "pages.default_branding", base_dir)?;
        let default_branding = style(&templates, default_branding)?;
        let mut branding = BTreeMap::new();
        for (tenant, tenant_config) in &config.branding {
            let merged = tenant_config.or(&default_config);
            let loaded = Branding::load(&merged, &format!("pages.branding.{tenant}"), base_dir)?;
            branding.insert(tenant.clone(), style(&templates, loaded)?);
        }

        let pages = Pages {
            templates,
            catalogues,
            default_branding,
            branding,
        };
        pages.trial_render()?;
        tracing::info!(
            template_dir = ?template_dir,
            tenants_with_branding = pages.branding.len(),
            "loaded pages"
        );
        Ok(pages)
    }

    /// Renders `page` as a complete HTTP response.
    ///
    /// `accept_language` is the request's `Accept-Language` header; `navigation` is true for a
    /// top-level navigation, which gets HTML, while other requests get a short plain-text body.
    /// The status comes from [`Page::status`].
    pub fn render(
        &self,
        page: &Page,
        accept_language: Option<&str>,
        navigation: bool,
    ) -> Response<Bytes> {
        let catalogue = self.catalogues.select(accept_language);
        let styled = self.branding_for(page.context().tenant_id.as_deref());
        match self.try_render(page, catalogue, styled, navigation) {
            Ok(response) => response,
            Err(error) => {
                // Reachable only if an operator template fails on values the trial render did
                // not cover, e.g. by running out of fuel on a very long URL.
                tracing::error!(
                    request_id = %page.context().request_id,
                    page = page.kind_name(),
                    error = %self.templates.error(&error),
                    "page template failed; sending the minimal text page"
                );
                minimal_response(page)
            }
        }
    }

    fn branding_for(&self, tenant_id: Option<&str>) -> &StyledBranding {
        tenant_id
            .and_then(|tenant| self.branding.get(tenant))
            .unwrap_or(&self.default_branding)
    }

    fn try_render(
        &self,
        page: &Page,
        catalogue: &Catalogue,
        styled: &StyledBranding,
        navigation: bool,
    ) -> Result<Response<Bytes>, minijinja::Error> {
        let context = template_context(page, catalogue, styled);
        if navigation {
            let body = self
                .templates
                .env
                .get_template(page.template_name())?
                .render(context)?;
            Ok(html_response(
                page.status(),
                body,
                &styled.csp,
                &catalogue.tag,
            ))
        } else {
            let body = self
                .templates
                .env
                .get_template("page.txt")?
                .render(context)?;
            Ok(text_response(page.status(), body, Some(&catalogue.tag)))
        }
    }

    /// Renders every page kind in every language, with sparse and full sample values, so that
    /// a template error stops the start instead of a request.
    fn trial_render(&self) -> Result<(), PagesError> {
        let brandings = std::iter::once(&self.default_branding).chain(self.branding.values());
        for styled in brandings {
            for catalogue in self.catalogues.all() {
                for page in sample_pages() {
                    for navigation in [true, false] {
                        self.try_render(&page, catalogue, styled, navigation)
                            .map_err(|e| self.templates.error(&e))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Renders the stylesheet for `branding` and derives the CSP that allows exactly it.
fn style(templates: &Templates, branding: Branding) -> Result<StyledBranding, PagesError> {
    let css = templates
        .env
        .get_template("style.css")
        .and_then(|template| {
            template.render(minijinja::context! { brand => Value::from(Serde(&branding)) })
        })
        .map_err(|e| templates.error(&e))?;
    let csp = html_csp(&css);
    Ok(StyledBranding { branding, css, csp })
}

/// Values available to templates. Every string here is plain text that the template engine
/// escapes in `.html` templates; `style` is the only value marked safe.
#[derive(Serialize)]
struct TemplateContext<'a> {
    lang: &'a str,
    t: &'a Value,
    brand: &'a Branding,
    style: Value,
    page: &'static str,
    title: &'a str,
    summary: &'a str,
    url: UrlView,
    category: Option<String>,
    reason: Option<String>,
    rule_id: Option<String>,
    request_id: String,
    time: String,
    user: Option<String>,
    device: Option<String>,
    report_href: Option<String>,
    warn: Option<WarnView>,
    error: Option<ErrorView<'a>>,
}

#[derive(Serialize)]
struct UrlView {
    short: String,
    full: String,
    shortened: bool,
}

#[derive(Serialize)]
struct WarnView {
    token: String,
    action: String,
    fields: Vec<FieldView>,
}

#[derive(Serialize)]
struct FieldView {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct ErrorView<'a> {
    kind: &'static str,
    /// The failed certificate check, as a sentence.
    check: Option<&'a str>,
}

fn template_context(page: &Page, catalogue: &Catalogue, styled: &StyledBranding) -> Value {
    let context = page.context();
    let (title_key, summary_key) = page.title_and_summary_keys();
    let DisplayUrl {
        short,
        full,
        shortened,
    } = display_url(&context.url);
    let field = |value: &Option<String>| value.as_deref().map(|v| display_text(v, MAX_FIELD_CHARS));
    let time = format_time(context.time);
    let report_href = styled
        .branding
        .contact_email
        .as_deref()
        .map(|to| report_link(to, catalogue, context, &full, &time));

    let warn = match page {
        Page::Warn(_, form) => Some(warn_view(form)),
        _ => None,
    };
    let error = match page {
        Page::UpstreamError(_, kind) => Some(ErrorView {
            kind: kind.name(),
            check: match kind {
                UpstreamErrorKind::Certificate(problem) => {
                    Some(catalogue.get(problem.message_key()))
                }
                _ => None,
            },
        }),
        _ => None,
    };

    Value::from(Serde(&TemplateContext {
        lang: &catalogue.tag,
        t: &catalogue.value,
        brand: &styled.branding,
        style: Value::from_safe_string(styled.css.clone()),
        page: page.kind_name(),
        title: catalogue.get(title_key),
        summary: catalogue.get(summary_key),
        url: UrlView {
            short,
            full,
            shortened,
        },
        category: field(&context.category),
        reason: field(&context.reason),
        rule_id: field(&context.rule_id),
        request_id: display_text(&context.request_id, MAX_FIELD_CHARS),
        time,
        user: field(&context.user),
        device: field(&context.device),
        report_href,
        warn,
        error,
    }))
}

/// Builds the warn form's values. An action that is not a plain absolute path on the same
/// site is replaced by the default, so the form cannot post to another site.
fn warn_view(form: &WarnForm) -> WarnView {
    let action = &form.continue_action;
    let same_site_path = action.starts_with('/')
        && !action.starts_with("//")
        && !action.contains('\\')
        && !action.chars().any(|c| c.is_control() || c.is_whitespace());
    let action = if same_site_path {
        action.clone()
    } else {
        tracing::warn!(action = %action.escape_debug(), "warn form action is not a same-site path; using the default");
        WarnForm::DEFAULT_ACTION.to_owned()
    };
    WarnView {
        token: form.form_token.clone(),
        action,
        fields: form
            .hidden_fields
            .iter()
            .map(|(name, value)| FieldView {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// Builds the "Report a mistake" link, pre-filled with what support needs.
fn report_link(
    to: &str,
    catalogue: &Catalogue,
    context: &PageContext,
    url: &str,
    time: &str,
) -> String {
    let mut body = format!("{}\n\n", catalogue.get("report_body_intro"));
    let mut line = |label_key: &str, value: &str| {
        body.push_str(&format!("{}: {value}\n", catalogue.get(label_key)));
    };
    line("label_url", url);
    let optional = [
        ("label_category", &context.category),
        ("label_reason", &context.reason),
        ("label_rule", &context.rule_id),
        ("label_user", &context.user),
        ("label_device", &context.device),
    ];
    for (label_key, value) in optional {
        if let Some(value) = value {
            line(label_key, &display_text(value, MAX_FIELD_CHARS));
        }
    }
    line("label_time", time);
    line(
        "label_request_id",
        &display_text(&context.request_id, MAX_FIELD_CHARS),
    );
    mailto_link(to, catalogue.get("report_subject"), &body)
}

/// Formats `time` in UTC as `2026-12-04 19:56:16 UTC`.
fn format_time(time: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Builds the last-resort response for a template failure at run time, using no template
/// and no request values.
fn minimal_response(page: &Page) -> Response<Bytes> {
    let status = page.status();
    let body = format!(
        "{} {}\nRequest ID: {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        display_text(&page.context().request_id, MAX_FIELD_CHARS)
    );
    text_response(status, body, None)
}

/// Pages with every field unset and with every field set, covering every template branch.
fn sample_pages() -> Vec<Page> {
    let sparse = PageContext {
        time: OffsetDateTime::UNIX_EPOCH,
        ..PageContext::new("https://example.com/", "sample")
    };
    let full = PageContext {
        tenant_id: Some("sample".to_owned()),
        category: Some("phishing".to_owned()),
        reason: Some("sample reason".to_owned()),
        rule_id: Some("rule-1".to_owned()),
        user: Some("user@example.com".to_owned()),
        device: Some("device-1".to_owned()),
        ..PageContext::new(format!("https://example.com/{}", "a".repeat(200)), "sample")
    };
    let form = WarnForm {
        hidden_fields: vec![("url".to_owned(), "https://example.com/".to_owned())],
        ..WarnForm::new("token")
    };
    let mut pages = Vec::new();
    for context in [sparse, full] {
        pages.push(Page::Block(context.clone()));
        pages.push(Page::Warn(context.clone(), form.clone()));
        pages.push(Page::Inspection(context.clone()));
        pages.push(Page::Unidentified(context.clone()));
        for kind in [
            UpstreamErrorKind::Certificate(CertificateProblem::Expired),
            UpstreamErrorKind::Unreachable,
            UpstreamErrorKind::InvalidResponse,
            UpstreamErrorKind::TimedOut,
            UpstreamErrorKind::ResponseTooLarge,
            UpstreamErrorKind::RequestTooLarge,
            UpstreamErrorKind::DestinationRefused,
            UpstreamErrorKind::Overloaded,
        ] {
            pages.push(Page::UpstreamError(context.clone(), kind));
        }
    }
    pages
}
