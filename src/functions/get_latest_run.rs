//! `GetLatestRun`: the widget's request. Answers the latest public run as JSON (DESIGN §5) from
//! the latest-run service, with an ETag (`If-None-Match` → 304), cache headers and CORS, and
//! turns the service's errors into client errors. On the warm path it does no I/O.

use crate::config::AllowedOrigins;
use crate::http::{ApiError, FunctionRequest, FunctionResponse, JSON_CONTENT_TYPE};
use crate::latest_run::{Answer, LatestRunError, LatestRunService};
use std::sync::OnceLock;
use warp::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
    ETAG, IF_NONE_MATCH, ORIGIN, VARY,
};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};

/// Handles one widget request.
pub async fn handle(
    latest_run: &LatestRunService,
    allowed_origins: &AllowedOrigins,
    request: &FunctionRequest,
) -> FunctionResponse {
    let mut response = match request.method {
        Method::OPTIONS => preflight(),
        Method::GET | Method::HEAD => match latest_run.answer().await {
            Ok(answer) => respond(&answer, request, cache_control(latest_run.cache_seconds())),
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

fn respond(
    answer: &Answer,
    request: &FunctionRequest,
    cache_control: HeaderValue,
) -> FunctionResponse {
    let not_modified = request
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| etag_matches(tags, &answer.etag));
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    if let Ok(etag) = HeaderValue::from_str(&answer.etag) {
        headers.insert(ETAG, etag);
    }
    headers.insert(CACHE_CONTROL, cache_control);
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, bytes::Bytes::new())
    } else {
        // A cheap reference-counted clone of the cached bytes.
        (StatusCode::OK, answer.body.clone())
    };
    FunctionResponse {
        status,
        headers,
        body,
    }
}

/// `If-None-Match`: a list of tags or `*`; weak comparison, as RFC 9110 asks for this header.
fn etag_matches(header: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

fn preflight() -> FunctionResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("If-None-Match, Content-Type"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    FunctionResponse {
        status: StatusCode::NO_CONTENT,
        headers,
        body: bytes::Bytes::new(),
    }
}

/// CORS headers for the request's origin under `WIDGET_ALLOWED_ORIGINS`.
fn add_cors(headers: &mut HeaderMap, allowed: &AllowedOrigins, origin: Option<&HeaderValue>) {
    let expose = HeaderValue::from_static("ETag");
    match allowed {
        AllowedOrigins::Any => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
        AllowedOrigins::List(list) => {
            // The answer differs by Origin, so shared caches must key on it.
            headers.insert(VARY, HeaderValue::from_static("Origin"));
            let listed = origin.filter(|o| {
                o.to_str()
                    .is_ok_and(|o| list.iter().any(|a| a == o.trim_end_matches('/')))
            });
            if let Some(origin) = listed {
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_understands_lists_weak_tags_and_star() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn cors_follows_the_allow_list() {
        let origin = |o: &'static str| HeaderValue::from_static(o);
        let mut any = HeaderMap::new();
        add_cors(
            &mut any,
            &AllowedOrigins::Any,
            Some(&origin("https://evil.example")),
        );
        assert_eq!(any[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let list = AllowedOrigins::List(vec!["https://blog.example.org".into()]);
        let mut allowed = HeaderMap::new();
        add_cors(
            &mut allowed,
            &list,
            Some(&origin("https://blog.example.org")),
        );
        assert_eq!(
            allowed[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://blog.example.org"
        );
        assert_eq!(allowed[VARY], "Origin");
        let mut other = HeaderMap::new();
        add_cors(&mut other, &list, Some(&origin("https://evil.example")));
        assert!(other.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(other[VARY], "Origin");
    }
}
