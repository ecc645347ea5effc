//! Plain-text reasons for a failed TLS handshake with the console or the DoH
//! endpoint, in place of the type and variant names that rustls's own messages
//! show, with a hint for each usual cause.

use std::path::Path;

use http::Uri;
use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError, InvalidMessage, OtherError};

use super::console::rfc3339;
use super::https::EndpointKind;

/// The command that writes swg's root CA as a PEM file for --ca-file.
const CA_EXPORT_COMMAND: &str = "swg ca export --format pem --out swg-root.pem";

/// The text of webpki's error for a CA certificate in the place of the server's
/// own certificate, as rustls passes it on (see [`other_certificate_reason`]).
const CA_USED_AS_END_ENTITY: &str = "CaUsedAsEndEntity";

/// The server end of a failed TLS handshake, with where its URL and the CAs the
/// agent trusts come from.
pub(crate) struct HandshakePeer<'a> {
    /// The URL the connection was opened for: `--server`, or the DoH URL.
    pub(crate) url: &'a Uri,
    /// The host connected to and verified, without the brackets of an IPv6 literal.
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) endpoint: EndpointKind,
    /// The PEM file given with `--ca-file`, if any.
    pub(crate) ca_file: Option<&'a Path>,
}

impl HandshakePeer<'_> {
    /// Returns `host:port`, with an IPv6 host in brackets.
    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Returns the instruction that makes the endpoint's URL use `change`: in the
    /// `--server` URL for the console, and in `[console] doh_url` on the server for
    /// DoH, because the agent receives the DoH URL from the console at enrolment.
    fn url_fix(&self, change: &str) -> String {
        match self.endpoint {
            EndpointKind::Console => format!("use {change} in the --server URL"),
            EndpointKind::Doh => format!(
                "set `[console] doh_url` on the server to use {change}, because the DoH URL \
                 {} comes from the console's configuration",
                self.url
            ),
        }
    }

    /// Returns the setting that names the host on the certificate of the endpoint.
    fn host_name_setting(&self) -> &'static str {
        match self.endpoint {
            EndpointKind::Console => "`[console] host_name`",
            EndpointKind::Doh => "`[dns] doh_host`",
        }
    }
}

/// Describes a failed TLS handshake with `peer`: a sentence for the certificate
/// errors, alerts and malformed messages an operator can act on, rustls's own text
/// for the rest, and the I/O error's text when rustls did not cause it.
pub(crate) fn handshake_failure(error: &std::io::Error, peer: &HandshakePeer<'_>) -> String {
    // tokio-rustls returns rustls's error wrapped in the I/O error.
    let cause = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match cause {
        Some(tls) => describe(tls, peer),
        None => error.to_string(),
    }
}

/// Returns the rustls error in the chain of `error`'s sources, looking also inside
/// each I/O error, whose `source()` skips the error it wraps.
pub(crate) fn rustls_cause<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// Describes `error`, raised by the TLS connection to `peer` during the handshake
/// or after it.
pub(crate) fn describe(error: &rustls::Error, peer: &HandshakePeer<'_>) -> String {
    match error {
        rustls::Error::InvalidCertificate(certificate) => {
            certificate_reason(certificate, peer).unwrap_or_else(|| error.to_string())
        }
        rustls::Error::AlertReceived(alert) => alert_reason(*alert, peer),
        rustls::Error::InvalidMessage(message) => invalid_message_reason(message, peer),
        rustls::Error::NoCertificatesPresented => {
            "the server sent no certificate in the TLS handshake".to_owned()
        }
        _ => error.to_string(),
    }
}

/// Describes a message from the server that rustls could not decode.
fn invalid_message_reason(error: &InvalidMessage, peer: &HandshakePeer<'_>) -> String {
    let address = peer.address();
    match error {
        // rustls raises these two for a record header with an unknown content type or
        // a version other than 3.x, which is what the first bytes of a plain-HTTP
        // response (`HTTP/1.1 ...`) or of any other protocol look like.
        InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion => {
            let port_change = match peer.endpoint {
                EndpointKind::Console => {
                    "the port of swg's console (`[console] listen`, 9443 by default)"
                }
                EndpointKind::Doh => "the port of swg's DoH listener (`[dns] doh_listen`)",
            };
            format!(
                "the server at {address} did not answer with TLS, so the port may be a \
                 plain-HTTP one. If so, {}",
                peer.url_fix(port_change)
            )
        }
        _ => format!("the server at {address} sent a malformed TLS message"),
    }
}

