#![allow(clippy::unwrap_used)]
//! Correlation hints: per host, per IP with one device, and expiry.

use std::net::IpAddr;
use std::time::Duration;

use swg_identity::{AppClass, CorrelationHints, Discovery, Identity, InProcessHints};

fn device(id: &str) -> Identity {
    Identity {
        tenant: "acme".to_owned(),
        device: id.to_owned(),
        user: format!("{id}@acme.example"),
        app_bundle_id: Some("com.google.chrome.ios".to_owned()),
        app_class: AppClass::Browser,
        discovery: Discovery::Token,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn host_hint_returns_identity_for_same_ip_and_host() {
    let hints = InProcessHints::new(Duration::from_secs(600), 1000);
    hints
        .record(ip("203.0.113.7"), "WWW.Example.com.", &device("d1"))
        .await
        .unwrap();

    let found = hints
        .lookup_host(ip("203.0.113.7"), "www.example.com")
        .await
        .unwrap();
    assert_eq!(found, Some(device("d1")));
    assert_eq!(
        hints
            .lookup_host(ip("203.0.113.8"), "www.example.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        hints
            .lookup_host(ip("203.0.113.7"), "example.com")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn ip_hint_answers_when_one_device_used_ip() {
    let hints = InProcessHints::new(Duration::from_secs(600), 1000);
    hints
        .record(ip("203.0.113.7"), "a.example", &device("d1"))
        .await
        .unwrap();
    hints
        .record(ip("203.0.113.7"), "b.example", &device("d1"))
        .await
        .unwrap();

    let found = hints.lookup_ip(ip("203.0.113.7")).await.unwrap();
    assert_eq!(found.map(|identity| identity.device), Some("d1".to_owned()));
}

#[tokio::test]
async fn ip_hint_is_silent_when_two_devices_share_ip() {
    let hints = InProcessHints::new(Duration::from_secs(600), 1000);
    hints
        .record(ip("198.51.100.1"), "a.example", &device("d1"))
        .await
        .unwrap();
    hints
        .record(ip("198.51.100.1"), "b.example", &device("d2"))
        .await
        .unwrap();

    assert_eq!(hints.lookup_ip(ip("198.51.100.1")).await.unwrap(), None);
    // Host hints stay exact even on a shared IP.
    let found = hints
        .lookup_host(ip("198.51.100.1"), "b.example")
        .await
        .unwrap();
    assert_eq!(found.map(|identity| identity.device), Some("d2".to_owned()));
}

#[tokio::test]
async fn hints_expire_after_ttl() {
    let hints = InProcessHints::new(Duration::from_millis(300), 1000);
    hints
        .record(ip("2001:db8::1"), "a.example", &device("d1"))
        .await
        .unwrap();
    assert!(hints.lookup_ip(ip("2001:db8::1")).await.unwrap().is_some());

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        hints
            .lookup_host(ip("2001:db8::1"), "a.example")
            .await
            .unwrap(),
        None
    );
    assert_eq!(hints.lookup_ip(ip("2001:db8::1")).await.unwrap(), None);
}

#[tokio::test]
async fn ip_hint_answers_again_once_second_device_expires() {
    let hints = InProcessHints::new(Duration::from_millis(400), 1000);
    hints
        .record(ip("192.0.2.9"), "a.example", &device("d2"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    hints
        .record(ip("192.0.2.9"), "a.example", &device("d1"))
        .await
        .unwrap();
    assert_eq!(hints.lookup_ip(ip("192.0.2.9")).await.unwrap(), None);

    // d2 was last seen 250 ms before d1, so it leaves the window first.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let found = hints.lookup_ip(ip("192.0.2.9")).await.unwrap();
    assert_eq!(found.map(|identity| identity.device), Some("d1".to_owned()));
}
