//! Leaf minting and leaf cache benchmarks: a cold mint (a new host each
//! iteration) under ECDSA and RSA roots, a warm cache hit, and 10 000
//! distinct hosts from 2 threads.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prometheus::Registry;
use swg_ca::{CaConfig, KeyType, LeafCache, LeafConfig, RootCa};

fn cache() -> LeafCache {
    cache_with(KeyType::EcdsaP256)
}

fn cache_with(key_type: KeyType) -> LeafCache {
    let root = Arc::new(RootCa::generate(key_type, &CaConfig::default()).unwrap());
    let config = LeafConfig {
        cache_entries: 10_000_000,
        ..LeafConfig::default()
    };
    LeafCache::new(root, &config, &Registry::new()).unwrap()
}

fn cold_mint(c: &mut Criterion) {
    let cache = cache();
    let counter = AtomicU64::new(0);
    c.bench_function("leaf/cold_mint", |b| {
        b.iter_batched(
            || {
                format!(
                    "host-{}.example.com",
                    counter.fetch_add(1, Ordering::Relaxed)
                )
            },
            |host| black_box(cache.get(&host).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

/// Cold mints under RSA roots, whose signatures cost far more than ECDSA.
fn cold_mint_rsa(c: &mut Criterion) {
    let mut group = c.benchmark_group("leaf");
    group.sample_size(20);
    for (name, key_type) in [
        ("cold_mint_rsa2048", KeyType::Rsa2048),
        ("cold_mint_rsa4096", KeyType::Rsa4096),
    ] {
        let cache = cache_with(key_type);
        let counter = AtomicU64::new(0);
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    format!(
                        "host-{}.example.com",
                        counter.fetch_add(1, Ordering::Relaxed)
                    )
                },
                |host| black_box(cache.get(&host).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn cache_hit(c: &mut Criterion) {
    let cache = cache();
    cache.get("www.example.com").unwrap();
    c.bench_function("leaf/cache_hit", |b| {
        b.iter(|| black_box(cache.get(black_box("www.example.com")).unwrap()))
    });
}

fn distinct_hosts_two_threads(c: &mut Criterion) {
    const HOSTS: u64 = 10_000;
    let mut group = c.benchmark_group("leaf");
    group.sample_size(10);
    group.throughput(Throughput::Elements(HOSTS));
    let round = AtomicU64::new(0);
    group.bench_function("10k_hosts_2_threads", |b| {
        b.iter_batched(
            || (cache(), round.fetch_add(1, Ordering::Relaxed)),
            |(cache, round)| {
                std::thread::scope(|scope| {
                    for thread in 0..2 {
                        let cache = &cache;
                        scope.spawn(move || {
                            for i in (thread..HOSTS).step_by(2) {
                                black_box(
                                    cache.get(&format!("h{i}.r{round}.example.com")).unwrap(),
                                );
                            }
                        });
                    }
                });
                cache
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    cold_mint,
    cold_mint_rsa,
    cache_hit,
    distinct_hosts_two_threads
);
criterion_main!(benches);
