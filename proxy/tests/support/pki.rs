//! Test certificates: an origin CA trusted as an extra root, bad origin certificates,
//! and a stand-in for swg's root CA that mints leaves per host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use swg_proxy::boundary::LeafSource;
use time::{Duration, OffsetDateTime};

/// A CA made by the test.
pub struct TestCa {
    pub pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        TestCa {
            pem: certificate.pem(),
            der: certificate.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names`, valid from `not_before` to `not_after`.
    pub fn leaf(
        &self,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CertifiedKey {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        certified_key(certificate.der().clone(), &key)
    }

    /// A leaf valid now for `names`, as PEM certificate and PEM private key (for nginx).
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    /// A leaf valid now for `names`.
    pub fn valid_leaf(&self, names: &[&str]) -> CertifiedKey {
        let now = OffsetDateTime::now_utc();
        self.leaf(names, now - Duration::hours(1), now + Duration::days(30))
    }
}

pub fn self_signed_leaf(name: &str) -> CertifiedKey {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    certified_key(certificate.der().clone(), &key)
}

fn certified_key(certificate: CertificateDer<'static>, key: &KeyPair) -> CertifiedKey {
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key_der).unwrap();
    CertifiedKey::new(vec![certificate], signing_key)
}

/// Stand-in for swg-ca: mints and caches one leaf per host.
pub struct MintingLeaves {
    pub ca: TestCa,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl MintingLeaves {
    pub fn new() -> Arc<MintingLeaves> {
        Arc::new(MintingLeaves {
            ca: TestCa::new("swg test root"),
            cache: Mutex::new(HashMap::new()),
        })
    }
}

impl LeafSource for MintingLeaves {
    fn leaf(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.cache.lock().unwrap();
        let leaf = cache
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(self.ca.valid_leaf(&[host])));
        Some(leaf.clone())
    }
}
