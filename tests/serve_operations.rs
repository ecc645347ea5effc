//! End-to-end tests of the built `swg serve`: first start without a data
//! folder, the operations endpoints over real HTTP, reuse of the CA on the
//! next start, and clean exits on SIGTERM and SIGINT.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A running `swg serve` whose log lines arrive on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    fn start(folder: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_swg"))
            .arg("serve")
            .args(args)
            .current_dir(folder)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        forward_lines(child.stderr.take().unwrap(), sender.clone());
        // The first start prints the tenant's secrets on stdout.
        forward_lines(child.stdout.take().unwrap(), sender);
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Returns a log line containing `needle`, seen already or waited for: the
    /// components start concurrently, so their lines come in any order.
    fn line_with(&mut self, needle: &str) -> String {
        match self.log.iter().find(|line| line.contains(needle)) {
            Some(line) => line.clone(),
            None => self.wait_for(needle),
        }
    }

    /// Returns the operations listener's address from its start line.
    fn operations_address(&mut self) -> SocketAddr {
        let line = self.wait_for("operations listener started");
        let value = line
            .split("listen=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        value.parse().unwrap()
    }

    /// Sends a signal with the shell's `kill` builtin, which needs no
    /// package beyond `sh`.
    fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args(["-c", &format!("kill {name} {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait_exit(&mut self) -> i32 {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().unwrap();
        panic!("swg did not exit; log:\n{}", self.log.join("\n"));
    }
}

/// Sends each line that `output` yields to `sender`, on a thread of its own.
fn forward_lines(output: impl std::io::Read + Send + 'static, sender: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("http://{address}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Configuration that moves every listener to a free port, so that these tests run
/// while another swg uses the default ports on this machine.
const FREE_PORTS: &str = "[operations]\nlisten = \"127.0.0.1:0\"\n\
    [console]\nlisten = \"127.0.0.1:0\"\n\
    [dns]\ndoh_listen = \"127.0.0.1:0\"\nudp_listen = \"127.0.0.1:0\"\ntcp_listen = \"127.0.0.1:0\"\n\
    [proxy]\ntls_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\nexplicit_listen = \"127.0.0.1:0\"\n";

/// Writes `./swg.toml` with [`FREE_PORTS`].
fn write_free_port_config(folder: &Path) {
    std::fs::write(folder.join("swg.toml"), FREE_PORTS).unwrap();
}

/// Returns the address that follows `key` in `line`, such as `tcp=127.0.0.1:53`.
fn address_after(line: &str, key: &str) -> SocketAddr {
    let value = line.split(key).nth(1).unwrap();
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(value.len());
    value[..end].parse().unwrap()
}

/// Runs curl with `args` and returns the status code and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap_or(0), body.to_owned())
}

/// Sends one plain HTTP response per connection on loopback, on a thread of its
/// own: a stand-in origin.
fn start_origin() -> SocketAddr {
    use std::io::{Read as _, Write as _};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\norigin",
            );
        }
    });
    address
}

#[test]
fn proxy_refuses_every_listener_of_the_process() {
    let folder = tempfile::tempdir().unwrap();
    let config = format!("{FREE_PORTS}allowed_destinations = [\"127.0.0.0/8\"]\n");
    std::fs::write(folder.path().join("swg.toml"), config).unwrap();

    let mut server = Server::start(folder.path(), &[]);
    let operations = server.operations_address();
    let dns = server.line_with("DNS resolver listening");
    let explicit = address_after(&server.line_with("listener=\"explicit\""), "address=");
    let console = address_after(&server.line_with("console listening"), "address=");
    let key_line = server.line_with("authentication key (for agents");
    let key = key_line.rsplit(' ').next().unwrap().to_owned();

    let root = folder.path().join("swg-data/ca/root-cert.pem");
    let enrolment = format!(
        r#"{{"authenticationKey":"{key}","deviceId":"laptop-9","userId":"carol@example.com"}}"#
    );
    let (status, body) = curl(&[
        "--cacert",
        root.to_str().unwrap(),
        "-H",
        "content-type: application/json",
        "-d",
        &enrolment,
        &format!("https://localhost:{}/api/agent/enroll", console.port()),
    ]);
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = format!("http://{explicit}");
    let authorization = format!("Proxy-Authorization: Bearer {token}");
    let through_proxy = |url: &str| curl(&["-x", &proxy, "--proxy-header", &authorization, url]);

    // Loopback is allowed: an origin there is reached.
    let origin = start_origin();
    let (status, body) = through_proxy(&format!("http://{origin}/"));
    assert_eq!((status, body.as_str()), (200, "origin"));

    // The process's own listeners are not, whatever the allowed destinations.
    let own = [
        format!("http://{operations}/metrics"),
        format!("http://{console}/"),
        format!("http://{}/", address_after(&dns, "tcp=")),
        format!("http://{}/", address_after(&dns, "doh=Some(")),
        format!("http://{explicit}/"),
    ];
    for url in own {
        let (status, body) = through_proxy(&url);
        assert_eq!(status, 403, "{url}: {body}");
        assert!(body.contains("not allowed"), "{url}: {body}");
    }
}

