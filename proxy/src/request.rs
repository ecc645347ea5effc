//! One request through the proxy: target, identity, policy, then upstream or a page.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use tracing::Instrument;

use crate::auth_host;
use crate::body::{empty, full, Cut, GuardedBody, ProxyBody};
use crate::boundary::{
    Action, ClientIdentity, Decision, PageKind, PageRequest, ProxyEvent, Verdict,
};
use crate::budget::{self, Reservation};
use crate::connection::ConnectionContext;
use crate::cookies::SwgCookies;
use crate::headers::{is_websocket_upgrade, remove_bypass_headers, remove_hop_by_hop};
use crate::identify::{self, is_top_level_navigation, Asking, Found};
use crate::reserved;
use crate::server::Shared;
use crate::target::{InvalidTarget, Target};
use crate::upstream::{self, StreamLease, UpstreamFailure};
use crate::warn::{self, WarnOutcome};
use crate::websocket;

/// Path prefix served by swg itself on every intercepted site.
pub const RESERVED_PREFIX: &str = "/.swg/";

/// The activity reason of an allowed request whose body could not be read from
/// the client.
const CLIENT_BODY_REASON: &str = "client error: request body invalid or incomplete";

/// The activity reason of a WebSocket handshake rejected because it has a body.
const WEBSOCKET_BODY_REASON: &str = "bad request: WebSocket handshake with a body";

/// The activity reason of an allowed HTTP/2 request whose handling hyper dropped
/// before the origin's response: the client or h2 reset its stream, or its
/// connection closed.
const STREAM_RESET_REASON: &str = "stream reset before the response";

/// The activity reason of an allowed HTTP/1.x request whose handling hyper dropped
/// before the origin's response, because its connection closed.
const CONNECTION_CLOSED_REASON: &str = "connection closed before the response";

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
    mut request: Request<Incoming>,
    request_id: String,
) -> Response<ProxyBody> {
    let target = match Target::of_request(
        &request,
        context.scheme,
        context.fallback_authority.as_deref(),
        context.fallback_port,
    ) {
        Ok(target) => target,
        // No variant of the error contains user information, so it may be logged.
        Err(error) => {
            tracing::debug!(%error, "request without a valid target");
            count(&shared, &context, "bad_request");
            return plain(StatusCode::BAD_REQUEST, invalid_target_text(&error));
        }
    };
    let host = target.host_name();
    check_sni(&context, &host);
    let cookies = SwgCookies::take(request.headers_mut());

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
        url: target.url(),
        navigation,
        accept_language,
        set_cookies: Vec::new(),
    };

    if shared.config.is_auth_host(&host) {
        count(&shared, &context, "reserved");
        return auth_host::serve(&mut exchange, &target, request.method(), &cookies).await;
    }
    let reserved = is_reserved(&target);
    if reserved && target.path() == reserved::TICKET_PATH {
        count(&shared, &context, "reserved");
        return reserved::redeem_ticket(&mut exchange, &target, &host, &cookies).await;
    }
    if reserved && target.path() != reserved::CONTINUE_PATH {
        count(&shared, &context, "reserved");
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }

    let asking = Asking {
        shared: &shared,
        context: &context,
        target: &target,
        host: &host,
        url: &exchange.url,
        cookies: &cookies,
        top_level_navigation: !reserved && is_top_level_navigation(&request, navigation),
    };
    let identity = match identify::establish(&asking).await {
        Found::Identity {
            identity,
            set_cookie,
        } => {
            exchange.set_cookies.extend(set_cookie);
            identity
        }
        Found::Redirect(response) => {
            count(&shared, &context, "redirect");
            return response;
        }
        Found::Inspection => return exchange.inspection(),
        Found::Nothing => return exchange.unidentified(),
    };

    if reserved {
        count(&shared, &context, "reserved");
        let response =
            reserved::accept_warning(&mut exchange, &target, &host, identity, &cookies, request)
                .await;
        return exchange.with_cookies(response);
    }

    let mut decision = shared
        .collaborators
        .decide
        .decide_url(&identity, &exchange.url);
    match decision.verdict {
        Verdict::Block => return exchange.blocked(identity, decision),
        Verdict::Warn => match warn::judge(&shared, &identity, &host, &decision, &cookies) {
            WarnOutcome::Warn => return exchange.warned(identity, decision, &host),
            WarnOutcome::Block(reason) => {
                decision.reason = reason;
                return exchange.blocked(identity, decision);
            }
            WarnOutcome::Acknowledged => {
                decision.reason = warn::acknowledged_reason(&decision.reason);
            }
        },
        Verdict::Allow | Verdict::Bypass => {}
    }

    let version = request.version();
    let websocket = is_websocket_upgrade(request.headers()) && version == Version::HTTP_11;
    if websocket && !request.body().is_end_stream() {
        let response = exchange.websocket_with_body(identity, decision);
        return exchange.with_cookies(response);
    }
    let guard = ForwardGuard {
        exchange: &mut exchange,
        identity: &identity,
        decision: &decision,
        version,
        armed: true,
    };
    let result = if websocket {
        websocket::tunnel(&shared, &context, &target, request)
            .await
            .map_err(ForwardError::Upstream)
    } else {
        forward(&shared, &context, &target, request).await
    };
    // No await follows until the outcome is recorded, so hyper cannot drop the
    // handling in between.
    guard.disarm();
    let response = match result {
        Ok(response) => exchange.allowed(identity, decision, response),
        Err(ForwardError::Upstream(failure)) => exchange.failed(identity, decision, failure),
        Err(ForwardError::ClientBody) => exchange.client_body_failed(identity, decision, version),
    };
    exchange.with_cookies(response)
}

