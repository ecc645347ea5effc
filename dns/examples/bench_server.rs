//! The resolver as the DNS benchmark runs it: plain DNS on one UDP/TCP address, the
//! 1 000 000-name benchmark policy of swg-policy, a real SQLite activity log, and one
//! upstream. Used by `benches/dnsperf.sh`.
//!
//! ```text
//! bench_server LISTEN UPSTREAM WORKDIR
//! ```
//!
//! Prints `ready` once listening; on Ctrl-C (SIGINT) prints its counters and exits.
//! With `SWG_BENCH_ACTIVITY=off` events are counted but not written, to measure what
//! the activity log costs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use swg_dns::backends::{NoHints, QueryEvent};
use swg_dns::gateway::{ActivityEvents, PolicySource, SwgIdentifier, SwgPolicy};
use swg_dns::{Backends, DnsConfig, DnsServer, EventSink};
use swg_identity::{IdentityConfig, LiveKeys, Signer, SigningKeys};
use swg_policy::synthetic::{write_benchmark_policy, BENCH_DOMAINS, BENCH_SEED};
use swg_policy::PolicySet;

// The allocator of the `swg` binary: allocation is a visible share of the CPU per query.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Counts events on their way to the activity log.
struct Counted {
    inner: Option<ActivityEvents>,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl EventSink for Counted {
    fn record(&self, event: QueryEvent) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(inner) = &self.inner {
            inner.record(event);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, workdir] = args.as_slice() else {
        return Err("usage: bench_server LISTEN UPSTREAM WORKDIR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let workdir = PathBuf::from(workdir);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let data = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"));
        let (path, _) = write_benchmark_policy(&workdir, BENCH_DOMAINS, BENCH_SEED, Some(&data))?;
        // Plain DNS needs a location: the benchmark client is on loopback.
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str("\n[[locations]]\nid = \"loopback\"\ncidrs = [\"127.0.0.0/8\"]\n");
        std::fs::write(&path, text)?;
        let started = std::time::Instant::now();
        let set = PolicySet::load(&[&path]).map_err(|errors| errors.to_string())?;
        eprintln!(
            "policy loaded: {} names in {:?}",
            set.name_count(),
            started.elapsed()
        );
        let policies = PolicySource::Fixed(Arc::new(set));

        let registry = prometheus::Registry::new();
        let keys = SigningKeys::from_secrets("bench", &[("b1".to_owned(), vec![1u8; 32])])?;
        let signer = Arc::new(Signer::new(keys, &IdentityConfig::default(), &registry)?);
        let activity_config = swg_activity::ActivityConfig::default();
        let (log, recorder) = swg_activity::ActivityLog::open(
            &workdir.join("activity.sqlite"),
            &activity_config,
            &registry,
        )?;
        let events = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let event_sink: Arc<dyn EventSink> =
            if std::env::var("SWG_BENCH_ACTIVITY").as_deref() == Ok("off") {
                Arc::new(Counted {
                    inner: None,
                    count: events.clone(),
                })
            } else {
                Arc::new(Counted {
                    inner: Some(ActivityEvents::new(recorder)),
                    count: events.clone(),
                })
            };

        let backends = Backends {
            identifier: Arc::new(SwgIdentifier::new(
                signer,
                Arc::new(LiveKeys::new()),
                policies.clone(),
            )),
            policy: Arc::new(SwgPolicy::new(policies)),
            events: event_sink,
            hints: Arc::new(NoHints),
        };
        let config = DnsConfig {
            udp_listen: listen,
            tcp_listen: listen,
            upstreams: vec![upstream.clone()],
            udp_rate_limit_qps: 0,
            ..DnsConfig::default()
        };
        let server = DnsServer::start(config, backends, None, &registry).await?;
        println!("ready");

        tokio::signal::ctrl_c().await?;
        server.stop_accepting();
        log.flush().await;
        for family in registry.gather() {
            let name = family.name();
            if name.starts_with("swg_dns_") || name == "swg_activity_dropped_total" {
                for metric in family.get_metric() {
                    let labels: Vec<String> = metric
                        .get_label()
                        .iter()
                        .map(|label| format!("{}={}", label.name(), label.value()))
                        .collect();
                    let value = metric.get_counter().get_value();
                    if value > 0.0 || name == "swg_activity_dropped_total" {
                        println!("{name}{{{}}} {value}", labels.join(","));
                    }
                }
            }
        }
        println!(
            "events recorded: {}",
            events.load(std::sync::atomic::Ordering::Relaxed)
        );
        log.shutdown().await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
