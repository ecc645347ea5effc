//! The plain DNS UDP listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::ratelimit::RateLimiter;
use crate::resolver::{canonical_source, Plain, Resolver, Transport};
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
        let (len, reply_to) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                tracing::debug!(%error, "UDP receive failed");
                continue;
            }
        };
        // The response goes back to the address as the socket reported it, and
        // everything else uses the IPv4 form of an IPv4-mapped address.
        let source = canonical_source(reply_to);

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

        // Most queries are cache hits: answer those here, without a task or a copy of
        // the packet, and spawn a task only for queries that wait on upstream.
        match resolver.answer_plain_now(&buffer[..len], source, Transport::Udp) {
            Plain::Answered(response) => {
                if let Some(response) = response {
                    if let Err(error) = socket.send_to(&response, reply_to).await {
                        tracing::debug!(client = %source, %error, "UDP send failed");
                    }
                }
                drop(permit);
            }
            Plain::NeedsUpstream => {
                let packet = buffer[..len].to_vec();
                let socket = socket.clone();
                let resolver = resolver.clone();
                tokio::spawn(async move {
                    answer_datagram(&socket, &resolver, &packet, source, reply_to).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn answer_datagram(
    socket: &UdpSocket,
    resolver: &Resolver,
    packet: &[u8],
    source: SocketAddr,
    reply_to: SocketAddr,
) {
    let Some(response) = resolver.answer_plain(packet, source, Transport::Udp).await else {
        return;
    };
    if let Err(error) = socket.send_to(&response, reply_to).await {
        tracing::debug!(client = %source, %error, "UDP send failed");
    }
}
