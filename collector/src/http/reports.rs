//! Report downloads, report runs and export status for the API (any role may read):
//! - `GET /api/v1/reports?since=30d&until=&format=html|pdf|csv|json&group=&pseudonymize=true&table=`
//!   returns the report as a file (`Content-Disposition: attachment`). CSV is one table per
//!   request (`table=top_products`; without it, the list of table names as JSON).
//! - `GET /api/v1/reports/runs?limit=` lists the newest scheduled report runs.
//! - `GET /api/v1/export` gives each SIEM sink's delivered, dead-letter and pending counts.
//!
//! One report is generated at a time per collector (they read the whole period); a second request
//! meanwhile gets 503 with Retry-After instead of queueing.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::api::{ApiError, authenticate};
use super::{HttpState, now_ms};
use crate::export::{SYSLOG_SINK, WEBHOOK_SINK, dead_letters_total};
use crate::report::pseudonym::{Namer, load_or_create_key};
use crate::report::{self, Format, Rendered, ReportRequest};

/// Longest period a download may cover.
const MAX_PERIOD_MS: i64 = 400 * 86_400_000;

static DATA_DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
static GENERATING: Semaphore = Semaphore::const_new(1);

/// Tells the API where the pseudonym key lives (the collector's data directory). Without it,
/// pseudonymised downloads are refused.
pub fn set_data_dir(dir: std::path::PathBuf) {
    let _ = DATA_DIR.set(dir);
}

#[derive(Debug, Deserialize)]
pub(super) struct ReportParams {
    since: Option<String>,
    until: Option<String>,
    format: Option<String>,
    group: Option<String>,
    pseudonymize: Option<String>,
    table: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RunParams {
    limit: Option<u32>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// `GET /api/v1/reports`
pub(super) async fn download(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers).await?;
    let Query(params) = params.map_err(|_| bad("query parameters are not valid"))?;
    let now = now_ms();
    let since = params.since.as_deref().unwrap_or("30d");
    let (since_ms, until_ms) = report::period(since, params.until.as_deref(), now)
        .map_err(|e| bad(format!("since/until: {e}")))?;
    if until_ms - since_ms > MAX_PERIOD_MS {
        return Err(bad("the period may be at most 400 days"));
    }
    let format: Format = params
        .format
        .as_deref()
        .unwrap_or("html")
        .parse()
        .map_err(bad)?;
    if let Some(group) = &params.group {
        report::check_group(group).map_err(bad)?;
    }
    let pseudonymize = match params.pseudonymize.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(bad("pseudonymize must be true or false")),
    };
    let namer = if pseudonymize {
        let dir = DATA_DIR
            .get()
            .ok_or_else(|| bad("pseudonymised reports are not available on this collector"))?;
        let key = load_or_create_key(dir).map_err(|error| {
            tracing::warn!(%error, "cannot read the pseudonym key");
            ApiError::Internal
        })?;
        Namer::keyed(key)
    } else {
        Namer::plain()
    };
    let Ok(_permit) = GENERATING.try_acquire() else {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "a report is being generated; try again shortly" })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return Ok(response);
    };
    let request = ReportRequest {
        since_ms,
        until_ms,
        group: params.group.clone(),
        namer,
    };
    let built = report::data::build(&state.store, &request, now).await?;
    let table = params.table.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        report::render(&built, format).map(|rendered| (rendered, built))
    })
    .await
    .map_err(|_| ApiError::Internal)?
    .map_err(|error| {
        tracing::warn!(%error, "report rendering failed");
        ApiError::Internal
    })?;
    let day = rendered
        .1
        .period
        .until
        .get(..10)
        .unwrap_or("report")
        .to_owned();
    let (bytes, name, content_type) = match rendered.0 {
        Rendered::File(bytes) => (
            bytes,
            format!("shadowai-report-{day}.{}", format.as_str()),
            format.content_type(),
        ),
        Rendered::Tables(files) => {
            let Some(table) = table else {
                let names: Vec<String> = files
                    .iter()
                    .map(|(name, _)| name.trim_end_matches(".csv").to_owned())
                    .collect();
                return Ok(Json(serde_json::json!({ "tables": names })).into_response());
            };
            let wanted = format!("{table}.csv");
            let Some((_, bytes)) = files.into_iter().find(|(name, _)| *name == wanted) else {
                return Err(bad("unknown table: call without table= for the list"));
            };
            (
                bytes,
                format!("shadowai-report-{day}-{table}.csv"),
                format.content_type(),
            )
        }
    };
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|_| ApiError::Internal)?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /api/v1/reports/runs`
pub(super) async fn runs(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<RunParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers).await?;
    let Query(params) = params.map_err(|_| bad("query parameters are not valid"))?;
    let runs = state
        .store
        .list_report_runs(params.limit.unwrap_or(20))
        .await?;
    Ok(Json(serde_json::json!({ "runs": runs })).into_response())
}

/// `GET /api/v1/export`
pub(super) async fn export_status(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers).await?;
    let mut sinks = serde_json::Map::new();
    for sink in [WEBHOOK_SINK, SYSLOG_SINK] {
        let totals = state.store.export_totals(sink).await?;
        sinks.insert(sink.to_owned(), serde_json::json!(totals));
    }
    Ok(Json(serde_json::json!({
        "sinks": sinks,
        "dead_letters_since_start": dead_letters_total(),
    }))
    .into_response())
}
