//! The explicit proxy: CONNECT tunnels (intercepted), absolute-form HTTP, and the
//! PAC file, with device-token authentication.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::{empty, full, ProxyBody};
use crate::connection::{
    serve_http, serve_intercepted, ConnectionContext, ConnectionPermit, DeviceToken, Listener,
};
use crate::host::{split_host_port, Host};
use crate::malformed;
use crate::preface::{self, Opening};
use crate::request::{self, plain};
use crate::server::Shared;
use crate::stall::ResponseWatch;
use crate::target::Scheme;

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves one explicit-proxy connection.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    client: SocketAddr,
    permit: Arc<ConnectionPermit>,
) {
    let responses = shared.response_watch();
    let context = ConnectionContext {
        listener: Listener::Explicit,
        client,
        scheme: Scheme::Http,
        sni: None,
        fallback_authority: None,
        fallback_port: None,
        device_token: None,
        permit: permit.clone(),
        responses: responses.clone(),
    };
    let service_shared = shared.clone();
    let service = service_fn(move |request| {
        let shared = service_shared.clone();
        let permit = permit.clone();
        let responses = responses.clone();
        async move {
            if let Some(response) = malformed::reject(&shared, Listener::Explicit, &request) {
                return Ok(response);
            }
            Ok::<_, Infallible>(handle(shared, client, permit, responses, request).await)
        }
    });
    serve_http(&shared, &context, tcp, false, service).await;
}

async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    permit: Arc<ConnectionPermit>,
    responses: Arc<ResponseWatch>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let is_origin_form = request.uri().authority().is_none();
    if is_origin_form && request.method() != Method::CONNECT {
        if request.method() == Method::GET && request.uri().path() == shared.config.pac_path {
            return pac_file(&shared, &request);
        }
        return reject(
            &shared,
            StatusCode::NOT_FOUND,
            "not found: send absolute-form or CONNECT requests\n",
        );
    }

    let Some(device_token) = authenticate(&shared, &request) else {
        shared
            .metrics
            .requests
            .with_label_values(&["explicit", "proxy_auth_required"])
            .inc();
        let sent = request.headers().contains_key(header::PROXY_AUTHORIZATION);
        return proxy_auth_required(sent);
    };

    if request.method() == Method::CONNECT {
        return connect(shared, client, device_token.for_tunnel(), permit, request);
    }
    if request.uri().scheme_str() != Some("http") {
        return reject(
            &shared,
            StatusCode::BAD_REQUEST,
            "only http:// URLs are accepted in absolute form; use CONNECT for https\n",
        );
    }
    let context = ConnectionContext {
        listener: Listener::Explicit,
        client,
        scheme: Scheme::Http,
        sni: None,
        fallback_authority: None,
        fallback_port: None,
        device_token: Some(device_token),
        permit,
        responses,
    };
    request::handle(shared, Arc::new(context), request).await
}

/// Verifies `Proxy-Authorization: Bearer <token>` or `Basic` with the token as
/// password, and returns the token when it is valid.
fn authenticate<B>(shared: &Shared, request: &Request<B>) -> Option<DeviceToken> {
    let value = request
        .headers()
        .get(header::PROXY_AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split_once(':')?.1.to_owned()
    } else {
        return None;
    };
    let identity = shared
        .collaborators
        .identify
        .identify_device_token(&token)?;
    Some(DeviceToken::verified(token, identity))
}

/// Returns the plain-text response to a request that the explicit proxy rejects
/// before any policy work, and counts it in `swg_proxy_requests_total` as
/// `bad_request`, the action of every client error that swg itself rejects.
fn reject(shared: &Shared, status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    // The request target is not logged: its user information may hold a password.
    tracing::debug!(
        listener = Listener::Explicit.as_str(),
        status = status.as_u16(),
        reason = text.trim_end(),
        "request rejected by the explicit proxy"
    );
    shared
        .metrics
        .requests
        .with_label_values(&[Listener::Explicit.as_str(), "bad_request"])
        .inc();
    plain(status, text)
}

/// Builds the 407. When the client `sent` credentials, the text reports them as
/// rejected instead of asking for a token.
fn proxy_auth_required(sent: bool) -> Response<ProxyBody> {
    let text = if sent {
        "proxy authentication failed: the device token is invalid, expired or revoked; \
         enroll the device again\n"
    } else {
        "proxy authentication required: send a device token\n"
    };
    let mut response = plain(StatusCode::PROXY_AUTHENTICATION_REQUIRED, text);
    let headers = response.headers_mut();
    headers.append(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"swg\""),
    );
    headers.append(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"swg\""),
    );
    response
}

