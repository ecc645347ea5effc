//! `swg agent` on the command line, run as the built binary.

use std::process::Command;

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
