//! The root CA's private key: reading PEM files in PKCS#8, SEC1 or PKCS#1
//! form, generating new keys, and signing with ring.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use zeroize::Zeroizing;

use crate::config::KeyType;
use crate::der::{self, Der};

/// DER of the id-ecPublicKey OBJECT IDENTIFIER (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of the prime256v1 OBJECT IDENTIFIER (1.2.840.10045.3.1.7).
pub(crate) const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the secp384r1 OBJECT IDENTIFIER (1.3.132.0.34).
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the AlgorithmIdentifier for rsaEncryption with NULL parameters.
const ALG_RSA_ENCRYPTION: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// DER of the AlgorithmIdentifier ecdsa-with-SHA256.
pub(crate) const ALG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
/// DER of the AlgorithmIdentifier ecdsa-with-SHA384.
const ALG_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
/// DER of the AlgorithmIdentifier sha256WithRSAEncryption with NULL parameters.
const ALG_RSA_SHA256: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// Public key algorithm of a root CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384 (accepted from operator-supplied CAs; never generated).
    EcdsaP384,
    /// RSA with the given modulus size in bits.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::Rsa { bits } => write!(f, "RSA {bits}"),
        }
    }
}

/// Error from reading a CA private key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("no PEM private key found (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")]
    NotFound,
    #[error("the key is encrypted; decrypt it first, e.g. `openssl pkey -in KEY -out PLAIN`")]
    Encrypted,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("the key does not match the certificate's public key")]
    Mismatch,
    #[error("the key is invalid or unsupported ({0})")]
    Rejected(String),
}

/// A CA private key ready to sign, plus its PKCS#8 encoding for writing it out.
pub(crate) struct CaKey {
    signer: Signer,
    rng: SystemRandom,
    pkcs8: Zeroizing<Vec<u8>>,
}

enum Signer {
    Ecdsa(EcdsaKeyPair, &'static [u8]),
    Rsa(RsaKeyPair),
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key material is never printed.
        f.debug_struct("CaKey").finish_non_exhaustive()
    }
}

impl CaKey {
    /// Reads a PEM private key and checks that it belongs to a certificate
    /// whose public key is `public_key` (the subjectPublicKey bits) with
    /// algorithm `algorithm`.
    pub(crate) fn from_pem(
        pem: &[u8],
        algorithm: KeyAlgorithm,
        public_key: &[u8],
    ) -> Result<Self, KeyError> {
        let key = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(key) => key,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                let text = String::from_utf8_lossy(pem);
                return Err(if text.contains("ENCRYPTED PRIVATE KEY") {
                    KeyError::Encrypted
                } else {
                    KeyError::NotFound
                });
            }
            Err(error) => return Err(KeyError::Pem(error.to_string())),
        };
        let pkcs8 = to_pkcs8(&key, algorithm);
        Self::from_pkcs8(pkcs8, algorithm, public_key)
    }

    /// Builds a signer from PKCS#8 DER and checks it against `public_key`.
    pub(crate) fn from_pkcs8(
        pkcs8: Zeroizing<Vec<u8>>,
        algorithm: KeyAlgorithm,
        public_key: &[u8],
    ) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let signer = match algorithm {
            KeyAlgorithm::EcdsaP256 => Signer::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
                    .map_err(rejected)?,
                ALG_ECDSA_SHA256,
            ),
            KeyAlgorithm::EcdsaP384 => Signer::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8, &rng)
                    .map_err(rejected)?,
                ALG_ECDSA_SHA384,
            ),
            KeyAlgorithm::Rsa { .. } => {
                Signer::Rsa(RsaKeyPair::from_pkcs8(&pkcs8).map_err(rejected)?)
            }
        };

        let key = Self { signer, rng, pkcs8 };
        if key.public_key() != public_key {
            return Err(KeyError::Mismatch);
        }
        Ok(key)
    }

    /// Generates a new key of `key_type` and returns its PKCS#8 DER.
    pub(crate) fn generate_pkcs8(key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, String> {
        let bits = match key_type {
            KeyType::EcdsaP256 => {
                let document = EcdsaKeyPair::generate_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| "the system random number generator failed".to_owned())?;
                return Ok(Zeroizing::new(document.as_ref().to_vec()));
            }
            KeyType::Rsa2048 => 2048,
            KeyType::Rsa3072 => 3072,
            KeyType::Rsa4096 => 4096,
        };

        // ring cannot generate RSA keys, so the RustCrypto implementation does.
        use rsa::pkcs8::EncodePrivateKey as _;
        let key = rsa::PrivateKey::new(&mut rand::rngs::SysRng, bits)
            .map_err(|error| format!("RSA key generation failed: {error}"))?;
        let document = key
            .to_pkcs8_der()
            .map_err(|error| format!("RSA key encoding failed: {error}"))?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// Returns the public key bits as they appear in a certificate's
    /// subjectPublicKey (an uncompressed EC point or a PKCS#1 RSAPublicKey).
    pub(crate) fn public_key(&self) -> &[u8] {
        match &self.signer {
            Signer::Ecdsa(key, _) => key.public_key().as_ref(),
            Signer::Rsa(key) => key.public_key().as_ref(),
        }
    }

    /// Returns the DER AlgorithmIdentifier of the signatures this key makes.
    pub(crate) fn signature_algorithm(&self) -> &'static [u8] {
        match &self.signer {
            Signer::Ecdsa(_, algorithm) => algorithm,
            Signer::Rsa(_) => ALG_RSA_SHA256,
        }
    }

    /// Signs `message` and returns the signature as it goes into a
    /// certificate's signatureValue.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        match &self.signer {
            Signer::Ecdsa(key, _) => Ok(key.sign(&self.rng, message)?.as_ref().to_vec()),
            Signer::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    message,
                    &mut signature,
                )?;
                Ok(signature)
            }
        }
    }

    /// Returns the key as PKCS#8 DER.
    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}

