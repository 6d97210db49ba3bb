//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the JSON API.
//!
//! The document is hand-written JSON (`openapi.json` beside this file), compiled into the binary
//! and served as it is. It is not generated (e.g. with utoipa) on purpose: most handlers answer
//! with `serde_json::json!` values and their status codes come from `ApiError` at run time, so
//! derive macros would describe only part of what goes over the wire, and their annotations drift
//! as easily as a file does. What keeps this file honest instead is checking it against the real
//! thing:
//! - `collector/tests/http.rs` checks that every `/api/v1/` route registered in `mod.rs` is in
//!   the document and the other way round, that its enums are the code's (reasons, severities,
//!   signals, resolutions, categories, settings), and that `info.version` is the crate's;
//! - `tests/tests/e2e/openapi.rs` runs schemathesis against a real `serve` with it: every
//!   response's status code, content type, headers and body must be what the document says.
//!
//! It is served without authentication: it describes the API and holds no data.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`
pub(super) async fn document() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        DOCUMENT,
    )
        .into_response()
}
