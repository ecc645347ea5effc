//! The send queue that bounds the response data hyper queues for an HTTP/2 client
//! connection: what it drops from its count after reset streams, when it stops dropping, and
//! that its count of written DATA matches what the client receives.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use support::frames::{self, frame};
use support::gate::{Gated, ReadGate};
use support::{origin, Harness};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const QUEUED_BYTES: &str = "swg_proxy_client_send_queue_bytes";
const FORGOTTEN_BYTES: &str = "swg_proxy_client_send_queue_forgotten_bytes_total";
/// The DATA bytes one HTTP/2 client connection may have queued in swg.
const QUEUE_LIMIT: f64 = (1 << 20) as f64;

/// Connects to `address` with a 16 KiB receive buffer, so that the socket buffers
/// hold little of a large body while the returned gate is closed.
async fn gated_tcp(address: SocketAddr) -> (Gated<TcpStream>, Arc<ReadGate>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(address).await.unwrap();
    let gate = Arc::new(ReadGate::default());
    let gated = Gated {
        inner: tcp,
        gate: gate.clone(),
    };
    (gated, gate)
}

/// Connects to the TLS landing for origin.test with ALPN h2, reading through a gate.
async fn gated_tls(
    harness: &Harness,
) -> (
    tokio_rustls::client::TlsStream<Gated<TcpStream>>,
    Arc<ReadGate>,
) {
    let (tcp, gate) = gated_tcp(harness.tls).await;
    let tls = tokio_rustls::TlsConnector::from(harness.landing_client_config(b"h2"))
        .connect(ServerName::try_from("origin.test").unwrap(), tcp)
        .await
        .unwrap();
    (tls, gate)
}

/// Starts an h2 client on `io` with windows of `stream_window` bytes for each
/// stream and `connection_window` bytes for the connection, and drives the
/// connection in a task.
async fn h2_client<I>(
    io: I,
    stream_window: u32,
    connection_window: u32,
) -> h2::client::SendRequest<Bytes>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(stream_window)
        .initial_connection_window_size(connection_window)
        .handshake::<_, Bytes>(io)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.ready().await.unwrap()
}

