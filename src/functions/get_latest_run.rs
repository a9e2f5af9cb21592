//! `GetLatestRun`: the widget's request. Answers the latest public run as JSON (DESIGN §5) from
//! the cache, with an ETag (`If-None-Match` → 304), cache headers and CORS.

use crate::app::App;
use crate::cache::Answer;
use crate::config::AllowedOrigins;
use crate::error::ApiError;
use crate::functions::{FunctionRequest, FunctionResponse, JSON_CONTENT_TYPE};
use warp::http::{Method, StatusCode};

/// Handles one widget request.
pub async fn handle(app: &App, request: &FunctionRequest) -> FunctionResponse {
    let cors = cors_headers(&app.settings.allowed_origins, request.header("origin"));
    let response = match request.method {
        Method::OPTIONS => preflight(),
        Method::GET | Method::HEAD => match app.latest_run.answer().await {
            Ok(answer) => respond(&answer, request, app.settings.cache_seconds),
            Err(err) => err.to_response(),
        },
        _ => ApiError::MethodNotAllowed
            .to_response()
            .with_header("Allow", "GET, HEAD, OPTIONS"),
    };
    cors.into_iter().fold(response, |response, (name, value)| {
        response.with_header(name, value)
    })
}

fn respond(answer: &Answer, request: &FunctionRequest, cache_seconds: u64) -> FunctionResponse {
    // Browsers and CDNs may reuse the answer briefly and keep showing it while revalidating.
    let cache_control = format!(
        "public, max-age={}, stale-while-revalidate={}",
        cache_seconds.min(300),
        cache_seconds.max(60)
    );
    let not_modified = request
        .header("if-none-match")
        .is_some_and(|tags| etag_matches(tags, &answer.etag));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, bytes::Bytes::new())
    } else {
        (StatusCode::OK, answer.body.clone())
    };
    FunctionResponse {
        status,
        headers: vec![
            ("Content-Type", JSON_CONTENT_TYPE.to_owned()),
            ("ETag", answer.etag.clone()),
            ("Cache-Control", cache_control),
        ],
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
    FunctionResponse {
        status: StatusCode::NO_CONTENT,
        headers: vec![
            (
                "Access-Control-Allow-Methods",
                "GET, HEAD, OPTIONS".to_owned(),
            ),
            (
                "Access-Control-Allow-Headers",
                "If-None-Match, Content-Type".to_owned(),
            ),
            ("Access-Control-Max-Age", "86400".to_owned()),
        ],
        body: bytes::Bytes::new(),
    }
}

/// CORS headers for the request's origin under `WIDGET_ALLOWED_ORIGINS`.
fn cors_headers(allowed: &AllowedOrigins, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let expose = ("Access-Control-Expose-Headers", "ETag".to_owned());
    match allowed {
        AllowedOrigins::Any => vec![("Access-Control-Allow-Origin", "*".to_owned()), expose],
        AllowedOrigins::List(list) => {
            // The answer differs by Origin, so shared caches must key on it.
            let mut headers = vec![("Vary", "Origin".to_owned())];
            if let Some(origin) =
                origin.filter(|o| list.iter().any(|a| a == o.trim_end_matches('/')))
            {
                headers.push((
                    "Access-Control-Allow-Origin",
                    origin.trim_end_matches('/').to_owned(),
                ));
                headers.push(expose);
            }
            headers
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
        let any = cors_headers(&AllowedOrigins::Any, Some("https://evil.example"));
        assert!(any.contains(&("Access-Control-Allow-Origin", "*".to_owned())));
        let list = AllowedOrigins::List(vec!["https://blog.example.org".into()]);
        let allowed = cors_headers(&list, Some("https://blog.example.org"));
        assert!(allowed.contains(&(
            "Access-Control-Allow-Origin",
            "https://blog.example.org".to_owned()
        )));
        assert!(allowed.contains(&("Vary", "Origin".to_owned())));
        let other = cors_headers(&list, Some("https://evil.example"));
        assert!(!other
            .iter()
            .any(|(n, _)| *n == "Access-Control-Allow-Origin"));
        assert!(other.contains(&("Vary", "Origin".to_owned())));
    }
}
