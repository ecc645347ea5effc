//! An HTTP/2 origin that sends a response body in 1-byte DATA frames, each followed
//! by 16 000 bytes of a frame type that clients ignore, to a client that does not
//! read. Each retained 1-byte frame keeps the read buffer it arrived in allocated,
//! so the memory swg keeps grows with the bytes the origin sends instead of with
//! the data held, which the budgets count.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::frames::{frame, get_headers, resident_bytes};
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
/// A frame type that RFC 9113 section 5.5 requires receivers to ignore.
const FRAME_UNKNOWN: u8 = 0xfa;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_END_STREAM_AND_HEADERS: u8 = 0x5;

/// Pairs of a 1-byte DATA frame and an ignored frame that the origin sends.
const ROUNDS: usize = 20_000;
/// Payload of each ignored frame, under the default maximum frame size.
const FILLER_LEN: usize = 16_000;

/// Starts the origin for `tiny.test` on a free loopback port. It responds to every
/// request with `:status 200` and then [`ROUNDS`] rounds, counted in `sent`.
async fn start_origin(harness: &Harness, sent: Arc<AtomicUsize>) -> u16 {
    let (certificate, key) = harness.origin_ca.leaf_pem(&["tiny.test"]);
    let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
        .map(|certificate| certificate.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            tokio::spawn(serve(tls, Arc::clone(&sent)));
        }
    });
    port
}

/// What the origin's reader asks its writer to send.
enum Outgoing {
    /// An acknowledgement of a SETTINGS or PING frame of the client.
    Reply(Vec<u8>),
    /// The response on a stream.
    Response(u32),
}

/// Reads the client's frames and passes the acknowledgements and responses due to
/// the writer.
async fn read_requests<R>(
    reader: &mut R,
    sender: &tokio::sync::mpsc::UnboundedSender<Outgoing>,
) -> Option<()>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut preface = [0u8; 24];
    reader.read_exact(&mut preface).await.ok()?;
    loop {
        let mut header = [0u8; 9];
        reader.read_exact(&mut header).await.ok()?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let mut payload = vec![0u8; length as usize];
        reader.read_exact(&mut payload).await.ok()?;
        let outgoing = match (header[3], header[4] & FLAG_ACK) {
            (FRAME_SETTINGS, 0) => Outgoing::Reply(frame(FRAME_SETTINGS, FLAG_ACK, 0, &[])),
            (FRAME_PING, 0) => Outgoing::Reply(frame(FRAME_PING, FLAG_ACK, 0, &payload)),
            (FRAME_HEADERS, _) => Outgoing::Response(stream),
            _ => continue,
        };
        sender.send(outgoing).ok()?;
    }
}

/// Serves one connection: acknowledges the client's frames and responds to each request.
async fn serve<S>(tls: S, sent: Arc<AtomicUsize>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(tls);
    let (sender, mut pending) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        read_requests(&mut reader, &sender).await;
    });

    if writer
        .write_all(&frame(FRAME_SETTINGS, 0, 0, &[]))
        .await
        .is_err()
    {
        return;
    }
    let filler = frame(FRAME_UNKNOWN, 0, 0, &[0u8; FILLER_LEN]);
    while let Some(outgoing) = pending.recv().await {
        let stream = match outgoing {
            Outgoing::Reply(reply) => {
                if writer.write_all(&reply).await.is_err() {
                    return;
                }
                continue;
            }
            Outgoing::Response(stream) => stream,
        };
        // `:status 200`, index 8 of the HPACK static table.
        let head = frame(FRAME_HEADERS, FLAG_END_HEADERS, stream, &[0x88]);
        if writer.write_all(&head).await.is_err() {
            return;
        }
        for _ in 0..ROUNDS {
            let mut round = frame(FRAME_DATA, 0, stream, b"x");
            round.extend_from_slice(&filler);
            if writer.write_all(&round).await.is_err() {
                return;
            }
            sent.fetch_add(1, Ordering::SeqCst);
        }
        let _ = writer.flush().await;
    }
}

/// The origin sends about 320 MB, of which 20 000 bytes are the body, to a client
/// whose stream window is 0. The 1-byte frames wait in h2's receive queue, and each
/// keeps the read buffer it arrived in allocated: about 9 KB a frame, 180 MB here,
/// against the 4 MiB the budgets count. That memory must be given back once the
/// idle timeout ends the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_frames_released_after_idle_timeout() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("tiny.test", "127.0.0.1")]);
        config.timeouts.idle_ms = 3_000;
    })
    .await;
    let sent = Arc::new(AtomicUsize::new(0));
    let port = start_origin(&harness, Arc::clone(&sent)).await;
    let authority = format!("tiny.test:{port}");
    let before = resident_bytes();

    let mut tls = harness.landing_tls("tiny.test", b"h2").await;
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE 0: swg may send no body to this client at all.
    opening.extend(frame(FRAME_SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
    let request = get_headers(&authority, "/body");
    opening.extend(frame(
        FRAME_HEADERS,
        FLAG_END_STREAM_AND_HEADERS,
        1,
        &request,
    ));
    tls.write_all(&opening).await.unwrap();

    for _ in 0..240 {
        if sent.load(Ordering::SeqCst) >= ROUNDS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        sent.load(Ordering::SeqCst),
        ROUNDS,
        "origin did not send all"
    );
    let counted = || harness.metric("swg_proxy_response_buffer_bytes", &[]) as u64;
    eprintln!(
        "held: counted {} bytes, resident set grew by {} bytes",
        counted(),
        resident_bytes().saturating_sub(before)
    );

    // The idle timeout ends the response and its budget is given back.
    for _ in 0..40 {
        if counted() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(counted(), 0, "the unread response was not ended");

    // jemalloc returns freed pages to the system after its decay time (10 s).
    let mut grown = u64::MAX;
    for _ in 0..60 {
        grown = resident_bytes().saturating_sub(before);
        if grown <= 16 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("after the idle timeout: resident set {grown} bytes above the start");
    assert!(
        grown <= 16 << 20,
        "resident set still {grown} bytes above the start"
    );
    drop(tls);
}
