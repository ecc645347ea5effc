//! Exports of the root CA certificate for devices: PEM, DER and an Apple
//! configuration profile (`.mobileconfig`).

use plist::{Dictionary, Value};

use crate::root::CaCertificate;

/// Options of the Apple configuration profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOptions {
    /// Name shown for the profile and the certificate payload.
    pub display_name: String,
    /// Organization shown by the profile installer.
    pub organization: String,
    /// Reverse-DNS prefix of the payload identifiers; the CA fingerprint is
    /// appended, so a profile downloaded again for the same CA replaces the
    /// installed one.
    pub identifier_prefix: String,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            display_name: "swg root CA".to_owned(),
            organization: "swg".to_owned(),
            identifier_prefix: "swg.root-ca".to_owned(),
        }
    }
}

/// Returns the certificate as PEM text.
pub fn pem(ca: impl AsRef<CaCertificate>) -> String {
    ca.as_ref().pem()
}

/// Returns the certificate DER.
pub fn der(ca: impl AsRef<CaCertificate>) -> Vec<u8> {
    ca.as_ref().der().to_vec()
}

/// Returns an Apple configuration profile (XML plist) that installs the
/// certificate as a trusted root, with the default [`ProfileOptions`].
pub fn mobileconfig(ca: impl AsRef<CaCertificate>) -> Vec<u8> {
    mobileconfig_with(ca, &ProfileOptions::default())
}

/// Returns an Apple configuration profile with one `com.apple.security.root`
/// payload holding the certificate DER.
///
/// Identifiers and UUIDs derive from the CA fingerprint, so the output for
/// one CA is always the same and a new download replaces the old profile.
pub fn mobileconfig_with(ca: impl AsRef<CaCertificate>, options: &ProfileOptions) -> Vec<u8> {
    let ca = ca.as_ref();
    let short_fingerprint = ca.fingerprint_hex()[..16].to_ascii_lowercase();
    let profile_identifier = format!("{}.{}", options.identifier_prefix, short_fingerprint);

    let mut payload = Dictionary::new();
    payload.insert(
        "PayloadCertificateFileName".into(),
        Value::String("swg-root-ca.cer".into()),
    );
    payload.insert("PayloadContent".into(), Value::Data(ca.der().to_vec()));
    payload.insert(
        "PayloadDescription".into(),
        Value::String("Adds the swg root CA so the gateway can inspect HTTPS traffic.".into()),
    );
    payload.insert(
        "PayloadDisplayName".into(),
        Value::String(options.display_name.clone()),
    );
    payload.insert(
        "PayloadIdentifier".into(),
        Value::String(format!("{profile_identifier}.certificate")),
    );
    payload.insert(
        "PayloadType".into(),
        Value::String("com.apple.security.root".into()),
    );
    payload.insert(
        "PayloadUUID".into(),
        Value::String(derived_uuid(ca, b"certificate")),
    );
    payload.insert("PayloadVersion".into(), Value::Integer(1.into()));

    let mut profile = Dictionary::new();
    profile.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(payload)]),
    );
    profile.insert(
        "PayloadDescription".into(),
        Value::String(format!(
            "Installs the root CA {} ({}).",
            ca.subject(),
            ca.fingerprint_hex()
        )),
    );
    profile.insert(
        "PayloadDisplayName".into(),
        Value::String(options.display_name.clone()),
    );
    profile.insert(
        "PayloadIdentifier".into(),
        Value::String(profile_identifier),
    );
    profile.insert(
        "PayloadOrganization".into(),
        Value::String(options.organization.clone()),
    );
    profile.insert("PayloadRemovalDisallowed".into(), Value::Boolean(false));
    profile.insert("PayloadType".into(), Value::String("Configuration".into()));
    profile.insert(
        "PayloadUUID".into(),
        Value::String(derived_uuid(ca, b"profile")),
    );
    profile.insert("PayloadVersion".into(), Value::Integer(1.into()));

    let mut xml = Vec::with_capacity(2048);
    Value::Dictionary(profile)
        .to_writer_xml(&mut xml)
        .expect("writing a plist of strings, data and integers into a Vec cannot fail");
    xml.push(b'\n');
    xml
}

/// Returns a UUID (RFC 9562 version 8, name-based) made from the SHA-256 of
/// the CA fingerprint and `purpose`, in uppercase as Apple profiles use.
fn derived_uuid(ca: &CaCertificate, purpose: &[u8]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"swg profile uuid\0");
    context.update(ca.fingerprint());
    context.update(purpose);
    let digest = context.finish();

    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;

    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
