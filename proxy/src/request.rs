//! One request through the proxy: target, identity, policy, then upstream or a page.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::body::{full, GuardedBody, ProxyBody};
use crate::boundary::{
    Action, ClientIdentity, Decision, PageKind, PageRequest, ProxyEvent, Verdict,
};
use crate::connection::ConnectionContext;
use crate::headers::{is_websocket_upgrade, remove_bypass_headers, remove_hop_by_hop};
use crate::server::Shared;
use crate::target::Target;
use crate::upstream::UpstreamFailure;
use crate::websocket;

/// Path prefix served by swg itself on every intercepted site.
pub const RESERVED_PREFIX: &str = "/.swg/";

/// Handles one request of a client connection.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    context: Arc<ConnectionContext>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let request_id = next_request_id();
    let span = tracing::debug_span!(
        "request",
        id = %request_id,
        listener = context.listener.as_str(),
        client = %context.client,
        method = %request.method(),
    );
    handle_in_span(shared, context, request, request_id)
        .instrument(span)
        .await
}

async fn handle_in_span(
    shared: Arc<Shared>,
    context: Arc<ConnectionContext>,
    request: Request<Incoming>,
    request_id: String,
) -> Response<ProxyBody> {
    let target = match Target::of_request(
        &request,
        context.scheme,
        context.fallback_authority.as_deref(),
        context.fallback_port,
    ) {
        Ok(target) => target,
        Err(error) => {
            tracing::debug!(%error, "request without a valid host");
            count(&shared, &context, "bad_request");
            return plain(StatusCode::BAD_REQUEST, "invalid or missing host\n");
        }
    };
    let host = target.host_name();
    check_sni(&context, &host);

    if target.path_and_query.starts_with(RESERVED_PREFIX) {
        count(&shared, &context, "reserved");
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }

    let url = target.url();
    let navigation = is_navigation(&request);
    let accept_language = request
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut exchange = Exchange {
        shared: &shared,
        context: &context,
        request_id,
        url,
        navigation,
        accept_language,
    };

    let Some(identity) = establish_identity(&shared, &context, &host).await else {
        return exchange.unidentified();
    };

    let decision = shared
        .collaborators
        .decide
        .decide_url(&identity, &exchange.url);
    match decision.verdict {
        Verdict::Block | Verdict::Warn => return exchange.blocked(identity, decision),
        Verdict::Allow | Verdict::Bypass => {}
    }

    let result = if is_websocket_upgrade(request.headers()) && request.version() == Version::HTTP_11
    {
        websocket::tunnel(&shared, &target, request).await
    } else {
        forward(&shared, &target, request).await
    };
    match result {
        Ok(response) => exchange.allowed(identity, decision, response),
        Err(failure) => exchange.failed(identity, decision, failure),
    }
}

/// Finds who is asking. This is the one place where a request's identity is
/// established: the identity cookie and the inspection flow will come first here.
async fn establish_identity(
    shared: &Shared,
    context: &ConnectionContext,
    host: &str,
) -> Option<ClientIdentity> {
    if let Some(identity) = &context.identity {
        return Some(identity.clone());
    }
    shared
        .collaborators
        .identify
        .identify_correlation_hint(context.client.ip(), host)
        .await
}

fn check_sni(context: &ConnectionContext, host: &str) {
    let Some(sni) = &context.sni else { return };
    if !sni.eq_ignore_ascii_case(host) {
        tracing::info!(sni = %sni, host = %host, "Host differs from SNI; judging by Host");
    }
}

