//! The SVG side of the public answers: what format a request asks for (`format=json|svg`, and
//! for a card `theme` and `units`), a card's CSP, and errors drawn as cards
//! (an image that says what is wrong, `200`, the code in `X-Widget-Error`), so an `<img>` or an
//! image proxy never shows a broken image.

use crate::http::{ApiError, FunctionRequest, FunctionResponse, NOSNIFF};
use crate::view::svg::{self, Theme, Units};
use bytes::Bytes;
use warp::http::header::{
    HeaderName, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use warp::http::{HeaderMap, HeaderValue, StatusCode};

/// The SVG card's content type.
pub(super) const SVG_CONTENT_TYPE: &str = "image/svg+xml";
/// How long an error card may be cached: a minute, so the run shows soon after the cause is gone.
const ERROR_CARD_CACHE_CONTROL: &str = "public, max-age=60";
/// The header naming the error an error card shows (its JSON code).
pub const WIDGET_ERROR: HeaderName = HeaderName::from_static("x-widget-error");

/// What the request asks for: the JSON answer (the default) or the SVG card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Svg(Theme, Units),
}

impl Format {
    /// From `format=json|svg`, and for the card `theme=auto|light|dark`, `units=metric|imperial`.
    pub(super) fn of(request: &FunctionRequest) -> Result<Format, ApiError> {
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

/// An error as an image of the card's size saying what is wrong: `200`, because image proxies
/// (GitHub's camo) and `<img>` show any other status as a broken image; cached briefly, so the
/// card comes back soon after the cause is gone; the error's code in `X-Widget-Error`.
pub(super) fn error_card(err: &ApiError, theme: Theme) -> FunctionResponse {
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
    // What a card's answer gets from its `AnswerHeaders` set.
    response
        .headers
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(IMAGE_CSP));
    response
        .headers
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF));
    response
}

/// A card's CSP: opened on its own (not as an image) a card still runs nothing; its inline
/// style is all it may use.
pub(super) const IMAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";
