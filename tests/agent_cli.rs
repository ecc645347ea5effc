//! `swg agent` on the command line, run as the built binary: argument checks
//! without a console, and queries, listeners and activity against a real `swg
//! serve`.

#![allow(clippy::unwrap_used)]

mod e2e;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A port that is already in use fails `swg agent run` before it enrols, so the
/// console never records a device for an agent that cannot serve.
#[test]
fn busy_listen_port_fails_before_enrolment() {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let address = busy.local_addr().expect("local address");
    // Nothing listens on port 1, so an enrolment attempt would fail with a
    // connection error instead.
    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args([
            "agent",
            "run",
            "--server",
            "https://127.0.0.1:1",
            "--auth-key",
            "swgk_unused",
            "--user",
            "alice",
            "--device",
            "laptop",
            "--listen",
            &address.to_string(),
        ])
        .env_remove("SWG_AGENT_AUTH_KEY")
        .output()
        .expect("run swg agent");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert!(!stderr.contains("enrol"), "{stderr}");
}

/// A console that does not answer is named with its address and port.
#[test]
fn refused_connection_names_the_address() {
    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args([
            "agent",
            "run",
            "--server",
            "https://127.0.0.1:1",
            "--auth-key",
            "swgk_unused",
            "--user",
            "alice",
            "--device",
            "laptop",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("SWG_AGENT_AUTH_KEY")
        .output()
        .expect("run swg agent");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot connect to 127.0.0.1:1:"),
        "{stderr}"
    );
}

/// Runs `swg agent` with `args` and no authentication key in the environment;
/// returns whether it succeeded, its standard output and its standard error.
fn swg_agent(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .arg("agent")
        .args(args)
        .env_remove("SWG_AGENT_AUTH_KEY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run swg agent");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Enrolment options for a console that does not exist: a test that gets as far
/// as enrolling fails with a connection error.
const NO_CONSOLE: [&str; 8] = [
    "--server",
    "https://127.0.0.1:1",
    "--auth-key",
    "swgk_unused",
    "--user",
    "alice",
    "--device",
    "laptop",
];

/// `--app ""` and an `--app` over 255 bytes are rejected before enrolment, since
/// swg would drop the empty one with the whole context option, and the long one
/// would be cut.
#[test]
fn invalid_app_is_rejected() {
    let long = "a".repeat(256);
    for app in ["", long.as_str()] {
        let mut args = vec!["query"];
        args.extend(NO_CONSOLE);
        args.extend(["--app", app, "example.com"]);
        let (success, _, stderr) = swg_agent(&args);
        assert!(!success, "{stderr}");
        assert!(stderr.contains("--app: invalid bundle id"), "{stderr}");
        assert!(stderr.contains("1 to 255 bytes"), "{stderr}");
        assert!(!stderr.contains("cannot connect"), "{stderr}");
    }
}

/// A record type that is neither a name nor a number is rejected before
/// enrolment, with the forms that are accepted.
#[test]
fn unknown_record_type_lists_accepted_forms() {
    let mut args = vec!["query"];
    args.extend(NO_CONSOLE);
    args.extend(["--type", "BOGUS", "example.com"]);
    let (success, _, stderr) = swg_agent(&args);
    assert!(!success, "{stderr}");
    assert!(stderr.contains("unknown record type \"BOGUS\""), "{stderr}");
    assert!(stderr.contains("TYPE65"), "{stderr}");
    assert!(!stderr.contains("cannot connect"), "{stderr}");
}

/// An invalid name is named, quoted, before enrolment.
#[test]
fn invalid_name_is_rejected_before_enrolment() {
    let mut args = vec!["query"];
    args.extend(NO_CONSOLE);
    args.push("exa mple..com");
    let (success, _, stderr) = swg_agent(&args);
    assert!(!success, "{stderr}");
    assert!(
        stderr.contains("invalid DNS name \"exa mple..com\""),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot connect"), "{stderr}");
}

/// The same `--listen` address twice is named as such, not as a busy port.
#[test]
fn listen_given_twice_is_rejected() {
    let mut args = vec!["run"];
    args.extend(NO_CONSOLE);
    args.extend([
        "--listen",
        "127.0.0.1:15299",
        "--listen",
        "127.0.0.1:15299=com.example.notes",
    ]);
    let (success, _, stderr) = swg_agent(&args);
    assert!(!success, "{stderr}");
    assert!(
        stderr.contains("--listen 127.0.0.1:15299 is given twice"),
        "{stderr}"
    );
}

/// A listener outside loopback needs `--allow-remote-clients`, since anyone who
/// reaches it resolves as the enrolled device.
#[test]
fn listen_outside_loopback_needs_flag() {
    let mut args = vec!["run"];
    args.extend(NO_CONSOLE);
    args.extend(["--listen", "0.0.0.0:0"]);
    let (success, _, stderr) = swg_agent(&args);
    assert!(!success, "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("--allow-remote-clients"), "{stderr}");
    assert!(!stderr.contains("cannot connect"), "{stderr}");
}

/// A `swg serve` with a small policy, an upstream (dnsmasq) answering 127.0.0.2
/// for every name under `test`, shared by the tests of this file.
struct Gateway {
    swg: e2e::Swg,
    _upstream: e2e::Process,
    _folder: tempfile::TempDir,
}

impl Gateway {
    /// Returns the enrolment options for `user` and `device`.
    fn enrol_args(&self, user: &str, device: &str) -> Vec<String> {
        [
            "--server",
            &self.swg.console_url(),
            "--auth-key",
            &self.swg.auth_key,
            "--user",
            user,
            "--device",
            device,
            "--ca-file",
            &self.swg.root_pem().display().to_string(),
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect()
    }

    /// Runs `swg agent SUBCOMMAND` as `user` on `device` with `extra` arguments.
    fn agent(&self, subcommand: &str, user: &str, device: &str, extra: &[&str]) -> String {
        let mut args = vec![subcommand.to_owned()];
        args.extend(self.enrol_args(user, device));
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (success, stdout, stderr) = swg_agent(&args);
        assert!(success, "swg agent {args:?} failed:\n{stderr}");
        stdout
    }
}

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let folder = tempfile::Builder::new()
            .prefix("swg-agent-cli-")
            .tempdir()
            .unwrap();
        let upstream_port = e2e::free_port();
        let upstream = e2e::start_dnsmasq("127.0.0.1", upstream_port, &[("test", "127.0.0.2")]);
        let ports = e2e::Ports::pick();
        let config = write_config(folder.path(), ports, upstream_port);
        let swg = e2e::Swg::launch(folder.path(), &config, ports);
        assert!(
            !swg.auth_key.is_empty(),
            "no authentication key printed:\n{}",
            swg.process.log().join("\n")
        );
        Gateway {
            swg,
            _upstream: upstream,
            _folder: folder,
        }
    })
}

/// Writes the policy and `swg.toml` into `folder`; returns the configuration path.
fn write_config(folder: &Path, ports: e2e::Ports, upstream_port: u16) -> std::path::PathBuf {
    let policy = folder.join("policy.toml");
    std::fs::write(
        &policy,
        r#"id = "acme"
name = "Acme"

[[policies]]
id = "everyone"

[policies.block]
domains = ["blocked.test"]
"#,
    )
    .unwrap();
    let config = folder.join("swg.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"

[operations]
listen = "127.0.0.1:{operations}"

[policy]
files = ["{policy}"]

[activity]
batch_interval_ms = 50

[console]
listen = "127.0.0.1:{console}"
doh_url = "https://localhost:{doh}/dns-query"
console_url = "https://localhost:{console}"
proxy = "localhost:{explicit}"

[dns]
doh_listen = "127.0.0.1:{doh}"
udp_listen = "127.0.0.1:{dns}"
tcp_listen = "127.0.0.1:{dns}"
upstreams = ["udp://127.0.0.1:{upstream_port}"]
udp_rate_limit_qps = 0

[proxy]
tls_listen = "127.0.0.1:{tls}"
http_listen = "127.0.0.1:{http}"
explicit_listen = "127.0.0.1:{explicit}"
"#,
            data = folder.join("data").display(),
            operations = ports.operations,
            policy = policy.display(),
            console = ports.console,
            doh = ports.doh,
            dns = ports.dns,
            tls = ports.tls,
            http = ports.http,
            explicit = ports.explicit,
        ),
    )
    .unwrap();
    config
}

/// `swg agent query` prints the Extended DNS Error of a blocked answer, and takes
/// record types as numbers and in the TYPEnnn form.
#[test]
fn query_prints_ede_and_takes_numeric_types() {
    let gateway = gateway();

    let blocked = gateway.agent(
        "query",
        "alice@acme",
        "laptop-a",
        &["--app", "com.example.notes", "blocked.test"],
    );
    assert!(blocked.contains("0.0.0.0"), "{blocked}");
    assert!(
        blocked.contains("; EDE: 15 (Blocked): action=block;"),
        "{blocked}"
    );

    let numbered = gateway.agent(
        "query",
        "alice@acme",
        "laptop-a",
        &["--type", "TYPE1", "blocked.test"],
    );
    assert!(numbered.contains("blocked.test. IN A"), "{numbered}");
    let https = gateway.agent(
        "query",
        "alice@acme",
        "laptop-a",
        &["--type", "65", "www.test"],
    );
    assert!(https.contains("www.test. IN HTTPS"), "{https}");
}

/// `swg agent activity` shows the events of the token's user on its device, never
/// another user's events on a device id that user names.
#[test]
fn activity_shows_only_own_events() {
    let gateway = gateway();
    gateway.agent(
        "query",
        "carol@acme",
        "laptop-c",
        &["--app", "com.example.notes", "blocked.test"],
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let own = loop {
        let text = gateway.agent("activity", "carol@acme", "laptop-c", &[]);
        if text.contains("blocked.test") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(own.contains("blocked.test"), "{own}");
    assert!(own.contains("carol@acme"), "{own}");

    let other: serde_json::Value =
        serde_json::from_str(&gateway.agent("activity", "mallory@acme", "laptop-c", &[])).unwrap();
    assert_eq!(other["events"], serde_json::json!([]), "{other:#}");
}

/// A listener on port 0 gets one port for UDP and TCP, and logs that port.
#[test]
fn port_zero_listener_logs_bound_port() {
    let gateway = gateway();
    let mut command = Command::new(env!("CARGO_BIN_EXE_swg"));
    command
        .args(["agent", "run"])
        .args(gateway.enrol_args("alice@acme", "laptop-p"))
        .args(["--listen", "127.0.0.1:0=com.example.notes"])
        .env_remove("SWG_AGENT_AUTH_KEY")
        .env("RUST_LOG", "info");
    let agent = e2e::Process::spawn("swg agent port 0", &mut command);
    let line = agent.wait_for("agent DNS proxy listening", Duration::from_secs(30));

    let port: u16 = line
        .split("listen=127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert_ne!(port, 0, "{line}");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(e2e::dig_a(address, "www.test"), vec!["127.0.0.2"]);
    let tcp = e2e::run(
        Command::new(e2e::require_tool("dig"))
            .args(["@127.0.0.1", "-p", &port.to_string()])
            .args(["+tcp", "+short", "+tries=1", "+time=5", "A", "www.test"]),
    );
    assert_eq!(tcp.trim(), "127.0.0.2");
}

/// A reader that closes standard output early (`swg agent activity | head`) ends
/// the command quietly, without a panic.
#[test]
fn closed_stdout_is_no_panic() {
    let gateway = gateway();
    let mut child = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(["agent", "activity"])
        .args(gateway.enrol_args("alice@acme", "laptop-a"))
        .env_remove("SWG_AGENT_AUTH_KEY")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run swg agent activity");
    drop(child.stdout.take());
    let output = child
        .wait_with_output()
        .expect("wait for swg agent activity");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A missing `--ca-file` names where swg keeps its root CA.
#[test]
fn missing_ca_file_names_the_root_ca_path() {
    let mut args = vec!["query"];
    args.extend(NO_CONSOLE);
    args.extend(["--ca-file", "swg-data/ca.pem", "example.com"]);
    let (success, _, stderr) = swg_agent(&args);
    assert!(!success, "{stderr}");
    assert!(stderr.contains("swg-data/ca.pem"), "{stderr}");
    assert!(stderr.contains("ca/root-cert.pem"), "{stderr}");
}