/// Describes why the server's certificate was rejected, or returns `None` for the
/// errors that have no plainer wording than rustls's.
fn certificate_reason(error: &CertificateError, peer: &HandshakePeer<'_>) -> Option<String> {
    if peer.endpoint == EndpointKind::Doh {
        if let Some(fact) = doh_trust_fact(error) {
            return Some(doh_trust_reason(&fact, peer));
        }
    }
    let host_name_fix = || {
        peer.url_fix(&format!(
            "the host name it was made for (swg's {}, `localhost` by default)",
            peer.host_name_setting()
        ))
    };
    let reason = match error {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = expected.to_str();
            match names_phrase(presented) {
                Some(names) => format!(
                    "the server's certificate is for {names}, not for {expected}, so {}",
                    host_name_fix()
                ),
                None => format!(
                    "the server's certificate names no host in its subjectAltName \
                     extension, so it is not valid for {expected}"
                ),
            }
        }
        CertificateError::NotValidForName => format!(
            "the server's certificate does not name {}, so {}",
            peer.host,
            host_name_fix()
        ),
        CertificateError::UnknownIssuer => unknown_issuer_reason(peer.ca_file),
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
        CertificateError::BadSignature => format!(
            "the server's certificate has a signature that its issuer's key does not \
             verify. A --ca-file with an older swg root CA of the same name causes this, \
             so export the current one with `{CA_EXPORT_COMMAND}`"
        ),
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
        CertificateError::Other(other) => other_certificate_reason(other, peer.ca_file),
        _ => return None,
    };
    Some(reason)
}

/// Returns what is wrong with the DoH server's certificate, as the rest of a
/// sentence whose subject is the certificate, for the errors other than a wrong
/// host name. Returns `None` for the errors that [`doh_trust_reason`] does not
/// explain.
fn doh_trust_fact(error: &CertificateError) -> Option<String> {
    let fact = match error {
        CertificateError::UnknownIssuer => "was issued by a CA the agent does not trust".to_owned(),
        CertificateError::BadSignature => {
            "has a signature that its issuer's key does not verify".to_owned()
        }
        CertificateError::ExpiredContext { time, not_after } => format!(
            "has expired (valid until {}, and this machine's clock reads {})",
            unix_time(*not_after),
            unix_time(*time)
        ),
        CertificateError::Expired => "has expired".to_owned(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "is not valid yet (valid from {}, and this machine's clock reads {})",
            unix_time(*not_before),
            unix_time(*time)
        ),
        CertificateError::NotValidYet => "is not valid yet".to_owned(),
        CertificateError::Revoked => "has been revoked".to_owned(),
        #[allow(deprecated)]
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "is signed with an algorithm that the agent does not support".to_owned()
        }
        CertificateError::BadEncoding => "is not valid DER".to_owned(),
        CertificateError::UnhandledCriticalExtension => {
            "has a critical extension that the agent does not support".to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not for TLS servers, because its extended key usage lacks serverAuth".to_owned()
        }
        CertificateError::Other(other) => {
            let text = other.to_string();
            if text == CA_USED_AS_END_ENTITY {
                "is a CA certificate (its basicConstraints extension has CA:TRUE), not a \
                 server certificate"
                    .to_owned()
            } else if is_variant_name(&text) {
                format!("failed verification (the verifier's reason: {text})")
            } else {
                "failed verification".to_owned()
            }
        }
        _ => return None,
    };
    Some(fact)
}

/// Describes a DoH server certificate that failed verification for `fact`.
///
/// The agent trusted the console's certificate with the same roots and CA file
/// before it received the DoH URL. So the likelier cause is a DoH URL that leads
/// to another server, or to one whose certificate another CA issued.
fn doh_trust_reason(fact: &str, peer: &HandshakePeer<'_>) -> String {
    let trust = match peer.ca_file {
        Some(path) => format!("the CA file {} and the public root CAs", path.display()),
        None => "the public root CAs".to_owned(),
    };
    format!(
        "the certificate of the DoH server at {url} {fact}. The agent received this DoH URL \
         from the console, which takes it from `[console] doh_url` on the server. The \
         console's certificate verified with the same trust ({trust}), so the DoH URL \
         probably points at a server other than this swg's DoH listener, or at one whose \
         certificate another CA issued. If so, set `[console] doh_url` to the URL of swg's \
         DoH listener",
        url = peer.url
    )
}

