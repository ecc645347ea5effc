//! The root CA: its certificate, its key, loading from PEM and generating.

use std::fmt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use ring::digest;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use zeroize::Zeroizing;

use crate::config::{CaConfig, KeyType, MIN_RSA_BITS};
use crate::key::{CaKey, KeyAlgorithm, KeyError};
use crate::pem;

/// Validity of a generated root CA: ten years (3652 days covers the leap days).
const ROOT_VALIDITY: Duration = Duration::days(3652);

/// Error from loading, generating or storing a root CA. Each message names
/// the file (or `<certificate>`/`<key>` for in-memory PEM) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or folder could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file contains no PEM certificate.
    #[error("{path}: no PEM certificate found (expected a CERTIFICATE block)")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The certificate could not be parsed.
    #[error("{path}: invalid certificate: {reason}")]
    InvalidCertificate {
        /// The file.
        path: String,
        /// Description of the problem.
        reason: String,
    },
    /// The certificate is not a CA certificate.
    #[error("{path}: the certificate is not a CA (basic constraints lack cA=TRUE); supply a CA certificate")]
    NotCa {
        /// The file.
        path: String,
    },
    /// The certificate's key usage forbids signing certificates.
    #[error("{path}: the certificate's key usage lacks keyCertSign, so it cannot sign leaves")]
    CannotSignCertificates {
        /// The file.
        path: String,
    },
    /// The certificate has expired.
    #[error("{path}: the CA certificate expired at {}; supply a valid CA or generate a new one with `swg ca init --force`", rfc3339(*not_after))]
    Expired {
        /// The file.
        path: String,
        /// End of validity.
        not_after: OffsetDateTime,
    },
    /// The certificate is not valid yet.
    #[error("{path}: the CA certificate is not valid before {}; check the system clock", rfc3339(*not_before))]
    NotYetValid {
        /// The file.
        path: String,
        /// Start of validity.
        not_before: OffsetDateTime,
    },
    /// The certificate's key is of an algorithm swg does not sign with.
    #[error("{path}: unsupported CA key algorithm {algorithm}; use ECDSA P-256, ECDSA P-384 or RSA of at least 2048 bits")]
    UnsupportedKey {
        /// The file.
        path: String,
        /// The algorithm found.
        algorithm: String,
    },
    /// An RSA key under [`MIN_RSA_BITS`].
    #[error("{path}: RSA key of {bits} bits is too weak; at least 2048 bits are required")]
    RsaTooSmall {
        /// The file.
        path: String,
        /// The modulus size found.
        bits: usize,
    },
    /// The key file is unusable or does not match the certificate.
    #[error("{path}: {reason}")]
    InvalidKey {
        /// The key file.
        path: String,
        /// Description of the problem.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key_path} does not match the certificate {cert_path}; supply the key the CA certificate was issued for")]
    KeyMismatch {
        /// The certificate file.
        cert_path: String,
        /// The key file.
        key_path: String,
    },
    /// Only one of the certificate and key files exists.
    #[error("{present} exists but {missing} does not; restore the missing file or remove both to generate a new CA")]
    Incomplete {
        /// The file that exists.
        present: String,
        /// The file that is missing.
        missing: String,
    },
    /// Neither file exists where a CA was expected.
    #[error("no root CA at {cert_path} and {key_path}; create one with `swg ca init`")]
    NotFound {
        /// The certificate file.
        cert_path: String,
        /// The key file.
        key_path: String,
    },
    /// A CA already exists and would be overwritten.
    #[error("a root CA already exists at {cert_path}; pass --force to replace it (devices that trust the old root will reject new leaves)")]
    AlreadyExists {
        /// The certificate file.
        cert_path: String,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate the root CA: {reason}")]
    Generate {
        /// What failed.
        reason: String,
    },
}

/// The root CA certificate and the facts swg needs from it. It contains no
/// private key, so it is what `swg ca show`, the exports and the console use.
#[derive(Clone)]
pub struct CaCertificate {
    der: CertificateDer<'static>,
    fingerprint: [u8; 32],
    fingerprint_hex: String,
    subject: String,
    subject_der: Vec<u8>,
    key_algorithm: KeyAlgorithm,
    public_key: Vec<u8>,
    key_identifier: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificate")
            .field("subject", &self.subject)
            .field("fingerprint", &self.fingerprint_hex)
            .field("key_algorithm", &self.key_algorithm)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl AsRef<CaCertificate> for CaCertificate {
    fn as_ref(&self) -> &CaCertificate {
        self
    }
}

impl CaCertificate {
    /// Reads the first certificate of a PEM file.
    pub fn load(path: &Path) -> Result<Self, CaError> {
        let pem = read_file(path)?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    /// Parses the first certificate of PEM text; `source` names it in errors.
    pub fn from_pem(pem: &[u8], source: &str) -> Result<Self, CaError> {
        let der = match CertificateDer::from_pem_slice(pem) {
            Ok(der) => der,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                return Err(CaError::NoCertificate {
                    path: source.to_owned(),
                })
            }
            Err(error) => {
                return Err(CaError::InvalidCertificate {
                    path: source.to_owned(),
                    reason: error.to_string(),
                })
            }
        };
        Self::from_der(der.into_owned(), source)
    }

    /// Parses a DER certificate and checks that it can act as a CA.
    pub fn from_der(der: CertificateDer<'static>, source: &str) -> Result<Self, CaError> {
        let invalid = |reason: String| CaError::InvalidCertificate {
            path: source.to_owned(),
            reason,
        };
        let (_, x509) =
            X509Certificate::from_der(&der).map_err(|error| invalid(error.to_string()))?;

        check_ca_extensions(&x509, source)?;
        let key_algorithm = key_algorithm(&x509, source)?;
        let public_key = x509.public_key().subject_public_key.data.to_vec();
        let key_identifier =
            subject_key_identifier(&x509).unwrap_or_else(|| legacy_key_identifier(&public_key));

        let fingerprint: [u8; 32] = digest::digest(&digest::SHA256, &der)
            .as_ref()
            .try_into()
            .expect("SHA-256 digests are 32 bytes");
        Ok(Self {
            fingerprint_hex: hex_upper(&fingerprint),
            fingerprint,
            subject: x509.subject().to_string(),
            subject_der: x509.subject().as_raw().to_vec(),
            key_algorithm,
            public_key,
            key_identifier,
            not_before: x509.validity().not_before.to_datetime(),
            not_after: x509.validity().not_after.to_datetime(),
            der,
        })
    }

    /// Returns the certificate DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Returns the certificate as PEM text.
    pub fn pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }

    /// Returns the SHA-256 fingerprint of the certificate DER.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Returns the SHA-256 fingerprint as uppercase hex without separators.
    pub fn fingerprint_hex(&self) -> &str {
        &self.fingerprint_hex
    }

    /// Returns the subject as `CN=..., O=...`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Returns the DER of the subject Name, which leaves copy as their issuer.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// Returns the public key algorithm.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }

    /// Returns the key identifier leaves carry as authority key identifier:
    /// the certificate's own subject key identifier bytes, or, for a CA
    /// without that extension, the SHA-1 of its public key (RFC 5280 method 1).
    pub fn key_identifier(&self) -> &[u8] {
        &self.key_identifier
    }

    /// Returns the start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// Returns the end of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    fn check_valid_at(&self, now: OffsetDateTime, source: &str) -> Result<(), CaError> {
        if now > self.not_after {
            return Err(CaError::Expired {
                path: source.to_owned(),
                not_after: self.not_after,
            });
        }
        if now < self.not_before {
            return Err(CaError::NotYetValid {
                path: source.to_owned(),
                not_before: self.not_before,
            });
        }
        Ok(())
    }
}

