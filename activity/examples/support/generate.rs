//! Synthetic events for the benchmarks, with skewed users, apps, hosts and actions
//! roughly like a gateway's traffic.

use swg_activity::{Action, AppClass, Discovery, Event, RequestId, Via};
use time::OffsetDateTime;

/// Tenant that receives most events, the one the query benchmarks search.
pub(crate) const MAIN_TENANT: &str = "acme";

/// splitmix64: a fast deterministic generator, so runs are repeatable.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a float in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns an index in 0..n, skewed towards 0 (cube of a uniform value).
    pub(crate) fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u) * n as f64) as usize
    }
}

pub(crate) const DEVICES: usize = 3_000;
pub(crate) const APPS: usize = 60;
pub(crate) const HOSTS: usize = 20_000;
pub(crate) const CATEGORIES: usize = 60;

pub(crate) fn device_name(n: usize) -> String {
    format!("DEV{n:06}")
}

pub(crate) fn user_name(device: usize) -> String {
    format!("user{}@acme.example", device / 2)
}

pub(crate) fn app_name(n: usize) -> String {
    if n == 0 {
        "com.apple.mobilesafari".to_owned()
    } else {
        format!("com.vendor{n}.app")
    }
}

pub(crate) fn host_name(n: usize) -> String {
    format!("site{n}.example{}.com", n % 97)
}

fn action(rng: &mut Rng) -> Action {
    match rng.unit() {
        x if x < 0.860 => Action::Allow,
        x if x < 0.920 => Action::Inspect,
        x if x < 0.970 => Action::Block,
        x if x < 0.985 => Action::Warn,
        x if x < 0.990 => Action::Accepted,
        x if x < 0.997 => Action::BypassIp,
        _ => Action::Unfiltered,
    }
}

/// Builds one event at `time`.
pub(crate) fn event(rng: &mut Rng, time: OffsetDateTime) -> Event {
    let tenant = if rng.unit() < 0.91 {
        MAIN_TENANT.to_owned()
    } else {
        format!("tenant-{}", rng.next_u64() % 9)
    };
    let device = rng.skewed(DEVICES);
    let app = rng.skewed(APPS);
    let host = host_name(rng.skewed(HOSTS));
    let action = action(rng);
    let via = if app == 0 && rng.unit() < 0.5 {
        Via::Proxy
    } else {
        Via::Dns
    };
    let request = match via {
        Via::Proxy => format!(
            "https://{host}/articles/{}?ref=home",
            rng.next_u64() % 100_000
        ),
        Via::Dns => host,
    };
    let mut categories = Vec::new();
    if matches!(action, Action::Block | Action::Warn | Action::Accepted) {
        categories.push(
            ["malware", "phishing", "adult", "gambling", "newly-seen"]
                [(rng.next_u64() % 5) as usize]
                .to_owned(),
        );
    } else if rng.unit() < 0.4 {
        categories.push(format!("cat{}", rng.skewed(CATEGORIES)));
    }
    let reason = match categories.first() {
        Some(category) => format!("category {category}"),
        None => "default allow".to_owned(),
    };

    Event {
        time,
        tenant,
        user: Some(user_name(device)),
        device: Some(device_name(device)),
        discovery: if via == Via::Proxy {
            Discovery::Cookie
        } else {
            Discovery::Token
        },
        app: Some(app_name(app)),
        app_class: if app == 0 {
            AppClass::Browser
        } else {
            AppClass::App
        },
        client_ip: Some(std::net::IpAddr::from([203, 0, 113, (device % 250) as u8])),
        device_ip: Some(std::net::IpAddr::from([
            10,
            0,
            (device / 250) as u8,
            (device % 250) as u8,
        ])),
        via,
        request,
        categories,
        policy: Some("default".to_owned()),
        rule: Some(format!("r-{}", rng.next_u64() % 40)),
        action,
        reason,
        request_id: RequestId::generate(),
    }
}
