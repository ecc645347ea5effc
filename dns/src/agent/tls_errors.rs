//! Plain-text reasons for a failed TLS handshake with the console or the DoH
//! endpoint, in place of the type and variant names that rustls's own messages
//! show, with a hint for each usual cause.

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError};

use super::console::rfc3339;

/// The fix for a certificate from a CA the agent does not trust.
const CA_FILE_HINT: &str = "If this is swg's own root CA, pass it with --ca-file \
                            (`swg ca export --format pem --out swg-root.pem`)";

/// The fix for a certificate that does not name the host of the URL.
const HOST_NAME_HINT: &str = "use the host name it was made for in the URL (swg's \
                              console.host_name for the console and dns.doh_host for DoH, \
                              `localhost` by default)";

/// Describes a failed TLS handshake with `host`: a sentence for the certificate
/// errors and alerts an operator can act on, rustls's own text for the rest, and
/// the I/O error's text when rustls did not cause it.
pub(crate) fn handshake_failure(error: &std::io::Error, host: &str) -> String {
    // tokio-rustls returns rustls's error wrapped in the I/O error.
    let cause = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match cause {
        Some(tls) => describe(tls, host),
        None => error.to_string(),
    }
}

/// Describes `error`, raised by the TLS connection to `host`.
fn describe(error: &rustls::Error, host: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(certificate) => {
            certificate_reason(certificate, host).unwrap_or_else(|| error.to_string())
        }
        rustls::Error::AlertReceived(alert) => alert_reason(*alert, host),
        rustls::Error::NoCertificatesPresented => {
            "the server sent no certificate in the TLS handshake".to_owned()
        }
        _ => error.to_string(),
    }
}

/// Describes why the server's certificate was rejected, or returns `None` for the
/// errors that have no plainer wording than rustls's.
fn certificate_reason(error: &CertificateError, host: &str) -> Option<String> {
    let reason = match error {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = expected.to_str();
            match names_phrase(presented) {
                Some(names) => format!(
                    "the server's certificate is for {names}, not for {expected}, so \
                     {HOST_NAME_HINT}"
                ),
                None => format!(
                    "the server's certificate names no host in its subjectAltName \
                     extension, so it is not valid for {expected}"
                ),
            }
        }
        CertificateError::NotValidForName => {
            format!("the server's certificate does not name {host}, so {HOST_NAME_HINT}")
        }
        CertificateError::UnknownIssuer => format!(
            "the server's certificate was issued by a CA the agent does not trust. \
             {CA_FILE_HINT}",
        ),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "the server's certificate has expired (valid until {}, and this machine's \
             clock reads {}). Renew it on the server, or correct this machine's clock",
            unix_time(*not_after),
            unix_time(*time)
        ),
        CertificateError::Expired => "the server's certificate has expired. Renew it on \
                                      the server, or correct this machine's clock"
            .to_owned(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "the server's certificate is not valid yet (valid from {}, and this \
             machine's clock reads {}). Correct this machine's clock",
            unix_time(*not_before),
            unix_time(*time)
        ),
        CertificateError::NotValidYet => {
            "the server's certificate is not valid yet. Correct this machine's clock".to_owned()
        }
        CertificateError::Revoked => "the server's certificate has been revoked".to_owned(),
        CertificateError::BadSignature => "the server's certificate has a signature that \
                                           its issuer's key does not verify. A --ca-file \
                                           with an older swg root CA of the same name \
                                           causes this, so export the current one with \
                                           `swg ca export --format pem --out swg-root.pem`"
            .to_owned(),
        #[allow(deprecated)]
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "the server's certificate is signed with an algorithm that the agent does not \
             support"
                .to_owned()
        }
        CertificateError::BadEncoding => {
            "the server's certificate is not valid DER, so the agent cannot read it".to_owned()
        }
        CertificateError::UnhandledCriticalExtension => {
            "the server's certificate has a critical extension that the agent does not \
             support"
                .to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not for TLS servers: its extended key usage lacks \
             serverAuth"
                .to_owned()
        }
        _ => return None,
    };
    Some(reason)
}

/// Joins the names of a certificate as `a`, `a or b`, `a, b or c`, and returns
/// `None` when there are none.
///
/// rustls 0.23 passes on each name in webpki's debug form, such as
/// `DnsName("api.example.test")` or `IpAddress(192.0.2.1)`, so the name is taken
/// out of that form.
fn names_phrase(presented: &[String]) -> Option<String> {
    let names: Vec<String> = presented.iter().map(|name| plain_name(name)).collect();
    let (last, rest) = names.split_last()?;
    if rest.is_empty() {
        return Some(last.clone());
    }
    Some(format!("{} or {last}", rest.join(", ")))
}