#[test]
fn failed_first_start_shows_no_secrets() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("missing-root.pem");
    let config = FREE_PORTS.replace(
        "[dns]\n",
        &format!(
            "[dns]\nupstream_extra_roots = [\"{}\"]\n",
            missing.display()
        ),
    );
    std::fs::write(folder.path().join("swg.toml"), config).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .arg("serve")
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing-root.pem"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("authentication key"), "{stdout}");

    // Once the configuration is fixed, the next start shows them.
    write_free_port_config(folder.path());
    let mut server = Server::start(folder.path(), &[]);
    let key_line = server.line_with("authentication key (for agents");
    assert!(key_line.contains("swgk_"), "{key_line}");
    server.line_with("swg is ready");
}

#[tokio::test]
async fn first_start_serves_and_stops_on_sigterm() {
    let folder = tempfile::tempdir().unwrap();
    write_free_port_config(folder.path());

    let mut server = Server::start(folder.path(), &[]);
    server.wait_for("generated a new root CA");
    let address = server.operations_address();
    server.wait_for("swg is ready");

    assert_eq!(get(address, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(address, "/readyz").await, (200, "ready\n".to_owned()));
    let (status, metrics) = get(address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("swg_leaf_cache_entries 1"), "{metrics}");
    assert!(
        metrics.contains("swg_leaf_mint_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swg_leaf_cache_misses_total 1"),
        "{metrics}"
    );
    assert_eq!(get(address, "/nothing").await.0, 404);

    let key = folder.path().join("swg-data/ca/root-key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(folder.path().join("swg-data/ca/root-cert.pem").is_file());

    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0, "log:\n{}", server.log.join("\n"));
    assert!(server
        .log
        .iter()
        .any(|line| line.contains("signal=\"SIGTERM\"") || line.contains("signal=SIGTERM")));
    assert!(server.log.iter().any(|line| line.contains("swg stopped")));
}

#[tokio::test]
async fn second_start_reuses_ca_and_stops_on_sigint() {
    let folder = tempfile::tempdir().unwrap();
    let data = folder.path().join("state");
    let config = folder.path().join("custom.toml");
    std::fs::write(&config, FREE_PORTS).unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];

    let mut first = Server::start(folder.path(), &args);
    first.wait_for("swg is ready");
    let certificate = std::fs::read(data.join("ca/root-cert.pem")).unwrap();
    first.signal("-INT");
    assert_eq!(first.wait_exit(), 0);

    let mut second = Server::start(folder.path(), &args);
    second.wait_for("loaded the root CA");
    let address = second.operations_address();
    assert_eq!(get(address, "/healthz").await.0, 200);
    assert_eq!(
        std::fs::read(data.join("ca/root-cert.pem")).unwrap(),
        certificate
    );
    second.signal("-TERM");
    assert_eq!(second.wait_exit(), 0);
    assert!(
        !folder.path().join("swg-data").exists(),
        "--data-dir replaced the default folder"
    );
}

#[test]
fn unknown_key_stops_start_at_line() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("swg.toml"),
        "[operations]\nlisten = \"127.0.0.1:0\"\nport = 1\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .arg("serve")
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: swg.toml:3:1: unknown field `port`"),
        "{stderr}"
    );
    assert!(
        !folder.path().join("swg-data/ca").exists(),
        "nothing was generated"
    );
}

#[test]
fn data_dir_that_is_a_file_stops_start() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(["serve", "--data-dir", file.to_str().unwrap()])
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the path exists and is not a folder"),
        "{stderr}"
    );
}

