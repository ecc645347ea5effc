//! Costs on the hot paths: device token verification (every DoH request), identity
//! cookie verification (every proxied request), and correlation hint lookups.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use swg_identity::{
    AppClass, CorrelationHints, Discovery, Identity, IdentityConfig, InProcessHints, LiveKeys,
    Signer, SigningKeys,
};

const NOW: u64 = 1_800_000_000;

fn signer() -> Signer {
    let keys = SigningKeys::from_secrets("bench", &[("k1".to_owned(), vec![1u8; 32])])
        .expect("a 32-byte secret is a valid signing key");
    Signer::new(
        keys,
        &IdentityConfig::default(),
        &prometheus::Registry::new(),
    )
    .expect("a fresh registry accepts the metrics")
}

fn identity() -> Identity {
    Identity {
        tenant: "acme".to_owned(),
        device: "3f2b8c1e-device".to_owned(),
        user: "alice@acme.example".to_owned(),
        app_bundle_id: Some("com.apple.mobilesafari".to_owned()),
        app_class: AppClass::Browser,
        discovery: Discovery::Token,
    }
}

fn tokens(c: &mut Criterion) {
    let signer = signer();
    let live_keys = LiveKeys::new();
    live_keys.replace([("acme".to_owned(), "key-a".to_owned())]);
    let token = signer
        .issue_device_token(
            "acme",
            "3f2b8c1e-device",
            "alice@acme.example",
            "key-a",
            NOW,
        )
        .token;
    let cookie = signer.issue_identity_cookie(&identity(), "www.example.com", NOW);

    c.bench_function("identity/issue_device_token", |b| {
        b.iter(|| {
            signer.issue_device_token(
                "acme",
                "3f2b8c1e-device",
                "alice@acme.example",
                "key-a",
                black_box(NOW),
            )
        })
    });
    c.bench_function("identity/verify_device_token", |b| {
        b.iter(|| signer.verify_device_token(black_box(&token), NOW, &live_keys))
    });
    c.bench_function("identity/verify_identity_cookie", |b| {
        b.iter(|| signer.verify_identity_cookie(black_box(&cookie), "www.example.com", NOW))
    });
}

fn hints(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts");
    let hints = InProcessHints::new(Duration::from_secs(600), 100_000);
    let client: IpAddr = "203.0.113.7".parse().expect("a valid IP literal");
    let identity = identity();
    runtime.block_on(async {
        hints
            .record(client, "www.example.com", &identity)
            .await
            .expect("the in-process store never fails");
    });

    c.bench_function("identity/hint_record", |b| {
        b.iter(|| runtime.block_on(hints.record(client, "www.example.com", &identity)))
    });
    c.bench_function("identity/hint_lookup_host", |b| {
        b.iter(|| runtime.block_on(hints.lookup_host(client, black_box("www.example.com"))))
    });
    c.bench_function("identity/hint_lookup_ip", |b| {
        b.iter(|| runtime.block_on(hints.lookup_ip(black_box(client))))
    });
}

criterion_group!(benches, tokens, hints);
criterion_main!(benches);
