//! The HTTP server: one warp filter that accepts every request, reads its body with a size cap
//! (chunked bodies included), and routes it: `GET /` readiness, `/api/{Function}`,
//! `/api/StravaWebhook/{secret}` and `/api/widget/{file}` forwarded requests, and in host mode only `POST /{Function}`
//! invocations. Anything else gets a JSON error; nothing panics. Connections, and the limits on
//! a request's head, are [`connections`]' job.

mod connections;

pub use connections::ServerLimits;

use crate::app::App;
use crate::functions::public_http::AnswerHeaders;
use crate::functions::{self, FunctionName};
use crate::host::{self, HttpReplies, InvocationRequest, InvocationResponse};
use crate::http::{ApiError, FunctionRequest, FunctionResponse};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::{self, Either};
use futures_util::{FutureExt, Stream, StreamExt};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::path::FullPath;
use warp::Filter;

/// The largest request body accepted, chunked or not. Invocation envelopes are a few KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long a client may take to send its body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Who the server answers to, which decides the routes it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Behind a Functions host: readiness, the public `/api/...` routes and the host's invocation
    /// routes `POST /{Function}` (the host is their only caller).
    Host,
    /// Without a host (`handler standalone`), reachable by anyone: readiness and the public
    /// `/api/...` routes only. `POST /{Function}` is an unknown route here (404 `not_found`), so
    /// nobody can run the timer functions from outside.
    Standalone,
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then finishes in-flight
/// requests.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    mode: Mode,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    connections::serve(listener, routes(app, mode), limits, shutdown).await;
}

/// The app, the invocation replies of its latest answers and the headers of its cacheable
/// answers, shared by every connection.
struct Shared {
    app: Arc<App>,
    http_replies: HttpReplies,
    answer_headers: AnswerHeaders,
}

/// Every route of the app in `mode` as one filter that never rejects.
pub fn routes(
    app: Arc<App>,
    mode: Mode,
) -> impl Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone + Send + Sync + 'static {
    // What every request needs, behind one reference count (each request takes one clone).
    let shared = Arc::new(Shared {
        answer_headers: AnswerHeaders::of(&app),
        app,
        http_replies: HttpReplies::default(),
    });
    let with_shared = warp::any().map(move || Arc::clone(&shared));
    warp::method()
        .and(warp::path::full())
        // Decoded pairs, none without a query. (`query::raw` rejects a request without one, and
        // a rejection is an allocation on every plain GET of the widget.)
        .and(
            warp::query::<Vec<(String, String)>>()
                .or(warp::any().map(Vec::new))
                .unify(),
        )
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_shared)
        .then(
            move |method: Method,
                  path: FullPath,
                  query: Vec<(String, String)>,
                  headers: HeaderMap,
                  body,
                  shared: Arc<Shared>| async move {
                let body = read_body(&headers, body).await;
                let request = RawRequest {
                    method,
                    path: path.as_str(),
                    query,
                    headers,
                    body,
                };
                let Shared {
                    app,
                    http_replies,
                    answer_headers,
                } = &*shared;
                route(app, http_replies, answer_headers, mode, request).await
            },
        )
        .recover(|_rejection: warp::Rejection| async move {
            // The filter above cannot reject; this keeps the error shape even if that changes.
            Ok::<_, Infallible>(ApiError::NotFound.to_response().into_http())
        })
        .unify()
}

/// Reads a body up to [`MAX_BODY_BYTES`], whether it has a Content-Length or is chunked.
async fn read_body<S, B>(headers: &HeaderMap, stream: S) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // HTTP/1.1: without Content-Length or Transfer-Encoding there is no body. Most requests (the
    // widget's GETs, the host's readiness pings) take this path, with no read and no timer.
    if declared.unwrap_or(0) == 0 && !headers.contains_key(warp::http::header::TRANSFER_ENCODING) {
        return Ok(Bytes::new());
    }
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let read = async {
        let unreadable = |_| ApiError::BadRequest("The request body could not be read.".into());
        let mut stream = std::pin::pin!(stream);
        // A body that arrives in one piece (the host's envelopes, most webhooks) is taken as it
        // is, without a copy; only one in several pieces is put together.
        let mut first = match stream.next().await {
            None => return Ok(Bytes::new()),
            Some(chunk) => chunk.map_err(unreadable)?,
        };
        if first.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        let first = first.copy_to_bytes(first.remaining());
        let Some(second) = stream.next().await else {
            return Ok(first);
        };
        let mut body =
            BytesMut::with_capacity(declared.unwrap_or(0).clamp(first.len(), MAX_BODY_BYTES));
        body.extend_from_slice(&first);
        let mut next = Some(second);
        while let Some(chunk) = next {
            let mut chunk = chunk.map_err(unreadable)?;
            if body.len() + chunk.remaining() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                body.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
            next = stream.next().await;
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::BadRequest(
                "The request body did not arrive in time.".into(),
            ))
        })
}

