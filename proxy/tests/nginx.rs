//! The proxy in front of nginx from Debian's package, over HTTP/2 and HTTP/1.1.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Child, Command};
use std::time::Duration;

use support::{curl, Harness};

/// nginx as one process (`master_process off`), so that killing the child leaves no
/// orphaned worker behind.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts nginx with TLS 1.3 and HTTP/2 on a free loopback port, serving `dir/www`.
/// nginx closes each connection with GOAWAY after `keepalive_requests` requests.
async fn start_nginx(harness: &Harness, keepalive_requests: u32) -> (Nginx, u16) {
    let dir = harness.dir.path();
    let (certificate, key) = harness.origin_ca.leaf_pem(&["nginx.test"]);
    std::fs::write(dir.join("nginx-leaf.pem"), certificate).unwrap();
    std::fs::write(dir.join("nginx-leaf.key"), key).unwrap();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hello from nginx\n").unwrap();
    std::fs::write(dir.join("www/big.bin"), vec![5u8; 5 << 20]).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.display();
    let config = format!(
        "master_process off;\ndaemon off;\npid {path}/nginx.pid;\nerror_log {path}/nginx-error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n keepalive_requests {keepalive_requests};\n client_body_temp_path {path}/body;\n proxy_temp_path {path}/proxy;\n\
         fastcgi_temp_path {path}/fastcgi;\n uwsgi_temp_path {path}/uwsgi;\n scgi_temp_path {path}/scgi;\n\
         server {{\n  listen 127.0.0.1:{port} ssl http2;\n  ssl_certificate {path}/nginx-leaf.pem;\n\
         ssl_certificate_key {path}/nginx-leaf.key;\n  ssl_protocols TLSv1.3;\n  root {path}/www;\n }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), config).unwrap();
    let child = Command::new("nginx")
        .args(["-c", &format!("{path}/nginx.conf"), "-p", &path.to_string()])
        .spawn()
        .expect("nginx must be installed (Debian package nginx)");
    let nginx = Nginx(child);

    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (nginx, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nginx did not start; see {path}/nginx-error.log");
}

#[tokio::test]
#[ignore = "needs nginx; run by .ci/run"]
async fn nginx_origin_through_landing_and_explicit_proxy() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("nginx.test", "127.0.0.1")]);
    })
    .await;
    let (_nginx, port) = start_nginx(&harness, 1000).await;
    let url = format!("https://nginx.test:{port}/index.html");

    for version in ["--http2", "--http1.1"] {
        let mut landing = harness.landing_args("nginx.test", port);
        landing.push(version.to_owned());
        let result = curl(landing, &url).await;
        assert_eq!(result.status, 200, "{version}: {}", result.stderr);
        assert_eq!(result.body, "hello from nginx\n");

        let mut explicit = harness.explicit_args();
        explicit.push(version.to_owned());
        let result = curl(explicit, &format!("https://nginx.test:{port}/big.bin")).await;
        assert_eq!(result.status, 200, "{version}: {}", result.stderr);
        assert_eq!(result.body.len(), 5 << 20);
    }
}

#[tokio::test]
#[ignore = "needs nginx; run by .ci/run"]
async fn origin_goaway_requests_are_sent_again() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("nginx.test", "127.0.0.1")]);
    })
    .await;
    // Every third request on the pooled HTTP/2 connection ends it with GOAWAY while
    // other requests are in flight on it.
    let (_nginx, port) = start_nginx(&harness, 3).await;
    let url = format!("https://nginx.test:{port}/index.html");

    let mut arguments = harness.explicit_args();
    arguments.extend(["-sS", "--max-time", "60", "-Z", "--parallel-max", "20"].map(str::to_owned));
    for _ in 0..60 {
        arguments.extend(["-o", "/dev/null", "-w", "%{http_code}\\n", &url].map(str::to_owned));
    }
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl").args(&arguments).output().unwrap()
    })
    .await
    .unwrap();

    let statuses = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(statuses.lines().count(), 60, "{stderr}");
    assert!(
        statuses.lines().all(|status| status == "200"),
        "statuses: {statuses}"
    );
    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
    let resends = harness.metric("swg_proxy_upstream_resends_total", &[("reason", "goaway")]);
    assert!(resends >= 1.0, "{resends}");
}
