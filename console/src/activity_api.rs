//! Admin API for the activity report: query, CSV export, summaries.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use swg_activity::{ActivityError, DailyTotal, Page, TopEntry};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

use crate::auth::Admin;
use crate::error::quoted_after;
use crate::query::ApiQuery;
use crate::{ApiError, ConsoleState};

/// Default and maximum span of a query without `from`, in days (the longest
/// retention the activity store allows).
const DEFAULT_RANGE_DAYS: i64 = 30;
/// Largest top-list length.
const MAX_TOP: usize = 100;
/// Top-list length when the request names none.
const DEFAULT_TOP: usize = 10;

/// Filters of `GET /api/activity` and `GET /api/activity/export.csv`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivityParams {
    /// Start of the range, RFC 3339, inclusive; 30 days before `to` by default.
    from: Option<String>,
    /// End of the range, RFC 3339, exclusive; now by default.
    to: Option<String>,
    user: Option<String>,
    device: Option<String>,
    action: Option<String>,
    app: Option<String>,
    category: Option<String>,
    domain: Option<String>,
    /// Page size, 1 to [`swg_activity::query::MAX_PAGE_SIZE`]. It is read as text so
    /// that a negative or non-numeric value gets the range message too.
    limit: Option<String>,
    cursor: Option<String>,
}

fn parse_time(name: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|error| {
        let value = quoted_after(": ", value);
        ApiError::BadRequest(format!("{name} is not an RFC 3339 time ({error}){value}"))
    })
}

/// Parses the `action` filter; the error lists the actions by their API names.
fn parse_action(value: &str) -> Result<swg_activity::Action, ApiError> {
    value.parse().map_err(|_| {
        let names: Vec<&str> = swg_activity::Action::ALL
            .iter()
            .map(|action| action.as_str())
            .collect();
        let value = quoted_after(" ", value);
        ApiError::BadRequest(format!(
            "unknown action{value}; use one of {}",
            names.join(", ")
        ))
    })
}

/// Parses a `limit` parameter: a whole number from 1 to `max`.
fn parse_limit(value: &str, max: usize) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|limit| (1..=max).contains(limit))
        .ok_or_else(|| {
            let value = quoted_after(", not ", value);
            ApiError::BadRequest(format!(
                "limit must be a whole number from 1 to {max}{value}"
            ))
        })
}

fn build_query(tenant: &str, params: ActivityParams) -> Result<swg_activity::Query, ApiError> {
    let to = match &params.to {
        Some(value) => parse_time("to", value)?,
        None => OffsetDateTime::now_utc(),
    };
    let from = match &params.from {
        Some(value) => parse_time("from", value)?,
        None => to - Duration::days(DEFAULT_RANGE_DAYS),
    };
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".to_owned()));
    }

    let mut query = swg_activity::Query::new(tenant, from, to);
    query.user = params.user;
    query.device = params.device;
    query.app = params.app;
    query.category = params.category;
    query.domain = params.domain;
    if let Some(action) = params.action {
        query.action = Some(parse_action(&action)?);
    }
    if let Some(limit) = &params.limit {
        query.limit = parse_limit(limit, swg_activity::query::MAX_PAGE_SIZE)?;
    }
    if let Some(cursor) = params.cursor {
        query.cursor = Some(
            cursor
                .parse()
                .map_err(|error: ActivityError| ApiError::BadRequest(error.to_string()))?,
        );
    }
    Ok(query)
}

/// `GET /api/activity`: one page of events, newest first.
pub(crate) async fn query(
    State(state): State<ConsoleState>,
    admin: Admin,
    ApiQuery(params): ApiQuery<ActivityParams>,
) -> Result<Json<Page>, ApiError> {
    let query = build_query(admin.tenant(), params)?;
    let store = state.activity.clone();
    let page = tokio::task::spawn_blocking(move || store.query(&query)).await??;
    Ok(Json(page))
}

