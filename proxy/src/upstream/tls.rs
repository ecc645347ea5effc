//! TLS towards origins: trust roots, certificate verification and the classification
//! of certificate failures into the reasons an error page gives.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Why an origin's certificate was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateProblem {
    /// The certificate's validity period has ended.
    Expired,
    /// The certificate's validity period has not begun.
    NotYetValid,
    /// The certificate does not name the host.
    WrongName,
    /// The certificate signs itself and is not a trusted root.
    SelfSigned,
    /// The certificate chains to no trusted root.
    UntrustedIssuer,
    /// The certificate was revoked.
    Revoked,
    /// Any other defect (bad signature, wrong purpose, bad encoding).
    Invalid,
}

impl CertificateProblem {
    /// A short label for metrics, logs and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateProblem::Expired => "expired",
            CertificateProblem::NotYetValid => "not_yet_valid",
            CertificateProblem::WrongName => "wrong_name",
            CertificateProblem::SelfSigned => "self_signed",
            CertificateProblem::UntrustedIssuer => "untrusted_issuer",
            CertificateProblem::Revoked => "revoked",
            CertificateProblem::Invalid => "invalid",
        }
    }

    /// Classifies a rustls error, if it is about the peer's certificate.
    pub fn from_rustls(error: &rustls::Error) -> Option<CertificateProblem> {
        let rustls::Error::InvalidCertificate(certificate_error) = error else {
            return None;
        };
        let problem = match certificate_error {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertificateProblem::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertificateProblem::NotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertificateProblem::WrongName
            }
            CertificateError::UnknownIssuer => CertificateProblem::UntrustedIssuer,
            CertificateError::Revoked => CertificateProblem::Revoked,
            CertificateError::Other(other) if other.0.is::<SelfSignedCertificate>() => {
                CertificateProblem::SelfSigned
            }
            _ => CertificateProblem::Invalid,
        };
        Some(problem)
    }
}

/// A failure to build the origin TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// An `extra_roots` file could not be read or holds no certificate.
    #[error("reading extra root file {path}: {message}")]
    ExtraRoot {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// rustls refused the roots.
    #[error("building the origin certificate verifier failed: {0}")]
    Verifier(String),
}

/// Marker carried in `CertificateError::Other` when webpki rejected a certificate
/// whose issuer is its own subject and that no trusted root could have issued.
#[derive(Debug, thiserror::Error)]
#[error("self-signed certificate")]
struct SelfSignedCertificate;

/// The webpki verifier, with self-signed certificates told apart from other
/// certificates of unknown issuers.
#[derive(Debug)]
struct OriginVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The subjects of the trusted roots, as the contents of the DER `Name`
    /// without its SEQUENCE header, as webpki stores them.
    root_subjects: Vec<Vec<u8>>,
}

impl OriginVerifier {
    /// Tells whether `end_entity` signs itself and no trusted root has its issuer
    /// as subject, so that it cannot chain to a trusted root.
    ///
    /// `openssl req -x509` marks such a certificate as a CA (`CA:TRUE`), which
    /// webpki 0.103 reports as a CA used as an end entity before it looks for an
    /// issuer. Without `CA:TRUE`, webpki reports an unknown issuer. Both mean the
    /// same to the user here.
    fn is_untrusted_self_signed(&self, end_entity: &CertificateDer<'_>) -> bool {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return false;
        };
        let issuer = parsed.tbs_certificate.issuer.as_raw();
        if issuer != parsed.tbs_certificate.subject.as_raw() {
            return false;
        }
        let issuer = der_contents(issuer);
        !self
            .root_subjects
            .iter()
            .any(|subject| subject.as_slice() == issuer)
    }
}

/// Returns the contents of a DER value without its tag and length, or the input
/// when the header is malformed.
fn der_contents(value: &[u8]) -> &[u8] {
    let Some(&first_length_byte) = value.get(1) else {
        return value;
    };
    let header = if first_length_byte < 0x80 {
        2
    } else {
        2 + usize::from(first_length_byte & 0x7f)
    };
    value.get(header..).unwrap_or(value)
}

impl ServerCertVerifier for OriginVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match result {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::Other(_),
            )) if self.is_untrusted_self_signed(end_entity) => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(SelfSignedCertificate)),
                )))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Client TLS configurations towards origins.
#[derive(Clone)]
pub struct OriginTls {
    /// Offers h2 and http/1.1.
    pub any_version: Arc<ClientConfig>,
    /// Offers http/1.1 only, for WebSocket upgrades.
    pub http1_only: Arc<ClientConfig>,
    /// Offers h2 only, for the pools that speak only HTTP/2.
    pub http2_only: Arc<ClientConfig>,
}

impl OriginTls {
    /// Builds the configurations trusting the webpki roots and the certificates in
    /// `extra_roots` (PEM files).
    pub fn new(extra_roots: &[PathBuf]) -> Result<OriginTls, TrustError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in extra_roots {
            for certificate in read_pem_certificates(path)? {
                roots
                    .add(certificate)
                    .map_err(|error| TrustError::ExtraRoot {
                        path: path.clone(),
                        message: error.to_string(),
                    })?;
            }
        }
        Self::with_roots(roots)
    }

    /// Builds the configurations trusting exactly `roots`.
    pub fn with_roots(roots: RootCertStore) -> Result<OriginTls, TrustError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let root_subjects = roots
            .roots
            .iter()
            .map(|root| root.subject.as_ref().to_vec())
            .collect();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|error| TrustError::Verifier(error.to_string()))?;
        let verifier = Arc::new(OriginVerifier {
            webpki,
            root_subjects,
        });

        let build = |alpn: Vec<Vec<u8>>| -> Result<Arc<ClientConfig>, TrustError> {
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|error| TrustError::Verifier(error.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            config.alpn_protocols = alpn;
            Ok(Arc::new(config))
        };
        Ok(OriginTls {
            any_version: build(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
            http1_only: build(vec![b"http/1.1".to_vec()])?,
            http2_only: build(vec![b"h2".to_vec()])?,
        })
    }
}

fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let error = |message: String| TrustError::ExtraRoot {
        path: path.to_owned(),
        message,
    };
    let pem = fs::read(path).map_err(|e| error(e.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(error("no CERTIFICATE block found".to_owned()));
    }
    Ok(certificates)
}
