//! `GetRunningYear`: the owner's running year (`?year=YYYY`, default the athlete's current
//! one) as JSON, or with `format=svg` as a card, from the running-year service: the same ETag
//! (`If-None-Match` → 304), cache headers, CORS and error rules as GetLatestRun, and no Strava
//! call per visit. On the warm path it does no I/O.

use super::cards::{error_card, Format};
use super::get_latest_run::api_error;
use super::public_http::{cacheable, read_only, AnswerHeaders};
use crate::config::AllowedOrigins;
use crate::http::{ApiError, FunctionRequest, FunctionResponse};
use crate::running_year::{RunningYearError, RunningYearService};
use crate::view::year_card::render_year;

/// `year`: four digits, or absent.
fn year_of(request: &FunctionRequest) -> Result<Option<i32>, ApiError> {
    match request.query_value("year") {
        None => Ok(None),
        Some(text) if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(text.parse().ok())
        }
        Some(_) => Err(ApiError::BadRequest(
            "The year parameter must be a year such as 2026.".into(),
        )),
    }
}

/// Handles one request.
pub async fn handle(
    running_year: &RunningYearService,
    allowed_origins: &AllowedOrigins,
    answer_headers: &AnswerHeaders,
    request: &FunctionRequest,
) -> FunctionResponse {
    read_only(allowed_origins, request, || async {
        // A bad parameter is answered before any I/O.
        let (format, year) = match Format::of(request).and_then(|f| Ok((f, year_of(request)?))) {
            Ok(asked) => asked,
            Err(err) => return err.to_response(),
        };
        let answer = match running_year.answer(year).await {
            Ok(answer) => answer,
            Err(err) => {
                let err = match err {
                    RunningYearError::Index(err) => api_error(err),
                    RunningYearError::YearNotIndexed(year) => ApiError::YearNotIndexed(year),
                    RunningYearError::StorageUnavailable => ApiError::StorageUnavailable,
                };
                return match format {
                    Format::Json => err.to_response(),
                    Format::Svg(theme, _) => error_card(&err, theme),
                };
            }
        };
        match format {
            Format::Json => cacheable(
                request,
                answer.body.clone(),
                &answer.etag,
                answer_headers.json().clone(),
            ),
            Format::Svg(theme, units) => {
                match answer.card(theme, units, |view| render_year(view, theme, units)) {
                    Some(card) => cacheable(
                        request,
                        card.body.clone(),
                        &card.etag,
                        answer_headers.svg().clone(),
                    ),
                    None => error_card(&ApiError::NotFound, theme),
                }
            }
        }
    })
    .await
}
