//! Single-use signed values: one-time tickets, "continue" form tokens and the
//! return URL of the auth host redirect.

use serde::{Deserialize, Serialize};

use crate::random::random_base64url;
use crate::signed::{normalize_host, Expiring};
use crate::{
    AppClass, Discovery, Identity, Purpose, Rejection, Signer, SpentTickets, MAX_SIGNED_VALUE_LEN,
};

/// A URL too long to fit in a signed value of [`MAX_SIGNED_VALUE_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("URL is too long to sign: the signed value would exceed {MAX_SIGNED_VALUE_LEN} bytes")]
pub struct UrlTooLong;

/// The claims of a one-time ticket that carries a device's identity from the auth
/// host to one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    /// A random id that makes the ticket single-use.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// The device id.
    #[serde(rename = "d")]
    pub device: String,
    /// The user id.
    #[serde(rename = "u")]
    pub user: String,
    /// The app class of the browser.
    #[serde(rename = "c")]
    pub app_class: AppClass,
    /// The site host the ticket is valid on.
    #[serde(rename = "h")]
    pub host: String,
    /// Expiry time in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Expiring for Ticket {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl Ticket {
    /// Returns the identity this ticket carries, discovered by ticket.
    pub fn into_identity(self) -> Identity {
        Identity {
            tenant: self.tenant,
            device: self.device,
            user: self.user,
            app_bundle_id: None,
            app_class: self.app_class,
            discovery: Discovery::Ticket,
        }
    }
}

