//! Leaf certificate minting: one process-wide P-256 leaf key, certificates
//! built as DER from a template that contains every per-CA and per-key part.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::der::{self, Der};
use crate::host::LeafHost;
use crate::key::OID_P256;
use crate::root::{CaError, RootCa};

/// Leaves are back-dated by this much, for clients whose clock runs slow.
pub const BACKDATE: Duration = Duration::hours(1);

/// Longest common name (X.520 ub-common-name).
const MAX_COMMON_NAME: usize = 64;

/// DER of the commonName attribute type (2.5.4.3).
const OID_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
/// DER of the subjectAltName extension id (2.5.29.17).
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
/// DER of the critical flag (BOOLEAN TRUE).
const CRITICAL: &[u8] = &[0x01, 0x01, 0xff];

/// Error from minting a leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    /// The host cannot be named in a certificate.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// The root CA is no longer valid, so a leaf it signs would be rejected.
    #[error("the root CA expired at {}; replace it", crate::root::rfc3339(*not_after))]
    CaExpired {
        /// End of the CA's validity.
        not_after: OffsetDateTime,
    },
    /// The system random number generator or the signature failed.
    #[error("signing the leaf certificate failed")]
    Signing,
    /// rustls rejected the leaf key.
    #[error("the leaf key cannot be used by rustls: {0}")]
    Key(String),
}

/// Signs leaf certificates for hosts with a root CA.
///
/// The leaf key pair is generated once per process and shared by every
/// leaf of every minter, so minting costs one CA signature and no key
/// generation.
pub struct LeafMinter {
    root: Arc<RootCa>,
    leaf_key: Arc<dyn rustls::sign::SigningKey>,
    validity: Duration,
    /// Signature AlgorithmIdentifier, issuer Name: the part of the TBS
    /// between the serial number and the validity.
    issuer_part: Vec<u8>,
    /// SubjectPublicKeyInfo of the leaf key.
    spki: Vec<u8>,
    /// Extensions that do not depend on the host: authority and subject key
    /// identifiers, key usage, extended key usage, basic constraints.
    fixed_extensions: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for LeafMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafMinter")
            .field("root", &self.root.fingerprint_hex())
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl LeafMinter {
    /// Creates a minter for `root`. `validity` is the total span of a leaf,
    /// back-dating included.
    pub fn new(root: Arc<RootCa>, validity: Duration) -> Result<Self, LeafError> {
        let rng = SystemRandom::new();
        let leaf = process_leaf_key()?;

        let mut issuer_part = Der::with_capacity(256);
        issuer_part.raw(root.key().signature_algorithm());
        issuer_part.raw(root.certificate().subject_der());

        Ok(Self {
            fixed_extensions: fixed_extensions(
                root.certificate().key_identifier(),
                &leaf.key_identifier,
            ),
            issuer_part: issuer_part.finish(),
            spki: leaf.spki.clone(),
            leaf_key: Arc::clone(&leaf.signing_key),
            validity,
            root,
            rng,
        })
    }

    /// Returns the root CA this minter signs with.
    pub fn root(&self) -> &Arc<RootCa> {
        &self.root
    }

    /// Returns the total validity of a leaf.
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// Mints a leaf for `host` and returns it with the chain leaf + root and
    /// the leaf key, ready for rustls.
    pub fn mint(&self, host: &LeafHost<'_>) -> Result<CertifiedKey, LeafError> {
        let der = self.mint_der(host, OffsetDateTime::now_utc())?;
        let chain = vec![CertificateDer::from(der), self.root.cert_der().clone()];
        Ok(CertifiedKey::new(chain, Arc::clone(&self.leaf_key)))
    }

    /// Builds and signs the leaf certificate DER for `host` as of `now`.
    pub fn mint_der(&self, host: &LeafHost<'_>, now: OffsetDateTime) -> Result<Vec<u8>, LeafError> {
        let ca_not_after = self.root.not_after();
        if now >= ca_not_after {
            return Err(LeafError::CaExpired {
                not_after: ca_not_after,
            });
        }
        let not_before = now - BACKDATE;
        // A leaf never outlives its CA: clients would reject the chain then.
        let not_after = (not_before + self.validity).min(ca_not_after);
        let serial = random_serial_with(&self.rng).map_err(|_| LeafError::Signing)?;

        let tbs = self.tbs(host, &serial, not_before, not_after);
        let signature = self.root.key().sign(&tbs).map_err(|_| LeafError::Signing)?;

        let mut certificate = Der::with_capacity(tbs.len() + signature.len() + 32);
        certificate.nested(der::SEQUENCE, |d| {
            d.raw(&tbs);
            d.raw(self.root.key().signature_algorithm());
            d.nested(der::BIT_STRING, |d| {
                d.raw(&[0]);
                d.raw(&signature);
            });
        });
        Ok(certificate.finish())
    }

    fn tbs(
        &self,
        host: &LeafHost<'_>,
        serial: &[u8],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Vec<u8> {
        let name = host.key();
        let mut tbs = Der::with_capacity(512 + self.issuer_part.len());
        tbs.nested(der::SEQUENCE, |d| {
            // version v3
            d.raw(&[0xa0, 0x03, 0x02, 0x01, 0x02]);
            d.unsigned_integer(serial);
            d.raw(&self.issuer_part);
            d.nested(der::SEQUENCE, |d| {
                write_time(d, not_before);
                write_time(d, not_after);
            });
            write_subject(d, &name);
            d.raw(&self.spki);
            d.nested(0xa3, |d| {
                d.nested(der::SEQUENCE, |d| {
                    d.raw(&self.fixed_extensions);
                    write_subject_alt_name(d, host, name.len() > MAX_COMMON_NAME);
                });
            });
        });
        tbs.finish()
    }
}

/// The leaf key pair every minter in the process shares.
struct LeafKeyPair {
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    spki: Vec<u8>,
    key_identifier: Vec<u8>,
}

static LEAF_KEY: OnceLock<Result<LeafKeyPair, LeafError>> = OnceLock::new();

/// Returns the process's one leaf key pair (ECDSA P-256), generating it on
/// first use. It is never the CA key, so no leaf can be mistaken for the CA.
fn process_leaf_key() -> Result<&'static LeafKeyPair, LeafError> {
    LEAF_KEY
        .get_or_init(generate_leaf_key)
        .as_ref()
        .map_err(Clone::clone)
}

fn generate_leaf_key() -> Result<LeafKeyPair, LeafError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| LeafError::Signing)?;
    let key_pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .map_err(|error| LeafError::Key(error.to_string()))?;
    let signing_key = crate::crypto_provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pkcs8.as_ref().to_vec(),
        )))
        .map_err(|error| LeafError::Key(error.to_string()))?;

    // Subject key identifier: the first 160 bits of the SHA-256 of the
    // public key (RFC 7093 method 1).
    let public_key = key_pair.public_key().as_ref();
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    Ok(LeafKeyPair {
        signing_key,
        spki: p256_spki(public_key),
        key_identifier: digest.as_ref()[..20].to_vec(),
    })
}