/// Forwards a request upstream and returns the response with hop-by-hop headers
/// removed and the body streamed under the response limits.
async fn forward(
    shared: &Shared,
    target: &Target,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, UpstreamFailure> {
    let limits = &shared.config.limits;
    let idle = shared.config.timeouts.idle();
    if declared_length(request.headers())
        .is_some_and(|length| length > limits.max_request_body_bytes)
    {
        return Err(UpstreamFailure::RequestTooLarge);
    }

    let (mut parts, body) = request.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    // hyper writes Host (HTTP/1.1) or :authority (HTTP/2) from the URI.
    parts.headers.remove(header::HOST);
    parts.uri = format!(
        "{}://{}{}",
        target.scheme.as_str(),
        target.authority(),
        target.path_and_query
    )
    .parse()
    .map_err(|_| UpstreamFailure::InvalidHost)?;
    parts.version = Version::HTTP_11;
    let mut body = GuardedBody::new(body, limits.max_request_body_bytes, idle);
    let request_sent = body.end_signal();
    let body = body.boxed();

    let started = Instant::now();
    let response = shared
        .upstream
        .send(Request::from_parts(parts, body), request_sent)
        .await?;
    shared
        .metrics
        .upstream_seconds
        .with_label_values(&[] as &[&str])
        .observe(started.elapsed().as_secs_f64());

    let (mut parts, body) = response.into_parts();
    if declared_length(&parts.headers).is_some_and(|length| length > limits.max_response_body_bytes)
    {
        return Err(UpstreamFailure::ResponseTooLarge);
    }
    remove_hop_by_hop(&mut parts.headers, false);
    remove_bypass_headers(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let body = GuardedBody::new(body, limits.max_response_body_bytes, idle).boxed();
    Ok(Response::from_parts(parts, body))
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The part of a request's handling that sends the response and records the event.
struct Exchange<'a> {
    shared: &'a Shared,
    context: &'a ConnectionContext,
    request_id: String,
    url: String,
    navigation: bool,
    accept_language: Option<String>,
}

impl Exchange<'_> {
    fn unidentified(&mut self) -> Response<ProxyBody> {
        tracing::debug!(url = %self.url, "no identity for request");
        let response = if self.navigation {
            self.page(PageKind::Unidentified, None)
        } else {
            plain(
                StatusCode::FORBIDDEN,
                "forbidden: the gateway could not identify this device\n",
            )
        };
        self.record(None, Action::Unidentified, None, None);
        response
    }

    fn blocked(&mut self, identity: ClientIdentity, decision: Decision) -> Response<ProxyBody> {
        let action = if decision.verdict == Verdict::Warn {
            Action::Warn
        } else {
            Action::Block
        };
        tracing::debug!(url = %self.url, rule = ?decision.rule, "request blocked by policy");
        let response = self.page(PageKind::Block(decision.clone()), Some(&identity));
        self.record(Some(identity), action, Some(decision), None);
        response
    }

    fn allowed(
        &mut self,
        identity: ClientIdentity,
        decision: Decision,
        response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        tracing::debug!(url = %self.url, status = response.status().as_u16(), "request forwarded");
        if decision.verdict == Verdict::Bypass {
            count(self.shared, self.context, "bypass");
        } else {
            self.record(Some(identity), Action::Allow, Some(decision), None);
        }
        response
    }

    fn failed(
        &mut self,
        identity: ClientIdentity,
        decision: Decision,
        failure: UpstreamFailure,
    ) -> Response<ProxyBody> {
        self.shared
            .metrics
            .upstream_errors
            .with_label_values(&[failure.kind()])
            .inc();
        tracing::info!(url = %self.url, kind = failure.kind(), detail = ?failure, "upstream request failed");
        let response = self.page(PageKind::UpstreamError(failure), Some(&identity));
        self.record(
            Some(identity),
            Action::UpstreamError,
            Some(decision),
            Some(failure),
        );
        response
    }

    fn page(&self, kind: PageKind, identity: Option<&ClientIdentity>) -> Response<ProxyBody> {
        let request = PageRequest {
            kind,
            url: self.url.clone(),
            request_id: self.request_id.clone(),
            navigation: self.navigation,
            identity: identity.cloned(),
            accept_language: self.accept_language.clone(),
        };
        let mut response = self.shared.collaborators.pages.render(&request).map(full);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn record(
        &mut self,
        identity: Option<ClientIdentity>,
        action: Action,
        decision: Option<Decision>,
        failure: Option<UpstreamFailure>,
    ) {
        count(self.shared, self.context, action.as_str());
        self.shared.collaborators.record.record(ProxyEvent {
            request_id: std::mem::take(&mut self.request_id),
            identity,
            client: self.context.client.ip(),
            url: std::mem::take(&mut self.url),
            action,
            decision,
            failure,
        });
    }
}

fn count(shared: &Shared, context: &ConnectionContext, action: &str) {
    shared
        .metrics
        .requests
        .with_label_values(&[context.listener.as_str(), action])
        .inc();
}

/// Whether a request is a top-level navigation, which gets an HTML page rather than
/// a short text body.
fn is_navigation<B>(request: &Request<B>) -> bool {
    if request.method() != Method::GET {
        return false;
    }
    let header_text = |name| {
        request
            .headers()
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    if let Some(mode) = header_text("sec-fetch-mode") {
        return mode.eq_ignore_ascii_case("navigate");
    }
    header_text(header::ACCEPT.as_str()).is_some_and(|accept| accept.contains("text/html"))
}

/// A short plain-text response.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Returns a new request id, in the format of the activity log so that pages, logs
/// and events share it.
fn next_request_id() -> String {
    swg_activity::RequestId::generate().as_str().to_owned()
}
