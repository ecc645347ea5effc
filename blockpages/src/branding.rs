//! A tenant's resolved branding: validated values ready to put into a page.

use std::path::Path;

use serde::Serialize;

pub(crate) use crate::color::parse_color;
use crate::color::{self, Rgb};
use crate::config::BrandingConfig;
use crate::error::PagesError;
use crate::logo::load_logo;

/// Name shown when neither the tenant nor the default branding sets one.
const DEFAULT_NAME: &str = "Secure Web Gateway";
/// Primary colour when none is configured; white text on it contrasts 8.3:1.
const DEFAULT_PRIMARY: Rgb = Rgb {
    red: 0x1f,
    green: 0x4e,
    blue: 0x8c,
};

/// Branding after validation, with the logo loaded and the text colour chosen.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Branding {
    pub(crate) name: String,
    /// `data:` URI of the logo.
    pub(crate) logo: Option<String>,
    /// `#rrggbb`.
    pub(crate) primary_color: String,
    /// `#ffffff` or `#000000`, whichever contrasts more with `primary_color`.
    pub(crate) on_primary_color: String,
    pub(crate) message: Option<String>,
    pub(crate) contact_email: Option<String>,
    /// `mailto:` link to `contact_email`.
    pub(crate) contact_href: Option<String>,
    /// Serialized `https://` URL.
    pub(crate) support_url: Option<String>,
    /// Serialized `https://` URL, or `about:blank`.
    pub(crate) home_url: String,
}

impl Branding {
    /// Resolves `config` (already merged with the default branding); `key` names the entry in
    /// messages and `base_dir` anchors a relative logo path.
    pub(crate) fn load(
        config: &BrandingConfig,
        key: &str,
        base_dir: &Path,
    ) -> Result<Self, PagesError> {
        let primary = match &config.primary_color {
            Some(text) => parse_color(text).map_err(|message| {
                PagesError::invalid_config(format!("{key}.primary_color"), message)
            })?,
            None => DEFAULT_PRIMARY,
        };
        let logo = match &config.logo_file {
            Some(file) => Some(load_logo(&base_dir.join(file))?),
            None => None,
        };
        let support_url = match &config.support_url {
            Some(url) => Some(validate_https_url(url).map_err(|message| {
                PagesError::invalid_config(format!("{key}.support_url"), message)
            })?),
            None => None,
        };
        let home_url = match &config.home_url {
            Some(url) => validate_https_url(url).map_err(|message| {
                PagesError::invalid_config(format!("{key}.home_url"), message)
            })?,
            None => "about:blank".to_owned(),
        };
        let contact_email = match &config.contact_email {
            Some(email) => {
                validate_contact_email(email).map_err(|message| {
                    PagesError::invalid_config(format!("{key}.contact_email"), message)
                })?;
                Some(email.clone())
            }
            None => None,
        };

        Ok(Branding {
            name: config
                .name
                .clone()
                .unwrap_or_else(|| DEFAULT_NAME.to_owned()),
            logo,
            primary_color: primary.to_hex(),
            on_primary_color: color::text_color_on(primary).to_hex(),
            message: config.message.clone(),
            contact_href: contact_email
                .as_ref()
                .map(|email| format!("mailto:{email}")),
            contact_email,
            support_url,
            home_url,
        })
    }
}

/// Checks a contact address. Only a conservative character set is allowed so the address
/// can go into a `mailto:` link without encoding.
pub(crate) fn validate_contact_email(email: &str) -> Result<(), String> {
    let invalid =
        |why: &str| format!("must be an address like helpdesk@example.com ({why}), got {email:?}");
    let (local, domain) = email.split_once('@').ok_or_else(|| invalid("no @"))?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if !local_ok {
        return Err(invalid(
            "the part before @ may hold letters, digits, '.', '_', '+' and '-'",
        ));
    }
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !domain_ok {
        return Err(invalid(
            "the domain must be a host name with at least one dot",
        ));
    }
    Ok(())
}

/// Checks that `text` is an absolute `https://` URL with a host and no credentials, and
/// returns its normalized form.
pub(crate) fn validate_https_url(text: &str) -> Result<String, String> {
    let url =
        url::Url::parse(text).map_err(|e| format!("must be an https:// URL, got {text:?}: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "must be an https:// URL, got scheme {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("must name a host, got {text:?}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".to_owned());
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_email_allows_plain_addresses_only() {
        assert!(validate_contact_email("help.desk+web@it.example.com").is_ok());
        for bad in [
            "helpdesk",
            "@example.com",
            "help@localhost",
            "help desk@example.com",
            "help@example.com?subject=x",
            "a@b@example.com",
            "help@exa_mple.com",
            "\"x\"@example.com",
            "help@-example.com",
        ] {
            assert!(validate_contact_email(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn support_url_must_be_https_without_credentials() {
        assert_eq!(
            validate_https_url("https://help.example.com/it?q=web").unwrap(),
            "https://help.example.com/it?q=web"
        );
        for bad in [
            "http://help.example.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://user:pw@help.example.com/",
            "//help.example.com",
            "help.example.com",
        ] {
            assert!(validate_https_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn branding_falls_back_to_built_in_defaults() {
        let branding = Branding::load(
            &BrandingConfig::default(),
            "pages.default_branding",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(branding.name, "Secure Web Gateway");
        assert_eq!(branding.primary_color, "#1f4e8c");
        assert_eq!(branding.on_primary_color, "#ffffff");
        assert_eq!(branding.home_url, "about:blank");
        assert!(branding.logo.is_none());
        assert!(branding.contact_href.is_none());
    }

    #[test]
    fn branding_picks_black_text_on_light_primary() {
        let config = BrandingConfig {
            primary_color: Some("#f5d90a".to_owned()),
            ..BrandingConfig::default()
        };
        let branding = Branding::load(&config, "pages.default_branding", Path::new(".")).unwrap();
        assert_eq!(branding.on_primary_color, "#000000");
    }

    #[test]
    fn branding_reports_missing_logo_file() {
        let config = BrandingConfig {
            logo_file: Some("no-such-logo.png".into()),
            ..BrandingConfig::default()
        };
        let err =
            Branding::load(&config, "pages.branding.acme", Path::new("/nonexistent")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/no-such-logo.png"),
            "{err}"
        );
    }
}
