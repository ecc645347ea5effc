//! WebSocket upgrades (HTTP/1.1): the handshake goes to the origin on a dedicated
//! HTTP/1.1 connection, and after `101 Switching Protocols` both sides are joined
//! byte for byte until both have closed, one fails, or the tunnel idles for
//! `timeouts.idle_ms`.
//! Extension offers and the origin's choice pass unchanged.

use http::{header, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{empty, ProxyBody};
use crate::connection::ConnectionContext;
use crate::headers::remove_hop_by_hop;
use crate::request;
use crate::server::Shared;
use crate::target::Target;
use crate::tunnel::{self, TunnelEnd};
use crate::upstream::{StreamLease, UpstreamFailure};

/// Sends a WebSocket handshake to the origin and, when it switches protocols, joins
/// the client and origin connections in a background task, which keeps the client
/// connection's permit until the tunnel ends. A response other than the switch is
/// passed on like any other response. Origin failures, a 101 to another protocol
/// among them, are classified by
/// [`Upstream::send_websocket_handshake`](crate::upstream::Upstream::send_websocket_handshake).
/// The request's body is never sent, so the caller rejects a handshake that has
/// one.
pub(crate) async fn tunnel(
    shared: &Shared,
    context: &ConnectionContext,
    target: &Target,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, UpstreamFailure> {
    let client_upgrade = hyper::upgrade::on(&mut request);

    let origin_uri = format!("{}://{}/", target.scheme.as_str(), target.authority())
        .parse()
        .map_err(|_| UpstreamFailure::InvalidHost)?;

    let (mut parts, _body) = request.into_parts();
    remove_hop_by_hop(&mut parts.headers, true);
    // The handshake goes upstream without a body, and a `Content-Length` left
    // behind would make the origin wait for bytes that never come.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::HOST,
        target
            .authority()
            .parse()
            .map_err(|_| UpstreamFailure::InvalidHost)?,
    );
    parts.uri = target
        .path_and_query
        .parse()
        .map_err(|_| UpstreamFailure::InvalidHost)?;
    parts.version = Version::HTTP_11;
    let origin_request = Request::from_parts(parts, empty());

    let mut response = shared
        .upstream
        .send_websocket_handshake(&origin_uri, origin_request)
        .await?;

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return request::pass_on(shared, context, response, None, StreamLease::default());
    }

    let origin_upgrade = hyper::upgrade::on(&mut response);
    let idle = shared.config.timeouts.idle();
    let permit = context.permit.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let (client, origin) = match tokio::try_join!(client_upgrade, origin_upgrade) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "WebSocket upgrade did not complete");
                return;
            }
        };
        // NOTE: an application that stays silent for longer than `timeouts.idle_ms`
        // without WebSocket pings loses its tunnel, and its client has to reconnect.
        match tunnel::join(TokioIo::new(client), TokioIo::new(origin), idle).await {
            TunnelEnd::Closed { sent, received } => {
                tracing::debug!(sent, received, "WebSocket tunnel closed")
            }
            TunnelEnd::Idle => tracing::debug!(?idle, "WebSocket tunnel closed after idling"),
            TunnelEnd::Failed(error) => {
                tracing::debug!(%error, "WebSocket tunnel ended with an error")
            }
        }
    });

    let (mut parts, _body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers, true);
    Ok(Response::from_parts(parts, empty()))
}
