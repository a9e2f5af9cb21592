//! What the public HTTP functions answer alike: CORS under `WIDGET_ALLOWED_ORIGINS` and its
//! preflight, and cacheable answers with a strong ETag where `If-None-Match` gets a `304`.

use super::cards::{IMAGE_CSP, SVG_CONTENT_TYPE};
use crate::app::App;
use crate::config::AllowedOrigins;
use crate::http::{ApiError, FunctionRequest, FunctionResponse, JSON_CONTENT_TYPE, NOSNIFF};
use headers::{Header, HeaderMapExt};
use warp::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, ORIGIN, VARY,
    X_CONTENT_TYPE_OPTIONS,
};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};

/// The headers of the widget's cacheable answers, one set for JSON answers and one for SVG
/// cards, built once per server: content type, `nosniff`, `Cache-Control`, an ETag to be
/// filled in, the CORS headers that do not depend on the request's origin and, for cards, their
/// CSP. Each answer clones a set and fills in its ETag: about 750 instructions fewer than
/// inserting the headers one by one (40% less), the warm path's largest cost of the app's own.
#[derive(Debug)]
pub struct AnswerHeaders {
    json: HeaderMap,
    svg: HeaderMap,
}

impl AnswerHeaders {
    /// The sets of `app`'s answers: its `Cache-Control` and its CORS allow-list (the same list
    /// [`read_only`] is given, so the CORS headers of a set and of the request agree).
    pub fn of(app: &App) -> Self {
        Self::new(&app.answer_cache_control, &app.allowed_origins)
    }

    /// The sets for answers cached under `cache_control`, for origins `allowed`.
    fn new(cache_control: &HeaderValue, allowed: &AllowedOrigins) -> Self {
        let mut svg = answer_headers(
            HeaderValue::from_static(SVG_CONTENT_TYPE),
            cache_control.clone(),
            allowed,
        );
        svg.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(IMAGE_CSP));
        AnswerHeaders {
            json: answer_headers(
                HeaderValue::from_static(JSON_CONTENT_TYPE),
                cache_control.clone(),
                allowed,
            ),
            svg,
        }
    }

    /// The set of a JSON answer.
    pub fn json(&self) -> &HeaderMap {
        &self.json
    }

    /// The set of an SVG card.
    pub fn svg(&self) -> &HeaderMap {
        &self.svg
    }
}

/// A cacheable answer's headers: `content_type`, `nosniff`, `cache_control`, an empty ETag for
/// [`cacheable`] to fill in, and the CORS headers every origin gets under `allowed`.
pub fn answer_headers(
    content_type: HeaderValue,
    cache_control: HeaderValue,
    allowed: &AllowedOrigins,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF));
    headers.insert(ETAG, HeaderValue::from_static(""));
    headers.insert(CACHE_CONTROL, cache_control);
    add_cors(&mut headers, allowed, None);
    headers
}

/// A `200` with `body` and `headers` (a set from [`answer_headers`] or [`AnswerHeaders`]) with
/// `etag` filled in, or a `304` without a body when the request's `If-None-Match` matches `etag`.
pub fn cacheable(
    request: &FunctionRequest,
    body: bytes::Bytes,
    etag: &bytes::Bytes,
    mut headers: HeaderMap,
) -> FunctionResponse {
    // Only a request that carries If-None-Match pays for parsing it: the widget's plain GET (the
    // benchmarked warm path) does one map lookup here and nothing more.
    let etag = HeaderValue::from_maybe_shared(etag.clone()).ok();
    let not_modified = request.headers.contains_key(IF_NONE_MATCH)
        && etag
            .as_ref()
            .is_some_and(|etag| !if_none_match_passes(&request.headers, etag));
    // The set's ETag slot is replaced in place (a clone has no room for a header more).
    match etag {
        Some(etag) => headers.insert(ETAG, etag),
        None => headers.remove(ETAG),
    };
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, bytes::Bytes::new())
    } else {
        (StatusCode::OK, body)
    };
    FunctionResponse {
        status,
        headers,
        body,
    }
}

