//! Shared fixture of the end-to-end tests: a real upstream DNS server (dnsmasq), a
//! real HTTPS origin (nginx) with a test CA made by openssl, the built `swg serve`
//! with a test configuration and policy, and `swg agent run` processes, all on
//! loopback. Clients are dig, curl and headless Chromium.
//!
//! Every child process is watched by a small shell loop that ends it when the test
//! binary exits, because a fixture kept in a `static` is never dropped.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Tenant id of the test policy.
pub const TENANT: &str = "e2e";
/// A built-in browser bundle id (Safari on iOS).
pub const BROWSER_APP: &str = "com.apple.mobilesafari";
/// An app that is neither a browser nor on any list.
pub const PLAIN_APP: &str = "com.example.notes";
/// The test policy's trusted app.
pub const TRUSTED_APP: &str = "com.example.trusted";
/// The test policy's bypassed app.
pub const BYPASSED_APP: &str = "com.example.bypassed";
/// Address the agent's "system resolver" listens on (port 53, inside the agent's own
/// mount namespace where `/etc/resolv.conf` names it).
pub const SYSTEM_RESOLVER_IP: &str = "127.77.0.53";
/// What the system resolver answers for every name, so a test can tell it from the
/// gateway's upstream (which answers 127.0.0.1).
pub const SYSTEM_RESOLVER_ANSWER: &str = "127.0.0.77";
/// Loopback address of the origin: the upstream answers it for every test name, so a
/// real answer (this) differs from a steered one (the proxy, 127.0.0.1).
pub const ORIGIN_IP: &str = "127.0.0.2";
/// Size of `/slow/big.bin` on the origin, sent at [`SLOW_RATE`] bytes a second, so a
/// download takes about two seconds.
pub const SLOW_BYTES: usize = 128 * 1024;
/// nginx `limit_rate` of `/slow/`.
pub const SLOW_RATE: &str = "64k";
/// Body marker nginx puts in every page.
pub const ORIGIN_MARKER: &str = "e2e origin content";

/// Fails the test with a clear message when a system tool is missing.
pub fn require_tool(name: &str) -> PathBuf {
    for folder in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let path = Path::new(folder).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is missing: install its Debian package (see .ci/run)");
}

/// Returns a port on 127.0.0.1 that is free for both TCP and UDP and that this test
/// process has not handed out before.
///
/// The port is released before the caller binds it, so the kernel may offer it again
/// to the next `bind(0)`. Remembering every port handed out keeps two listeners of
/// one test binary off the same port. Another process can still take it meanwhile.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1000 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if !handed_out.contains(&port) && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// Runs a command to completion and returns its standard output; panics with its
/// standard error when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run {command:?}: {error}");
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A child process ended when dropped and, through a watcher, when the test binary
/// exits; its output lines are collected.
pub struct Process {
    name: String,
    child: Mutex<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    arrivals: Mutex<mpsc::Receiver<String>>,
}

/// Folder of this test process's log files, removed by a watcher a few seconds after
/// the process has exited.
fn log_folder() -> &'static Path {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let folder = std::env::temp_dir().join(format!("swg-e2e-logs-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        watch_parent(&format!("sleep 5; rm -rf '{}'", folder.display()), None);
        folder
    })
}

