//! `GetLatestRun`: the widget's request. Answers the latest public run as JSON (the version 1
//! response: the original widget's fields and more), or with `format=svg` as the SVG card,
//! from the index keeper's published answer, with an ETag
//! (`If-None-Match` → 304), cache headers and CORS, and turns the service's errors into client
//! errors: JSON ones with their status, or for `format=svg` an error card (`200`, an image that
//! says what is wrong, the code in `X-Widget-Error`). On the warm path it does no I/O.

use super::cards::{error_card, Format};
use super::public_http::{cacheable, read_only, AnswerHeaders};
use crate::config::AllowedOrigins;
use crate::http::{ApiError, FunctionRequest, FunctionResponse};
use crate::keeper::{Answer, IndexKeeper, LatestRunError};
use crate::view::svg::{self, Theme, Units};

/// Handles one widget request.
pub async fn handle(
    latest_run: &IndexKeeper,
    allowed_origins: &AllowedOrigins,
    answer_headers: &AnswerHeaders,
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
        match format {
            Format::Json => cacheable(
                request,
                // A cheap reference-counted clone of the cached bytes.
                answer.body.clone(),
                &answer.etag,
                answer_headers.json().clone(),
            ),
            Format::Svg(theme, units) => card(&answer, theme, units, request, answer_headers),
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
    answer_headers: &AnswerHeaders,
) -> FunctionResponse {
    let Some(card) = answer.card(theme, units, |run| svg::render(run, theme, units)) else {
        // Every answer this app makes carries its run; never serve a card of nothing.
        return error_card(&ApiError::NoPublicRun, theme);
    };
    cacheable(
        request,
        // Rendered once per answer; a reference-counted clone of its bytes.
        card.body.clone(),
        &card.etag,
        answer_headers.svg().clone(),
    )
}

/// The client's view of the service's errors.
pub(super) fn api_error(err: LatestRunError) -> ApiError {
    match err {
        LatestRunError::NotConfigured => ApiError::NotConfigured,
        LatestRunError::CredentialsUnusable(problem) => ApiError::CredentialsUnusable(problem),
        LatestRunError::StorageUnavailable => ApiError::StorageUnavailable,
        LatestRunError::StravaUnavailable => ApiError::StravaUnavailable,
        LatestRunError::StravaAuthorization => ApiError::StravaAuthorization,
        LatestRunError::NoPublicRun => ApiError::NoPublicRun,
    }
}