/// Serves the PAC file; the request's `Host` names the proxy when the explicit
/// listener is on an unspecified address.
fn pac_file(shared: &Shared, request: &Request<Incoming>) -> Response<ProxyBody> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    let mut response = Response::new(full(Bytes::from(shared.config.pac_file_for(host))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    response
}

/// Accepts a CONNECT and intercepts what flows through the tunnel, which keeps the
/// client connection's `permit` until it ends.
fn connect(
    shared: Arc<Shared>,
    client: SocketAddr,
    device_token: DeviceToken,
    permit: Arc<ConnectionPermit>,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some((host, port)) = connect_target(request.uri()) else {
        return reject(
            &shared,
            StatusCode::BAD_REQUEST,
            "CONNECT needs host:port\n",
        );
    };
    let host_name = match &host {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => name.clone(),
    };

    let upgrade = hyper::upgrade::on(&mut request);
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(error) => {
                tracing::debug!(%error, "CONNECT upgrade failed");
                return;
            }
        };
        let target = TunnelTarget {
            host,
            host_name,
            port,
        };
        tunnel(shared, upgraded, client, target, device_token, permit).await;
    });
    Response::new(empty())
}

/// Returns the host and port of a CONNECT request's target, which must be in
/// authority form (RFC 9110 section 9.3.6): `host:port` with a port from 1 to
/// 65535, and no scheme, user information or path.
fn connect_target(uri: &Uri) -> Option<(Host, u16)> {
    if uri.scheme().is_some() || uri.path_and_query().is_some() {
        return None;
    }
    let authority = uri.authority()?.as_str();
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    Some((Host::parse(host).ok()?, port?))
}

/// The host and port a CONNECT request names.
struct TunnelTarget {
    host: Host,
    /// `host` as text: the name, or the address without brackets.
    host_name: String,
    port: u16,
}

/// Reads the first bytes of the tunnel and serves it by what they are. A TLS
/// handshake record is intercepted like the TLS landing, the HTTP/2 connection
/// preface starts HTTP/2 with prior knowledge, and anything else is HTTP/1.1.
async fn tunnel(
    shared: Arc<Shared>,
    io: TokioIo<hyper::upgrade::Upgraded>,
    client: SocketAddr,
    target: TunnelTarget,
    device_token: DeviceToken,
    permit: Arc<ConnectionPermit>,
) {
    let TunnelTarget {
        host,
        host_name,
        port,
    } = target;
    let deadline = Instant::now() + shared.config.timeouts.client_header_read();
    let mut shutdown = shared.shutdown.clone();
    // A tunnel that has carried nothing yet has no request to finish.
    let read = tokio::select! {
        read = preface::read_opening(io, deadline) => read,
        _ = shutdown.wait_for(|stopping| *stopping) => {
            tracing::debug!(listener = Listener::Explicit.as_str(), %client, host = %host_name, "shutting down; tunnel without a request closed");
            return;
        }
    };
    let (opening, io) = match read {
        Ok(read) => read,
        Err(error) => {
            tracing::debug!(listener = Listener::Explicit.as_str(), %client, host = %host_name, %error, "tunnel ended before its first bytes showed the protocol");
            return;
        }
    };

    if matches!(
        opening,
        Opening::Other {
            first_byte: TLS_HANDSHAKE_RECORD
        }
    ) {
        crate::listener::tls::serve_tunnel(
            shared,
            io,
            client,
            host_name,
            port,
            device_token,
            permit,
        )
        .await;
        return;
    }
    let context = ConnectionContext {
        listener: Listener::Explicit,
        client,
        scheme: Scheme::Http,
        sni: None,
        fallback_authority: Some(host.to_authority_host()),
        fallback_port: Some(port),
        device_token: Some(device_token),
        permit,
        responses: shared.response_watch(),
    };
    serve_intercepted(shared, context, io, opening == Opening::Http2Preface).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Option<(Host, u16)> {
        connect_target(&text.parse::<Uri>().expect("test targets are valid URIs"))
    }

    #[test]
    fn connect_target_in_authority_form() {
        assert_eq!(
            target("origin.test:443"),
            Some((Host::Name("origin.test".to_owned()), 443))
        );
        assert_eq!(
            target("[::1]:8443"),
            Some((Host::Ip(std::net::Ipv6Addr::LOCALHOST.into()), 8443))
        );
    }

    #[test]
    fn connect_target_other_forms_rejected() {
        for text in [
            "http://origin.test:443",
            "http://origin.test:443/",
            "user@origin.test:443",
            "origin.test",
            "origin.test:0",
            "127.0.0.2:0",
            "origin.test:65536",
        ] {
            assert_eq!(target(text), None, "{text}");
        }
    }
}
