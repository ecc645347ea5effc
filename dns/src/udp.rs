//! The plain DNS UDP listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::ratelimit::RateLimiter;
use crate::resolver::{Resolver, Transport};
use crate::wire::MAX_MESSAGE_LEN;

/// Receives queries on `socket` forever, answering each in its own task.
///
/// A packet is dropped (and counted) when its source is over the rate limit or when
/// `in_flight` has no permit left, so a flood costs bounded memory.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    resolver: Arc<Resolver>,
    in_flight: Arc<Semaphore>,
    limiter: Option<Arc<RateLimiter>>,
) {
    let mut buffer = vec![0u8; MAX_MESSAGE_LEN];
    loop {
        let (len, source) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                tracing::debug!(%error, "UDP receive failed");
                continue;
            }
        };

        if let Some(limiter) = &limiter {
            if !limiter.allow(source.ip()) {
                resolver
                    .metrics()
                    .dropped
                    .with_label_values(&["rate_limited"])
                    .inc();
                continue;
            }
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            resolver
                .metrics()
                .dropped
                .with_label_values(&["overloaded"])
                .inc();
            continue;
        };

        let packet = buffer[..len].to_vec();
        let socket = socket.clone();
        let resolver = resolver.clone();
        let mut answer = Box::pin(async move {
            answer_datagram(&socket, &resolver, &packet, source).await;
            drop(permit);
        });
        // Most queries are cache hits that complete without waiting: answer those here
        // and spawn a task only for queries that wait on upstream. Polling once from
        // this task may leave a stale waker behind, which only causes a spurious wakeup.
        if futures::poll!(answer.as_mut()).is_pending() {
            tokio::spawn(answer);
        }
    }
}

async fn answer_datagram(
    socket: &UdpSocket,
    resolver: &Resolver,
    packet: &[u8],
    source: SocketAddr,
) {
    let Some(response) = resolver.answer_plain(packet, source, Transport::Udp).await else {
        return;
    };
    if let Err(error) = socket.send_to(&response, source).await {
        tracing::debug!(client = %source, %error, "UDP send failed");
    }
}
