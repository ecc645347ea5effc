//! Tenants' secrets: authentication keys, admin tokens and disabler passwords.

use serde::{Deserialize, Serialize};

use crate::random::{random_base64url, random_bytes, random_hex};
use crate::{SecretStore, StoreError};

/// Prefix of authentication keys, so a leaked key is recognisable in scans.
const AUTHENTICATION_KEY_PREFIX: &str = "swgk_";
/// Prefix of admin tokens, so a leaked token is recognisable in scans.
const ADMIN_TOKEN_PREFIX: &str = "swga_";
/// Characters of generated disabler passwords: no 0/O, 1/l/I, so a user can type
/// one read from a screen.
const PASSWORD_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Length of generated disabler passwords (about 69 bits).
const PASSWORD_LEN: usize = 12;

/// Returns the lowercase hex SHA-256 of `secret`, the form in which admin tokens
/// are stored and by which secrets are looked up.
pub fn sha256_hex(secret: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, secret))
}

/// An authentication key: what an agent enrols with, from its MDM configuration.
///
/// The key is stored in clear because administrators download it again inside
/// the MDM profile.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationKey {
    /// The key id, written into the device tokens issued under this key.
    pub id: String,
    /// The tenant id.
    pub tenant: String,
    /// The secret key string the agent presents.
    pub key: String,
    /// Creation time in seconds since the Unix epoch.
    pub created_at: u64,
}

impl std::fmt::Debug for AuthenticationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticationKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("key", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl AuthenticationKey {
    /// Generates a new random key for `tenant`.
    pub fn generate(tenant: &str, now: u64) -> Self {
        Self {
            id: random_hex::<8>(),
            tenant: tenant.to_owned(),
            key: format!("{AUTHENTICATION_KEY_PREFIX}{}", random_base64url::<32>()),
            created_at: now,
        }
    }
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read and change everything of the tenant.
    Admin,
    /// Read everything of the tenant, change nothing.
    ReadOnly,
}

impl Role {
    /// Returns the name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::ReadOnly => "read_only",
        }
    }

    /// Parses a stored role name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "admin" => Some(Self::Admin),
            "read_only" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

/// A stored admin token: only its SHA-256 is kept.
///
/// Plain SHA-256 suffices because tokens are 256-bit random values, not
/// passwords: no dictionary or brute force applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminTokenRecord {
    /// The token id, for listing and deletion.
    pub id: String,
    /// The tenant id.
    pub tenant: String,
    /// What the token may do.
    pub role: Role,
    /// Lowercase hex SHA-256 of the token.
    #[serde(skip)]
    pub token_sha256: String,
    /// Creation time in seconds since the Unix epoch.
    pub created_at: u64,
}

/// A newly generated admin token: the clear token, shown once, and its record.
#[derive(Clone)]
pub struct NewAdminToken {
    /// The bearer token to hand to the administrator.
    pub token: String,
    /// The record to store.
    pub record: AdminTokenRecord,
}

impl std::fmt::Debug for NewAdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAdminToken")
            .field("token", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

impl NewAdminToken {
    /// Generates a new random admin token for `tenant` with `role`.
    pub fn generate(tenant: &str, role: Role, now: u64) -> Self {
        let token = format!("{ADMIN_TOKEN_PREFIX}{}", random_base64url::<32>());
        let record = AdminTokenRecord {
            id: random_hex::<8>(),
            tenant: tenant.to_owned(),
            role,
            token_sha256: sha256_hex(token.as_bytes()),
            created_at: now,
        };
        Self { token, record }
    }
}

/// A disabler password: what a user types on the device to pause the agent.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisablerPassword {
    /// The password in clear, shown to administrators.
    pub password: String,
    /// A random salt (lowercase hex) for the hash given to devices.
    #[serde(skip)]
    pub salt: String,
    /// Creation time in seconds since the Unix epoch.
    pub created_at: u64,
}

impl std::fmt::Debug for DisablerPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisablerPassword")
            .field("password", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A salted password hash a device can check a typed password against offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaltedHash {
    /// The salt, lowercase hex.
    pub salt: String,
    /// Lowercase hex SHA-256 of the salt's bytes (hex-decoded) followed by the
    /// password's UTF-8 bytes.
    pub sha256: String,
}

impl DisablerPassword {
    /// Generates a random password of 12 unambiguous letters and digits.
    pub fn generate(now: u64) -> Self {
        let random = random_bytes::<PASSWORD_LEN>();
        let password = random
            .iter()
            .map(|byte| {
                // The modulo bias over a 55-character alphabet is below 2 % and
                // costs well under a bit of the 69 bits of strength.
                char::from(PASSWORD_ALPHABET[usize::from(*byte) % PASSWORD_ALPHABET.len()])
            })
            .collect();
        Self {
            password,
            salt: random_hex::<16>(),
            created_at: now,
        }
    }

    /// Returns the salted hash given to devices.
    pub fn salted_hash(&self) -> SaltedHash {
        let mut input = hex::decode(&self.salt).unwrap_or_else(|_| self.salt.as_bytes().to_vec());
        input.extend_from_slice(self.password.as_bytes());
        SaltedHash {
            salt: self.salt.clone(),
            sha256: sha256_hex(&input),
        }
    }
}

/// A tenant's current disabler password and the one before it; both are valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisablerPasswords {
    /// The password made by the last "generate".
    pub current: DisablerPassword,
    /// The password before it, if any.
    pub previous: Option<DisablerPassword>,
}

/// Secrets generated for a tenant that was never seeded, to show to the operator
/// once.
#[derive(Clone, Default)]
pub struct SeededSecrets {
    /// The tenant's first authentication key, if this call seeded the tenant.
    pub authentication_key: Option<AuthenticationKey>,
    /// The tenant's first admin token, if this call seeded the tenant.
    pub admin_token: Option<NewAdminToken>,
}

impl std::fmt::Debug for SeededSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededSecrets")
            .field("authentication_key", &self.authentication_key)
            .field("admin_token", &self.admin_token)
            .finish()
    }
}

/// Gives `tenant` an authentication key, an admin-role token and a disabler
/// password if the store has never seeded it, and returns the key and token that
/// were created.
///
/// Run at every start for every tenant of the policy: the first time it creates
/// the secrets, later it changes nothing and returns nothing. A tenant whose keys
/// or tokens were all deleted stays without them, because deleting the last key
/// is how an administrator stops enrolments with a leaked key. The check and the
/// inserts are one atomic store operation, so concurrent calls seed a tenant once.
pub async fn seed_tenant(
    store: &dyn SecretStore,
    tenant: &str,
    now: u64,
) -> Result<SeededSecrets, StoreError> {
    let key = AuthenticationKey::generate(tenant, now);
    let token = NewAdminToken::generate(tenant, Role::Admin, now);
    let disabler = DisablerPassword::generate(now);
    if !store
        .insert_first_secrets(tenant, &key, &token.record, &disabler)
        .await?
    {
        return Ok(SeededSecrets::default());
    }

    tracing::info!(
        tenant,
        key_id = %key.id,
        token_id = %token.record.id,
        "created first authentication key, admin token and disabler password"
    );
    Ok(SeededSecrets {
        authentication_key: Some(key),
        admin_token: Some(token),
    })
}