#[test]
fn mismatched_key_stops_start() {
    let folder = tempfile::tempdir().unwrap();
    let data = folder.path().join("data");
    for name in ["one", "two"] {
        let status = Command::new(env!("CARGO_BIN_EXE_swg"))
            .args([
                "ca",
                "init",
                "--data-dir",
                folder.path().join(name).to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::create_dir_all(data.join("ca")).unwrap();
    std::fs::copy(
        folder.path().join("one/ca/root-cert.pem"),
        data.join("ca/root-cert.pem"),
    )
    .unwrap();
    std::fs::copy(
        folder.path().join("two/ca/root-key.pem"),
        data.join("ca/root-key.pem"),
    )
    .unwrap();
    write_free_port_config(folder.path());

    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("root-key.pem does not match the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("root-cert.pem"), "{stderr}");
}

#[test]
fn readable_key_file_is_warned_about() {
    let folder = tempfile::tempdir().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(["ca", "init"])
        .current_dir(folder.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(init.success());
    let key = folder.path().join("swg-data/ca/root-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_free_port_config(folder.path());

    let mut server = Server::start(folder.path(), &[]);
    let warning = server.wait_for("readable by other users");
    assert!(warning.contains("mode=0644"), "{warning}");
    server.wait_for("swg is ready");
    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0);
}

/// Sends one A query for `name` over UDP and waits up to 5 s for an answer with its id.
async fn dns_query(server: SocketAddr, name: &str) {
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&packet, server).await.unwrap();
    let mut answer = [0u8; 512];
    let (length, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut answer))
        .await
        .expect("no DNS answer within 5 s")
        .unwrap();
    assert!(length >= 12);
    assert_eq!(answer[..2], [0x12, 0x34]);
}

/// Polls `/readyz` until its status is `expected`, for up to 5 s, and returns its body.
async fn wait_for_readyz(address: SocketAddr, expected: u16) -> String {
    let mut last = (0, String::new());
    for _ in 0..50 {
        last = get(address, "/readyz").await;
        if last.0 == expected {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "/readyz stayed {} {:?}, expected {expected}",
        last.0, last.1
    );
}

#[tokio::test]
async fn failing_activity_writes_make_readyz_503() {
    let folder = tempfile::tempdir().unwrap();
    write_free_port_config(folder.path());
    let mut server = Server::start(folder.path(), &[]);
    let address = server.operations_address();
    let line = server.wait_for("DNS resolver listening");
    let dns: SocketAddr = line
        .split("udp=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    server.wait_for("swg is ready");
    assert_eq!(wait_for_readyz(address, 200).await, "ready\n");

    // Dropping the events table from outside makes every later insert fail.
    let database = rusqlite::Connection::open(folder.path().join("swg-data/activity.db")).unwrap();
    database.busy_timeout(Duration::from_secs(5)).unwrap();
    let schema: Vec<String> = database
        .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    database.execute_batch("DROP TABLE events").unwrap();

    // The demo policy blocks this name, so the answer needs no upstream.
    dns_query(dns, "blocked.example").await;
    let body = wait_for_readyz(address, 503).await;
    assert!(body.contains("activity events cannot be stored"), "{body}");

    for statement in &schema {
        database.execute_batch(statement).unwrap();
    }
    dns_query(dns, "blocked.example").await;
    assert_eq!(wait_for_readyz(address, 200).await, "ready\n");

    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0, "log:\n{}", server.log.join("\n"));
}

/// Returns the secret at the end of the first-start line that contains `label`.
fn printed_secret(server: &mut Server, label: &str) -> String {
    let line = server.line_with(label);
    line.rsplit(' ').next().unwrap().to_owned()
}

/// Calls the console at `port` with an admin token, trusting the root CA of `data`.
fn console_call(data: &Path, port: u16, token: &str, method: &str, path: &str) -> (u16, String) {
    let root = data.join("ca/root-cert.pem");
    let authorization = format!("Authorization: Bearer {token}");
    curl(&[
        "--cacert",
        root.to_str().unwrap(),
        "-X",
        method,
        "-H",
        &authorization,
        &format!("https://localhost:{port}{path}"),
    ])
}

/// Returns the ids of the authentication keys that `GET /api/keys` lists.
fn listed_key_ids(data: &Path, port: u16, token: &str) -> Vec<String> {
    let (status, body) = console_call(data, port, token, "GET", "/api/keys");
    assert_eq!(status, 200, "{body}");
    let keys: serde_json::Value = serde_json::from_str(&body).unwrap();
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn deleted_keys_stay_deleted_after_restart() {
    let folder = tempfile::tempdir().unwrap();
    let data = folder.path().join("swg-data");
    write_free_port_config(folder.path());

    let mut first = Server::start(folder.path(), &[]);
    let key = printed_secret(&mut first, "authentication key (for agents");
    let token = printed_secret(&mut first, "admin token (for the admin API)");
    let console = address_after(&first.line_with("console listening"), "address=");
    first.line_with("swg is ready");
    let ids = listed_key_ids(&data, console.port(), &token);
    assert_eq!(ids.len(), 1);
    for id in &ids {
        let path = format!("/api/keys/{id}");
        let (status, body) = console_call(&data, console.port(), &token, "DELETE", &path);
        assert_eq!(status, 204, "{body}");
    }
    assert!(listed_key_ids(&data, console.port(), &token).is_empty());
    first.signal("-TERM");
    assert_eq!(first.wait_exit(), 0);

    let mut second = Server::start(folder.path(), &[]);
    let console = address_after(&second.line_with("console listening"), "address=");
    second.line_with("swg is ready");
    assert!(listed_key_ids(&data, console.port(), &token).is_empty());
    let enrolment = format!(
        r#"{{"authenticationKey":"{key}","deviceId":"laptop-1","userId":"alice@example.com"}}"#
    );
    let root = data.join("ca/root-cert.pem");
    let (status, body) = curl(&[
        "--cacert",
        root.to_str().unwrap(),
        "-H",
        "content-type: application/json",
        "-d",
        &enrolment,
        &format!("https://localhost:{}/api/agent/enroll", console.port()),
    ]);
    assert_eq!(status, 401, "{body}");
    second.signal("-TERM");
    assert_eq!(second.wait_exit(), 0);
    let created = second
        .log
        .iter()
        .find(|line| line.contains("Created the first secrets") || line.contains("swgk_"));
    assert_eq!(created, None);
}

/// Clears the immutable attribute of a file when dropped, so the temporary folder
/// can be removed.
struct Mutable<'a>(&'a Path);

impl Drop for Mutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.0).status();
    }
}

/// Makes `path` read-only for every user: mode 0400 and, because root ignores
/// modes, the immutable attribute.
fn make_read_only(path: &Path) -> Mutable<'_> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let guard = Mutable(path);
    if std::fs::OpenOptions::new().write(true).open(path).is_ok() {
        let status = Command::new("chattr").arg("+i").arg(path).status().unwrap();
        assert!(
            status.success(),
            "chattr +i failed; run as a non-root user or with CAP_LINUX_IMMUTABLE"
        );
    }
    guard
}

