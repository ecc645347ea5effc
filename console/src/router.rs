//! The routes of the console and the layers around them.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;

use crate::{
    activity_api, admin, agent, body, lingering, policy_api, profile, ApiError, ConsoleState,
};

/// One route: path, the methods it serves, its handlers and its body limit.
struct Route {
    path: &'static str,
    methods: &'static [Method],
    handlers: MethodRouter<ConsoleState>,
    /// Whether bodies may reach `console.max_policy_bytes` instead of
    /// `console.max_body_bytes`.
    policy_body: bool,
}

fn route(
    path: &'static str,
    methods: &'static [Method],
    handlers: MethodRouter<ConsoleState>,
) -> Route {
    Route {
        path,
        methods,
        handlers,
        policy_body: false,
    }
}

impl Route {
    /// Allows bodies up to `console.max_policy_bytes` on this route.
    fn with_policy_body(mut self) -> Self {
        self.policy_body = true;
        self
    }
}

/// Every route of the console; the router and [`route_table`] both come from it,
/// so the API description test checks exactly what is served.
fn routes() -> Vec<Route> {
    vec![
        route("/api/agent/enroll", &[Method::POST], post(agent::enroll)),
        route("/api/agent/renew", &[Method::POST], post(agent::renew)),
        route("/api/agent/settings", &[Method::GET], get(agent::settings)),
        route("/api/agent/activity", &[Method::GET], get(agent::activity)),
        route(
            "/api/certificate",
            &[Method::GET],
            get(profile::certificate),
        ),
        route(
            "/api/mdm-profile",
            &[Method::GET],
            get(profile::mdm_profile),
        ),
        route(
            "/api/keys",
            &[Method::GET, Method::POST],
            get(admin::list_keys).post(admin::create_key),
        ),
        route(
            "/api/keys/{id}",
            &[Method::DELETE],
            delete(admin::delete_key),
        ),
        route(
            "/api/admin-tokens",
            &[Method::GET, Method::POST],
            get(admin::list_admin_tokens).post(admin::create_admin_token),
        ),
        route(
            "/api/admin-tokens/{id}",
            &[Method::DELETE],
            delete(admin::delete_admin_token),
        ),
        route(
            "/api/disabler-password",
            &[Method::GET, Method::POST],
            get(admin::show_disabler).post(admin::generate_disabler),
        ),
        route(
            "/api/policy",
            &[Method::GET, Method::PUT],
            get(policy_api::read).merge(put(policy_api::replace)),
        )
        .with_policy_body(),
        route(
            "/api/policy/validate",
            &[Method::POST],
            post(policy_api::validate),
        )
        .with_policy_body(),
        route(
            "/api/policy/explain",
            &[Method::POST],
            post(policy_api::explain),
        ),
        route("/api/activity", &[Method::GET], get(activity_api::query)),
        route(
            "/api/activity/export.csv",
            &[Method::GET],
            get(activity_api::export_csv),
        ),
        route(
            "/api/activity/summary",
            &[Method::GET],
            get(activity_api::summary),
        ),
    ]
}

/// Returns `(method, path)` of every route the console serves, paths in axum's
/// `{parameter}` syntax.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes()
        .into_iter()
        .flat_map(|route| {
            route
                .methods
                .iter()
                .map(move |method| (method.clone(), route.path))
        })
        .collect()
}

/// Builds the console's router: every route, a body limit (larger for policy
/// texts), a time limit per request, JSON errors for unknown paths and a
/// lingering close of bodies that an error response leaves unread.
pub fn router(state: ConsoleState) -> Router {
    let config = state.config.clone();
    let mut router = Router::new();
    for route in routes() {
        let limit = if route.policy_body {
            config.max_policy_bytes
        } else {
            config.max_body_bytes
        };
        let handlers = route
            .handlers
            .layer::<_, Infallible>(axum::middleware::from_fn_with_state(
                limit,
                body::prepare_body,
            ))
            .layer::<_, Infallible>(DefaultBodyLimit::max(limit));
        router = router.route(route.path, handlers);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(config.request_timeout_secs),
            request_timeout,
        ))
        // Outermost, so that it also gets the bodies of 404, 405 and 408 responses.
        .layer(axum::middleware::from_fn(lingering::linger_after_errors))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API path".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "this method is not allowed on this path".to_owned(),
    }
}

/// Returns 408 when a request, body reading included, takes longer than the
/// configured limit, so a slow client cannot hold a handler forever.
async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::debug!(limit_secs = limit.as_secs(), "request timed out");
            ApiError::Rejected {
                status: StatusCode::REQUEST_TIMEOUT,
                message: "the request took too long".to_owned(),
            }
            .into_response()
        }
    }
}
