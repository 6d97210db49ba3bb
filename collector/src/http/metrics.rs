//! `GET /metrics`: the Prometheus (OpenMetrics) text of `crate::metrics`.
//!
//! Not public: the figures say how many laptops are watched and how many are blind, which is
//! reconnaissance for someone planning to evade detection. A scraper authenticates with the
//! metrics bearer token (`[metrics] token_file`, compared in constant time) or with any API key
//! (`apikey create --role viewer`). Serving a scrape never queries the database: the fleet gauges
//! are refreshed by a background task.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::HttpState;
use super::api::authenticate;

pub(super) async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !has_metrics_token(&state, &headers)
        && let Err(error) = authenticate(&state, &headers).await
    {
        return error.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::metrics::metrics().encode(),
    )
        .into_response()
}

fn has_metrics_token(state: &HttpState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.metrics_token else {
        return false;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}