/// Starts swg once in `folder` and stops it, so the data folder contains every file
/// of a used gateway.
fn start_and_stop(folder: &Path) -> Server {
    let mut server = Server::start(folder, &[]);
    server.wait_for("swg is ready");
    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0, "log:\n{}", server.log.join("\n"));
    server
}

#[test]
fn read_only_console_state_stops_start() {
    let folder = tempfile::tempdir().unwrap();
    write_free_port_config(folder.path());
    start_and_stop(folder.path());
    let database = folder.path().join("swg-data/console.db");
    let _guard = make_read_only(&database);

    let mut server = Server::start(folder.path(), &[]);
    assert_eq!(server.wait_exit(), 1, "log:\n{}", server.log.join("\n"));
    let error = server.line_with("error:");
    assert!(error.contains("swg-data/console.db"), "{error}");
    assert!(error.contains("not writable"), "{error}");
}

#[test]
fn corrupt_console_state_stops_start() {
    let folder = tempfile::tempdir().unwrap();
    write_free_port_config(folder.path());
    start_and_stop(folder.path());
    let database = folder.path().join("swg-data/console.db");
    std::fs::write(&database, b"this is not an SQLite database file").unwrap();

    let mut server = Server::start(folder.path(), &[]);
    assert_eq!(server.wait_exit(), 1, "log:\n{}", server.log.join("\n"));
    let error = server.line_with("error:");
    assert!(error.contains("swg-data/console.db"), "{error}");
    assert!(error.contains("backup"), "{error}");
    assert!(error.contains("move it aside"), "{error}");
}