/// A request as warp has taken it apart, its body read (or failed to be read).
pub(crate) struct RawRequest<'a> {
    pub method: Method,
    pub path: &'a str,
    /// The query's decoded pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Result<Bytes, ApiError>,
}

/// Routes one request: the routing [`routes`] does after warp has taken the request apart. The
/// fuzz targets (the `fuzzing` feature) drive it in-process with any path, query, headers and
/// body.
///
/// It decides where the request goes before anything is awaited and returns that call's future
/// as it is. An `async fn` would keep its arguments (the whole request) beside the call's own
/// copy of them; every request's future would be that much larger, and hyper and warp move it a
/// few times per request.
pub(crate) fn route<'a>(
    app: &'a App,
    http_replies: &'a HttpReplies,
    answer_headers: &'a AnswerHeaders,
    mode: Mode,
    request: RawRequest<'a>,
) -> impl Future<Output = Response<Bytes>> + Send + 'a {
    let RawRequest {
        method,
        path,
        query,
        headers,
        body,
    } = request;
    // One leading slash and at most one trailing one (`/api/GetLatestRun/` is the function, as
    // in the host's routing); any other empty segment (`//api/GetLatestRun`, `/api/x//`, `//`)
    // makes the path unknown rather than a second name for a route.
    let rest = path.strip_prefix('/').unwrap_or(path);
    let rest = match rest.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => rest,
    };
    let mut segments = rest.split('/');
    let parts = [
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ];
    // Where the request goes is decided first, and the future returned is that one call's:
    // it is as large as the largest call, not as the request and every call together.
    let target = match parts {
        // Readiness and health pings: answered before and without any I/O.
        [Some(""), None, None, None] if method == Method::GET || method == Method::HEAD => {
            let mut ready = Response::new(Bytes::from_static(br#"{"status":"ready"}"#));
            ready.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static(crate::http::JSON_CONTENT_TYPE),
            );
            ready.headers_mut().insert(
                warp::http::header::X_CONTENT_TYPE_OPTIONS,
                warp::http::HeaderValue::from_static(crate::http::NOSNIFF),
            );
            Target::Answer(ready)
        }
        // The host's routing ignores case in the whole route: `/API/getlatestrun` is the function.
        [Some(prefix), Some(name), None, None] if prefix.eq_ignore_ascii_case("api") => {
            match FunctionName::parse(name).filter(|f| f.is_http()) {
                Some(function) => Target::Public(function, Vec::new()),
                None => Target::Answer(ApiError::NotFound.to_response().into_http()),
            }
        }
        // `StravaWebhook/{secret?}`: the webhook's route (StravaWebhook/function.json); the
        // bare path is the route without its optional segment.
        [Some(prefix), Some(name), Some(secret), None]
            if prefix.eq_ignore_ascii_case("api") && name.eq_ignore_ascii_case("StravaWebhook") =>
        {
            let params = vec![("secret".to_owned(), secret.to_owned())];
            Target::Public(FunctionName::StravaWebhook, params)
        }
        // `widget/{file}`: the Widget function's own route (Widget/function.json).
        [Some(prefix), Some(route), Some(file), None]
            if prefix.eq_ignore_ascii_case("api") && route.eq_ignore_ascii_case("widget") =>
        {
            let params = vec![("file".to_owned(), file.to_owned())];
            Target::Public(FunctionName::Widget, params)
        }
        // The invocation routes belong to the host; standalone they do not exist.
        [Some(name), None, None, None] if mode == Mode::Host => match FunctionName::parse(name) {
            Some(function) if method == Method::POST => Target::Invocation(function),
            Some(_) => Target::Answer(
                ApiError::MethodNotAllowed
                    .to_response()
                    .with_header(warp::http::header::ALLOW, "POST")
                    .into_http(),
            ),
            None => Target::Answer(ApiError::NotFound.to_response().into_http()),
        },
        _ => Target::Answer(ApiError::NotFound.to_response().into_http()),
    };
    match (target, body) {
        (Target::Answer(answer), _) => Either::Left(future::ready(answer)),
        (_, Err(err)) => Either::Left(future::ready(err.to_response().into_http())),
        (Target::Public(function, params), Ok(body)) => {
            let request = FunctionRequest {
                method,
                query,
                params,
                headers,
                body,
            };
            Either::Right(Either::Left(call_public(
                app,
                answer_headers,
                function,
                request,
            )))
        }
        (Target::Invocation(function), Ok(body)) => {
            let span = functions::span(function, Some(&headers));
            // The envelope is parsed here, in the invocation's span as the call runs in it.
            let call = span.in_scope(|| invoke(app, http_replies, answer_headers, function, body));
            Either::Right(Either::Right(call.instrument(span)))
        }
    }
}