/// Returns the text of the 400 response to a request whose target swg rejects.
fn invalid_target_text(error: &InvalidTarget) -> &'static str {
    match error {
        InvalidTarget::UserInformation => {
            "bad request: user information (user:password@) is not accepted in a URL or Host header\n"
        }
        InvalidTarget::AsteriskForm(_) => {
            "bad request: the request target * is only valid for OPTIONS\n"
        }
        InvalidTarget::MissingHost | InvalidTarget::InvalidPort(_) | InvalidTarget::InvalidHost(_) => {
            "invalid or missing host\n"
        }
    }
}

/// Tells whether the request's path is under [`RESERVED_PREFIX`] in the canonical
/// form that policy matches paths in (percent-decoded, runs of slashes merged, dot
/// segments resolved, lower case). Origins resolve `/%2eswg/x`, `//.swg/x` and
/// `/a/../.swg/x` to `/.swg/x`, so none of these spellings may be forwarded.
fn is_reserved(target: &Target) -> bool {
    if target.path_and_query.starts_with(RESERVED_PREFIX) {
        return true;
    }
    // The canonical form can contain `swg` only if the path spells it, in some case
    // or percent-encoded, so most paths skip building that form on every request.
    let path = target.path().as_bytes();
    let may_spell = path.contains(&b'%')
        || path
            .windows(3)
            .any(|letters| letters.eq_ignore_ascii_case(b"swg"));
    may_spell && swg_policy::canonical_target(target.path()).starts_with(RESERVED_PREFIX)
}

fn check_sni(context: &ConnectionContext, host: &str) {
    let Some(sni) = &context.sni else { return };
    if !sni.eq_ignore_ascii_case(host) {
        tracing::info!(sni = %sni, host = %host, "Host differs from SNI; judging by Host");
    }
}

/// Guard over the forwarding of a request that policy allowed. The client or h2
/// may reset the request's HTTP/2 stream, or its connection may close, while swg
/// waits for the origin. hyper then drops the handling's future and this guard
/// with it, and the guard records the request although no response is sent. The
/// handling disarms the guard before it records the outcome itself, so each
/// forwarded request is recorded once.
struct ForwardGuard<'x, 'a> {
    exchange: &'x mut Exchange<'a>,
    identity: &'x ClientIdentity,
    decision: &'x Decision,
    version: Version,
    /// Whether the request's outcome is still unrecorded.
    armed: bool,
}

impl ForwardGuard<'_, '_> {
    /// Leaves the recording of the request's outcome to the caller.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ForwardGuard<'_, '_> {
    fn drop(&mut self) {
        if self.armed {
            // Identity and decision are cloned only on this rare path, so that the
            // normal path moves them without copies.
            self.exchange
                .abandoned(self.identity.clone(), self.decision.clone(), self.version);
        }
    }
}

/// The failure of a request that policy allowed, before its origin's response
/// arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForwardError {
    /// The upstream request failed, or swg refused it (destination check, limits).
    Upstream(UpstreamFailure),
    /// Reading the request body from the client failed, so the upstream request
    /// was abandoned: the client's fault, not the origin's.
    ClientBody,
}