/// The claims of a warn page's "continue" form token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueForm {
    /// A random id that makes the form token single-use.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// The device that was shown the warn page.
    #[serde(rename = "d")]
    pub device: String,
    /// The host the warn page was shown on.
    #[serde(rename = "h")]
    pub host: String,
    /// The id of the rule that warned.
    #[serde(rename = "r")]
    pub rule_id: String,
    /// The URL to return to after "continue".
    #[serde(rename = "url")]
    pub url: String,
    /// Expiry time in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Expiring for ContinueForm {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// The claims of the signed return URL handed to the auth host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnUrl {
    /// A random id that allows one identification attempt per navigation.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The site host the browser came from; the ticket will be bound to it.
    #[serde(rename = "h")]
    pub host: String,
    /// The URL the browser asked for.
    #[serde(rename = "url")]
    pub url: String,
    /// The auth host that may redeem this value.
    #[serde(rename = "aud")]
    pub auth_host: String,
    /// Expiry time in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Expiring for ReturnUrl {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl Signer {
    /// Signs a one-time ticket for `identity` on `host`, valid for
    /// `identity.ticket_ttl_secs` from `now`.
    pub fn issue_ticket(&self, identity: &Identity, host: &str, now: u64) -> String {
        let claims = Ticket {
            nonce: random_base64url::<16>(),
            tenant: identity.tenant.clone(),
            device: identity.device.clone(),
            user: identity.user.clone(),
            app_class: identity.app_class,
            host: normalize_host(host),
            expires_at: now.saturating_add(self.config().ticket_ttl_secs),
        };
        self.seal(Purpose::Ticket, &claims)
    }

    /// Verifies a ticket presented on `host` at `now` and marks it spent; a second
    /// redemption is rejected as [`Rejection::Replayed`].
    pub async fn redeem_ticket(
        &self,
        value: &str,
        host: &str,
        now: u64,
        spent: &dyn SpentTickets,
    ) -> Result<Ticket, Rejection> {
        let claims: Ticket = self.open(Purpose::Ticket, value, now)?;
        if claims.host != normalize_host(host) {
            return Err(self.reject(Purpose::Ticket, Rejection::WrongAudience));
        }
        self.spend(Purpose::Ticket, &claims.nonce, claims.expires_at, spent)
            .await?;
        Ok(claims)
    }

    /// Signs a "continue" form token for the warn page that `rule_id` showed to
    /// `device` of `tenant` on `host`, returning to `url`.
    ///
    /// The token is valid for `identity.continue_form_ttl_secs` from `now`.
    pub fn issue_continue_form(
        &self,
        tenant: &str,
        device: &str,
        host: &str,
        rule_id: &str,
        url: &str,
        now: u64,
    ) -> Result<String, UrlTooLong> {
        let claims = ContinueForm {
            nonce: random_base64url::<16>(),
            tenant: tenant.to_owned(),
            device: device.to_owned(),
            host: normalize_host(host),
            rule_id: rule_id.to_owned(),
            url: url.to_owned(),
            expires_at: now.saturating_add(self.config().continue_form_ttl_secs),
        };
        let value = self.seal(Purpose::ContinueForm, &claims);
        if value.len() > MAX_SIGNED_VALUE_LEN {
            return Err(UrlTooLong);
        }
        Ok(value)
    }

    /// Verifies a "continue" form token posted on `host` by `device` of `tenant` at
    /// `now` and marks it spent.
    pub async fn redeem_continue_form(
        &self,
        value: &str,
        tenant: &str,
        device: &str,
        host: &str,
        now: u64,
        spent: &dyn SpentTickets,
    ) -> Result<ContinueForm, Rejection> {
        let claims: ContinueForm = self.open(Purpose::ContinueForm, value, now)?;
        if claims.tenant != tenant {
            return Err(self.reject(Purpose::ContinueForm, Rejection::WrongTenant));
        }
        if claims.host != normalize_host(host) {
            return Err(self.reject(Purpose::ContinueForm, Rejection::WrongAudience));
        }
        if claims.device != device {
            return Err(self.reject(Purpose::ContinueForm, Rejection::WrongDevice));
        }
        self.spend(
            Purpose::ContinueForm,
            &claims.nonce,
            claims.expires_at,
            spent,
        )
        .await?;
        Ok(claims)
    }

    /// Signs the return URL for a redirect from `host` to `auth_host`, valid for
    /// `identity.return_url_ttl_secs` from `now`.
    pub fn issue_return_url(
        &self,
        host: &str,
        url: &str,
        auth_host: &str,
        now: u64,
    ) -> Result<String, UrlTooLong> {
        let claims = ReturnUrl {
            nonce: random_base64url::<16>(),
            host: normalize_host(host),
            url: url.to_owned(),
            auth_host: normalize_host(auth_host),
            expires_at: now.saturating_add(self.config().return_url_ttl_secs),
        };
        let value = self.seal(Purpose::ReturnUrl, &claims);
        if value.len() > MAX_SIGNED_VALUE_LEN {
            return Err(UrlTooLong);
        }
        Ok(value)
    }

    /// Verifies a return URL presented on `auth_host` at `now` and marks it spent,
    /// so each navigation gets one identification attempt.
    pub async fn redeem_return_url(
        &self,
        value: &str,
        auth_host: &str,
        now: u64,
        spent: &dyn SpentTickets,
    ) -> Result<ReturnUrl, Rejection> {
        let claims: ReturnUrl = self.open(Purpose::ReturnUrl, value, now)?;
        if claims.auth_host != normalize_host(auth_host) {
            return Err(self.reject(Purpose::ReturnUrl, Rejection::WrongAudience));
        }
        self.spend(Purpose::ReturnUrl, &claims.nonce, claims.expires_at, spent)
            .await?;
        Ok(claims)
    }

    /// Marks a single-use nonce spent, rejecting a replay.
    async fn spend(
        &self,
        purpose: Purpose,
        nonce: &str,
        expires_at: u64,
        spent: &dyn SpentTickets,
    ) -> Result<(), Rejection> {
        // The purpose prefix keeps nonces of different purposes apart in a
        // shared store.
        let id = format!("{}:{nonce}", purpose.label());
        match spent.spend(&id, expires_at).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.reject(purpose, Rejection::Replayed)),
            Err(error) => {
                tracing::warn!(%error, purpose = purpose.label(), "cannot check single use; rejecting");
                Err(self.reject(purpose, Rejection::SpentStoreUnavailable))
            }
        }
    }
}