/// Returns a subject alternative name without webpki's debug wrapping.
fn plain_name(presented: &str) -> String {
    let quoted = |prefix: &str| {
        presented
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("\")"))
    };
    if let Some(name) = quoted("DnsName(\"") {
        return name.to_owned();
    }
    if let Some(uri) = quoted("UniformResourceIdentifier(\"") {
        return format!("the URI {uri}");
    }
    if let Some(address) = presented
        .strip_prefix("IpAddress(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return address.to_owned();
    }
    if presented == "DirectoryName" {
        return "a directory name".to_owned();
    }
    if presented.starts_with("Unsupported(") {
        return "a name of a type the agent does not check".to_owned();
    }
    presented.to_owned()
}

/// Formats a certificate time as RFC 3339 UTC.
fn unix_time(time: UnixTime) -> String {
    rfc3339(time.as_secs())
}

/// Describes the alert that ended the handshake, with its cause for the alerts
/// that imply one.
fn alert_reason(alert: AlertDescription, host: &str) -> String {
    let ended = format!(
        "the server ended the TLS handshake with the alert {}",
        alert_name(alert)
    );
    let cause = match alert {
        AlertDescription::AccessDenied => format!(
            "it rejected the host name {host}. swg's DoH listener serves only the name in \
             its dns.doh_host, so use that name in the URL"
        ),
        AlertDescription::UnrecognisedName => {
            format!("it does not serve the host name {host}, so use a name it serves in the URL")
        }
        AlertDescription::NoApplicationProtocol => "it speaks neither HTTP/2 nor HTTP/1.1, \
                                                    the protocols the agent offers"
            .to_owned(),
        AlertDescription::ProtocolVersion => {
            "it supports neither TLS 1.2 nor TLS 1.3, the versions the agent offers".to_owned()
        }
        AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
            "it shares no cipher suite or key exchange group with the agent".to_owned()
        }
        AlertDescription::CertificateRequired => {
            "it requires a client certificate, which the agent does not send".to_owned()
        }
        AlertDescription::InternalError => {
            "of an error on the server, which its log may explain".to_owned()
        }
        _ => return ended,
    };
    format!("{ended} because {cause}")
}