/// Returns 16 random bytes with the top bit cleared, a positive 128-bit
/// serial number as RFC 5280 requires (at most 20 octets, positive).
pub(crate) fn random_serial() -> Result<[u8; 16], CaError> {
    random_serial_with(&SystemRandom::new()).map_err(|_| CaError::Generate {
        reason: "the system random number generator failed".to_owned(),
    })
}

fn random_serial_with(rng: &SystemRandom) -> Result<[u8; 16], ring::error::Unspecified> {
    let mut serial = [0u8; 16];
    rng.fill(&mut serial)?;
    serial[0] &= 0x7f;
    // An all-zero serial is not positive; the odds are 2^-127, but the fix is free.
    serial[15] |= u8::from(serial.iter().all(|&b| b == 0));
    Ok(serial)
}

fn p256_spki(public_key: &[u8]) -> Vec<u8> {
    let mut spki = Der::with_capacity(96);
    spki.nested(der::SEQUENCE, |d| {
        d.nested(der::SEQUENCE, |d| {
            d.raw(&[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
            d.raw(OID_P256);
        });
        d.nested(der::BIT_STRING, |d| {
            d.raw(&[0]);
            d.raw(public_key);
        });
    });
    spki.finish()
}

fn extension(d: &mut Der, oid: &[u8], critical: bool, value: impl FnOnce(&mut Der)) {
    d.nested(der::SEQUENCE, |d| {
        d.raw(oid);
        if critical {
            d.raw(CRITICAL);
        }
        d.nested(der::OCTET_STRING, value);
    });
}

fn fixed_extensions(authority_key_identifier: &[u8], subject_key_identifier: &[u8]) -> Vec<u8> {
    let mut d = Der::with_capacity(160);

    // authorityKeyIdentifier (2.5.29.35): [0] keyIdentifier only.
    extension(&mut d, &[0x06, 0x03, 0x55, 0x1d, 0x23], false, |d| {
        d.nested(der::SEQUENCE, |d| {
            d.primitive(0x80, authority_key_identifier)
        });
    });
    // subjectKeyIdentifier (2.5.29.14).
    extension(&mut d, &[0x06, 0x03, 0x55, 0x1d, 0x0e], false, |d| {
        d.primitive(der::OCTET_STRING, subject_key_identifier);
    });
    // keyUsage (2.5.29.15), critical: digitalSignature only.
    extension(&mut d, &[0x06, 0x03, 0x55, 0x1d, 0x0f], true, |d| {
        d.primitive(der::BIT_STRING, &[0x07, 0x80]);
    });
    // extKeyUsage (2.5.29.37): id-kp-serverAuth (1.3.6.1.5.5.7.3.1).
    extension(&mut d, &[0x06, 0x03, 0x55, 0x1d, 0x25], false, |d| {
        d.nested(der::SEQUENCE, |d| {
            d.primitive(der::OID, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]);
        });
    });
    // basicConstraints (2.5.29.19), critical, cA FALSE (an empty SEQUENCE).
    extension(&mut d, &[0x06, 0x03, 0x55, 0x1d, 0x13], true, |d| {
        d.nested(der::SEQUENCE, |_| {});
    });
    d.finish()
}

/// Writes the subject Name: CN = the host when it fits X.520's 64
/// characters, otherwise an empty Name (the SAN then carries the host alone
/// and is marked critical, as RFC 5280 section 4.2.1.6 requires).
fn write_subject(d: &mut Der, name: &str) {
    d.nested(der::SEQUENCE, |d| {
        if name.len() <= MAX_COMMON_NAME {
            d.nested(der::SET, |d| {
                d.nested(der::SEQUENCE, |d| {
                    d.raw(OID_COMMON_NAME);
                    d.primitive(der::UTF8_STRING, name.as_bytes());
                });
            });
        }
    });
}

fn write_subject_alt_name(d: &mut Der, host: &LeafHost<'_>, subject_empty: bool) {
    extension(d, OID_SUBJECT_ALT_NAME, subject_empty, |d| {
        d.nested(der::SEQUENCE, |d| match host {
            // dNSName [2] IA5String
            LeafHost::Dns(name) => d.primitive(0x82, name.as_bytes()),
            // iPAddress [7] OCTET STRING
            LeafHost::Ip(IpAddr::V4(ip)) => d.primitive(0x87, &ip.octets()),
            LeafHost::Ip(IpAddr::V6(ip)) => d.primitive(0x87, &ip.octets()),
        });
    });
}

/// Writes UTCTime for years 1950 to 2049 and GeneralizedTime otherwise
/// (RFC 5280 section 4.1.2.5), in whole seconds, UTC.
fn write_time(d: &mut Der, time: OffsetDateTime) {
    let time = time.to_offset(time::UtcOffset::UTC);
    let year = time.year();
    let mut text = [0u8; 15];
    let (tag, length) = if (1950..2050).contains(&year) {
        put_digits(&mut text[0..2], (year % 100) as u32);
        (der::UTC_TIME, 13)
    } else {
        put_digits(&mut text[0..4], year.clamp(0, 9999) as u32);
        (der::GENERALIZED_TIME, 15)
    };
    let rest = length - 11;
    put_digits(&mut text[rest..rest + 2], u32::from(u8::from(time.month())));
    put_digits(&mut text[rest + 2..rest + 4], u32::from(time.day()));
    put_digits(&mut text[rest + 4..rest + 6], u32::from(time.hour()));
    put_digits(&mut text[rest + 6..rest + 8], u32::from(time.minute()));
    put_digits(&mut text[rest + 8..rest + 10], u32::from(time.second()));
    text[length - 1] = b'Z';
    d.primitive(tag, &text[..length]);
}

fn put_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_switch_to_generalized_in_2050() {
        let mut d = Der::default();
        write_time(&mut d, time::macros::datetime!(2026-12-04 19:05:09 UTC));
        assert_eq!(d.finish(), b"\x17\x0d261204190509Z");

        let mut d = Der::default();
        write_time(&mut d, time::macros::datetime!(2051-01-02 03:04:05 UTC));
        assert_eq!(d.finish(), b"\x18\x0f20510102030405Z");
    }

    #[test]
    fn minters_share_leaf_key_not_ca_key() {
        use x509_parser::prelude::{FromDer, X509Certificate};

        let spki_of = |der: &[u8]| {
            let (_, certificate) = X509Certificate::from_der(der).unwrap();
            certificate.public_key().raw.to_vec()
        };
        let host = crate::host::normalize("www.example.com").unwrap();
        let mut leaf_keys = Vec::new();
        for _ in 0..2 {
            let root = Arc::new(
                RootCa::generate(crate::KeyType::EcdsaP256, &crate::CaConfig::default()).unwrap(),
            );
            let minter = LeafMinter::new(Arc::clone(&root), Duration::days(30)).unwrap();
            let leaf = minter.mint_der(&host, OffsetDateTime::now_utc()).unwrap();
            assert_ne!(spki_of(&leaf), spki_of(root.cert_der()));
            leaf_keys.push(spki_of(&leaf));
        }
        assert_eq!(leaf_keys[0], leaf_keys[1]);
    }

    #[test]
    fn serials_are_positive_and_16_bytes() {
        for _ in 0..100 {
            let serial = random_serial().unwrap();
            assert_eq!(serial[0] & 0x80, 0);
            assert!(serial.iter().any(|&b| b != 0));
        }
    }
}