/// Returns whether `text` is a bare variant name, short and alphanumeric, which is
/// worth showing as a term to search for. Anything else may be a debug form with
/// nested types.
fn is_variant_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Describes a certificate from an issuer that neither the webpki roots nor the
/// CA file `ca_file` contain.
fn unknown_issuer_reason(ca_file: Option<&Path>) -> String {
    let untrusted = "the server's certificate was issued by a CA the agent does not trust";
    match ca_file {
        None => format!(
            "{untrusted}. If this is swg's own root CA, pass it with --ca-file \
             (`{CA_EXPORT_COMMAND}`)"
        ),
        Some(path) => format!(
            "{untrusted}. The CA file {} does not contain the CA that issued the server's \
             certificate, and no public root CA issued it either. If the server uses swg's \
             own root CA, export it with `{CA_EXPORT_COMMAND}` and pass that file with \
             --ca-file",
            path.display()
        ),
    }
}

/// Describes a certificate error that rustls passes on from webpki as
/// [`CertificateError::Other`], without the Rust debug form that rustls's own
/// message shows.
fn other_certificate_reason(error: &OtherError, ca_file: Option<&Path>) -> String {
    // NOTE: rustls 0.23 wraps webpki's errors that it has no variant for, such as
    // CaUsedAsEndEntity, in `OtherError`. Downcasting to `webpki::Error` would need
    // rustls-webpki as a direct dependency of this crate, which it is not, so the
    // error is recognised by its text: the Display of rustls-webpki 0.103 writes the
    // variant name.
    let text = error.to_string();
    if text == CA_USED_AS_END_ENTITY {
        let ca_certificate = "the server presented a CA certificate instead of a server \
                              certificate, and the agent cannot use a CA certificate as the \
                              server's identity. Its basicConstraints extension has CA:TRUE, \
                              which `openssl req -x509` sets by default on a self-signed \
                              certificate. Give the server a certificate for its host name \
                              that a CA issued, without CA:TRUE";
        return match ca_file {
            Some(_) => ca_certificate.to_owned(),
            None => format!(
                "{ca_certificate}. Without --ca-file the agent trusts only public root CAs, \
                 so if swg's own root CA issues the server's certificate, pass it with \
                 --ca-file (`{CA_EXPORT_COMMAND}`)"
            ),
        };
    }
    if is_variant_name(&text) {
        format!("the agent rejected the server's certificate (the verifier's reason: {text})")
    } else {
        "the agent rejected the server's certificate".to_owned()
    }
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
fn alert_reason(alert: AlertDescription, peer: &HandshakePeer<'_>) -> String {
    let ended = format!(
        "the server ended the TLS handshake with the alert {}",
        alert_name(alert)
    );
    let host = peer.host;
    let cause = match alert {
        AlertDescription::AccessDenied => match peer.endpoint {
            EndpointKind::Console => format!(
                "it rejected the host name {host}, so {}",
                peer.url_fix("a host name it serves")
            ),
            EndpointKind::Doh => format!(
                "it rejected the host name {host}. swg's DoH listener serves only the name \
                 in its `[dns] doh_host`, so {}",
                peer.url_fix("that name")
            ),
        },
        AlertDescription::UnrecognisedName => format!(
            "it does not serve the host name {host}, so {}",
            peer.url_fix("a host name it serves")
        ),
        AlertDescription::NoApplicationProtocol => "it speaks neither HTTP/2 nor HTTP/1.1, \
                                                    the protocols the agent offers"
            .to_owned(),
        AlertDescription::ProtocolVersion => {
            "it supports neither TLS 1.2 nor TLS 1.3, the versions the agent offers".to_owned()
        }
        // Servers send handshake_failure for any failed negotiation, and a TLS 1.2
        // server also sends it when it requires a client certificate and gets none.
        AlertDescription::HandshakeFailure => {
            return format!(
                "{ended}, possibly because it shares no cipher suite or key exchange group \
                 with the agent, or because it requires a client certificate, which the \
                 agent does not have"
            );
        }
        AlertDescription::InsufficientSecurity => {
            "it shares no cipher suite or key exchange group with the agent".to_owned()
        }
        AlertDescription::CertificateRequired => {
            "it requires a client certificate, which the agent does not have".to_owned()
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
    const RUST_SPELLINGS: [&str; 12] = [
        "DnsName(",
        "IpAddress(",
        "Context",
        "NotValid",
        "UnknownIssuer",
        "AlertReceived",
        "Other(",
        "OtherError",
        "CaUsedAsEndEntity",
        "InvalidMessage",
        "InvalidContentType",
        "UnknownProtocolVersion",
    ];

    /// The DoH URL of the tests that fail a handshake with the DoH endpoint.
    const DOH_URL: &str = "https://dns.example:8053/dns-query";

    /// An error whose text is the name it wraps, like the webpki errors that rustls
    /// wraps in [`OtherError`].
    #[derive(Debug)]
    struct VerifierError(&'static str);

    impl std::fmt::Display for VerifierError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for VerifierError {}

    /// Returns the message for `error` in a handshake with the console at
    /// `https://{host}:9443`, or with the DoH endpoint at [`DOH_URL`].
    fn failure(
        error: rustls::Error,
        endpoint: EndpointKind,
        host: &str,
        ca_file: Option<&Path>,
    ) -> String {
        let (url, port) = match endpoint {
            EndpointKind::Console if host.contains(':') => (format!("https://[{host}]:9443"), 9443),
            EndpointKind::Console => (format!("https://{host}:9443"), 9443),
            EndpointKind::Doh => (DOH_URL.to_owned(), 8053),
        };
        let url: Uri = match url.parse() {
            Ok(url) => url,
            Err(error) => panic!("{url}: {error}"),
        };
        let peer = HandshakePeer {
            url: &url,
            host,
            port,
            endpoint,
            ca_file,
        };
        let error = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        handshake_failure(&error, &peer)
    }

    fn certificate_failure(error: CertificateError) -> String {
        failure(
            rustls::Error::InvalidCertificate(error),
            EndpointKind::Console,
            "127.0.0.1",
            None,
        )
    }

    fn alert_failure(alert: AlertDescription, host: &str) -> String {
        failure(
            rustls::Error::AlertReceived(alert),
            EndpointKind::Console,
            host,
            None,
        )
    }

    fn other_certificate_error(text: &'static str) -> CertificateError {
        CertificateError::Other(OtherError(std::sync::Arc::new(VerifierError(text))))
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
        let url = Uri::from_static("https://localhost:9443");
        let peer = HandshakePeer {
            url: &url,
            host: "localhost",
            port: 9443,
            endpoint: EndpointKind::Console,
            ca_file: None,
        };
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(handshake_failure(&io, &peer), "reset by peer");
    }

    #[test]
    fn alerts_show_rfc_names_and_causes() {
        let denied = failure(
            rustls::Error::AlertReceived(AlertDescription::AccessDenied),
            EndpointKind::Doh,
            "dns.example",
            None,
        );
        assert!(
            denied.starts_with(
                "the server ended the TLS handshake with the alert access_denied because \
                 it rejected the host name dns.example"
            ),
            "{denied}"
        );
        assert!(denied.contains("`[dns] doh_host`"), "{denied}");

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

    #[test]
    fn handshake_failure_alert_lists_causes() {
        let message = alert_failure(AlertDescription::HandshakeFailure, "localhost");
        assert!(
            message.starts_with(
                "the server ended the TLS handshake with the alert handshake_failure, \
                 possibly because it shares no cipher suite or key exchange group with the \
                 agent, or because"
            ),
            "{message}"
        );
        assert!(
            message.contains("it requires a client certificate, which the agent does not have"),
            "{message}"
        );
        assert_plain(&message);
    }

    #[test]
    fn doh_url_fix_points_to_console_setting() {
        let Ok(expected) = ServerName::try_from("localhost") else {
            panic!("localhost is a valid server name");
        };
        let wrong_name = || CertificateError::NotValidForNameContext {
            expected: expected.to_owned(),
            presented: vec!["DnsName(\"dns.example.test\")".to_owned()],
        };
        let cases = [
            rustls::Error::InvalidCertificate(wrong_name()),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            rustls::Error::AlertReceived(AlertDescription::AccessDenied),
            rustls::Error::AlertReceived(AlertDescription::UnrecognisedName),
            rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
        ];
        for error in cases {
            let doh = failure(error.clone(), EndpointKind::Doh, "localhost", None);
            assert!(
                doh.contains("set `[console] doh_url` on the server to use"),
                "{doh}"
            );
            assert!(
                doh.contains(&format!(
                    "because the DoH URL {DOH_URL} comes from the console's configuration"
                )),
                "{doh}"
            );
            assert_plain(&doh);

            let console = failure(error, EndpointKind::Console, "localhost", None);
            assert!(console.contains("in the --server URL"), "{console}");
            assert_plain(&console);
        }

        let doh = failure(
            rustls::Error::InvalidCertificate(wrong_name()),
            EndpointKind::Doh,
            "localhost",
            None,
        );
        assert_eq!(
            doh,
            format!(
                "the server's certificate is for dns.example.test, not for localhost, so set \
                 `[console] doh_url` on the server to use the host name it was made for \
                 (swg's `[dns] doh_host`, `localhost` by default), because the DoH URL \
                 {DOH_URL} comes from the console's configuration"
            )
        );
        let console = failure(
            rustls::Error::InvalidCertificate(wrong_name()),
            EndpointKind::Console,
            "localhost",
            None,
        );
        assert_eq!(
            console,
            "the server's certificate is for dns.example.test, not for localhost, so use the \
             host name it was made for (swg's `[console] host_name`, `localhost` by default) \
             in the --server URL"
        );
    }

    /// Asserts that `message` explains a DoH certificate that failed verification
    /// for `fact` by the DoH URL from `[console] doh_url`, not by the CA file.
    fn assert_doh_trust(message: &str, fact: &str) {
        assert!(
            message.starts_with(&format!(
                "the certificate of the DoH server at {DOH_URL} {fact}. "
            )),
            "{message}"
        );
        assert!(
            message.contains("which takes it from `[console] doh_url` on the server"),
            "{message}"
        );
        assert!(
            message.contains("console's certificate verified with the same trust"),
            "{message}"
        );
        assert!(
            message.contains("probably points at a server other than this swg's DoH listener"),
            "{message}"
        );
        assert!(!message.contains("swg ca export"), "{message}");
        assert_plain(message);
    }

    fn doh_certificate_failure(error: CertificateError, ca_file: Option<&Path>) -> String {
        failure(
            rustls::Error::InvalidCertificate(error),
            EndpointKind::Doh,
            "dns.example",
            ca_file,
        )
    }

    #[test]
    fn doh_unknown_issuer_blames_doh_url() {
        let path = Path::new("/etc/swg/root.pem");
        let message = doh_certificate_failure(CertificateError::UnknownIssuer, Some(path));
        assert_doh_trust(&message, "was issued by a CA the agent does not trust");
        assert!(
            message.contains("the same trust (the CA file /etc/swg/root.pem and the public"),
            "{message}"
        );
        assert!(!message.contains("does not contain the CA"), "{message}");

        let without_ca_file = doh_certificate_failure(CertificateError::UnknownIssuer, None);
        assert_doh_trust(
            &without_ca_file,
            "was issued by a CA the agent does not trust",
        );
        assert!(
            without_ca_file.contains("the same trust (the public root CAs)"),
            "{without_ca_file}"
        );
    }

    #[test]
    fn doh_bad_signature_blames_doh_url() {
        let message =
            doh_certificate_failure(CertificateError::BadSignature, Some(Path::new("ca.pem")));
        assert_doh_trust(
            &message,
            "has a signature that its issuer's key does not verify",
        );
        assert!(!message.contains("older swg root CA"), "{message}");
    }

    #[test]
    fn doh_expired_certificate_blames_doh_url() {
        let message = doh_certificate_failure(
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    1_600_000_000,
                )),
            },
            Some(Path::new("ca.pem")),
        );
        assert_doh_trust(
            &message,
            "has expired (valid until 2020-09-13T12:26:40Z, and this machine's clock reads \
             2023-11-14T22:13:20Z)",
        );
    }

    #[test]
    fn doh_other_trust_errors_blame_doh_url() {
        let cases = [
            (
                CertificateError::NotValidYetContext {
                    time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_600_000_000)),
                    not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        1_700_000_000,
                    )),
                },
                "is not valid yet (valid from 2023-11-14T22:13:20Z",
            ),
            (
                other_certificate_error("CaUsedAsEndEntity"),
                "is a CA certificate (its basicConstraints extension has CA:TRUE)",
            ),
            (
                other_certificate_error("EndEntityUsedAsCa"),
                "failed verification (the verifier's reason: EndEntityUsedAsCa)",
            ),
            (CertificateError::InvalidPurpose, "is not for TLS servers"),
        ];
        for (error, fact) in cases {
            let message = doh_certificate_failure(error, Some(Path::new("ca.pem")));
            assert!(
                message.starts_with(&format!("the certificate of the DoH server at {DOH_URL} ")),
                "{message}"
            );
            assert!(message.contains(fact), "{message}");
            assert!(
                message.contains("which takes it from `[console] doh_url` on the server"),
                "{message}"
            );
            assert_plain(&message);
        }
    }

    #[test]
    fn console_trust_errors_keep_ca_file_hints() {
        let bad_signature = failure(
            rustls::Error::InvalidCertificate(CertificateError::BadSignature),
            EndpointKind::Console,
            "localhost",
            Some(Path::new("ca.pem")),
        );
        assert!(
            bad_signature.contains("A --ca-file with an older swg root CA"),
            "{bad_signature}"
        );
        assert!(!bad_signature.contains("doh_url"), "{bad_signature}");
    }

    #[test]
    fn unknown_issuer_names_given_ca_file() {
        let path = Path::new("/etc/swg/other-root.pem");
        let message = failure(
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            EndpointKind::Console,
            "localhost",
            Some(path),
        );
        assert!(
            message.contains(
                "The CA file /etc/swg/other-root.pem does not contain the CA that issued the \
                 server's certificate"
            ),
            "{message}"
        );
        assert!(
            message.contains("export it with `swg ca export --format pem --out swg-root.pem`"),
            "{message}"
        );
        assert!(
            !message.contains("If this is swg's own root CA"),
            "{message}"
        );
        assert_plain(&message);
    }

    #[test]
    fn ca_certificate_as_server_certificate_is_explained() {
        let error =
            || rustls::Error::InvalidCertificate(other_certificate_error("CaUsedAsEndEntity"));
        let with_ca_file = failure(
            error(),
            EndpointKind::Console,
            "localhost",
            Some(Path::new("ca.pem")),
        );
        assert!(
            with_ca_file.starts_with(
                "the server presented a CA certificate instead of a server certificate"
            ),
            "{with_ca_file}"
        );
        assert!(
            with_ca_file.contains("basicConstraints extension has CA:TRUE"),
            "{with_ca_file}"
        );
        // Given a CA file, the message ends without the --ca-file hint.
        assert!(with_ca_file.ends_with("without CA:TRUE"), "{with_ca_file}");
        assert_plain(&with_ca_file);

        let without_ca_file = failure(error(), EndpointKind::Console, "localhost", None);
        assert!(
            without_ca_file.starts_with("the server presented a CA certificate"),
            "{without_ca_file}"
        );
        assert!(
            without_ca_file.contains("pass it with --ca-file (`swg ca export"),
            "{without_ca_file}"
        );
        assert_plain(&without_ca_file);
    }

    #[test]
    fn other_certificate_errors_hide_debug_form() {
        let named = certificate_failure(other_certificate_error("NameConstraintViolation"));
        assert_eq!(
            named,
            "the agent rejected the server's certificate (the verifier's reason: \
             NameConstraintViolation)"
        );
        let nested = certificate_failure(other_certificate_error("Custom(Inner { code: 3 })"));
        assert_eq!(nested, "the agent rejected the server's certificate");
        for message in [named, nested] {
            assert_plain(&message);
        }
    }

    #[test]
    fn invalid_messages_are_sentences() {
        for not_tls in [
            InvalidMessage::InvalidContentType,
            InvalidMessage::UnknownProtocolVersion,
        ] {
            let message = failure(
                rustls::Error::InvalidMessage(not_tls),
                EndpointKind::Console,
                "::1",
                None,
            );
            assert!(
                message.starts_with(
                    "the server at [::1]:9443 did not answer with TLS, so the port may be a \
                     plain-HTTP one. If so, use the port of swg's console"
                ),
                "{message}"
            );
            assert_plain(&message);
        }
        for malformed in [
            InvalidMessage::MessageTooShort,
            InvalidMessage::DuplicateExtension(43),
        ] {
            let message = failure(
                rustls::Error::InvalidMessage(malformed),
                EndpointKind::Doh,
                "dns.example",
                None,
            );
            assert_eq!(
                message,
                "the server at dns.example:8053 sent a malformed TLS message"
            );
        }
    }
}
