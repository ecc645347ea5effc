//! Writes the synthetic benchmark policy (and its domain list) into a directory, for
//! loading the same 1 000 000-domain policy in other benchmarks or by hand.
//!
//! `cargo run -p swg-policy --release --example synthetic_policy -- DIR [COUNT] [REAL_DATA_DIR]`

use std::path::PathBuf;
use std::process::ExitCode;

use swg_policy::synthetic::{write_benchmark_policy, BENCH_DOMAINS, BENCH_SEED};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synthetic_policy DIR [COUNT] [REAL_DATA_DIR]");
        return ExitCode::from(2);
    };
    let count = match args.next().map(|text| text.parse::<usize>()) {
        None => BENCH_DOMAINS,
        Some(Ok(count)) => count,
        Some(Err(error)) => {
            eprintln!("invalid COUNT: {error}");
            return ExitCode::from(2);
        }
    };
    let real = args.next().map(PathBuf::from);

    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {error}", dir.display());
        return ExitCode::FAILURE;
    }
    match write_benchmark_policy(&dir, count, BENCH_SEED, real.as_deref()) {
        Ok((policy, names)) => {
            println!("policy: {}", policy.display());
            println!(
                "hit: {}\nmiss: {}\nallowed: {}",
                names.hit, names.miss, names.allowed
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot write the policy into {}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}
