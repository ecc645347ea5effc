//! Deterministic synthetic block lists and the benchmark policy, shared by the policy
//! benchmarks and the resolver's benchmarks so both measure the same data.
//!
//! The generator mimics the shape of real block lists: 2 to 5 labels (mostly 2 or 3),
//! a spread of top-level domains, registrable labels of 4 to 16 characters and common
//! subdomain prefixes. The same seed always gives the same names.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The seed the benchmarks use.
pub const BENCH_SEED: u64 = 0x5eed_0fb1_0c11_5700;

/// Number of generated names in the benchmark policy.
pub const BENCH_DOMAINS: usize = 1_000_000;

/// A small, fast, deterministic generator (SplitMix64); not for anything secret.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

const TOP_LEVEL: &[(&str, u64)] = &[
    ("com", 46),
    ("net", 8),
    ("org", 6),
    ("ru", 5),
    ("de", 4),
    ("info", 3),
    ("xyz", 3),
    ("top", 3),
    ("io", 2),
    ("cn", 2),
    ("co.uk", 2),
    ("com.br", 2),
    ("online", 2),
    ("site", 2),
    ("pl", 2),
    ("fr", 2),
    ("nl", 1),
    ("it", 1),
    ("es", 1),
    ("in", 1),
    ("shop", 1),
    ("app", 1),
];

const SUBDOMAINS: &[&str] = &[
    "www", "mail", "cdn", "api", "m", "login", "secure", "static", "img", "app", "web", "dl",
    "update", "account",
];

/// Iterator over generated domain names; see [`domains`].
#[derive(Debug, Clone)]
pub struct Domains {
    rng: SplitMix64,
    remaining: usize,
}

/// Generates `count` domain names from `seed`.
pub fn domains(count: usize, seed: u64) -> Domains {
    Domains {
        rng: SplitMix64(seed),
        remaining: count,
    }
}

impl Iterator for Domains {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.generate())
    }
}

impl Domains {
    fn generate(&mut self) -> String {
        let mut name = String::with_capacity(40);

        // Extra labels in front of the registrable domain: none for about 45 % of the
        // names, one for 35 %, two for 15 %, three for 5 %.
        let extra = match self.rng.below(100) {
            0..45 => 0,
            45..80 => 1,
            80..95 => 2,
            _ => 3,
        };
        for _ in 0..extra {
            if self.rng.below(2) == 0 {
                name.push_str(SUBDOMAINS[self.rng.below(SUBDOMAINS.len() as u64) as usize]);
            } else {
                let len = 2 + self.rng.below(9) as usize;
                self.push_label(&mut name, len);
            }
            name.push('.');
        }

        let len = 4 + self.rng.below(13) as usize;
        self.push_label(&mut name, len);
        name.push('.');
        name.push_str(self.top_level());
        name
    }

    fn push_label(&mut self, name: &mut String, len: usize) {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
        const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for i in 0..len {
            let hyphen_allowed = i > 0 && i + 1 < len && !name.ends_with('-');
            let byte = if hyphen_allowed && self.rng.below(20) == 0 {
                b'-'
            } else if self.rng.below(8) == 0 {
                ALPHANUMERIC[self.rng.below(ALPHANUMERIC.len() as u64) as usize]
            } else {
                LETTERS[self.rng.below(LETTERS.len() as u64) as usize]
            };
            name.push(char::from(byte));
        }
    }

    fn top_level(&mut self) -> &'static str {
        let total: u64 = TOP_LEVEL.iter().map(|(_, weight)| weight).sum();
        let mut pick = self.rng.below(total);
        for (tld, weight) in TOP_LEVEL {
            if pick < *weight {
                return tld;
            }
            pick -= weight;
        }
        "com"
    }
}

/// Writes `count` generated names, one per line, to `path` (a plain domain list).
pub fn write_domain_list(path: &Path, count: usize, seed: u64) -> io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "# {count} synthetic domains, seed {seed:#x}")?;
    for name in domains(count, seed) {
        writeln!(out, "{name}")?;
    }
    out.flush()
}

/// Names the benchmark uses as queries against [`write_benchmark_policy`]'s policy.
#[derive(Debug, Clone)]
pub struct BenchNames {
    /// A generated name: a block hit.
    pub hit: String,
    /// A five-label name under no listed domain: a miss.
    pub miss: String,
    /// A name under the allow-list entry `allowed.<generated name>`: allowed.
    pub allowed: String,
}

/// Writes the benchmark policy into `dir`: tenant `bench` with `count` generated names as
/// a malware feed, the real URLhaus and phishing lists from `real_data` when given (as
/// malware and phishing feeds), and one allow-list entry under a generated name.
/// Returns the policy path and the query names.
pub fn write_benchmark_policy(
    dir: &Path,
    count: usize,
    seed: u64,
    real_data: Option<&Path>,
) -> io::Result<(PathBuf, BenchNames)> {
    let list = dir.join("synthetic-domains.txt");
    write_domain_list(&list, count, seed)?;
    let pick = domains(count, seed)
        .nth(count / 2)
        .unwrap_or_else(|| "example.com".into());

    let mut policy = String::from("id = \"bench\"\nname = \"Benchmark tenant\"\n\n");
    policy.push_str("[[feeds]]\nid = \"synthetic\"\npath = \"synthetic-domains.txt\"\nformat = \"domains\"\ncategory = \"malware\"\n\n");
    if let Some(real) = real_data {
        let urlhaus = real.join("urlhaus-filter-online.txt");
        let phishing = real.join("phishing-domains.txt");
        policy.push_str(&format!(
            "[[feeds]]\nid = \"urlhaus\"\npath = {:?}\nformat = \"adblock\"\ncategory = \"malware\"\n\n",
            urlhaus.display().to_string()
        ));
        policy.push_str(&format!(
            "[[feeds]]\nid = \"phishing\"\npath = {:?}\nformat = \"domains\"\ncategory = \"phishing\"\n\n",
            phishing.display().to_string()
        ));
    }
    policy.push_str(&format!(
        "[[policies]]\nid = \"everyone\"\n[policies.security]\nmode = \"all\"\naction = \"block\"\n[policies.allow]\ndomains = [\"allowed.{pick}\"]\n"
    ));
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy)?;

    let names = BenchNames {
        hit: pick.clone(),
        miss: "a1.b2.c3.not-listed-anywhere.example".into(),
        allowed: format!("host.allowed.{pick}"),
    };
    Ok((path, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_names() {
        let a: Vec<_> = domains(100, 42).collect();
        let b: Vec<_> = domains(100, 42).collect();
        assert_eq!(a, b);
        assert_ne!(a, domains(100, 43).collect::<Vec<_>>());
    }

    #[test]
    fn generated_names_are_valid_and_varied() {
        let mut labels = [0usize; 8];
        for name in domains(10_000, BENCH_SEED) {
            let normalized = crate::normalize_name(&name).unwrap();
            assert_eq!(normalized, name);
            labels[name.split('.').count()] += 1;
        }
        assert!(labels[2] > 3000, "{labels:?}");
        assert!(labels[3] > 2000, "{labels:?}");
        assert!(labels[5] > 100, "{labels:?}");
    }
}
