//! An HTTP/2 origin whose first connection writes its frames by hand, so that the
//! test chooses the last stream id of its GOAWAY exactly (RFC 9113 section 6.8).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;

const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// The HPACK block of a response head with only `:status: 200`, sent as index 8 of
/// the static table (RFC 7541 appendix A).
const STATUS_200_BLOCK: &[u8] = &[0x88];

/// The request streams the first connection waits for before its GOAWAY.
const STREAMS_BEFORE_GOAWAY: usize = 2;

/// Requests and connections seen by an origin from [`start_goaway_h2`].
#[derive(Default)]
pub struct GoawayOrigin {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Ids of the request streams the first connection received, in order.
    pub first_connection_streams: Mutex<Vec<u32>>,
    /// Each request on a later connection, as (connection number counted from 1,
    /// method).
    pub later_requests: Mutex<Vec<(usize, Method)>>,
    first_stream: Notify,
    goaway_allowed: Notify,
}

impl GoawayOrigin {
    /// Waits until the first connection has received the HEADERS of a request.
    pub async fn first_stream_received(&self) {
        self.first_stream.notified().await;
    }

    /// Lets the first connection of an origin from [`start_goaway_h2_one_stream`]
    /// send its GOAWAY.
    pub fn allow_goaway(&self) {
        self.goaway_allowed.notify_one();
    }
}

/// How the first connection ends.
#[derive(Clone, Copy)]
struct FirstConnection {
    last_stream_id: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS to advertise, if any.
    max_concurrent_streams: Option<u32>,
    /// Request streams to receive before the GOAWAY.
    streams_before_goaway: usize,
    /// Whether the GOAWAY also waits for [`GoawayOrigin::allow_goaway`].
    wait_for_test: bool,
    /// Whether stream 1 gets a response before the connection closes.
    respond: bool,
}

/// Starts an HTTPS origin that speaks only HTTP/2.
///
/// Its first connection waits for two request streams, sends GOAWAY with
/// `last_stream_id` and NO_ERROR, responds to stream 1 with 200 and an empty body,
/// and closes without responding to any other stream. Later connections are served by
/// h2 and respond to every request with 200 and the request's method as the body.
pub async fn start_goaway_h2(
    certificate: CertifiedKey,
    last_stream_id: u32,
) -> (SocketAddr, Arc<GoawayOrigin>) {
    start(
        certificate,
        FirstConnection {
            last_stream_id,
            max_concurrent_streams: None,
            streams_before_goaway: STREAMS_BEFORE_GOAWAY,
            wait_for_test: false,
            respond: true,
        },
    )
    .await
}

/// Starts an HTTPS origin that speaks only HTTP/2 and allows one stream at a time.
///
/// Its first connection advertises SETTINGS_MAX_CONCURRENT_STREAMS 1 and waits for
/// one request stream and for [`GoawayOrigin::allow_goaway`]. Then it sends GOAWAY
/// with last stream id 1 and NO_ERROR, and closes without responding, as an origin
/// that stops does. A request that the client held back for want of a free stream
/// therefore never reaches this connection. Later connections are served as with
/// [`start_goaway_h2`].
pub async fn start_goaway_h2_one_stream(
    certificate: CertifiedKey,
) -> (SocketAddr, Arc<GoawayOrigin>) {
    start(
        certificate,
        FirstConnection {
            last_stream_id: 1,
            max_concurrent_streams: Some(1),
            streams_before_goaway: 1,
            wait_for_test: true,
            respond: false,
        },
    )
    .await
}

async fn start(
    certificate: CertifiedKey,
    first: FirstConnection,
) -> (SocketAddr, Arc<GoawayOrigin>) {
    let acceptor = super::tls_acceptor(certificate, &[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(GoawayOrigin::default());
    let origin = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let number = origin.connections.fetch_add(1, Ordering::SeqCst) + 1;
            let acceptor = acceptor.clone();
            let origin = Arc::clone(&origin);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if number == 1 {
                    let _ = end_with_goaway(tls, &origin, first).await;
                } else {
                    serve_methods(tls, &origin, number).await;
                }
            });
        }
    });
    (address, seen)
}

/// Serves the first connection as `first` describes.
async fn end_with_goaway<S>(
    mut stream: S,
    origin: &GoawayOrigin,
    first: FirstConnection,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE.len()];
    stream.read_exact(&mut preface).await?;
    if preface != PREFACE {
        return Err(std::io::Error::other("invalid HTTP/2 client preface"));
    }
    let mut settings = Vec::new();
    if let Some(max) = first.max_concurrent_streams {
        settings.extend_from_slice(&SETTINGS_MAX_CONCURRENT_STREAMS.to_be_bytes());
        settings.extend_from_slice(&max.to_be_bytes());
    }
    write_frame(&mut stream, FRAME_SETTINGS, 0, 0, &settings).await?;

    loop {
        let (kind, flags, stream_id, payload) = read_frame(&mut stream).await?;
        match kind {
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                write_frame(&mut stream, FRAME_SETTINGS, FLAG_ACK, 0, &[]).await?;
            }
            FRAME_PING if flags & FLAG_ACK == 0 => {
                write_frame(&mut stream, FRAME_PING, FLAG_ACK, 0, &payload).await?;
            }
            FRAME_HEADERS => {
                let count = {
                    let mut streams = origin.first_connection_streams.lock().unwrap();
                    streams.push(stream_id);
                    streams.len()
                };
                if count == 1 {
                    origin.first_stream.notify_one();
                }
                if count == first.streams_before_goaway {
                    break;
                }
            }
            _ => {}
        }
    }

    if first.wait_for_test {
        // Acknowledge the client's SETTINGS and PING frames meanwhile, so that it
        // keeps the connection.
        let allowed = origin.goaway_allowed.notified();
        tokio::pin!(allowed);
        loop {
            tokio::select! {
                () = &mut allowed => break,
                frame = read_frame(&mut stream) => {
                    let (kind, flags, _, payload) = frame?;
                    if kind == FRAME_SETTINGS && flags & FLAG_ACK == 0 {
                        write_frame(&mut stream, FRAME_SETTINGS, FLAG_ACK, 0, &[]).await?;
                    }
                    if kind == FRAME_PING && flags & FLAG_ACK == 0 {
                        write_frame(&mut stream, FRAME_PING, FLAG_ACK, 0, &payload).await?;
                    }
                }
            }
        }
    }

    let mut goaway = first.last_stream_id.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    write_frame(&mut stream, FRAME_GOAWAY, 0, 0, &goaway).await?;
    if first.respond {
        let end = FLAG_END_STREAM | FLAG_END_HEADERS;
        write_frame(&mut stream, FRAME_HEADERS, end, 1, STATUS_200_BLOCK).await?;
    }
    stream.shutdown().await?;

    // Reading until the client closes too keeps unread bytes from turning the close
    // into a TCP reset, which could discard the frames above before the client
    // reads them.
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    Ok(())
}

/// Reads one frame and returns its type, flags, stream id and payload.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await?;
    Ok((header[3], header[4], stream_id, payload))
}

async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    kind: u8,
    flags: u8,
    stream_id: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    let length = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream_id.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Serves a later connection with h2, recording each request's method.
async fn serve_methods<S>(stream: S, origin: &GoawayOrigin, number: usize)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        origin
            .later_requests
            .lock()
            .unwrap()
            .push((number, request.method().clone()));
        let head = Response::builder().status(StatusCode::OK).body(()).unwrap();
        let Ok(mut body) = respond.send_response(head, false) else {
            continue;
        };
        let _ = body.send_data(Bytes::from(format!("{}\n", request.method())), true);
    }
}