/// Starts a shell loop that runs `then` once this test process has exited (or, with
/// `child`, once that process has exited too).
fn watch_parent(then: &str, child: Option<u32>) {
    let alive = match child {
        Some(child) => format!(
            "kill -0 {} 2>/dev/null && kill -0 {child} 2>/dev/null",
            std::process::id()
        ),
        None => format!("kill -0 {} 2>/dev/null", std::process::id()),
    };
    // The watcher must outlive this process, so nothing waits for it.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &format!("while {alive}; do sleep 1; done; {then}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

impl Process {
    /// Starts `command` with its output going to a log file, and a watcher that sends
    /// it SIGTERM when this test process is gone.
    ///
    /// Output goes to a file rather than a pipe so that a process outliving the test
    /// (a fixture in a `static`) never writes into a closed pipe.
    pub fn spawn(name: &str, command: &mut Command) -> Process {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file_name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = log_folder().join(format!("{sequence:03}-{file_name}.log"));
        let file = std::fs::File::create(&path).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        watch_parent(
            &format!("kill {} 2>/dev/null", child.id()),
            Some(child.id()),
        );
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, arrivals) = mpsc::channel();
        let reader_lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            let Ok(file) = std::fs::File::open(&path) else {
                return;
            };
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            loop {
                match reader.read_line(&mut line) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                    Ok(_) if line.ends_with('\n') => {
                        let complete = line.trim_end().to_owned();
                        line.clear();
                        reader_lines.lock().unwrap().push(complete.clone());
                        if sender.send(complete).is_err() {
                            return;
                        }
                    }
                    // Half a line: wait for the rest.
                    Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => return,
                }
            }
        });
        Process {
            name: name.to_owned(),
            child: Mutex::new(child),
            lines,
            arrivals: Mutex::new(arrivals),
        }
    }

    /// Returns every output line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for an output line containing `needle` (including lines seen before) and
    /// returns it; panics with the output when the line does not come.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.try_wait_for(needle, timeout)
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// Waits for an output line containing `needle` and returns it, or a message with
    /// the output when the process exits or `timeout` passes first.
    pub fn try_wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
            return Ok(line);
        }
        let arrivals = self.arrivals.lock().unwrap();
        let mut exited = None;
        while Instant::now() < deadline {
            match arrivals.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) if exited.is_some() => break,
                // One more round after the exit, so the last lines arrive.
                Err(_) => exited = self.exited(),
            }
        }
        Err(format!(
            "{}: no line with {needle:?} within {timeout:?}; exit status: {exited:?}; output:\n{}",
            self.name,
            self.log().join("\n")
        ))
    }

    /// Returns the exit status once the process has ended.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    /// Returns the process id.
    pub fn id(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with the shell's `kill` builtin.
    pub fn signal(&self, signal: &str) {
        run(Command::new("sh").args(["-c", &format!("kill -{signal} {}", self.id())]));
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                // Give the reader thread the time to reach the end of the log.
                std::thread::sleep(Duration::from_millis(200));
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}; output:\n{}",
                    self.name,
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("sh")
                .args(["-c", &format!("kill {}", child.id())])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The test CA and the origin's certificate, made with the openssl command.
pub struct TestCa {
    /// PEM of the test root, handed to swg as an extra root.
    pub root_pem: PathBuf,
    /// The origin's certificate chain (leaf then root).
    pub origin_chain: PathBuf,
    /// The origin's private key.
    pub origin_key: PathBuf,
}

impl TestCa {
    /// Makes a root and a leaf whose SANs are `names`.
    pub fn create(folder: &Path, names: &[&str]) -> TestCa {
        let openssl = require_tool("openssl");
        let path = |name: &str| folder.join(name);
        run(Command::new(&openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=swg e2e test origin root",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
            ])
            .arg(path("test-root-key.pem"))
            .arg("-out")
            .arg(path("test-root.pem")));
        run(Command::new(&openssl)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=swg e2e origin",
                "-keyout",
            ])
            .arg(path("origin-key.pem"))
            .arg("-out")
            .arg(path("origin.csr")));
        let sans: Vec<String> = names.iter().map(|name| format!("DNS:{name}")).collect();
        std::fs::write(
            path("origin.ext"),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                sans.join(",")
            ),
        )
        .unwrap();
        run(Command::new(&openssl)
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(path("origin.csr"))
            .arg("-CA")
            .arg(path("test-root.pem"))
            .arg("-CAkey")
            .arg(path("test-root-key.pem"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(path("origin.ext"))
            .arg("-out")
            .arg(path("origin.pem")));
        let chain = format!(
            "{}{}",
            std::fs::read_to_string(path("origin.pem")).unwrap(),
            std::fs::read_to_string(path("test-root.pem")).unwrap()
        );
        std::fs::write(path("origin-chain.pem"), chain).unwrap();
        TestCa {
            root_pem: path("test-root.pem"),
            origin_chain: path("origin-chain.pem"),
            origin_key: path("origin-key.pem"),
        }
    }
}