fn check_ca_extensions(x509: &X509Certificate<'_>, source: &str) -> Result<(), CaError> {
    let invalid = |reason: String| CaError::InvalidCertificate {
        path: source.to_owned(),
        reason,
    };

    let constraints = x509
        .basic_constraints()
        .map_err(|error| invalid(format!("basic constraints: {error}")))?;
    if !constraints.is_some_and(|c| c.value.ca) {
        return Err(CaError::NotCa {
            path: source.to_owned(),
        });
    }

    let key_usage = x509
        .key_usage()
        .map_err(|error| invalid(format!("key usage: {error}")))?;
    if key_usage.is_some_and(|usage| !usage.value.key_cert_sign()) {
        return Err(CaError::CannotSignCertificates {
            path: source.to_owned(),
        });
    }
    Ok(())
}

fn key_algorithm(x509: &X509Certificate<'_>, source: &str) -> Result<KeyAlgorithm, CaError> {
    let spki = x509.public_key();
    let oid = &spki.algorithm.algorithm;
    let unsupported = |algorithm: String| CaError::UnsupportedKey {
        path: source.to_owned(),
        algorithm,
    };

    if *oid == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
            _ => return Err(unsupported("RSA with an unreadable public key".to_owned())),
        };
        if bits < MIN_RSA_BITS {
            return Err(CaError::RsaTooSmall {
                path: source.to_owned(),
                bits,
            });
        }
        return Ok(KeyAlgorithm::Rsa { bits });
    }

    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(curve) if curve == OID_EC_P256 => Ok(KeyAlgorithm::EcdsaP256),
            Some(curve) if curve == OID_NIST_EC_P384 => Ok(KeyAlgorithm::EcdsaP384),
            Some(curve) => Err(unsupported(format!("EC on curve {curve}"))),
            None => Err(unsupported("EC without a named curve".to_owned())),
        };
    }

    Err(unsupported(oid.to_id_string()))
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let significant = match modulus.iter().position(|&b| b != 0) {
        Some(start) => &modulus[start..],
        None => return 0,
    };
    significant.len() * 8 - significant[0].leading_zeros() as usize
}

fn subject_key_identifier(x509: &X509Certificate<'_>) -> Option<Vec<u8>> {
    x509.iter_extensions()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(identifier) => Some(identifier.0.to_vec()),
            _ => None,
        })
}

fn legacy_key_identifier(public_key: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, public_key)
        .as_ref()
        .to_vec()
}