/// Whether the request's `If-None-Match` lets the full answer through (RFC 9110 §13.1.2): all
/// its header lines read as one list, `*` or any listed tag equal to ours under the weak
/// comparison (`W/"x"` matches `"x"`) means 304. A header that cannot be read is ignored, as the
/// full answer is always a correct reply.
fn if_none_match_passes(request: &HeaderMap, etag: &HeaderValue) -> bool {
    if !request.get_all(IF_NONE_MATCH).iter().all(tag_list_is_safe) {
        return true;
    }
    let Some(condition) = request.typed_get::<headers::IfNoneMatch>() else {
        return true;
    };
    match headers::ETag::decode(&mut std::iter::once(etag)) {
        Ok(ours) => condition.precondition_passes(&ours),
        Err(_) => true,
    }
}

/// Whether one `If-None-Match` line can be given to `headers` safely. Its entity-tag parser
/// `debug_assert!`s that a tag holds no space or tab (valid tags never do, but header values may),
/// so such a line would panic in a debug build. A line with unbalanced quotes is refused too:
/// `headers` joins the lines with ", ", which would put a space inside the open quote. The items
/// are split as `headers` splits them: on commas outside quotes, trimmed.
fn tag_list_is_safe(line: &HeaderValue) -> bool {
    let Ok(text) = line.to_str() else {
        // `headers` reads nothing from a line that is not visible ASCII.
        return true;
    };
    let mut in_quotes = false;
    let safe = text
        .split(|c: char| {
            if c == '"' {
                in_quotes = !in_quotes;
            }
            c == ',' && !in_quotes
        })
        .all(|item| !item.trim().contains([' ', '\t']));
    safe && !in_quotes
}

/// A public read-only function's reply: the preflight for `OPTIONS`, `answer` for `GET` and
/// `HEAD`, `405` for anything else; CORS headers on all of them.
pub async fn read_only<F, Fut>(
    allowed: &AllowedOrigins,
    request: &FunctionRequest,
    answer: F,
) -> FunctionResponse
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = FunctionResponse>,
{
    let mut response = match request.method {
        Method::OPTIONS => preflight(),
        Method::GET | Method::HEAD => answer().await,
        _ => ApiError::MethodNotAllowed
            .to_response()
            .with_header(ALLOW, "GET, HEAD, OPTIONS"),
    };
    add_cors(&mut response.headers, allowed, request.headers.get(ORIGIN));
    response
}