/// `GET /api/activity/export.csv`: every matching event as CSV, streamed one page
/// at a time so memory stays bounded whatever the number of rows.
pub(crate) async fn export_csv(
    State(state): State<ConsoleState>,
    admin: Admin,
    ApiQuery(params): ApiQuery<ActivityParams>,
) -> Result<Response, ApiError> {
    if params.limit.is_some() {
        return Err(ApiError::BadRequest(
            "the export holds every matching event and takes no limit; narrow it with from, to and the filters".to_owned(),
        ));
    }
    let mut query = build_query(admin.tenant(), params)?;
    query.limit = swg_activity::query::MAX_PAGE_SIZE;
    let store = state.activity.clone();

    // The store blocks, so a blocking thread produces the chunks and a small
    // channel hands them to the body. A slow client so slows the producer down.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, ActivityError>>(4);
    tokio::task::spawn_blocking(move || {
        for chunk in swg_activity::CsvChunks::new(store.as_ref(), query) {
            let failed = chunk.is_err();
            if let Err(error) = &chunk {
                tracing::error!(%error, "activity export failed part way");
            }
            if sender.blocking_send(chunk.map(Bytes::from)).is_err() || failed {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });

    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                CONTENT_DISPOSITION,
                "attachment; filename=\"swg-activity.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Range of `GET /api/activity/summary`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SummaryParams {
    /// First UTC day, `YYYY-MM-DD`; 29 days before `to` by default.
    from: Option<String>,
    /// Last UTC day, `YYYY-MM-DD`, inclusive; today by default.
    to: Option<String>,
    /// Length of the top lists, 1 to 100; 10 by default.
    limit: Option<String>,
}

/// Totals per day and the most blocked domains and categories.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    daily_totals: Vec<DayTotal>,
    top_blocked_domains: Vec<TopEntry>,
    top_blocked_categories: Vec<TopEntry>,
}

/// One day's count of one action, with the day as `YYYY-MM-DD`.
#[derive(Debug, Serialize)]
pub(crate) struct DayTotal {
    day: String,
    action: swg_activity::Action,
    count: u64,
}

impl From<DailyTotal> for DayTotal {
    fn from(total: DailyTotal) -> Self {
        let (year, month, day) = total.day.to_calendar_date();
        DayTotal {
            day: format!("{year:04}-{:02}-{day:02}", u8::from(month)),
            action: total.action,
            count: total.count,
        }
    }
}

fn parse_day(name: &str, value: &str) -> Result<Date, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let quoted = quoted_after(": ", value);
    // `[year]` also takes a sign (`-2026-01-01`), which no caller means.
    if !value.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "{name} is not a YYYY-MM-DD day{quoted}"
        )));
    }
    Date::parse(value, &format).map_err(|error| {
        ApiError::BadRequest(format!("{name} is not a YYYY-MM-DD day ({error}){quoted}"))
    })
}

/// `GET /api/activity/summary`: daily totals and top lists for charts.
pub(crate) async fn summary(
    State(state): State<ConsoleState>,
    admin: Admin,
    ApiQuery(params): ApiQuery<SummaryParams>,
) -> Result<Json<Summary>, ApiError> {
    let to = match &params.to {
        Some(value) => parse_day("to", value)?,
        None => OffsetDateTime::now_utc().date(),
    };
    let from = match &params.from {
        Some(value) => parse_day("from", value)?,
        None => to - Duration::days(DEFAULT_RANGE_DAYS - 1),
    };
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".to_owned()));
    }
    let limit = match &params.limit {
        Some(value) => parse_limit(value, MAX_TOP)?,
        None => DEFAULT_TOP,
    };

    let store = state.activity.clone();
    let tenant = admin.tenant().to_owned();
    let summary = tokio::task::spawn_blocking(move || -> Result<Summary, ActivityError> {
        Ok(Summary {
            daily_totals: store
                .daily_totals(&tenant, from, to)?
                .into_iter()
                .map(DayTotal::from)
                .collect(),
            top_blocked_domains: store.top_blocked_domains(&tenant, from, to, limit)?,
            top_blocked_categories: store.top_blocked_categories(&tenant, from, to, limit)?,
        })
    })
    .await??;
    Ok(Json(summary))
}
