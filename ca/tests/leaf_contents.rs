//! The fields of minted leaves, read back with x509-parser, and host name
//! normalization over generated inputs.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use swg_ca::{normalize_host, CaConfig, KeyType, LeafHost, LeafMinter, RootCa};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

fn minter(days: i64) -> LeafMinter {
    let root = RootCa::generate(KeyType::EcdsaP256, &CaConfig::default()).unwrap();
    LeafMinter::new(Arc::new(root), Duration::days(days)).unwrap()
}

fn common_name(certificate: &X509Certificate<'_>) -> Option<String> {
    certificate
        .subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().unwrap().to_owned())
}

#[test]
fn common_name_only_up_to_64_characters() {
    let minter = minter(30);
    for (length, expect_cn) in [(64, true), (65, false)] {
        let host = format!("{}.example.com", "a".repeat(length - 12));
        assert_eq!(host.len(), length);
        let der = minter
            .mint_der(&normalize_host(&host).unwrap(), OffsetDateTime::now_utc())
            .unwrap();
        let (_, certificate) = X509Certificate::from_der(&der).unwrap();

        assert_eq!(
            common_name(&certificate),
            expect_cn.then(|| host.clone()),
            "length {length}"
        );
        let san = certificate.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.critical, !expect_cn,
            "SAN is critical exactly when the subject is empty"
        );
        assert_eq!(san.value.general_names, vec![GeneralName::DNSName(&host)]);
    }
}

#[test]
fn leaf_fields_match_the_design() {
    let minter = minter(30);
    let root = minter.root();
    let now = OffsetDateTime::now_utc();
    let der = minter
        .mint_der(&normalize_host("www.example.com").unwrap(), now)
        .unwrap();
    let (_, certificate) = X509Certificate::from_der(&der).unwrap();

    assert_eq!(
        certificate.issuer().as_raw(),
        root.certificate().subject_der()
    );
    assert!(!certificate.is_ca());
    let (_, root_certificate) = X509Certificate::from_der(root.cert_der()).unwrap();
    assert!(certificate
        .verify_signature(Some(root_certificate.public_key()))
        .is_ok());

    let serial = certificate.raw_serial();
    assert!(serial.len() <= 16, "{serial:02x?}");
    assert!(serial.len() >= 8, "at least 64 bits: {serial:02x?}");
    assert_eq!(serial[0] & 0x80, 0);

    let key_usage = certificate.key_usage().unwrap().unwrap();
    assert!(key_usage.critical);
    assert!(key_usage.value.digital_signature());
    assert!(!key_usage.value.key_cert_sign());
    let eku = certificate.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth);
    assert!(!eku.value.client_auth);

    let authority = certificate
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(authority, root.certificate().key_identifier());

    let not_before = certificate.validity().not_before.to_datetime();
    let not_after = certificate.validity().not_after.to_datetime();
    assert_eq!(now.unix_timestamp() - not_before.unix_timestamp(), 3600);
    assert_eq!(not_after - not_before, Duration::days(30));
}

#[test]
fn serials_differ_between_leaves() {
    let minter = minter(30);
    let host = normalize_host("www.example.com").unwrap();
    let serials: std::collections::HashSet<Vec<u8>> = (0..50)
        .map(|_| {
            let der = minter.mint_der(&host, OffsetDateTime::now_utc()).unwrap();
            X509Certificate::from_der(&der)
                .unwrap()
                .1
                .raw_serial()
                .to_vec()
        })
        .collect();
    assert_eq!(serials.len(), 50);
}

#[test]
fn leaf_never_outlives_its_ca() {
    let minter = minter(397);
    let ca_not_after = minter.root().not_after();
    let now = ca_not_after - Duration::days(10);
    let der = minter
        .mint_der(&normalize_host("late.example").unwrap(), now)
        .unwrap();
    let (_, certificate) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        certificate.validity().not_after.to_datetime(),
        ca_not_after.replace_nanosecond(0).unwrap()
    );

    let error = minter
        .mint_der(&normalize_host("late.example").unwrap(), ca_not_after)
        .unwrap_err();
    assert!(
        matches!(error, swg_ca::LeafError::CaExpired { .. }),
        "{error:?}"
    );
}

/// A small deterministic generator (xorshift64) so the input set is the same
/// on every run.
struct Inputs(u64);

impl Inputs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn host(&mut self) -> String {
        const PIECES: [&str; 24] = [
            "a", "z", "0", "9", "-", "_", ".", ".", "..", "xn--", "Ü", "ß", "ü", "例", "\u{200d}",
            "[", "]", ":", "%", " ", "*", "A", "\u{0}", "ﬁ",
        ];
        let length = (self.next() % 80) as usize;
        (0..length)
            .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
            .collect()
    }
}

#[test]
fn normalization_never_panics_and_outputs_valid_names() {
    let mut inputs = Inputs(0x5eed_1234_abcd_0042);
    let minter = minter(30);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let host = inputs.host();
        let Ok(normalized) = normalize_host(&host) else {
            continue;
        };
        accepted += 1;
        if let LeafHost::Dns(name) = &normalized {
            assert!(name.len() <= 253, "{host:?} -> {name:?}");
            for label in name.split('.') {
                assert!(
                    !label.is_empty() && label.len() <= 63,
                    "{host:?} -> {name:?}"
                );
                assert!(
                    label.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'),
                    "{host:?} -> {name:?}"
                );
            }
            assert_eq!(
                normalize_host(name).unwrap(),
                normalized,
                "normalization is idempotent for {host:?}"
            );
        }
        if accepted % 50 == 0 {
            let der = minter
                .mint_der(&normalized, OffsetDateTime::now_utc())
                .unwrap();
            assert!(X509Certificate::from_der(&der).is_ok(), "{host:?}");
        }
    }
    assert!(
        accepted > 100,
        "the generator produced too few valid names: {accepted}"
    );
}
