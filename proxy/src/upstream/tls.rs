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

/// Marker carried in `CertificateError::Other` when webpki reported an unknown
/// issuer for a certificate whose issuer is its own subject.
#[derive(Debug, thiserror::Error)]
#[error("self-signed certificate")]
struct SelfSignedCertificate;

/// The webpki verifier, with self-signed certificates told apart from other
/// certificates of unknown issuers.
#[derive(Debug)]
struct OriginVerifier {
    webpki: Arc<WebPkiServerVerifier>,
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
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if is_self_issued(end_entity) =>
            {
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

fn is_self_issued(certificate: &CertificateDer<'_>) -> bool {
    match x509_parser::parse_x509_certificate(certificate.as_ref()) {
        Ok((_, parsed)) => {
            parsed.tbs_certificate.issuer.as_raw() == parsed.tbs_certificate.subject.as_raw()
        }
        Err(_) => false,
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
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|error| TrustError::Verifier(error.to_string()))?;
        let verifier = Arc::new(OriginVerifier { webpki });

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
