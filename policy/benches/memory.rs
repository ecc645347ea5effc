//! Heap used by a policy with 1 000 000 generated block-list domains plus the real URLhaus
//! and phishing lists, measured with dhat's counting allocator.
//!
//! Run with `cargo bench -p swg-policy --bench memory`. It prints the bytes live after the
//! build (what a running process keeps) and the peak during the build.

use std::path::Path;
use std::time::Instant;

use swg_policy::synthetic::{write_benchmark_policy, BENCH_DOMAINS, BENCH_SEED};
use swg_policy::PolicySet;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const REAL_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory for the benchmark policy");
    let real = Path::new(REAL_DATA);
    let real = real
        .join("urlhaus-filter-online.txt")
        .is_file()
        .then_some(real);
    let (policy, _) = write_benchmark_policy(dir.path(), BENCH_DOMAINS, BENCH_SEED, real)
        .expect("the benchmark policy can be written");

    // Only allocations made while the profiler runs are counted: the build and what it keeps.
    let profiler = dhat::Profiler::builder()
        .testing()
        .trim_backtraces(Some(1))
        .build();
    let before = dhat::HeapStats::get();
    let started = Instant::now();
    let set = PolicySet::load(&[&policy]).expect("the benchmark policy is valid");
    let elapsed = started.elapsed();
    let after = dhat::HeapStats::get();

    let names = set.name_count();
    let live = after.curr_bytes - before.curr_bytes;
    println!("names in the index:      {names}");
    println!("feeds:                   {}", set.feeds().len());
    println!(
        "heap after build:        {:.1} MiB ({} bytes)",
        live as f64 / MIB,
        live
    );
    println!(
        "peak heap during build:  {:.1} MiB",
        (after.max_bytes - before.curr_bytes) as f64 / MIB
    );
    println!(
        "index estimate:          {:.1} MiB",
        set.index_heap_bytes() as f64 / MIB
    );
    println!("build time under dhat:   {elapsed:?} (slower than without profiling)");
    drop(set);
    drop(profiler);
}