/// Formats a time as RFC 3339 (`2036-12-02T19:05:09Z`) for messages.
pub(crate) fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{byte:02X}");
    }
    hex
}

/// Logs a warning when the key file can be read by group or others; swg
/// still starts, because a mounted secret may be shared on purpose.
fn warn_if_readable_by_others(key_path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;

    if let Ok(metadata) = std::fs::metadata(key_path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                key = %key_path.display(),
                mode = format_args!("{mode:04o}"),
                "the CA key file is readable by other users; restrict it to mode 0600 or 0400"
            );
        }
    }
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, CaError> {
    std::fs::read(path).map_err(|source| CaError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A root CA: its certificate and its signing key.
pub struct RootCa {
    certificate: CaCertificate,
    key: CaKey,
}

impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl AsRef<CaCertificate> for RootCa {
    fn as_ref(&self) -> &CaCertificate {
        &self.certificate
    }
}

impl RootCa {
    /// Loads a CA from a PEM certificate file and a PEM key file, and checks
    /// that it is a CA, valid now, with a supported key that matches.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_pem = read_file(cert_path)?;
        let key_pem = Zeroizing::new(read_file(key_path)?);
        warn_if_readable_by_others(key_path);
        Self::from_pem(
            &cert_pem,
            &cert_path.display().to_string(),
            &key_pem,
            &key_path.display().to_string(),
        )
    }

    /// Builds a CA from PEM text; `cert_source` and `key_source` name the
    /// inputs in errors.
    pub fn from_pem(
        cert_pem: &[u8],
        cert_source: &str,
        key_pem: &[u8],
        key_source: &str,
    ) -> Result<Self, CaError> {
        let certificate = CaCertificate::from_pem(cert_pem, cert_source)?;
        certificate.check_valid_at(OffsetDateTime::now_utc(), cert_source)?;

        let key = CaKey::from_pem(key_pem, certificate.key_algorithm, &certificate.public_key)
            .map_err(|error| key_error(error, cert_source, key_source))?;
        Ok(Self { certificate, key })
    }

    /// Generates a new self-signed root CA with a key of `key_type` and the
    /// subject names of `config`.
    pub fn generate(key_type: KeyType, config: &CaConfig) -> Result<Self, CaError> {
        let generate_error = |reason: String| CaError::Generate { reason };
        let pkcs8 = CaKey::generate_pkcs8(key_type).map_err(generate_error)?;
        let signature_algorithm = match key_type {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        };
        let key_pair =
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_slice().into(), signature_algorithm)
                .map_err(|error| generate_error(error.to_string()))?;

        let params = root_params(config)?;
        let certificate = params
            .self_signed(&key_pair)
            .map_err(|error| generate_error(error.to_string()))?;

        let certificate =
            CaCertificate::from_der(certificate.der().clone(), "<generated certificate>")?;
        let key = CaKey::from_pkcs8(pkcs8, certificate.key_algorithm, &certificate.public_key)
            .map_err(|error| generate_error(error.to_string()))?;
        Ok(Self { certificate, key })
    }

    /// Returns the certificate and the facts read from it.
    pub fn certificate(&self) -> &CaCertificate {
        &self.certificate
    }

    /// Returns the certificate DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        self.certificate.der()
    }

    /// Returns the certificate as PEM text.
    pub fn cert_pem(&self) -> String {
        self.certificate.pem()
    }

    /// Returns the SHA-256 fingerprint of the certificate DER.
    pub fn fingerprint(&self) -> &[u8; 32] {
        self.certificate.fingerprint()
    }

    /// Returns the SHA-256 fingerprint as uppercase hex.
    pub fn fingerprint_hex(&self) -> &str {
        self.certificate.fingerprint_hex()
    }

    /// Returns the subject as `CN=..., O=...`.
    pub fn subject(&self) -> &str {
        self.certificate.subject()
    }

    /// Returns the public key algorithm.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.certificate.key_algorithm()
    }

    /// Returns the start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.certificate.not_before()
    }

    /// Returns the end of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.certificate.not_after()
    }

    /// Returns the private key as PKCS#8 PEM, for writing the key file only.
    pub(crate) fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode("PRIVATE KEY", self.key.pkcs8()))
    }

    pub(crate) fn key(&self) -> &CaKey {
        &self.key
    }
}

fn key_error(error: KeyError, cert_source: &str, key_source: &str) -> CaError {
    match error {
        KeyError::Mismatch => CaError::KeyMismatch {
            cert_path: cert_source.to_owned(),
            key_path: key_source.to_owned(),
        },
        other => CaError::InvalidKey {
            path: key_source.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn root_params(config: &CaConfig) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();

    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, config.common_name.as_str());
    name.push(DnType::OrganizationName, config.organization.as_str());
    params.distinguished_name = name;

    // The root signs leaves only, never intermediates, so the path length is 0.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&crate::leaf::random_serial()?));

    // Back-dated by an hour like the leaves, for clients whose clock runs slow.
    let not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_before = not_before;
    params.not_after = not_before + ROOT_VALIDITY;
    Ok(params)
}
