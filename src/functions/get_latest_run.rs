//! `GetLatestRun`: the widget's request. Answers the latest public run as JSON (DESIGN §5) from
//! the cache, with an ETag (`If-None-Match` → 304), cache headers and CORS. On the warm path it
//! does no I/O and builds its headers from values prepared once.

use crate::app::App;
use crate::cache::Answer;
use crate::config::AllowedOrigins;
use crate::error::ApiError;
use crate::functions::{FunctionRequest, FunctionResponse, JSON_CONTENT_TYPE};
use warp::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
    ETAG, IF_NONE_MATCH, ORIGIN, VARY,
};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};

/// Handles one widget request.
pub async fn handle(app: &App, request: &FunctionRequest) -> FunctionResponse {
    let mut response = match request.method {
        Method::OPTIONS => preflight(),
        Method::GET | Method::HEAD => match app.latest_run.answer().await {
            Ok(answer) => respond(&answer, request, app.latest_run.cache_control()),
            Err(err) => err.to_response(),
        },
        _ => ApiError::MethodNotAllowed
            .to_response()
            .with_header(ALLOW, "GET, HEAD, OPTIONS"),
    };
    add_cors(
        &mut response.headers,
        &app.settings.allowed_origins,
        request.headers.get(ORIGIN),
    );
    response
}

fn respond(
    answer: &Answer,
    request: &FunctionRequest,
    cache_control: &HeaderValue,
) -> FunctionResponse {
    let not_modified = request
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| etag_matches(tags, answer.etag.to_str().unwrap_or_default()));
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    headers.insert(ETAG, answer.etag.clone());
    headers.insert(CACHE_CONTROL, cache_control.clone());
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
