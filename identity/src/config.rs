//! The `[identity]` section of `swg.toml`.

use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use crate::{SigningKeyError, SigningKeys};

/// Lifetimes of tokens, cookies and tickets, the correlation hint window, and where
/// the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Lifetime of a device token in hours (1 to 720); agents renew before expiry.
    pub token_ttl_hours: u64,
    /// Lifetime of the `__swg_id` identity cookie in seconds (60 to 2 592 000).
    pub identity_cookie_ttl_secs: u64,
    /// Lifetime of a warn acknowledgement in the `__swg_ack` cookie in seconds
    /// (60 to 604 800).
    pub ack_ttl_secs: u64,
    /// Lifetime of a one-time ticket in seconds (5 to 300).
    pub ticket_ttl_secs: u64,
    /// Lifetime of a warn page's "continue" form token in seconds (30 to 86 400).
    pub continue_form_ttl_secs: u64,
    /// Lifetime of a signed return URL for the auth host redirect in seconds
    /// (10 to 3 600).
    pub return_url_ttl_secs: u64,
    /// Lifetime of the auth host's gateway cookie in days (1 to 730).
    pub gateway_cookie_ttl_days: u64,
    /// How long a correlation hint from the resolver stays usable, in seconds
    /// (10 to 86 400).
    pub hint_ttl_secs: u64,
    /// The signing key file, relative to the data folder unless absolute; created
    /// with one random key (mode 0600) on first start. Ignored when `signing_keys`
    /// is not empty.
    pub signing_key_file: PathBuf,
    /// Signing keys given inline (for example from a Kubernetes Secret through the
    /// environment); the first one signs, all verify.
    pub signing_keys: Vec<InlineSigningKey>,
}

/// A signing key given in the configuration.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineSigningKey {
    /// The key id written into every value signed with this key: 1 to 32
    /// characters of `A-Z a-z 0-9 - _`.
    pub id: String,
    /// The secret, base64url (padding optional), at least 32 bytes once decoded.
    pub secret: String,
}

impl std::fmt::Debug for InlineSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineSigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            token_ttl_hours: 24,
            identity_cookie_ttl_secs: 24 * 3600,
            ack_ttl_secs: 3600,
            ticket_ttl_secs: 60,
            continue_form_ttl_secs: 900,
            return_url_ttl_secs: 120,
            gateway_cookie_ttl_days: 365,
            hint_ttl_secs: 600,
            signing_key_file: PathBuf::from("secrets/signing.key"),
            signing_keys: Vec::new(),
        }
    }
}

/// A configuration value outside its allowed range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A number is outside its allowed range.
    #[error("identity.{key} = {value} is out of range; allowed: {min} to {max}")]
    OutOfRange {
        /// The key, without the `identity.` prefix.
        key: &'static str,
        /// The configured value.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// The signing keys are invalid.
    #[error(transparent)]
    SigningKeys(#[from] SigningKeyError),
}

impl IdentityConfig {
    /// Checks every number against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&'static str, u64, u64, u64); 8] = [
            ("token_ttl_hours", self.token_ttl_hours, 1, 720),
            (
                "identity_cookie_ttl_secs",
                self.identity_cookie_ttl_secs,
                60,
                2_592_000,
            ),
            ("ack_ttl_secs", self.ack_ttl_secs, 60, 604_800),
            ("ticket_ttl_secs", self.ticket_ttl_secs, 5, 300),
            (
                "continue_form_ttl_secs",
                self.continue_form_ttl_secs,
                30,
                86_400,
            ),
            ("return_url_ttl_secs", self.return_url_ttl_secs, 10, 3_600),
            (
                "gateway_cookie_ttl_days",
                self.gateway_cookie_ttl_days,
                1,
                730,
            ),
            ("hint_ttl_secs", self.hint_ttl_secs, 10, 86_400),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }
        if !self.signing_keys.is_empty() {
            self.inline_signing_keys()?;
        }
        Ok(())
    }

    /// Loads the signing keys: the inline keys if any, otherwise the key file under
    /// `data_dir` (created on first start).
    pub fn load_signing_keys(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<SigningKeys, SigningKeyError> {
        if !self.signing_keys.is_empty() {
            return self.inline_signing_keys();
        }
        SigningKeys::load_or_generate(&data_dir.join(&self.signing_key_file))
    }

    fn inline_signing_keys(&self) -> Result<SigningKeys, SigningKeyError> {
        const ORIGIN: &str = "identity.signing_keys";
        let mut secrets = Vec::with_capacity(self.signing_keys.len());
        for (index, key) in self.signing_keys.iter().enumerate() {
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key.secret.trim_end_matches('='))
                .map_err(|error| SigningKeyError::Parse {
                    origin: ORIGIN.to_owned(),
                    line: index + 1,
                    message: format!("secret of key {:?} is not base64url: {error}", key.id),
                })?;
            secrets.push((key.id.clone(), secret));
        }
        SigningKeys::from_secrets(ORIGIN, &secrets)
    }
}