/// Where [`route`] sends a request.
enum Target {
    /// Answered without a function.
    Answer(Response<Bytes>),
    /// A forwarded request to an HTTP function, with its route parameters.
    Public(FunctionName, Vec<(String, String)>),
    /// The host's invocation of a function.
    Invocation(FunctionName),
}

/// Runs an HTTP function on a forwarded request. The host forwards its requests with the
/// invocation id: they are logged in its span. Without one (standalone, the widget's warm path
/// in benchmarks) there is nothing to tie lines to.
fn call_public<'a>(
    app: &'a App,
    answer_headers: &'a AnswerHeaders,
    function: FunctionName,
    request: FunctionRequest,
) -> impl Future<Output = Response<Bytes>> + Send + 'a {
    let span = functions::forwarded_span(function, &request.headers);
    functions::call_http(app, answer_headers, function, request)
        .instrument(span.unwrap_or_else(tracing::Span::none))
        .map(FunctionResponse::into_http)
}

/// Handles the invocation form: parse the envelope, run the function, wrap its result. An HTTP
/// function's envelope is parsed before the returned future is, so the future holds the
/// function's call alone.
fn invoke<'a>(
    app: &'a App,
    http_replies: &'a HttpReplies,
    answer_headers: &'a AnswerHeaders,
    function: FunctionName,
    body: Bytes,
) -> impl Future<Output = Response<Bytes>> + Send + 'a {
    if !function.is_http() {
        // Boxed: a timer's future is several KiB, and an unboxed one would make every request's
        // future (the widget's GET included) that large, to be copied as it is set up.
        return Either::Right(Box::pin(invoke_timer(app, function, body)));
    }
    let request = match host::http_request(&body) {
        Ok(request) => request,
        Err(err) => {
            return Either::Left(Either::Left(future::ready(err.to_response().into_http())))
        }
    };
    // No log line per widget request: the host records every invocation and its status.
    Either::Left(Either::Right(
        functions::call_http(app, answer_headers, function, request)
            .map(|response| invocation_reply(StatusCode::OK, http_replies.render(&response))),
    ))
}

/// Handles a timer function's invocation.
async fn invoke_timer(app: &App, function: FunctionName, body: Bytes) -> Response<Bytes> {
    let invocation = match InvocationRequest::parse(&body) {
        Ok(invocation) => invocation,
        Err(err) => return err.to_response().into_http(),
    };
    let timer = match invocation.timer() {
        Ok(timer) => timer,
        Err(err) => return err.to_response().into_http(),
    };
    match functions::call_timer(app, function, &timer).await {
        Ok(logs) => invocation_reply(
            StatusCode::OK,
            host::render(&InvocationResponse::logs_only(logs)),
        ),
        Err(message) => {
            // The host drops Logs of a failed invocation, so the reason also goes to stdout.
            tracing::error!(function = function.as_str(), "{message}");
            invocation_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                host::render(&InvocationResponse::logs_only(vec![message])),
            )
        }
    }
}

fn invocation_reply(status: StatusCode, reply: Bytes) -> Response<Bytes> {
    let mut response = Response::new(reply);
    *response.status_mut() = status;
    // The host's formatter wants exactly application/json.
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    /// The query filter of [`routes`] decodes every query as `form_urlencoded` does (what the
    /// functions were written against) and refuses none, odd ones included.
    #[tokio::test]
    async fn the_query_filter_decodes_like_form_urlencoded_and_refuses_nothing() {
        let queries = [
            "",
            "format=svg&theme=dark",
            "a=1&a=2",
            "&&=&a",
            "q=%FF%FE&%zz=1",
            "name=Morning+Run&x=%2B%26",
            "units=mi;theme=light",
        ];
        let filter = warp::query::<Vec<(String, String)>>();
        for query in queries {
            let decoded = warp::test::request()
                .path(&format!("/api/GetLatestRun?{query}"))
                .filter(&filter)
                .await
                .unwrap_or_else(|_| panic!("{query:?} was refused"));
            let expected: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(decoded, expected, "{query:?}");
        }
        let without = warp::test::request()
            .path("/api/GetLatestRun")
            .filter(&filter)
            .await
            .expect("no query at all");
        assert!(without.is_empty());
    }
}