impl From<UpstreamFailure> for ForwardError {
    fn from(failure: UpstreamFailure) -> ForwardError {
        ForwardError::Upstream(failure)
    }
}

/// Forwards a request to `target` and returns the response, passed on by
/// [`pass_on`].
async fn forward(
    shared: &Shared,
    context: &ConnectionContext,
    target: &Target,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ForwardError> {
    let limits = &shared.config.limits;
    let idle = shared.config.timeouts.idle();
    if declared_length(request.headers())
        .is_some_and(|length| length > limits.max_request_body_bytes)
    {
        return Err(UpstreamFailure::RequestTooLarge.into());
    }

    // The origin must not process a request that is not idempotent and whose
    // response swg would then refuse, so such a request reserves the largest
    // response buffer before it is sent.
    let reserved = if request.method().is_idempotent() {
        None
    } else {
        let largest = upstream::largest_response_buffer(&shared.config);
        Some(
            budget::reserve(
                &context.permit.budgets().responses,
                &shared.response_budget,
                largest,
            )
            .map_err(UpstreamFailure::Overloaded)?,
        )
    };

    let head = request.method() == Method::HEAD;
    let (mut parts, body) = request.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    // hyper writes Host (HTTP/1.1) or :authority (HTTP/2) from the URI.
    parts.headers.remove(header::HOST);
    parts.uri = target
        .upstream_uri()
        .map_err(|_| UpstreamFailure::InvalidHost)?;
    parts.version = Version::HTTP_11;
    let mut body = GuardedBody::new(body, limits.max_request_body_bytes, idle);
    let request_sent = body.end_signal();
    // hyper never polls an empty body, so there is nothing to watch.
    let watch = (!body.is_end_stream()).then(|| body.watch());
    let body = body.boxed();

    let started = Instant::now();
    let (response, lease) = shared
        .upstream
        .send(
            Request::from_parts(parts, body),
            request_sent,
            watch.clone(),
        )
        .await
        .map_err(|failure| match watch.and_then(|watch| watch.cut()) {
            Some(Cut::TooLarge) => ForwardError::Upstream(UpstreamFailure::RequestTooLarge),
            Some(Cut::Idle) => ForwardError::Upstream(UpstreamFailure::TimedOut),
            // hyper reports the body's error as a failure of the upstream request,
            // and towards an HTTP/2 origin as a reset of its stream.
            Some(Cut::Client) => ForwardError::ClientBody,
            None => ForwardError::Upstream(failure),
        })?;
    shared
        .metrics
        .upstream_seconds
        .with_label_values(&[] as &[&str])
        .observe(started.elapsed().as_secs_f64());

    if head {
        return Ok(pass_on_head(response));
    }
    Ok(pass_on(shared, context, response, reserved, lease)?)
}

/// Prepares an origin's response to HEAD for the client: removes hop-by-hop and
/// bypass headers and drops the body. A response to HEAD has no content (RFC 9110
/// section 9.3.2), so DATA frames that an HTTP/2 origin sends anyway are not
/// passed on, and `Content-Length` describes a body that never comes, so no size
/// limit applies to it.
fn pass_on_head(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    drop(body);
    remove_hop_by_hop(&mut parts.headers, false);
    remove_bypass_headers(&mut parts.headers);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, empty())
}