/// Sends a GET for `url` and reads the response body in a task, releasing its
/// flow-control capacity and adding its bytes to `received`. The task returns
/// whether the body ended without error, and the bytes read.
fn download(
    sender: &mut h2::client::SendRequest<Bytes>,
    url: &str,
    received: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<(bool, u64)> {
    let request = http::Request::get(url).body(()).unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    tokio::spawn(async move {
        let mut body = response.await.unwrap().into_body();
        while let Some(chunk) = body.data().await {
            let Ok(chunk) = chunk else {
                return (false, received.load(Ordering::SeqCst));
            };
            let _ = body.flow_control().release_capacity(chunk.len());
            received.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        (true, received.load(Ordering::SeqCst))
    })
}

/// Waits until `done` returns true, checking every 20 ms, and fails the test when
/// it is still false after `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a plain HTTP/1.1 origin whose every response is an endless body of
/// 100 bytes every 50 ms, like a stream of server-sent events.
async fn start_trickle_origin() -> SocketAddr {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_: http::Request<_>| async {
                let events = futures::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let event = Frame::data(Bytes::from_static(&[b'x'; 100]));
                    Some((Ok::<_, Infallible>(event), ()))
                });
                Ok::<_, Infallible>(http::Response::new(StreamBody::new(events).boxed()))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    address
}

/// A long-lived stream that trickles small events keeps the socket writing beside
/// downloads that the client cancels while their data is queued. The data h2
/// dropped with the reset streams is still forgotten, so a download started
/// afterwards on the same connection is not held back.
#[tokio::test]
async fn trickle_beside_cancelled_downloads() {
    let harness = Harness::start(|config| {
        config.timeouts.idle_ms = 5_000;
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let trickle_origin = start_trickle_origin().await;
    let zeros_origin = origin::start_http().await;
    let queued = || harness.metric(QUEUED_BYTES, &[]);
    let (tcp, gate) = gated_tcp(harness.http).await;
    let mut sender = h2_client(tcp, 1 << 30, 1 << 30).await;
    let zeros_url = |len: u64| format!("http://plain.test:{}/zeros?{len}", zeros_origin.port());

    let trickle_url = format!("http://plain.test:{}/events", trickle_origin.port());
    let trickle = download(&mut sender, &trickle_url, Arc::default());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The client stops reading until the queue is full, then cancels the downloads.
    gate.close();
    let cancelled: Vec<_> = (0..8)
        .map(|_| {
            let request = http::Request::get(zeros_url(4 << 20)).body(()).unwrap();
            sender.send_request(request, true).unwrap().0
        })
        .collect();
    wait_until(Duration::from_secs(10), "send queue filled", || {
        queued() > QUEUE_LIMIT * 0.9
    })
    .await;
    // Dropping the response futures resets their streams (CANCEL).
    drop(cancelled);
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.open();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let body_len = 3u64 << 20;
    let received = Arc::new(AtomicU64::new(0));
    let later = download(&mut sender, &zeros_url(body_len), received.clone());
    let outcome = tokio::time::timeout(Duration::from_secs(15), later).await;
    let Ok(outcome) = outcome else {
        panic!(
            "3 MiB download after the cancels not finished within 15 s: {} bytes received, {} queued",
            received.load(Ordering::SeqCst),
            queued()
        );
    };
    assert_eq!(outcome.unwrap(), (true, body_len));

    // Resetting the trickle leaves nothing counted.
    trickle.abort();
    wait_until(Duration::from_secs(5), "send queue empty", || {
        queued() == 0.0
    })
    .await;
}

/// Returns a SETTINGS frame that sets SETTINGS_INITIAL_WINDOW_SIZE to `window`.
fn initial_window_settings(window: u32) -> Vec<u8> {
    let mut payload = vec![0, 4];
    payload.extend_from_slice(&window.to_be_bytes());
    frame(0x4, 0, 0, &payload)
}

/// Returns a HEADERS frame that ends `stream` with a GET for https://`authority``path`.
fn get_request(stream: u32, authority: &str, path: &str) -> Vec<u8> {
    frame(0x1, 0x5, stream, &frames::get_headers(authority, path))
}

type RawWriter = Arc<
    tokio::sync::Mutex<tokio::io::WriteHalf<tokio_rustls::client::TlsStream<Gated<TcpStream>>>>,
>;

/// Opens an HTTP/2 connection over TLS, written frame by frame, whose stream and
/// connection windows start at `window`. A task reads the server's frames,
/// acknowledges its SETTINGS and PINGs, and adds the DATA payload of each stream
/// to the returned map. The writer may send any frame at any time, which h2's
/// client does not allow for SETTINGS.
async fn raw_h2(
    harness: &Harness,
    window: u32,
) -> (RawWriter, Arc<ReadGate>, Arc<Mutex<HashMap<u32, u64>>>) {
    let (tls, gate) = gated_tls(harness).await;
    let (mut reader, writer) = tokio::io::split(tls);
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend(initial_window_settings(window));
    preface.extend(frame(0x8, 0, 0, &(window - 65_535).to_be_bytes()));
    writer.lock().await.write_all(&preface).await.unwrap();

    let received = Arc::new(Mutex::new(HashMap::new()));
    let counts = received.clone();
    let acks = writer.clone();
    tokio::spawn(async move {
        loop {
            let mut header = [0u8; 9];
            if reader.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut payload).await.is_err() {
                return;
            }
            let stream =
                u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            let ack = header[4] & 1 == 1;
            let reply = match header[3] {
                0x0 => {
                    *counts.lock().unwrap().entry(stream).or_insert(0) += len as u64;
                    continue;
                }
                0x4 if !ack => frame(0x4, 1, 0, &[]),
                0x6 if !ack => frame(0x6, 1, 0, &payload),
                _ => continue,
            };
            if acks.lock().await.write_all(&reply).await.is_err() {
                return;
            }
        }
    });
    (writer, gate, received)
}

/// Once a client lowers its initial stream window after its first SETTINGS frame,
/// h2 may hold data it had already taken beyond the windows, so the connection's
/// count is never forgotten again. The client here keeps its socket nearly full and
/// lowers the window to 0, lets some bytes through and raises it again, five
/// times. The count never passes the limit and no byte is forgotten from the first
/// lowering on, yet every body arrives whole.
#[tokio::test]
async fn lowered_windows_stop_forgetting() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;
    let queued = || harness.metric(QUEUED_BYTES, &[]);
    let forgotten = || harness.metric(FORGOTTEN_BYTES, &[]);
    let streams: u32 = 20;
    let body_len = 2u64 << 20;
    let (writer, gate, received) = raw_h2(&harness, 1 << 30).await;

    gate.close();
    let authority = format!("origin.test:{}", origin.port());
    let path = format!("/zeros?{body_len}");
    for index in 0..streams {
        let headers = get_request(1 + 2 * index, &authority, &path);
        writer.lock().await.write_all(&headers).await.unwrap();
    }
    wait_until(Duration::from_secs(10), "send queue filled", || {
        queued() > QUEUE_LIMIT * 0.9
    })
    .await;

    // Samples the gauge every 10 ms for `period` and returns the largest value.
    let largest_queued = |period: Duration| async move {
        let end = Instant::now() + period;
        let mut largest: f64 = 0.0;
        while Instant::now() < end {
            largest = largest.max(queued());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        largest
    };
    let mut forgotten_since_lowered = None;
    let mut largest: f64 = 0.0;
    for _ in 0..5 {
        let lower = initial_window_settings(0);
        writer.lock().await.write_all(&lower).await.unwrap();
        // swg reads the client's frames at once. The wait keeps a recount that was
        // already due from counting as one after the lowering.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = *forgotten_since_lowered.get_or_insert_with(forgotten);
        gate.allow(256 << 10);
        largest = largest.max(largest_queued(Duration::from_millis(800)).await);
        assert_eq!(
            forgotten(),
            before,
            "bytes forgotten after the windows were lowered"
        );

        let raise = initial_window_settings(1 << 30);
        writer.lock().await.write_all(&raise).await.unwrap();
        largest = largest.max(largest_queued(Duration::from_millis(600)).await);
        assert_eq!(
            forgotten(),
            before,
            "bytes forgotten after the windows were lowered"
        );
    }
    assert!(largest <= QUEUE_LIMIT, "{largest} bytes queued");

    gate.open();
    let expected: HashMap<u32, u64> = (0..streams).map(|i| (1 + 2 * i, body_len)).collect();
    wait_until(Duration::from_secs(30), "all bodies received", || {
        *received.lock().unwrap() == expected
    })
    .await;
    assert_eq!(Some(forgotten()), forgotten_since_lowered);
    wait_until(Duration::from_secs(5), "send queue empty", || {
        queued() == 0.0
    })
    .await;
}

/// The count of written DATA is read from the frames hyper writes, over plain TCP
/// (vectored writes) and over TLS. With many parallel downloads read at a steady
/// pace and no resets, every byte of every body arrives and the count ends at 0.
/// Forgetting may take at most the two 16 KiB pieces that h2 can hold for each
/// stream that waits for a window. A parser that missed DATA frames would leave
/// written bytes counted. The count would still end at 0, because those bytes
/// would be forgotten, so the test bounds the bytes forgotten too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_exact_over_h2c_and_tls() {
    let harness = Harness::start(|config| {
        config.static_hosts =
            support::static_hosts(&[("plain.test", "127.0.0.1"), ("origin.test", "127.0.0.1")]);
    })
    .await;
    let plain_origin = origin::start_http().await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let tls_origin = origin::start_https(certificate, &[b"h2"]).await;
    let body_len = 3u64 << 20;

    let (tcp, h2c_gate) = gated_tcp(harness.http).await;
    let mut h2c = h2_client(tcp, 1 << 20, 4 << 20).await;
    let (tls, tls_gate) = gated_tls(&harness).await;
    let mut tls = h2_client(tls, 1 << 20, 4 << 20).await;
    // Each client reads at most 200 KiB every 20 ms.
    let pacers: Vec<_> = [h2c_gate, tls_gate]
        .into_iter()
        .map(|gate| {
            tokio::spawn(async move {
                loop {
                    gate.allow(200 << 10);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    let h2c_url = format!("http://plain.test:{}/zeros?{body_len}", plain_origin.port());
    let tls_url = format!("https://origin.test:{}/zeros?{body_len}", tls_origin.port());
    let mut downloads = Vec::new();
    let downloads_per_connection: u32 = 12;
    for _ in 0..downloads_per_connection {
        downloads.push(download(&mut h2c, &h2c_url, Arc::default()));
        downloads.push(download(&mut tls, &tls_url, Arc::default()));
    }
    for download in downloads {
        let outcome = tokio::time::timeout(Duration::from_secs(30), download)
            .await
            .expect("download not finished within 30 s");
        assert_eq!(outcome.unwrap(), (true, body_len));
    }
    wait_until(Duration::from_secs(5), "send queue empty", || {
        harness.metric(QUEUED_BYTES, &[]) == 0.0
    })
    .await;
    let forgotten = harness.metric(FORGOTTEN_BYTES, &[]);
    let waiting_pieces = f64::from(2 * downloads_per_connection * 2 * (16 << 10));
    assert!(
        forgotten <= waiting_pieces,
        "{forgotten} bytes forgotten, more than {waiting_pieces} that h2 can hold for streams that wait for a window"
    );
    pacers.iter().for_each(tokio::task::JoinHandle::abort);
}