/// Base64 of the SHA-256 of a certificate's SubjectPublicKeyInfo, the form Chromium's
/// `--ignore-certificate-errors-spki-list` takes.
pub fn spki_sha256_base64(certificate: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl base64 -A",
        certificate.display()
    );
    let hash = run(Command::new("sh").args(["-c", &script]));
    let hash = hash.trim().to_owned();
    assert_eq!(hash.len(), 44, "not a base64 SHA-256: {hash:?}");
    hash
}

/// dnsmasq on `listen_ip:port` answering each `(domain, address)` pair for the domain
/// and its subdomains (the longest matching domain wins), with no upstream of its own.
pub fn start_dnsmasq(listen_ip: &str, port: u16, answers: &[(&str, &str)]) -> Process {
    let mut command = dnsmasq_command(listen_ip, port, answers);
    let process = Process::spawn("dnsmasq", &mut command);
    process.wait_for("started, version", Duration::from_secs(10));
    process
}

/// Builds the dnsmasq command of [`start_dnsmasq`].
fn dnsmasq_command(listen_ip: &str, port: u16, answers: &[(&str, &str)]) -> Command {
    let dnsmasq = require_tool("dnsmasq");
    let mut command = Command::new(dnsmasq);
    command.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--bind-interfaces",
        "--user=root",
        "--pid-file",
        "--log-queries",
        "--log-facility=-",
    ]);
    command.arg(format!("--listen-address={listen_ip}"));
    command.arg(format!("--port={port}"));
    for (domain, address) in answers {
        command.arg(format!("--address=/{domain}/{address}"));
    }
    command
}

/// Starts the agents' system resolver, retrying for a few seconds while the address is
/// still taken by the resolver of a test binary that has just exited (its watcher
/// stops it within about a second).
fn start_system_resolver() -> Process {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut command =
            dnsmasq_command(SYSTEM_RESOLVER_IP, 53, &[("test", SYSTEM_RESOLVER_ANSWER)]);
        let process = Process::spawn("system resolver (dnsmasq)", &mut command);
        match process.try_wait_for("started, version", Duration::from_secs(10)) {
            Ok(_) => return process,
            Err(message) if Instant::now() > deadline => panic!("{message}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// nginx serving HTTPS on 127.0.0.1:`port` with the origin certificate; every page is
/// a small HTML document naming the host and path.
pub fn start_nginx(folder: &Path, port: u16, ca: &TestCa) -> Process {
    let nginx = require_tool("nginx");
    let prefix = folder.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::create_dir_all(prefix.join("tmp")).unwrap();
    std::fs::create_dir_all(prefix.join("www/slow")).unwrap();
    std::fs::write(prefix.join("www/slow/big.bin"), vec![b'x'; SLOW_BYTES]).unwrap();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen {ORIGIN_IP}:{port} ssl http2;
        server_name _;
        ssl_certificate {chain};
        ssl_certificate_key {key};
        location /slow/ {{
            root {prefix}/www;
            limit_rate {SLOW_RATE};
        }}
        location / {{
            default_type text/html;
            return 200 "<!doctype html><html><head><title>e2e origin</title></head><body><h1>{marker}</h1><p id=where>$host$uri</p></body></html>";
        }}
    }}
}}
"#,
        prefix = prefix.display(),
        chain = ca.origin_chain.display(),
        key = ca.origin_key.display(),
        marker = ORIGIN_MARKER,
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let process = Process::spawn(
        "nginx",
        Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .arg("-c")
            .arg(&conf_path),
    );
    wait_for_tcp(
        SocketAddr::from(([127, 0, 0, 2], port)),
        Duration::from_secs(10),
    );
    process
}

/// Waits until something accepts TCP connections on `address`.
pub fn wait_for_tcp(address: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loopback ports of one swg instance.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub operations: u16,
    pub console: u16,
    pub doh: u16,
    pub dns: u16,
    pub tls: u16,
    pub http: u16,
    pub explicit: u16,
}

