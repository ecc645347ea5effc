//! Time to render a page, which the proxy pays on every blocked or warned navigation.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use swg_blockpages::{Page, PageContext, Pages, PagesConfig, WarnForm};

fn render(c: &mut Criterion) {
    let config: PagesConfig = toml::from_str(
        "[default_branding]\nname = \"Example Corp\"\ncontact_email = \"helpdesk@example.com\"\n",
    )
    .expect("the benchmark configuration is valid TOML");
    let pages = Pages::new(&config, Path::new(".")).expect("the benchmark configuration loads");
    let context = PageContext {
        category: Some("phishing".to_owned()),
        rule_id: Some("security/phishing".to_owned()),
        user: Some("alice@example.com".to_owned()),
        device: Some("C02XL0GHJGH5".to_owned()),
        ..PageContext::new(
            "https://login.example-bank.test/session?continue=%2Faccount",
            "7f3c9a2e",
        )
    };
    let block = Page::Block(context.clone());
    let warn = Page::Warn(context, WarnForm::new("v1.form-token-123"));

    c.bench_function("block page html", |b| {
        b.iter(|| pages.render(black_box(&block), Some("en-US,en;q=0.9"), true))
    });
    c.bench_function("warn page html german", |b| {
        b.iter(|| pages.render(black_box(&warn), Some("de-DE,de;q=0.9"), true))
    });
    c.bench_function("block page text", |b| {
        b.iter(|| pages.render(black_box(&block), None, false))
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