/// Prepares an origin's response for the client: removes hop-by-hop and bypass
/// headers, and streams the body under the response limits, watched by the
/// connection's response watch. Refuses a response whose declared length is over
/// `limits.max_response_body_bytes`, or that does not fit in the response buffer
/// budgets of the client's address and of the process, and drops its body. A
/// response to a request that `reserved` its buffer before it was sent keeps what
/// it needs of that reservation instead. The body keeps `lease`, which counts the
/// response's stream in its origin pool, until the origin's body is finished.
pub(crate) fn pass_on(
    shared: &Shared,
    context: &ConnectionContext,
    response: Response<Incoming>,
    reserved: Option<Reservation>,
    lease: StreamLease,
) -> Result<Response<ProxyBody>, UpstreamFailure> {
    let limits = &shared.config.limits;
    let (mut parts, body) = response.into_parts();
    if declared_length(&parts.headers).is_some_and(|length| length > limits.max_response_body_bytes)
    {
        return Err(UpstreamFailure::ResponseTooLarge);
    }
    let largest_buffer = if body.is_end_stream() {
        0
    } else {
        let bound = upstream::response_buffer_bound(parts.version, &shared.config);
        body.size_hint()
            .upper()
            .map_or(bound, |length| length.min(bound))
    };
    let reservation = match reserved {
        Some(mut reservation) => {
            reservation.shrink_to(largest_buffer);
            reservation
        }
        None => budget::reserve(
            &context.permit.budgets().responses,
            &shared.response_budget,
            largest_buffer,
        )
        .map_err(UpstreamFailure::Overloaded)?,
    };
    remove_hop_by_hop(&mut parts.headers, false);
    remove_bypass_headers(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let body = context
        .responses
        .watch(body, limits.max_response_body_bytes, reservation, lease)
        .boxed();
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
pub(crate) struct Exchange<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) context: &'a ConnectionContext,
    pub(crate) request_id: String,
    pub(crate) url: String,
    pub(crate) navigation: bool,
    pub(crate) accept_language: Option<String>,
    /// `Set-Cookie` values added to the response, whatever it is.
    pub(crate) set_cookies: Vec<HeaderValue>,
}

