//! End-to-end checks of a gateway's life: a policy file edited while swg runs, a
//! broken edit, and SIGTERM under load followed by a restart on the same data folder.
//! Each test starts its own gateway, because each changes it.

#![allow(clippy::unwrap_used)]

mod e2e;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{require_tool, Bed, Swg, BROWSER_APP, ORIGIN_IP, PLAIN_APP, SLOW_BYTES};
use serde_json::Value;

/// Replaces the policy file in one step, as an editor that renames would, so swg never
/// reads half a file.
fn write_policy(bed: &Bed, text: &str) {
    let temporary = bed.policy.with_extension("toml.new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, &bed.policy).unwrap();
}

/// Polls `check` every 50 ms until it holds; returns how long that took, or `None`
/// after `timeout`.
fn time_until(timeout: Duration, check: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn tools() {
    for tool in ["dnsmasq", "nginx", "dig", "curl", "openssl", "unshare"] {
        require_tool(tool);
    }
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn policy_edits_apply_and_broken_rejected() {
    tools();
    let bed = Bed::start(false);
    let agent = bed.agent("erin@e2e.test", "e2e-reload", &[PLAIN_APP]);
    assert_eq!(agent.resolve(PLAIN_APP, "reload.test"), [ORIGIN_IP]);

    let original = std::fs::read_to_string(&bed.policy).unwrap();
    let blocking = original.replace(
        r#"domains = ["blocked.test"]"#,
        r#"domains = ["blocked.test", "reload.test"]"#,
    );
    assert_ne!(blocking, original);
    write_policy(&bed, &blocking);
    let took = time_until(Duration::from_secs(2), || {
        agent.resolve(PLAIN_APP, "reload.test") == ["0.0.0.0"]
    });
    assert!(took.is_some(), "the edit was not applied within 2 s");

    // An unknown key makes the whole file invalid.
    write_policy(&bed, &format!("{blocking}\nnot_a_key = 1\n"));
    let logged = time_until(Duration::from_secs(2), || {
        bed.swg
            .process
            .log()
            .iter()
            .any(|line| line.contains("not_a_key"))
    });
    assert!(
        logged.is_some(),
        "no error about the broken edit:\n{}",
        bed.swg.process.log().join("\n")
    );
    let line = bed
        .swg
        .process
        .log()
        .into_iter()
        .find(|line| line.contains("not_a_key"))
        .unwrap();
    assert!(line.contains("policy.toml"), "{line}");
    // The policy in force is still the last valid one.
    assert_eq!(agent.resolve(PLAIN_APP, "reload.test"), ["0.0.0.0"]);
    assert_eq!(agent.resolve(PLAIN_APP, "still-allowed.test"), [ORIGIN_IP]);
    let metrics = run_curl_metrics(&bed.swg);
    assert!(
        metrics.lines().any(
            |l| l.starts_with("swg_policy_reload_total{result=\"error\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    // The watcher still takes valid edits after refusing one.
    write_policy(&bed, &original);
    let took = time_until(Duration::from_secs(2), || {
        agent.resolve(PLAIN_APP, "reload.test") == [ORIGIN_IP]
    });
    assert!(took.is_some(), "the fixed file was not applied within 2 s");
}

fn run_curl_metrics(swg: &Swg) -> String {
    let output = Command::new(require_tool("curl"))
        .args(["--silent", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{}/metrics", swg.ports.operations))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Sends one request through the TLS landing and returns the HTTP status (`None`
/// when no response came) and the body size.
fn fetch(bed: &Bed, host: &str, path: &str) -> (Option<u16>, usize) {
    let port = bed.origin_port;
    let output = Command::new(require_tool("curl"))
        .args([
            "--silent",
            "--max-time",
            "20",
            "--output",
            "/dev/null",
            "--cacert",
        ])
        .arg(bed.swg.root_pem())
        .arg("--connect-to")
        .arg(format!("{host}:{port}:127.0.0.1:{}", bed.swg.ports.tls))
        .args(["--write-out", "%{http_code} %{size_download}"])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, size) = text.split_once(' ').unwrap_or(("000", "0"));
    let status: u16 = status.parse().unwrap_or(0);
    (
        (status != 0).then_some(status),
        size.trim().parse().unwrap_or(0),
    )
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn sigterm_drains_and_restart_keeps_state() {
    tools();
    let bed = Arc::new(Bed::start(false));
    let device = "e2e-shutdown";
    let agent = bed.agent("frank@e2e.test", device, &[BROWSER_APP, PLAIN_APP]);
    let host = "load.web.test";
    assert_eq!(agent.resolve(BROWSER_APP, host), ["127.0.0.1"]);
    let root_before = std::fs::read(bed.swg.root_pem()).unwrap();

    // (path, status, bytes) of every request that got a response from swg.
    let answered: Arc<Mutex<Vec<(String, u16, usize)>>> = Arc::default();
    let slow_finished: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for slow in 0..3 {
        let (bed, answered) = (Arc::clone(&bed), Arc::clone(&answered));
        let finished = Arc::clone(&slow_finished);
        workers.push(std::thread::spawn(move || {
            let path = format!("/slow/big.bin?worker={slow}");
            let (status, size) = fetch(&bed, host, &path);
            finished.lock().unwrap().push(Instant::now());
            let status = status.expect("an in-flight download was cut off");
            answered.lock().unwrap().push((path, status, size));
        }));
    }
    for fast in 0..2 {
        let (bed, answered, stop) = (Arc::clone(&bed), Arc::clone(&answered), Arc::clone(&stop));
        workers.push(std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let path = format!("/fast/{fast}/{i}");
                match fetch(&bed, host, &path) {
                    (Some(status), size) => answered.lock().unwrap().push((path, status, size)),
                    // Refused: swg has stopped accepting.
                    (None, _) => return,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(800));
    let signalled = Instant::now();
    bed.swg.process.signal("TERM");
    let exit = {
        // The bed is shared with the workers, so poll `exited` instead of `wait_exit`.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = bed.swg.process.exited() {
                break status.code();
            }
            assert!(
                Instant::now() < deadline,
                "swg did not exit within 15 s of SIGTERM:\n{}",
                bed.swg.process.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let stopped_after = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(exit, Some(0), "{}", bed.swg.process.log().join("\n"));
    // The drain deadline is 10 s (PROXY_DRAIN_DEADLINE); the downloads take about 2 s.
    assert!(stopped_after < Duration::from_secs(11), "{stopped_after:?}");

    // The downloads were still running when the signal came.
    for finished in slow_finished.lock().unwrap().iter() {
        assert!(*finished > signalled, "a download ended before SIGTERM");
    }
    let answered = answered.lock().unwrap().clone();
    let slow: Vec<_> = answered
        .iter()
        .filter(|(p, ..)| p.starts_with("/slow/"))
        .collect();
    assert_eq!(slow.len(), 3, "{answered:?}");
    for (path, status, size) in &slow {
        assert_eq!((*status, *size), (200, SLOW_BYTES), "{path}");
    }
    assert!(
        answered
            .iter()
            .filter(|(p, ..)| p.starts_with("/fast/"))
            .count()
            >= 2,
        "too little load: {answered:?}"
    );

    // Restart on the same folder and ports: the same CA, secrets and store.
    let restarted = Swg::launch(&bed.swg.folder, &bed.swg.config, bed.swg.ports);
    let log = restarted.process.log().join("\n");
    assert!(log.contains("loaded the root CA"), "{log}");
    assert!(!log.contains("generated a new root CA"), "{log}");
    assert!(!log.contains("Created the first secrets"), "{log}");
    assert_eq!(std::fs::read(restarted.root_pem()).unwrap(), root_before);
    let swg = Swg {
        admin_token: bed.swg.admin_token.clone(),
        auth_key: bed.swg.auth_key.clone(),
        ..restarted
    };
    let events = swg.activity_of_device(device);
    let port = bed.origin_port;
    let logged: Vec<&str> = events
        .iter()
        .filter(|e| e["via"] == "proxy")
        .filter_map(|e| e["request"].as_str())
        .collect();
    for (path, ..) in &answered {
        let url = format!("https://{host}:{port}{path}");
        assert!(
            logged.contains(&url.as_str()),
            "{url} missing from the activity store ({} proxy events)",
            logged.len()
        );
    }
    assert_eq!(logged.len(), answered.len(), "{logged:#?}");
    // The old authentication key still enrols a device.
    let again = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(["agent", "activity", "--server", &swg.console_url()])
        .args([
            "--auth-key",
            &swg.auth_key,
            "--user",
            "frank@e2e.test",
            "--device",
            device,
        ])
        .arg("--ca-file")
        .arg(swg.root_pem())
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let _: Value = serde_json::from_slice(&again.stdout).unwrap();
}

#[test]
fn sigterm_stops_with_closed_stderr() {
    use std::io::Read as _;
    use std::process::Stdio;

    let folder = tempfile::tempdir().unwrap();
    let ports = e2e::Ports::pick();
    std::fs::write(
        folder.path().join("swg.toml"),
        format!(
            "[operations]\nlisten = \"127.0.0.1:{}\"\n[console]\nlisten = \"127.0.0.1:{}\"\n\
             [dns]\ndoh_listen = \"127.0.0.1:{}\"\nudp_listen = \"127.0.0.1:{}\"\n\
             tcp_listen = \"127.0.0.1:{}\"\n[proxy]\ntls_listen = \"127.0.0.1:{}\"\n\
             http_listen = \"127.0.0.1:{}\"\nexplicit_listen = \"127.0.0.1:{}\"\n",
            ports.operations,
            ports.console,
            ports.doh,
            ports.dns,
            ports.dns,
            ports.tls,
            ports.http,
            ports.explicit
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_swg"))
        .arg("serve")
        .current_dir(folder.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("swg is ready") {
        let read = stderr.read(&mut buffer).unwrap();
        assert!(read > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..read]);
    }
    // A log collector that stops reading, as when a supervisor restarts it.
    drop(stderr);
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if exited.is_none() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "swg ignored SIGTERM"
    );
}
