//! Detection of HTTP/2 with prior knowledge on plain TCP. A client that knows the
//! server speaks HTTP/2 (`curl --http2-prior-knowledge`, gRPC without TLS) opens
//! the connection with the HTTP/2 connection preface instead of a request line.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::prefixed::Prefixed;

/// The client connection preface that starts every HTTP/2 connection (RFC 9113,
/// "HTTP/2 Connection Preface"). Its request line is not valid HTTP/1.1, so no
/// HTTP/1.1 request starts with all 24 bytes.
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The start of a client connection, as its first bytes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// With the HTTP/2 connection preface.
    Http2Preface,
    /// With other bytes (an HTTP/1.1 request, or a TLS record inside a tunnel),
    /// the first of which is `first_byte`.
    Other { first_byte: u8 },
}

/// The reason a connection ended before its first bytes showed how it was opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpeningError {
    /// The deadline passed with every byte read so far matching the preface.
    #[error("timed out after {read} bytes that match the HTTP/2 preface")]
    TimedOut { read: usize },
    /// The client closed its side with every byte read so far matching the preface.
    #[error("closed by the client after {read} bytes that match the HTTP/2 preface")]
    Closed { read: usize },
    /// Reading from the client failed.
    #[error("reading from the client failed after {read} bytes: {source}")]
    Read { read: usize, source: io::Error },
}

/// Reads the first bytes of `io` until they either are the HTTP/2 connection
/// preface or differ from it, and returns how the connection was opened with a
/// stream that replays the bytes read before the rest of `io`.
///
/// Returns as soon as a byte differs from the preface, so an HTTP/1.1 request
/// shorter than the preface is never held back. More bytes are awaited only
/// while all bytes so far match the start of the preface, and at most until
/// `deadline`. At most 24 bytes are read.
pub(crate) async fn read_opening<I>(
    mut io: I,
    deadline: Instant,
) -> Result<(Opening, Prefixed<I>), OpeningError>
where
    I: AsyncRead + Unpin,
{
    let mut buffer = [0u8; HTTP2_PREFACE.len()];
    let mut filled = 0;
    let opening = loop {
        let read = tokio::time::timeout_at(deadline, io.read(&mut buffer[filled..])).await;
        let count = match read {
            Err(_elapsed) => return Err(OpeningError::TimedOut { read: filled }),
            Ok(Err(source)) => {
                return Err(OpeningError::Read {
                    read: filled,
                    source,
                })
            }
            Ok(Ok(0)) => return Err(OpeningError::Closed { read: filled }),
            Ok(Ok(count)) => count,
        };
        filled += count;

        if buffer[..filled] != HTTP2_PREFACE[..filled] {
            break Opening::Other {
                first_byte: buffer[0],
            };
        }
        if filled == HTTP2_PREFACE.len() {
            break Opening::Http2Preface;
        }
    };
    let replayed = Bytes::copy_from_slice(&buffer[..filled]);
    Ok((opening, Prefixed::new(replayed, io)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncWriteExt, DuplexStream};

    use super::*;

    /// The deadline in these tests. They run in real time, so it has a generous margin.
    const DEADLINE: Duration = Duration::from_secs(5);

    /// Sends `segments` one after another with a pause between them, so each one
    /// arrives in its own read, and keeps the client side open for `DEADLINE`.
    fn client_sending(segments: &[&[u8]]) -> DuplexStream {
        let (server, mut client) = tokio::io::duplex(1024);
        let segments: Vec<Vec<u8>> = segments.iter().map(|segment| segment.to_vec()).collect();
        tokio::spawn(async move {
            for segment in segments {
                client.write_all(&segment).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(DEADLINE).await;
        });
        server
    }

    async fn read_replayed(stream: &mut Prefixed<DuplexStream>, length: usize) -> Vec<u8> {
        let mut replayed = vec![0u8; length];
        stream.read_exact(&mut replayed).await.unwrap();
        replayed
    }

    #[tokio::test]
    async fn preface_in_segments_is_http2() {
        let io = client_sending(&[b"P", b"RI * HTTP/2.0\r\n", b"\r\nSM\r\n\r", b"\n\0\0"]);
        let (opening, mut stream) = read_opening(io, Instant::now() + DEADLINE).await.unwrap();
        assert_eq!(opening, Opening::Http2Preface);
        let replayed = read_replayed(&mut stream, HTTP2_PREFACE.len() + 2).await;
        assert_eq!(&replayed[..HTTP2_PREFACE.len()], HTTP2_PREFACE);
        assert_eq!(&replayed[HTTP2_PREFACE.len()..], b"\0\0");
    }

    #[tokio::test]
    async fn short_http1_request_decided_without_waiting() {
        let request = b"GET / HTTP/1.1\r\n\r\n";
        let io = client_sending(&[request]);
        let started = std::time::Instant::now();
        let (opening, mut stream) = read_opening(io, Instant::now() + DEADLINE).await.unwrap();
        assert!(started.elapsed() < DEADLINE / 2, "{:?}", started.elapsed());
        assert_eq!(opening, Opening::Other { first_byte: b'G' });
        assert_eq!(read_replayed(&mut stream, request.len()).await, request);
    }

    #[tokio::test]
    async fn request_sharing_preface_start_is_not_http2() {
        let io = client_sending(&[b"P", b"R", b"OPFIND / HTTP/1.1\r\n"]);
        let (opening, mut stream) = read_opening(io, Instant::now() + DEADLINE).await.unwrap();
        assert_eq!(opening, Opening::Other { first_byte: b'P' });
        let replayed = read_replayed(&mut stream, 21).await;
        assert_eq!(replayed, b"PROPFIND / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn partial_preface_times_out() {
        let io = client_sending(&[b"PRI * HTTP/2.0\r\n"]);
        let deadline = Instant::now() + Duration::from_millis(200);
        let error = read_opening(io, deadline).await.err();
        assert!(
            matches!(error, Some(OpeningError::TimedOut { read: 16 })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn client_closing_early_reported() {
        let (server, mut client) = tokio::io::duplex(64);
        client.write_all(b"PRI").await.unwrap();
        drop(client);
        let error = read_opening(server, Instant::now() + DEADLINE).await.err();
        assert!(
            matches!(error, Some(OpeningError::Closed { read: 3 })),
            "{error:?}"
        );
    }
}
