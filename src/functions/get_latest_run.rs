//! `GetLatestRun`: the widget's request. Answers the latest public run as JSON (DESIGN §5), or
//! with `format=svg` as the SVG card (DESIGN §7), from the latest-run service, with an ETag
//! (`If-None-Match` → 304), cache headers and CORS, and turns the service's errors into client
//! errors: JSON ones with their status, or for `format=svg` an error card (`200`, an image that
//! says what is wrong, the code in `X-Widget-Error`). On the warm path it does no I/O.

use super::public_http::{cacheable, read_only};
use crate::config::AllowedOrigins;
use crate::http::{ApiError, FunctionRequest, FunctionResponse, JSON_CONTENT_TYPE};
use crate::latest_run::{Answer, LatestRunError, LatestRunService};
use crate::widget::svg::{self, Theme, Units};
use bytes::Bytes;
use warp::http::header::{
    HeaderName, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use warp::http::{HeaderMap, HeaderValue, StatusCode};

/// The SVG card's content type.
const SVG_CONTENT_TYPE: &str = "image/svg+xml";
/// How long an error card may be cached: a minute, so the run shows soon after the cause is gone.
const ERROR_CARD_CACHE_CONTROL: &str = "public, max-age=60";
/// The header naming the error an error card shows (its JSON code).
pub const WIDGET_ERROR: HeaderName = HeaderName::from_static("x-widget-error");

/// What the request asks for: the JSON answer (the default) or the SVG card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Svg(Theme, Units),
}

impl Format {
    /// From `format=json|svg`, and for the card `theme=auto|light|dark`, `units=metric|imperial`.
    fn of(request: &FunctionRequest) -> Result<Format, ApiError> {
        let bad = |name: &str, allowed: &str| {
            ApiError::BadRequest(format!("The {name} parameter must be {allowed}."))
        };
        match request.query_value("format") {
            None => Ok(Format::Json),
            Some(f) if f.eq_ignore_ascii_case("json") => Ok(Format::Json),
            Some(f) if f.eq_ignore_ascii_case("svg") => {
                let theme = match request.query_value("theme") {
                    None => Theme::default(),
                    Some(t) => {
                        Theme::parse(t).ok_or_else(|| bad("theme", "auto, light or dark"))?
                    }
                };
                let units = match request.query_value("units") {
                    None => Units::default(),
                    Some(u) => Units::parse(u).ok_or_else(|| bad("units", "metric or imperial"))?,
                };
                Ok(Format::Svg(theme, units))
            }
            Some(_) => Err(bad("format", "json or svg")),
        }
    }
}

/// Handles one widget request.
pub async fn handle(
    latest_run: &LatestRunService,
    allowed_origins: &AllowedOrigins,
    cache_control: &HeaderValue,
    request: &FunctionRequest,
) -> FunctionResponse {
    read_only(allowed_origins, request, || async {
        // A bad parameter is answered before any I/O.
        let format = match Format::of(request) {
            Ok(format) => format,
            Err(err) => return err.to_response(),
        };
        let answer = match latest_run.answer().await {
            Ok(answer) => answer,
            Err(err) => {
                let err = api_error(err);
                return match format {
                    Format::Json => err.to_response(),
                    Format::Svg(theme, _) => error_card(&err, theme),
                };
            }
        };
        let cache_control = cache_control.clone();
        match format {
            Format::Json => cacheable(
                request,
                // A cheap reference-counted clone of the cached bytes.
                answer.body.clone(),
                &answer.etag,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
                cache_control,
            ),
            Format::Svg(theme, units) => card(&answer, theme, units, request, cache_control),
        }
    })
    .await
}

/// The answer as the SVG card, with an ETag of its own bytes and the answer's cache rules.
fn card(
    answer: &Answer,
    theme: Theme,
    units: Units,
    request: &FunctionRequest,
    cache_control: HeaderValue,
) -> FunctionResponse {
    let Some(card) = answer.card(theme, units) else {
        // Every answer this app makes carries its run; never serve a card of nothing.
        return error_card(&ApiError::NoPublicRun, theme);
    };
    let mut response = cacheable(
        request,
        // Rendered once per answer; a reference-counted clone of its bytes.
        card.body.clone(),
        &card.etag,
        HeaderValue::from_static(SVG_CONTENT_TYPE),
        cache_control,
    );
    image_headers(&mut response);
    response
}

/// An error as an image of the card's size saying what is wrong: `200`, because image proxies
/// (GitHub's camo) and `<img>` show any other status as a broken image; cached briefly, so the
/// card comes back soon after the cause is gone; the error's code in `X-Widget-Error`.
fn error_card(err: &ApiError, theme: Theme) -> FunctionResponse {
    let mut response = FunctionResponse {
        status: StatusCode::OK,
        headers: HeaderMap::with_capacity(6),
        body: Bytes::from(svg::render_error(err.code(), theme)),
    };
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(SVG_CONTENT_TYPE));
    response.headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(ERROR_CARD_CACHE_CONTROL),
    );
    response
        .headers
        .insert(WIDGET_ERROR, HeaderValue::from_static(err.code()));
    image_headers(&mut response);
    response
}

/// Opened on its own (not as an image) a card still runs nothing: a CSP allows its inline style
/// only.
fn image_headers(response: &mut FunctionResponse) {
    response.headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
        .headers
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
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
