//! The memory that HTTP/2 responses hold for clients that do not read, against
//! what the response buffer budgets count, with nginx from Debian's package as
//! the origin and swg's allocator (jemalloc).

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Child, Command};
use std::time::Duration;

use support::frames::{frame, get_headers, resident_bytes};
use support::Harness;
use tokio::io::AsyncWriteExt;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// nginx as one process, killed when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts nginx with TLS 1.3 and HTTP/2 on a free loopback port, serving a
/// 20 MB `/big.bin`.
async fn start_nginx(harness: &Harness) -> (Nginx, u16) {
    let dir = harness.dir.path();
    let (certificate, key) = harness.origin_ca.leaf_pem(&["nginx.test"]);
    std::fs::write(dir.join("nginx-leaf.pem"), certificate).unwrap();
    std::fs::write(dir.join("nginx-leaf.key"), key).unwrap();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/big.bin"), vec![5u8; 20 << 20]).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.display();
    let config = format!(
        "master_process off;\ndaemon off;\npid {path}/nginx.pid;\nerror_log {path}/nginx-error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n client_body_temp_path {path}/body;\n proxy_temp_path {path}/proxy;\n\
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

/// Clients that open HTTP/2 streams for a 20 MB file and never read make swg
/// hold up to one stream window per stream. The memory that the process gains
/// must stay within a stated factor of what the budgets count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx; run by .ci/run"]
async fn unread_http2_responses_stay_within_counted_memory() {
    const CONNECTIONS: u32 = 2;
    const STREAMS: u32 = 100;
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("nginx.test", "127.0.0.1")]);
    })
    .await;
    let (_nginx, port) = start_nginx(&harness).await;
    let authority = format!("nginx.test:{port}");
    let before = resident_bytes();

    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut tls = harness.landing_tls("nginx.test", b"h2").await;
        let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS_INITIAL_WINDOW_SIZE 2^31-1 and a connection window as large,
        // so that only the client's not reading stops swg.
        opening.extend(frame(0x4, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]));
        opening.extend(frame(0x8, 0, 0, &(0x7fff_ffffu32 - 65_535).to_be_bytes()));
        for index in 0..STREAMS {
            let block = get_headers(&authority, "/big.bin");
            opening.extend(frame(0x1, 0x5, 1 + 2 * index, &block));
        }
        tls.write_all(&opening).await.unwrap();
        connections.push(tls);
    }

    // Wait until the budgets and the memory stop growing.
    let counted = || harness.metric("swg_proxy_response_buffer_bytes", &[]) as u64;
    let mut last = (0, 0);
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = (counted(), resident_bytes());
        if now.0 > 0 && now.0 == last.0 && now.1.abs_diff(last.1) < 4 << 20 {
            break;
        }
        last = now;
    }
    let counted = counted();
    let grown = resident_bytes().saturating_sub(before);
    eprintln!(
        "counted {counted} bytes, resident set grew by {grown} bytes ({:.2} times)",
        grown as f64 / counted as f64
    );
    // The client's budget (512 MiB by default) takes part of the streams.
    assert!(counted >= 256 << 20, "{counted}");
    assert!(
        grown <= counted + counted / 4,
        "resident set grew by {grown} bytes for {counted} counted"
    );
    drop(connections);
}