/// The CORS preflight answer (`OPTIONS`): `204` allowing the methods and `If-None-Match`.
pub fn preflight() -> FunctionResponse {
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

/// CORS headers for the request's origin under `WIDGET_ALLOWED_ORIGINS`. Those every origin
/// gets are not added again when already there (an [`answer_headers`] set has them).
pub fn add_cors(headers: &mut HeaderMap, allowed: &AllowedOrigins, origin: Option<&HeaderValue>) {
    let expose = HeaderValue::from_static("ETag");
    match allowed {
        AllowedOrigins::Any => {
            if headers.get(ACCESS_CONTROL_ALLOW_ORIGIN) != Some(&HeaderValue::from_static("*")) {
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
                headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose);
            }
        }
        AllowedOrigins::List(list) => {
            // The answer differs by Origin, so shared caches must key on it.
            if !headers.get_all(VARY).iter().any(|vary| vary == "Origin") {
                headers.append(VARY, HeaderValue::from_static("Origin"));
            }
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

    fn passes(lines: &[&'static str]) -> bool {
        let mut request = HeaderMap::new();
        for line in lines {
            request.append(IF_NONE_MATCH, HeaderValue::from_static(line));
        }
        if_none_match_passes(&request, &HeaderValue::from_static("\"abc\""))
    }

    /// An answer from a cached set (ETag filled in, CORS added for the request by [`read_only`])
    /// has the headers it would get built one by one, for a `200` and a `304` alike, under
    /// either kind of allow-list and whatever the request's origin.
    #[tokio::test]
    async fn answers_from_cached_sets_have_the_headers_built_one_by_one() {
        let cache_control = HeaderValue::from_static("public, max-age=60");
        let listed = AllowedOrigins::List(vec!["https://blog.example".into()]);
        let etag = bytes::Bytes::from_static(b"\"0123abcd\"");
        for allowed in [AllowedOrigins::Any, listed] {
            let sets = AnswerHeaders::new(&cache_control, &allowed);
            let origins = [
                None,
                Some("https://blog.example"),
                Some("https://other.example"),
            ];
            for (origin, if_none_match) in origins.into_iter().flat_map(|o| [(o, false), (o, true)])
            {
                let mut request = FunctionRequest {
                    method: Method::GET,
                    query: Vec::new(),
                    params: Vec::new(),
                    headers: HeaderMap::new(),
                    body: bytes::Bytes::new(),
                };
                if let Some(origin) = origin {
                    request
                        .headers
                        .insert(ORIGIN, HeaderValue::from_static(origin));
                }
                if if_none_match {
                    request
                        .headers
                        .insert(IF_NONE_MATCH, HeaderValue::from_static("\"0123abcd\""));
                }
                for (set, content_type, csp) in [
                    (sets.json(), JSON_CONTENT_TYPE, None),
                    (sets.svg(), SVG_CONTENT_TYPE, Some(IMAGE_CSP)),
                ] {
                    let body = bytes::Bytes::from_static(b"answer");
                    let answer = read_only(&allowed, &request, || async {
                        cacheable(&request, body.clone(), &etag, set.clone())
                    })
                    .await;
                    let mut built = HeaderMap::new();
                    built.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                    built.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF));
                    built.insert(ETAG, HeaderValue::from_static("\"0123abcd\""));
                    built.insert(CACHE_CONTROL, cache_control.clone());
                    if let Some(csp) = csp {
                        built.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
                    }
                    add_cors(&mut built, &allowed, request.headers.get(ORIGIN));
                    let case = format!("{allowed:?} {origin:?} {if_none_match} {content_type}");
                    assert_eq!(answer.headers, built, "{case}");
                    let (status, body) = if if_none_match {
                        (StatusCode::NOT_MODIFIED, bytes::Bytes::new())
                    } else {
                        (StatusCode::OK, body)
                    };
                    assert_eq!((answer.status, &answer.body), (status, &body), "{case}");
                    let allowed_origin = answer.headers.get(ACCESS_CONTROL_ALLOW_ORIGIN);
                    match (&allowed, origin) {
                        (AllowedOrigins::Any, _) => assert_eq!(allowed_origin.unwrap(), "*"),
                        (_, Some(o)) if o.starts_with("https://blog") => {
                            assert_eq!(allowed_origin.unwrap(), o)
                        }
                        _ => assert!(allowed_origin.is_none(), "{case}"),
                    }
                    let varies = answer.headers.get_all(VARY).iter().count();
                    let expected = usize::from(matches!(allowed, AllowedOrigins::List(_)));
                    assert_eq!(varies, expected, "{case}");
                }
            }
        }
    }

    #[test]
    fn if_none_match_understands_lists_weak_tags_star_and_several_lines() {
        assert!(!passes(&["\"abc\""]));
        assert!(!passes(&["W/\"abc\""]));
        assert!(!passes(&["\"x\", W/\"abc\""]));
        assert!(!passes(&["\"x\",\"abc\""]));
        assert!(!passes(&["\"x\"", "\"abc\""]));
        assert!(!passes(&["*"]));
        assert!(passes(&["\"abd\""]));
        assert!(passes(&["\"x\", W/\"y\""]));
        assert!(passes(&["\"x\"", "W/\"y\""]));
        assert!(passes(&["abc"]));
        assert!(passes(&["w/\"abc\""]));
        assert!(passes(&[""]));
        assert!(passes(&[",, ,"]));
        assert!(passes(&[]));
    }

    #[test]
    fn if_none_match_with_whitespace_inside_a_tag_is_ignored_not_a_panic() {
        assert!(passes(&["\"a b\""]));
        assert!(passes(&["\"a\tb\""]));
        assert!(passes(&["W/\"a b\", \"abc\""]));
        assert!(passes(&["\"a", "b\""]));
        assert!(passes(&["\"a,  b\""]));
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
