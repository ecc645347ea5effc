//! Build time and decision time of a policy with 1 000 000 generated block-list domains
//! plus the real URLhaus and phishing lists.
//!
//! Run with `cargo bench -p swg-policy --bench decide`. Heap use is measured separately by
//! `cargo bench -p swg-policy --bench memory`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use swg_policy::synthetic::{write_benchmark_policy, BENCH_DOMAINS, BENCH_SEED};
use swg_policy::{Action, App, PolicySet, Subject};

const REAL_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

fn benchmarks(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory for the benchmark policy");
    let real = Path::new(REAL_DATA);
    let real = real
        .join("urlhaus-filter-online.txt")
        .is_file()
        .then_some(real);
    let (policy, names) = write_benchmark_policy(dir.path(), BENCH_DOMAINS, BENCH_SEED, real)
        .expect("the benchmark policy can be written");

    let mut build = c.benchmark_group("policy_build");
    build.sample_size(10);
    build.measurement_time(Duration::from_secs(20));
    build.bench_function("load_1m_domains_and_real_lists", |b| {
        b.iter(|| PolicySet::load(&[&policy]).expect("the benchmark policy is valid"))
    });
    build.finish();

    let set = PolicySet::load(&[&policy]).expect("the benchmark policy is valid");
    let tenant = set.tenant("bench").expect("the benchmark tenant exists");
    let subject = Subject::anyone();
    let app = App::bundle("com.example.app");
    assert_eq!(
        tenant.decide_dns(&names.hit, &subject, &app).action,
        Action::Block
    );
    assert_eq!(
        tenant.decide_dns(&names.miss, &subject, &app).action,
        Action::Allow
    );
    assert_eq!(
        tenant.decide_dns(&names.allowed, &subject, &app).action,
        Action::Allow
    );

    let mut decide = c.benchmark_group("decide_dns");
    decide.bench_function("hit", |b| {
        b.iter(|| tenant.decide_dns(black_box(&names.hit), &subject, &app))
    });
    decide.bench_function("miss_5_labels", |b| {
        b.iter(|| tenant.decide_dns(black_box(&names.miss), &subject, &app))
    });
    decide.bench_function("allowed_subdomain", |b| {
        b.iter(|| tenant.decide_dns(black_box(&names.allowed), &subject, &app))
    });
    decide.bench_function("miss_5_labels_mixed_case_trailing_dot", |b| {
        b.iter(|| {
            tenant.decide_dns(
                black_box("A1.B2.C3.Not-Listed-Anywhere.Example."),
                &subject,
                &app,
            )
        })
    });
    decide.finish();

    if real.is_some() {
        let url = url::Url::parse("https://astenterprises.com.pk/ef/ef.vbs").expect("a valid URL");
        let browser = App::bundle("com.apple.mobilesafari");
        assert_eq!(
            tenant.decide_url(&url, &subject, &browser).action,
            Action::Block
        );
        c.bench_function("decide_url/urlhaus_hit", |b| {
            b.iter(|| tenant.decide_url(black_box(&url), &subject, &browser))
        });
    }
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
