//! HMAC keys that sign and verify every signed value.
//!
//! The key file contains one key a line, `<key id> <secret as base64url>`; blank lines
//! and lines starting with `#` are ignored. The first key signs; every key verifies.
//! To rotate, put a new key on the first line, keep the old one below it until the
//! longest-lived value signed with it (the gateway cookie, one year by default) has
//! expired, then remove it. Every replica that reads the same file accepts the same
//! tokens.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::hmac;

use crate::random::{random_bytes, random_hex};

/// Minimum length of a signing secret in bytes (the HMAC-SHA256 output size).
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// Maximum length of a key id in characters; key ids appear in every signed value.
pub(crate) const MAX_KEY_ID_LEN: usize = 32;

/// Failures to load, parse or create signing keys.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// The key file could not be read, created or written.
    #[error("signing key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// A line of the key file is not `<key id> <base64url secret>`.
    #[error("{origin}:{line}: {message}")]
    Parse {
        /// The key file, or `identity.signing_keys` for inline keys.
        origin: String,
        /// The 1-based line number (the 1-based entry for inline keys).
        line: usize,
        /// The problem with the line.
        message: String,
    },
    /// Two keys share a key id, so a value's key id would not name one key.
    #[error("{origin}: key id {id:?} appears twice; give every key its own id")]
    DuplicateId {
        /// The key file, or `identity.signing_keys`.
        origin: String,
        /// The repeated key id.
        id: String,
    },
    /// The file or list contains no key.
    #[error(
        "{origin}: no signing key; add a line `<key id> <base64url secret of at least 32 bytes>`"
    )]
    Empty {
        /// The key file, or `identity.signing_keys`.
        origin: String,
    },
}

/// One HMAC-SHA256 key and its id.
struct SigningKey {
    id: String,
    key: hmac::Key,
}

/// The keys that sign (the first) and verify (all) signed values.
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|key| key.id.as_str()).collect();
        f.debug_struct("SigningKeys").field("ids", &ids).finish()
    }
}

impl SigningKeys {
    /// Builds the key set from `(key id, secret)` pairs; the first pair signs.
    ///
    /// `origin` names where the keys came from in error messages.
    pub fn from_secrets(
        origin: &str,
        secrets: &[(String, Vec<u8>)],
    ) -> Result<Self, SigningKeyError> {
        let mut keys: Vec<SigningKey> = Vec::with_capacity(secrets.len());
        for (index, (id, secret)) in secrets.iter().enumerate() {
            check_key_id(origin, index + 1, id)?;
            if secret.len() < MIN_SECRET_LEN {
                return Err(SigningKeyError::Parse {
                    origin: origin.to_owned(),
                    line: index + 1,
                    message: format!(
                        "secret of key {id:?} has {} bytes; use at least {MIN_SECRET_LEN}",
                        secret.len()
                    ),
                });
            }
            if keys.iter().any(|key| key.id == *id) {
                return Err(SigningKeyError::DuplicateId {
                    origin: origin.to_owned(),
                    id: id.clone(),
                });
            }
            keys.push(SigningKey {
                id: id.clone(),
                key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            });
        }
        if keys.is_empty() {
            return Err(SigningKeyError::Empty {
                origin: origin.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// Parses the key file format described in the module documentation.
    pub fn parse(origin: &str, text: &str) -> Result<Self, SigningKeyError> {
        let mut secrets = Vec::new();
        let mut lines = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parse_error = |message: String| SigningKeyError::Parse {
                origin: origin.to_owned(),
                line: index + 1,
                message,
            };
            let mut fields = line.split_whitespace();
            let (Some(id), Some(secret), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(parse_error(
                    "expected `<key id> <base64url secret>`".to_owned(),
                ));
            };
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(secret.trim_end_matches('='))
                .map_err(|error| parse_error(format!("secret is not base64url: {error}")))?;
            secrets.push((id.to_owned(), secret));
            lines.push(index + 1);
        }

        // Report errors with the file's line numbers, not the key's position.
        Self::from_secrets(origin, &secrets).map_err(|error| match error {
            SigningKeyError::Parse {
                origin,
                line,
                message,
            } => SigningKeyError::Parse {
                origin,
                line: lines.get(line - 1).copied().unwrap_or(line),
                message,
            },
            other => other,
        })
    }

    /// Loads the key file at `path`, or creates it with one new random key (file
    /// mode 0600) if it does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, SigningKeyError> {
        let io_error = |source| SigningKeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_readable_by_others(path);
                Self::parse(&path.display().to_string(), &text)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_error)?;
                }
                let id = random_hex::<4>();
                let secret = random_bytes::<MIN_SECRET_LEN>();
                let line = format!(
                    "# swg signing keys: `<key id> <base64url secret>`; the first line signs.\n{id} {}\n",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
                );
                write_new_private_file(path, line.as_bytes()).map_err(io_error)?;
                tracing::info!(path = %path.display(), key_id = %id, "generated signing key");
                Self::from_secrets(&path.display().to_string(), &[(id, secret.to_vec())])
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// Returns the id of the key that signs new values.
    pub fn active_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Returns the key that signs new values.
    pub(crate) fn active(&self) -> (&str, &hmac::Key) {
        let key = &self.keys[0];
        (&key.id, &key.key)
    }

    /// Returns the verification key with `id`.
    pub(crate) fn find(&self, id: &str) -> Option<&hmac::Key> {
        self.keys
            .iter()
            .find(|key| key.id == id)
            .map(|key| &key.key)
    }
}

/// Checks that a key id is 1 to [`MAX_KEY_ID_LEN`] characters of `[A-Za-z0-9_-]`,
/// so it never contains the `.` that separates the parts of a signed value.
fn check_key_id(origin: &str, line: usize, id: &str) -> Result<(), SigningKeyError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(SigningKeyError::Parse {
            origin: origin.to_owned(),
            line,
            message: format!(
                "key id {id:?} must be 1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, '-', '_'"
            ),
        })
    }
}

/// Creates `path` with mode 0600 and writes `contents`; fails if it exists.
pub(crate) fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Logs a warning when the key file can be read by group or others.
///
/// NOTE: this only warns, because Kubernetes mounts Secrets 0644 unless the
/// manifest sets `defaultMode`, and refusing to start there would be worse.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "signing key file is readable by group or others; chmod 600 it"
                );
            }
        }
    }
}
