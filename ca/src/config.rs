//! Configuration of the root CA and of leaf minting (the `[ca]` and `[leaf]`
//! sections of `swg.toml`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// Maximum leaf validity accepted, in days: the CA/Browser Forum Baseline
/// Requirements limit for publicly trusted TLS certificates. Apple allows
/// up to 825 days under private roots, so this limit is the stricter one.
pub const MAX_LEAF_VALIDITY_DAYS: u32 = 397;

/// The smallest RSA modulus accepted for a root CA, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Key type of a newly generated root CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on the NIST P-256 curve, signing with SHA-256.
    #[default]
    EcdsaP256,
    /// RSA with a 2048-bit modulus, signing with PKCS#1 v1.5 and SHA-256.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
}

impl KeyType {
    /// The names accepted by [`KeyType::from_str`], in the order shown to users.
    pub const NAMES: [&'static str; 4] = ["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"];

    /// Returns the configuration name (`ecdsa-p256`, `rsa-2048`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key type name that is not one of [`KeyType::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTypeError {
    /// An RSA size under [`MIN_RSA_BITS`].
    #[error("RSA keys of {bits} bits are too weak; use rsa-2048, rsa-3072 or rsa-4096")]
    RsaTooSmall {
        /// The requested modulus size in bits.
        bits: u32,
    },
    /// Any other unknown name.
    #[error("unknown key type `{name}`; expected one of ecdsa-p256, rsa-2048, rsa-3072, rsa-4096")]
    Unknown {
        /// The name as given.
        name: String,
    },
}

impl FromStr for KeyType {
    type Err = KeyTypeError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "p-256" | "ecdsa" => Ok(Self::EcdsaP256),
            "rsa-2048" => Ok(Self::Rsa2048),
            "rsa-3072" => Ok(Self::Rsa3072),
            "rsa-4096" => Ok(Self::Rsa4096),
            other => match other.strip_prefix("rsa-").map(str::parse::<u32>) {
                Some(Ok(bits)) if bits < MIN_RSA_BITS as u32 => {
                    Err(KeyTypeError::RsaTooSmall { bits })
                }
                _ => Err(KeyTypeError::Unknown {
                    name: name.to_owned(),
                }),
            },
        }
    }
}

impl<'de> Deserialize<'de> for KeyType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The `[ca]` section: where the root CA lives and how a new one is made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    /// PEM certificate of an operator-supplied root CA. When set, `key_file`
    /// must be set too, both files must exist, and swg never generates or
    /// overwrites them (except `swg ca init --force`). When unset, the CA
    /// lives in `<data_dir>/ca/` and is generated on first start.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1) matching `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Key type of a generated root CA.
    pub key_type: KeyType,
    /// Common name (CN) of a generated root CA.
    pub common_name: String,
    /// Organization (O) of a generated root CA.
    pub organization: String,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            key_type: KeyType::EcdsaP256,
            common_name: "swg Root CA".to_owned(),
            organization: "swg".to_owned(),
        }
    }
}

impl CaConfig {
    /// Checks the values that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(ConfigError::MissingPair {
                    set: "ca.cert_file",
                    missing: "ca.key_file",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::MissingPair {
                    set: "ca.key_file",
                    missing: "ca.cert_file",
                })
            }
            _ => {}
        }
        check_name("ca.common_name", &self.common_name)?;
        check_name("ca.organization", &self.organization)
    }
}

fn check_name(key: &'static str, value: &str) -> Result<(), ConfigError> {
    // X.520 limits commonName and organizationName to 64 characters.
    let length = value.chars().count();
    if value.trim().is_empty() || length > 64 {
        return Err(ConfigError::InvalidName { key, length });
    }
    Ok(())
}

/// The `[leaf]` section: leaf certificate validity and the leaf cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeafConfig {
    /// Total validity of a leaf in days, counting the hour of back-dating.
    /// 1 to 397.
    pub validity_days: u32,
    /// Maximum number of leaves kept in the cache. At least 1.
    pub cache_entries: u64,
}

impl Default for LeafConfig {
    fn default() -> Self {
        Self {
            validity_days: 30,
            cache_entries: 100_000,
        }
    }
}

impl LeafConfig {
    /// Checks that every value is inside its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_LEAF_VALIDITY_DAYS).contains(&self.validity_days) {
            return Err(ConfigError::OutOfRange {
                key: "leaf.validity_days",
                value: u64::from(self.validity_days),
                allowed: "1 to 397",
            });
        }
        if self.cache_entries == 0 {
            return Err(ConfigError::OutOfRange {
                key: "leaf.cache_entries",
                value: 0,
                allowed: "at least 1",
            });
        }
        Ok(())
    }
}

/// A configuration value outside what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A number outside its range.
    #[error("{key} = {value} is out of range; allowed: {allowed}")]
    OutOfRange {
        /// The key, with its section (`leaf.validity_days`).
        key: &'static str,
        /// The configured value.
        value: u64,
        /// The allowed range in words.
        allowed: &'static str,
    },
    /// One of a pair of keys that must be set together is missing.
    #[error("{set} is set but {missing} is not; set both or neither")]
    MissingPair {
        /// The key that is set.
        set: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// An empty or too long subject name.
    #[error("{key} must be 1 to 64 characters (got {length})")]
    InvalidName {
        /// The key.
        key: &'static str,
        /// Its length in characters.
        length: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_parse_and_round_trip() {
        for name in KeyType::NAMES {
            let key_type: KeyType = name.parse().unwrap();
            assert_eq!(key_type.name(), name);
        }
    }

    #[test]
    fn small_rsa_key_type_is_rejected_with_reason() {
        let error = "rsa-1024".parse::<KeyType>().unwrap_err();
        assert_eq!(error, KeyTypeError::RsaTooSmall { bits: 1024 });
        assert!(error.to_string().contains("1024 bits are too weak"));
    }

    #[test]
    fn leaf_validity_over_397_days_is_rejected() {
        let config = LeafConfig {
            validity_days: 398,
            ..LeafConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(
            error.to_string().contains("leaf.validity_days = 398"),
            "{error}"
        );
        assert!(LeafConfig::default().validate().is_ok());
    }

    #[test]
    fn half_configured_ca_files_are_rejected() {
        let config = CaConfig {
            cert_file: Some("ca.pem".into()),
            ..CaConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(ConfigError::MissingPair {
                set: "ca.cert_file",
                missing: "ca.key_file"
            })
        );
    }
}