impl Ports {
    pub fn pick() -> Ports {
        Ports {
            operations: free_port(),
            console: free_port(),
            doh: free_port(),
            dns: free_port(),
            tls: free_port(),
            http: free_port(),
            explicit: free_port(),
        }
    }
}

/// Returns the test policy: block lists, the phishing feed from the shared threat data, a
/// gambling feed with a warn action (names and one URL rule), and the app lists.
pub fn policy_text(feeds: &Path, phishing_feed: &Path) -> String {
    format!(
        r#"id = "{TENANT}"
name = "End-to-end tenant"
trusted_apps = ["{TRUSTED_APP}"]
bypassed_apps = ["{BYPASSED_APP}"]

[exceptions]
cidrs = ["{IP_EXCEPTION_ADDRESS}/32"]

# Plain DNS from this machine is answered as this location.
[[locations]]
id = "loopback"
cidrs = ["127.0.0.0/8"]

[[feeds]]
id = "phishing"
path = "{phishing}"
format = "domains"
category = "phishing"

[[feeds]]
id = "gambling"
path = "{feeds}/gambling.txt"
format = "domains"
category = "gambling"

[[feeds]]
id = "gambling-urls"
path = "{feeds}/gambling-urls.txt"
format = "adblock"
category = "gambling"

[[policies]]
id = "everyone"

[policies.block]
domains = ["blocked.test"]
urls = ["www.shop.test/blocked/"]

[policies.security]
mode = "all"
action = "block"

[policies.content]
mode = "custom"
warn = ["gambling"]
"#,
        phishing = phishing_feed.display(),
        feeds = feeds.display(),
    )
}

/// Returns the path of the shared phishing list, loaded as real threat data.
pub fn phishing_list() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/phishing-domains.txt"
    ))
}

/// Returns the first domain of the phishing list. Tests reach it only through the
/// local upstream and Chromium's host mapping, never on the real host.
pub fn a_phishing_domain() -> String {
    std::fs::read_to_string(phishing_list())
        .unwrap()
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#') && !line.contains('*'))
        .unwrap()
        .to_owned()
}

/// A name whose upstream address lies in the test policy's IP exceptions.
pub const IP_EXCEPTION_NAME: &str = "ip-exception.test";
/// The upstream address of [`IP_EXCEPTION_NAME`].
pub const IP_EXCEPTION_ADDRESS: &str = "127.0.0.3";

/// Names on the origin's certificate.
///
/// rustls-webpki matches a wildcard only with at least two labels after it, so the
/// names the proxy forwards to sit under `web.test` and `shop.test`.
pub const ORIGIN_NAMES: &[&str] = &["*.web.test", "*.shop.test", "*.casino.test", "casino.test"];

/// A running `swg serve` with its folder, ports and the secrets it printed.
pub struct Swg {
    pub process: Process,
    pub ports: Ports,
    pub folder: PathBuf,
    pub config: PathBuf,
    pub admin_token: String,
    pub auth_key: String,
}