#[test]
fn lost_secrets_are_warned_about() {
    let folder = tempfile::tempdir().unwrap();
    write_free_port_config(folder.path());
    let first = start_and_stop(folder.path());
    let warnings: Vec<&String> = first
        .log
        .iter()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert!(
        !warnings.iter().any(|line| line.contains("was missing")),
        "{warnings:?}"
    );

    // swg runs in `folder` with the default data folder, so it logs relative paths.
    let data = folder.path().join("swg-data");
    std::fs::remove_file(data.join("secrets/signing.key")).unwrap();
    let mut server = Server::start(folder.path(), &[]);
    let warning = server.line_with("signing key file was missing");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("path=swg-data/secrets/signing.key"),
        "{warning}"
    );
    assert!(warning.contains("swg-data/activity.db"), "{warning}");
    assert!(warning.contains("enrol"), "{warning}");
    server.line_with("swg is ready");
    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0);

    let console_state = data.join("console.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", console_state.display()));
    }
    let mut server = Server::start(folder.path(), &[]);
    let warning = server.line_with("console state was missing");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("path=swg-data/console.db"), "{warning}");
    assert!(warning.contains("no longer exist"), "{warning}");
    server.line_with("swg is ready");
    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn ca_init_force_names_restart() {
    let folder = tempfile::tempdir().unwrap();
    write_free_port_config(folder.path());
    let mut server = Server::start(folder.path(), &[]);
    server.wait_for("swg is ready");

    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(["ca", "init", "--force"])
        .current_dir(folder.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Created a new root CA."), "{stdout}");
    assert!(stdout.contains("keep using the old root CA"), "{stdout}");
    assert!(stdout.contains("restart"), "{stdout}");

    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0);
}

/// Runs `swg secrets` with `args` in `folder` and returns its exit success,
/// standard output and standard error.
fn swg_secrets(folder: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .arg("secrets")
        .args(args)
        .current_dir(folder)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn secrets_commands_seed_tenant_added_by_reload() {
    let folder = tempfile::tempdir().unwrap();
    let config = format!(
        "{FREE_PORTS}[policy]\nfiles = [\"alpha.toml\", \"beta.toml\"]\npoll_interval_ms = 100\n"
    );
    std::fs::write(folder.path().join("swg.toml"), config).unwrap();
    let policy = |id: &str| format!("id = \"{id}\"\n\n[[policies]]\nid = \"everyone\"\n");
    std::fs::write(folder.path().join("alpha.toml"), policy("alpha")).unwrap();
    std::fs::write(folder.path().join("beta.toml"), policy("beta")).unwrap();
    let data = folder.path().join("swg-data");

    let mut server = Server::start(folder.path(), &[]);
    let console = address_after(&server.line_with("console listening"), "address=");
    server.line_with("swg is ready");
    std::fs::write(folder.path().join("beta.toml"), policy("gamma")).unwrap();
    let added = server.wait_for("tenant added to the policy");
    assert!(added.contains("gamma"), "{added}");

    let (success, stdout, stderr) = swg_secrets(
        folder.path(),
        &["admin-token", "--tenant", "gamma", "--role", "read-only"],
    );
    assert!(success, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("authentication key "), "{stdout}");
    assert!(
        lines[1].contains("(admin) for tenant gamma: swga_"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("(read_only) for tenant gamma: swga_"),
        "{stdout}"
    );
    assert!(stderr.contains("first secrets"), "{stderr}");
    let admin = lines[1].rsplit(' ').next().unwrap();
    let read_only = lines[2].rsplit(' ').next().unwrap();

    // The running swg accepts both tokens and lists the first key.
    let keys = listed_key_ids(&data, console.port(), read_only);
    assert_eq!(keys.len(), 1);
    let (status, body) = console_call(&data, console.port(), admin, "POST", "/api/keys");
    assert_eq!(status, 201, "{body}");

    // Once seeded, the tenant gets only what is requested.
    let (success, stdout, stderr) = swg_secrets(folder.path(), &["auth-key", "--tenant", "gamma"]);
    assert!(success, "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(listed_key_ids(&data, console.port(), admin).len(), 3);

    let (success, _, stderr) = swg_secrets(folder.path(), &["admin-token", "--tenant", "delta"]);
    assert!(!success);
    assert!(
        stderr.contains("tenant \"delta\" has no secrets"),
        "{stderr}"
    );
    assert!(stderr.contains("not in the policy"), "{stderr}");

    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0);
}
