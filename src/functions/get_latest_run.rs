//! `GetLatestRun`: the widget's request. Answers the latest public run as JSON (DESIGN §5) from
//! the latest-run service, with an ETag (`If-None-Match` → 304), cache headers and CORS, and
//! turns the service's errors into client errors. On the warm path it does no I/O.

use super::public_http::{add_cors, cacheable, preflight};
use crate::config::AllowedOrigins;
use crate::http::{ApiError, FunctionRequest, FunctionResponse, JSON_CONTENT_TYPE};
use crate::latest_run::{LatestRunError, LatestRunService};
use std::sync::OnceLock;
use warp::http::header::{ALLOW, ORIGIN};
use warp::http::{HeaderValue, Method};

/// Handles one widget request.
pub async fn handle(
    latest_run: &LatestRunService,
    allowed_origins: &AllowedOrigins,
    request: &FunctionRequest,
) -> FunctionResponse {
    let mut response = match request.method {
        Method::OPTIONS => preflight(),
        Method::GET | Method::HEAD => match latest_run.answer().await {
            Ok(answer) => cacheable(
                request,
                // A cheap reference-counted clone of the cached bytes.
                answer.body.clone(),
                &answer.etag,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
                cache_control(latest_run.cache_seconds()),
            ),
            Err(err) => api_error(err).to_response(),
        },
        _ => ApiError::MethodNotAllowed
            .to_response()
            .with_header(ALLOW, "GET, HEAD, OPTIONS"),
    };
    add_cors(
        &mut response.headers,
        allowed_origins,
        request.headers.get(ORIGIN),
    );
    response
}

/// The client's view of the service's errors.
fn api_error(err: LatestRunError) -> ApiError {
    match err {
        LatestRunError::NotConfigured => ApiError::NotConfigured,
        LatestRunError::CredentialsUnusable(problem) => ApiError::CredentialsUnusable(problem),
        LatestRunError::StorageUnavailable => ApiError::StorageUnavailable,
        LatestRunError::StravaUnavailable => ApiError::StravaUnavailable,
        LatestRunError::StravaAuthorization => ApiError::StravaAuthorization,
        LatestRunError::NoPublicRun => ApiError::NoPublicRun,
    }
}

/// `Cache-Control` for answers: browsers and CDNs may reuse one briefly and keep showing it
/// while they revalidate. Formatted once per window length (the `headers` crate's CacheControl
/// has no `stale-while-revalidate`).
fn cache_control(cache_seconds: i64) -> HeaderValue {
    static PREPARED: OnceLock<(i64, HeaderValue)> = OnceLock::new();
    let format = || {
        HeaderValue::from_str(&format!(
            "public, max-age={}, stale-while-revalidate={}",
            cache_seconds.clamp(0, 300),
            cache_seconds.max(60)
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=60"))
    };
    let (seconds, value) = PREPARED.get_or_init(|| (cache_seconds, format()));
    if *seconds == cache_seconds {
        value.clone()
    } else {
        format()
    }
}