impl Swg {
    /// Writes `swg.toml` into `folder` and starts `swg serve` there.
    pub fn start(
        folder: &Path,
        ports: Ports,
        upstream_port: u16,
        extra_root: &Path,
        policy: &Path,
    ) -> Swg {
        let config = folder.join("swg.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"

[operations]
listen = "127.0.0.1:{operations}"

[policy]
files = ["{policy}"]
poll_interval_ms = 200

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
proxy_ipv4 = "127.0.0.1"
udp_rate_limit_qps = 0

[proxy]
tls_listen = "127.0.0.1:{tls}"
http_listen = "127.0.0.1:{http}"
explicit_listen = "127.0.0.1:{explicit}"
allowed_destinations = ["{ORIGIN_IP}/32"]
extra_roots = ["{root}"]
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
                root = extra_root.display(),
            ),
        )
        .unwrap();
        let swg = Swg::launch(folder, &config, ports);
        assert!(
            !swg.admin_token.is_empty(),
            "no admin token printed:\n{}",
            swg.process.log().join("\n")
        );
        swg
    }

    /// Starts `swg serve` with an existing configuration (a restart keeps the data
    /// folder, so no secrets are printed: `admin_token` and `auth_key` stay empty).
    pub fn launch(folder: &Path, config: &Path, ports: Ports) -> Swg {
        let process = Process::spawn(
            "swg serve",
            Command::new(env!("CARGO_BIN_EXE_swg"))
                .arg("serve")
                .arg("--config")
                .arg(config)
                .current_dir(folder)
                .env("RUST_LOG", "info"),
        );
        process.wait_for("swg is ready", Duration::from_secs(60));
        let secret = |label: &str| {
            process
                .log()
                .iter()
                .find(|line| line.contains(label))
                .and_then(|line| line.rsplit(' ').next().map(str::to_owned))
                .unwrap_or_default()
        };
        let admin_token = secret("admin token (for the admin API)");
        let auth_key = secret("authentication key (for agents");
        Swg {
            process,
            ports,
            folder: folder.to_owned(),
            config: config.to_owned(),
            admin_token,
            auth_key,
        }
    }

    /// Returns the path of the swg root CA (PEM) in the data folder.
    pub fn root_pem(&self) -> PathBuf {
        self.folder.join("data/ca/root-cert.pem")
    }

    /// `https://localhost:<console>`.
    pub fn console_url(&self) -> String {
        format!("https://localhost:{}", self.ports.console)
    }

    /// GETs a console path with the admin token; returns the status and body bytes.
    pub fn admin_get(&self, path: &str) -> (u16, Vec<u8>) {
        curl_get(
            &format!("{}{path}", self.console_url()),
            &self.root_pem(),
            Some(&self.admin_token),
        )
    }

    /// Fetches the activity events of `device` (newest first) with the admin token.
    pub fn activity_of_device(&self, device: &str) -> Vec<serde_json::Value> {
        let (status, body) = self.admin_get(&format!("/api/activity?device={device}&limit=1000"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the activity of `device` until `done` holds, for at most `timeout`.
    pub fn wait_activity(
        &self,
        device: &str,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.activity_of_device(device);
            if done(&events) || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `curl` GET with an optional bearer token, trusting `cacert`; returns status and body.
pub fn curl_get(url: &str, cacert: &Path, bearer: Option<&str>) -> (u16, Vec<u8>) {
    let mut command = Command::new(require_tool("curl"));
    command
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(cacert);
    if let Some(token) = bearer {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    command.args(["--write-out", "\n%{http_code}", url]);
    let output = command.output().unwrap();
    let mut body = output.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or_else(|| {
        panic!(
            "curl {url} printed no status: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let status = String::from_utf8_lossy(&body[split + 1..])
        .trim()
        .parse()
        .unwrap();
    body.truncate(split);
    (status, body)
}

/// A running `swg agent run` with one plain DNS listener per app.
pub struct Agent {
    pub process: Process,
    /// Listener address per bundle id.
    pub listeners: Vec<(String, SocketAddr)>,
    pub user: String,
    pub device: String,
}

impl Agent {
    /// Enrols as `user`/`device` and listens once per bundle id. The agent runs in its
    /// own mount namespace whose `/etc/resolv.conf` names [`SYSTEM_RESOLVER_IP`], so
    /// bypassed apps reach a local server, never the machine's resolvers.
    pub fn start(swg: &Swg, folder: &Path, user: &str, device: &str, apps: &[&str]) -> Agent {
        let resolv = folder.join(format!("resolv-{device}.conf"));
        std::fs::write(&resolv, format!("nameserver {SYSTEM_RESOLVER_IP}\n")).unwrap();
        let listeners: Vec<(String, SocketAddr)> = apps
            .iter()
            .map(|app| {
                (
                    (*app).to_owned(),
                    SocketAddr::from(([127, 0, 0, 1], free_port())),
                )
            })
            .collect();
        let mut script = String::from("mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"");
        script.push('\n');
        let mut command = Command::new(require_tool("unshare"));
        command
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(&resolv)
            .arg(env!("CARGO_BIN_EXE_swg"))
            .args(["agent", "run", "--server", &swg.console_url()])
            .args([
                "--auth-key",
                &swg.auth_key,
                "--user",
                user,
                "--device",
                device,
            ])
            .arg("--ca-file")
            .arg(swg.root_pem());
        for (app, address) in &listeners {
            command.arg("--listen").arg(format!("{address}={app}"));
        }
        command.env("RUST_LOG", "info");
        let process = Process::spawn(&format!("swg agent {device}"), &mut command);
        process.wait_for("enrolled", Duration::from_secs(30));
        for (_, address) in &listeners {
            wait_for_tcp(*address, Duration::from_secs(10));
        }
        Agent {
            process,
            listeners,
            user: user.to_owned(),
            device: device.to_owned(),
        }
    }

    /// Returns the listener address of `app`.
    pub fn listener(&self, app: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(bundle, _)| bundle == app)
            .map(|(_, address)| *address)
            .unwrap_or_else(|| panic!("no listener for {app}"))
    }

    /// Resolves `name` (A) with dig through the listener of `app`; returns the
    /// addresses of the answer.
    pub fn resolve(&self, app: &str, name: &str) -> Vec<String> {
        dig_a(self.listener(app), name)
    }
}

/// `dig +short A name` against `server`; returns the answer's addresses.
pub fn dig_a(server: SocketAddr, name: &str) -> Vec<String> {
    let output = run(Command::new(require_tool("dig"))
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+short", "+tries=1", "+time=5", "A", name]));
    output
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Writes the gambling feeds used by the test policy into `feeds`.
pub fn write_feeds(feeds: &Path) {
    std::fs::create_dir_all(feeds).unwrap();
    std::fs::write(feeds.join("gambling.txt"), "casino.test\n").unwrap();
    std::fs::write(
        feeds.join("gambling-urls.txt"),
        "||mixed.web.test/casino^\n",
    )
    .unwrap();
}

/// The whole test bed: upstream DNS, system resolver, origin, gateway and an agent with
/// one listener per kind of app.
pub struct Bed {
    pub folder: tempfile::TempDir,
    pub ca: TestCa,
    pub upstream: Process,
    pub upstream_port: u16,
    pub system_resolver: Option<Process>,
    pub origin: Process,
    pub origin_port: u16,
    pub swg: Swg,
    pub phishing: String,
    pub policy: PathBuf,
}

impl Bed {
    /// Starts everything except agents; `system_resolver` also starts the agents'
    /// system resolver on [`SYSTEM_RESOLVER_IP`] port 53 (one per machine at a time).
    pub fn start(with_system_resolver: bool) -> Bed {
        let folder = tempfile::Builder::new()
            .prefix("swg-e2e-")
            .tempdir()
            .unwrap();
        // A bed kept in a `static` is never dropped; remove its folder after the test.
        watch_parent(
            &format!("sleep 5; rm -rf '{}'", folder.path().display()),
            None,
        );
        let ca = TestCa::create(folder.path(), ORIGIN_NAMES);
        let phishing = a_phishing_domain();
        let upstream_port = free_port();
        let upstream = start_dnsmasq(
            "127.0.0.1",
            upstream_port,
            &[
                ("test", ORIGIN_IP),
                (&phishing, ORIGIN_IP),
                (IP_EXCEPTION_NAME, IP_EXCEPTION_ADDRESS),
            ],
        );
        let system_resolver = with_system_resolver.then(start_system_resolver);
        let origin_port = free_port();
        let origin = start_nginx(folder.path(), origin_port, &ca);
        let feeds = folder.path().join("feeds");
        write_feeds(&feeds);
        let policy = folder.path().join("policy.toml");
        std::fs::write(&policy, policy_text(&feeds, &phishing_list())).unwrap();
        let swg = Swg::start(
            folder.path(),
            Ports::pick(),
            upstream_port,
            &ca.root_pem,
            &policy,
        );
        Bed {
            folder,
            ca,
            upstream,
            upstream_port,
            system_resolver,
            origin,
            origin_port,
            swg,
            phishing,
            policy,
        }
    }

    /// Starts an agent for `device` with a listener per app.
    pub fn agent(&self, user: &str, device: &str, apps: &[&str]) -> Agent {
        Agent::start(&self.swg, self.folder.path(), user, device, apps)
    }
}
