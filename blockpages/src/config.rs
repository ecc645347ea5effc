//! The `[pages]` section of `swg.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::branding::{parse_color, validate_contact_email, validate_https_url};
use crate::error::PagesError;

/// Pages configuration: where operator templates live and how each tenant's pages look.
///
/// ```toml
/// [pages]
/// template_dir = "pages"            # optional; overrides built-in templates and adds catalogues
///
/// [pages.default_branding]
/// name = "Example Corp"
/// primary_color = "#1f5fbf"
/// contact_email = "helpdesk@example.com"
///
/// [pages.branding.acme]             # tenant id "acme"; unset fields come from default_branding
/// name = "ACME"
/// logo_file = "acme-logo.png"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagesConfig {
    /// Folder with operator templates (`*.html`, `*.txt`, `*.css`) and catalogues
    /// (`lang/<tag>.toml`). A relative path is taken from the configuration file's folder.
    /// Default: none, so the built-in templates and catalogues are used.
    pub template_dir: Option<PathBuf>,

    /// Branding for tenants that have no entry in `branding`, and the source of every field a
    /// tenant's entry leaves unset.
    pub default_branding: BrandingConfig,

    /// Branding per tenant id.
    pub branding: BTreeMap<String, BrandingConfig>,
}

/// How one tenant's pages look. Every field is optional; an unset field falls back to
/// `default_branding`, then to the built-in default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrandingConfig {
    /// Organisation name shown in the page header and title. Built-in default: "Secure Web
    /// Gateway". At most 100 characters.
    pub name: Option<String>,

    /// Logo file (PNG, SVG, JPEG or GIF, at most 128 KiB), embedded in the page as a data URI.
    /// A relative path is taken from the configuration file's folder. Default: no logo.
    pub logo_file: Option<PathBuf>,

    /// Header and button colour as `#rrggbb`. Built-in default: `#1f4e8c`. The text on it is
    /// white or black, whichever contrasts more.
    pub primary_color: Option<String>,

    /// A message shown on every page, e.g. who to ask. At most 1000 characters. Default: none.
    pub message: Option<String>,

    /// Address for help and for "Report a mistake" (`local@domain`, letters, digits and
    /// `.`, `_`, `+`, `-` only). Default: none, so no report link is shown.
    pub contact_email: Option<String>,

    /// Support page link; must be an `https://` URL without credentials. Default: none.
    pub support_url: Option<String>,

    /// Where the warn page's "Go back" link leads; must be an `https://` URL without
    /// credentials. Default: none, so "Go back" opens an empty page (`about:blank`).
    pub home_url: Option<String>,
}

/// Upper bound of `name`, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 100;
/// Upper bound of `message`, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 1000;

impl PagesConfig {
    /// Checks every value that can be checked without reading files.
    ///
    /// # Errors
    /// [`PagesError::InvalidConfig`] naming the first invalid key and what it allows.
    pub fn validate(&self) -> Result<(), PagesError> {
        self.default_branding.validate("pages.default_branding")?;
        for (tenant, branding) in &self.branding {
            if tenant.is_empty() {
                return Err(PagesError::invalid_config(
                    "pages.branding",
                    "has an entry with an empty tenant id",
                ));
            }
            branding.validate(&format!("pages.branding.{tenant}"))?;
        }
        Ok(())
    }
}

impl BrandingConfig {
    /// Checks this entry's values; `prefix` is its key path for messages.
    fn validate(&self, prefix: &str) -> Result<(), PagesError> {
        if let Some(name) = &self.name {
            let chars = name.chars().count();
            if chars == 0 || chars > MAX_NAME_CHARS {
                return Err(PagesError::invalid_config(
                    format!("{prefix}.name"),
                    format!("must have 1 to {MAX_NAME_CHARS} characters, has {chars}"),
                ));
            }
        }
        if let Some(message) = &self.message {
            let chars = message.chars().count();
            if chars > MAX_MESSAGE_CHARS {
                return Err(PagesError::invalid_config(
                    format!("{prefix}.message"),
                    format!("must have at most {MAX_MESSAGE_CHARS} characters, has {chars}"),
                ));
            }
        }
        if let Some(color) = &self.primary_color {
            parse_color(color).map_err(|message| {
                PagesError::invalid_config(format!("{prefix}.primary_color"), message)
            })?;
        }
        if let Some(email) = &self.contact_email {
            validate_contact_email(email).map_err(|message| {
                PagesError::invalid_config(format!("{prefix}.contact_email"), message)
            })?;
        }
        if let Some(support_url) = &self.support_url {
            validate_https_url(support_url).map_err(|message| {
                PagesError::invalid_config(format!("{prefix}.support_url"), message)
            })?;
        }
        if let Some(home_url) = &self.home_url {
            validate_https_url(home_url).map_err(|message| {
                PagesError::invalid_config(format!("{prefix}.home_url"), message)
            })?;
        }
        Ok(())
    }

    /// Returns this entry with every unset field taken from `fallback`.
    pub(crate) fn or(&self, fallback: &BrandingConfig) -> BrandingConfig {
        BrandingConfig {
            name: self.name.clone().or_else(|| fallback.name.clone()),
            logo_file: self
                .logo_file
                .clone()
                .or_else(|| fallback.logo_file.clone()),
            primary_color: self
                .primary_color
                .clone()
                .or_else(|| fallback.primary_color.clone()),
            message: self.message.clone().or_else(|| fallback.message.clone()),
            contact_email: self
                .contact_email
                .clone()
                .or_else(|| fallback.contact_email.clone()),
            support_url: self
                .support_url
                .clone()
                .or_else(|| fallback.support_url.clone()),
            home_url: self.home_url.clone().or_else(|| fallback.home_url.clone()),
        }
    }
}