/// Returns the name of a TLS alert as the TLS RFCs spell it (RFC 8446 section 6,
/// RFC 5246 section 7.2 for the alerts TLS 1.3 reserves).
fn alert_name(alert: AlertDescription) -> String {
    let name = match alert {
        AlertDescription::CloseNotify => "close_notify",
        AlertDescription::UnexpectedMessage => "unexpected_message",
        AlertDescription::BadRecordMac => "bad_record_mac",
        AlertDescription::DecryptionFailed => "decryption_failed",
        AlertDescription::RecordOverflow => "record_overflow",
        AlertDescription::DecompressionFailure => "decompression_failure",
        AlertDescription::HandshakeFailure => "handshake_failure",
        AlertDescription::NoCertificate => "no_certificate",
        AlertDescription::BadCertificate => "bad_certificate",
        AlertDescription::UnsupportedCertificate => "unsupported_certificate",
        AlertDescription::CertificateRevoked => "certificate_revoked",
        AlertDescription::CertificateExpired => "certificate_expired",
        AlertDescription::CertificateUnknown => "certificate_unknown",
        AlertDescription::IllegalParameter => "illegal_parameter",
        AlertDescription::UnknownCA => "unknown_ca",
        AlertDescription::AccessDenied => "access_denied",
        AlertDescription::DecodeError => "decode_error",
        AlertDescription::DecryptError => "decrypt_error",
        AlertDescription::ExportRestriction => "export_restriction",
        AlertDescription::ProtocolVersion => "protocol_version",
        AlertDescription::InsufficientSecurity => "insufficient_security",
        AlertDescription::InternalError => "internal_error",
        AlertDescription::InappropriateFallback => "inappropriate_fallback",
        AlertDescription::UserCanceled => "user_canceled",
        AlertDescription::NoRenegotiation => "no_renegotiation",
        AlertDescription::MissingExtension => "missing_extension",
        AlertDescription::UnsupportedExtension => "unsupported_extension",
        AlertDescription::CertificateUnobtainable => "certificate_unobtainable",
        AlertDescription::UnrecognisedName => "unrecognized_name",
        AlertDescription::BadCertificateStatusResponse => "bad_certificate_status_response",
        AlertDescription::BadCertificateHashValue => "bad_certificate_hash_value",
        AlertDescription::UnknownPSKIdentity => "unknown_psk_identity",
        AlertDescription::CertificateRequired => "certificate_required",
        AlertDescription::NoApplicationProtocol => "no_application_protocol",
        AlertDescription::EncryptedClientHelloRequired => "ech_required",
        _ => return format!("number {}", u8::from(alert)),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;

    use super::*;

    /// Spellings of rustls's Rust types that must not reach an operator.
    const RUST_SPELLINGS: [&str; 6] = [
        "DnsName(",
        "IpAddress(",
        "Context",
        "NotValid",
        "UnknownIssuer",
        "AlertReceived",
    ];

    fn certificate_failure(error: CertificateError) -> String {
        let error = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(error),
        );
        handshake_failure(&error, "127.0.0.1")
    }

    fn alert_failure(alert: AlertDescription, host: &str) -> String {
        let error = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(alert),
        );
        handshake_failure(&error, host)
    }

    fn assert_plain(message: &str) {
        for spelling in RUST_SPELLINGS {
            assert!(!message.contains(spelling), "{spelling} in: {message}");
        }
    }

    #[test]
    fn unknown_issuer_keeps_ca_file_hint() {
        let message = certificate_failure(CertificateError::UnknownIssuer);
        assert!(
            message.starts_with("the server's certificate was issued by a CA the agent"),
            "{message}"
        );
        assert!(message.contains("pass it with --ca-file"), "{message}");
        assert_plain(&message);
    }

    #[test]
    fn wrong_name_lists_certificate_names() {
        let Ok(expected) = ServerName::try_from("localhost") else {
            panic!("localhost is a valid server name");
        };
        let message = certificate_failure(CertificateError::NotValidForNameContext {
            expected: expected.to_owned(),
            presented: vec![
                "DnsName(\"api.example.test\")".to_owned(),
                "DnsName(\"*.example.test\")".to_owned(),
                "IpAddress(192.0.2.1)".to_owned(),
            ],
        });
        assert!(
            message.starts_with(
                "the server's certificate is for api.example.test, *.example.test or \
                 192.0.2.1, not for localhost, so use the host name"
            ),
            "{message}"
        );
        assert_plain(&message);

        let without_names = certificate_failure(CertificateError::NotValidForNameContext {
            expected: expected.to_owned(),
            presented: Vec::new(),
        });
        assert!(
            without_names.contains("names no host in its subjectAltName extension"),
            "{without_names}"
        );
        assert_plain(&without_names);

        let without_context = certificate_failure(CertificateError::NotValidForName);
        assert!(
            without_context.contains("does not name 127.0.0.1"),
            "{without_context}"
        );
    }

    #[test]
    fn validity_period_shows_dates() {
        let expired = certificate_failure(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_600_000_000)),
        });
        assert!(
            expired.starts_with(
                "the server's certificate has expired (valid until 2020-09-13T12:26:40Z, \
                 and this machine's clock reads 2023-11-14T22:13:20Z)"
            ),
            "{expired}"
        );
        assert_plain(&expired);

        let early = certificate_failure(CertificateError::NotValidYetContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_600_000_000)),
            not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
        });
        assert!(
            early.starts_with(
                "the server's certificate is not valid yet (valid from 2023-11-14T22:13:20Z"
            ),
            "{early}"
        );
        assert_plain(&early);
    }

    #[test]
    fn other_certificate_errors_are_sentences() {
        #[allow(deprecated)]
        let cases = [
            (CertificateError::Revoked, "has been revoked"),
            (CertificateError::BadSignature, "has a signature that"),
            (
                CertificateError::UnsupportedSignatureAlgorithm,
                "signed with an algorithm",
            ),
            (CertificateError::BadEncoding, "is not valid DER"),
            (CertificateError::InvalidPurpose, "lacks serverAuth"),
            (CertificateError::Expired, "has expired"),
            (CertificateError::NotValidYet, "is not valid yet"),
        ];
        for (error, expected) in cases {
            let message = certificate_failure(error);
            assert!(message.contains(expected), "{message}");
            assert_plain(&message);
        }
    }

    #[test]
    fn unmapped_errors_keep_rustls_text() {
        let message = certificate_failure(CertificateError::UnknownRevocationStatus);
        assert_eq!(
            message,
            rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
                .to_string()
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(handshake_failure(&io, "localhost"), "reset by peer");
    }

    #[test]
    fn alerts_show_rfc_names_and_causes() {
        let denied = alert_failure(AlertDescription::AccessDenied, "dns.example");
        assert!(
            denied.starts_with(
                "the server ended the TLS handshake with the alert access_denied because \
                 it rejected the host name dns.example"
            ),
            "{denied}"
        );
        assert!(denied.contains("dns.doh_host"), "{denied}");

        let no_protocol = alert_failure(AlertDescription::NoApplicationProtocol, "localhost");
        assert!(
            no_protocol.contains("no_application_protocol because it speaks neither HTTP/2"),
            "{no_protocol}"
        );
        let version = alert_failure(AlertDescription::ProtocolVersion, "localhost");
        assert!(
            version.contains("protocol_version because it supports neither TLS 1.2"),
            "{version}"
        );
        let bare = alert_failure(AlertDescription::DecodeError, "localhost");
        assert_eq!(
            bare,
            "the server ended the TLS handshake with the alert decode_error"
        );
        let unknown = alert_failure(AlertDescription::Unknown(200), "localhost");
        assert_eq!(
            unknown,
            "the server ended the TLS handshake with the alert number 200"
        );
        for message in [denied, no_protocol, version, bare, unknown] {
            assert_plain(&message);
        }
    }
}