impl Exchange<'_> {
    /// Appends the pending `Set-Cookie` values to `response`; origin cookies stay.
    pub(crate) fn with_cookies(
        &mut self,
        mut response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        for cookie in self.set_cookies.drain(..) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// Answers a request that the gateway cannot identify.
    pub(crate) fn unidentified(&mut self) -> Response<ProxyBody> {
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

    /// Answers a navigation whose browser does not keep cookies with the
    /// inspection page, or any other request with a plain 403.
    pub(crate) fn inspection(&mut self) -> Response<ProxyBody> {
        let response = if self.navigation {
            self.page(PageKind::Inspection, None)
        } else {
            plain(
                StatusCode::FORBIDDEN,
                "forbidden: the gateway could not identify this device\n",
            )
        };
        self.record(None, Action::Unidentified, None, None);
        response
    }

    /// Answers with the block page (or short text) and records a block. Apps and
    /// warn verdicts that may not be continued come here too.
    pub(crate) fn blocked(
        &mut self,
        identity: ClientIdentity,
        decision: Decision,
    ) -> Response<ProxyBody> {
        tracing::debug!(url = %self.url, rule = ?decision.rule, "request blocked by policy");
        // Apps render no pages: they get a short text whatever they accept.
        let response = if identify::may_be_browser(identity.app_class) {
            self.page(PageKind::Block(decision.clone()), Some(&identity))
        } else {
            plain(StatusCode::FORBIDDEN, "forbidden: blocked by policy\n")
        };
        self.record(Some(identity), Action::Block, Some(decision), None);
        self.with_cookies(response)
    }

    /// Answers with the warn page and a fresh "continue" form token, and records a
    /// warn.
    pub(crate) fn warned(
        &mut self,
        identity: ClientIdentity,
        decision: Decision,
        host: &str,
    ) -> Response<ProxyBody> {
        let Some(form_token) =
            warn::issue_form_token(self.shared, &identity, host, &decision, &self.url)
        else {
            return self.blocked(identity, decision);
        };
        tracing::debug!(url = %self.url, rule = ?decision.rule, "warn page");
        let response = self.page(
            PageKind::Warn {
                decision: decision.clone(),
                form_token,
            },
            Some(&identity),
        );
        self.record(Some(identity), Action::Warn, Some(decision), None);
        self.with_cookies(response)
    }

    /// Records that the user continued past the warn page of `decision`.
    pub(crate) fn accepted(&mut self, identity: ClientIdentity, decision: Decision) {
        self.record(Some(identity), Action::Accepted, Some(decision), None);
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
        let mut response = self.page(PageKind::UpstreamError(failure), Some(&identity));
        if let UpstreamFailure::Overloaded(_) = failure {
            // Responses in flight give their buffers back within seconds unless
            // their clients stall (an estimate, not a promise).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        let action = if failure.is_refusal() {
            Action::Block
        } else {
            Action::UpstreamError
        };
        self.record(Some(identity), action, Some(decision), Some(failure));
        response
    }

    /// Builds the 400 response to a request whose body could not be read from the
    /// client, after policy allowed it and its head went upstream, and counts it as
    /// `bad_request`, not as an upstream error. The activity event keeps the allow
    /// verdict, because the origin may have received part of the request, with a
    /// reason that names the client's failure. Bypassed requests get no event, as
    /// when they succeed.
    fn client_body_failed(
        &mut self,
        identity: ClientIdentity,
        mut decision: Decision,
        version: Version,
    ) -> Response<ProxyBody> {
        tracing::debug!(url = %self.url, "reading the request body from the client failed; upstream request abandoned");
        let mut response = plain(
            StatusCode::BAD_REQUEST,
            "bad request: the request body is invalid or incomplete\n",
        );
        if version < Version::HTTP_2 {
            // After broken framing, swg cannot tell where a next request would start.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        count(self.shared, self.context, "bad_request");
        if decision.verdict != Verdict::Bypass {
            decision.reason = CLIENT_BODY_REASON.to_owned();
            self.record_uncounted(Some(identity), Action::Allow, Some(decision), None);
        }
        response
    }

    /// Builds the 400 response to a WebSocket handshake that has a body, and counts
    /// it as `bad_request`. The handshake is a GET (RFC 6455 section 4.1) whose
    /// connection carries WebSocket frames right after its head, so swg sends it
    /// upstream without a body and cannot forward one. The activity
    /// event records a block with a reason that names the problem and no rule,
    /// because policy allowed the URL. Bypassed requests get no event, as when
    /// they succeed.
    fn websocket_with_body(
        &mut self,
        identity: ClientIdentity,
        mut decision: Decision,
    ) -> Response<ProxyBody> {
        tracing::debug!(url = %self.url, "WebSocket handshake with a body rejected");
        let mut response = plain(
            StatusCode::BAD_REQUEST,
            "bad request: a WebSocket handshake has no body\n",
        );
        // The body is not read, so the connection cannot carry a next request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        count(self.shared, self.context, "bad_request");
        if decision.verdict != Verdict::Bypass {
            decision.rule = None;
            decision.reason = WEBSOCKET_BODY_REASON.to_owned();
            self.record_uncounted(Some(identity), Action::Block, Some(decision), None);
        }
        response
    }

    /// Records a request that policy allowed but whose handling hyper dropped
    /// before the origin's response, as [`Exchange::allowed`] would: counted as
    /// `allow` with an allow event, or as `bypass` without one. The event keeps the
    /// allow verdict, because the origin may have received part of the request,
    /// with a reason that names how the client went away.
    fn abandoned(&mut self, identity: ClientIdentity, mut decision: Decision, version: Version) {
        let reason = if version >= Version::HTTP_2 {
            STREAM_RESET_REASON
        } else {
            CONNECTION_CLOSED_REASON
        };
        tracing::debug!(url = %self.url, reason, "request abandoned before the origin's response");
        if decision.verdict == Verdict::Bypass {
            count(self.shared, self.context, "bypass");
            return;
        }
        decision.reason = reason.to_owned();
        self.record(Some(identity), Action::Allow, Some(decision), None);
    }

    /// Renders a page for this request.
    pub(crate) fn page(
        &self,
        kind: PageKind,
        identity: Option<&ClientIdentity>,
    ) -> Response<ProxyBody> {
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
        self.record_uncounted(identity, action, decision, failure);
    }

    /// Records the activity event without counting the request, for a request
    /// whose metric action differs from its event's.
    fn record_uncounted(
        &mut self,
        identity: Option<ClientIdentity>,
        action: Action,
        decision: Option<Decision>,
        failure: Option<UpstreamFailure>,
    ) {
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

/// `Sec-Fetch-Mode` (Fetch Metadata), which the http crate has no constant for.
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// Whether a request is a top-level navigation, which gets an HTML page rather than
/// a short text body.
fn is_navigation<B>(request: &Request<B>) -> bool {
    if request.method() != Method::GET {
        return false;
    }
    let header_text = |name: HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    if let Some(mode) = header_text(SEC_FETCH_MODE) {
        return mode.eq_ignore_ascii_case("navigate");
    }
    header_text(header::ACCEPT).is_some_and(|accept| accept.contains("text/html"))
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

/// A redirect to `location` that no cache keeps; `None` when `location` is not a
/// valid header value.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Option<Response<ProxyBody>> {
    let location = HeaderValue::from_str(location).ok()?;
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

/// Returns a new request id, in the format of the activity log so that pages, logs
/// and events share it.
fn next_request_id() -> String {
    swg_activity::RequestId::generate().as_str().to_owned()
}