fn rejected(error: ring::error::KeyRejected) -> KeyError {
    // KeyRejected carries only a fixed reason text, such as "WrongAlgorithm".
    match error.to_string().as_str() {
        "WrongAlgorithm" => KeyError::Mismatch,
        reason => KeyError::Rejected(reason.to_owned()),
    }
}

/// Wraps PKCS#1 and SEC1 keys into PKCS#8, the one form ring reads.
fn to_pkcs8(key: &PrivateKeyDer<'_>, algorithm: KeyAlgorithm) -> Zeroizing<Vec<u8>> {
    let (algorithm_identifier, inner): (Zeroizing<Vec<u8>>, &[u8]) = match key {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            return Zeroizing::new(pkcs8.secret_pkcs8_der().to_vec());
        }
        PrivateKeyDer::Pkcs1(pkcs1) => (
            Zeroizing::new(ALG_RSA_ENCRYPTION.to_vec()),
            pkcs1.secret_pkcs1_der(),
        ),
        PrivateKeyDer::Sec1(sec1) => {
            // SEC1 names its curve only optionally, so take it from the
            // certificate; a key on another curve then fails as a mismatch.
            let curve = match algorithm {
                KeyAlgorithm::EcdsaP384 => OID_P384,
                _ => OID_P256,
            };
            let mut identifier = Der::with_capacity(32);
            identifier.nested(der::SEQUENCE, |d| {
                d.raw(OID_EC_PUBLIC_KEY);
                d.raw(curve);
            });
            (Zeroizing::new(identifier.finish()), sec1.secret_sec1_der())
        }
        // PrivateKeyDer is non-exhaustive; an unknown form cannot be wrapped.
        _ => return Zeroizing::new(Vec::new()),
    };

    let mut pkcs8 = Der::with_capacity(inner.len() + 64);
    pkcs8.nested(der::SEQUENCE, |d| {
        d.primitive(der::INTEGER, &[0]);
        d.raw(&algorithm_identifier);
        d.primitive(der::OCTET_STRING, inner);
    });
    Zeroizing::new(pkcs8.finish())
}
