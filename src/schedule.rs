//! The refresh schedule of `handler standalone`, taken from the one place that defines it:
//! the `RefreshToken` timer's `schedule` in `RefreshToken/function.json`, embedded at build time
//! and read as NCRONTAB (six fields, seconds first, UTC), so that standalone refreshes exactly
//! when the Functions host would.

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use time::OffsetDateTime;

/// `RefreshToken/function.json` as built into the binary.
pub const REFRESH_TOKEN_FUNCTION_JSON: &str = include_str!("../RefreshToken/function.json");

/// Why the timer's schedule cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The file is not the function.json shape.
    #[error("RefreshToken/function.json: {0}")]
    File(String),
    /// The `schedule` is not a six-field cron expression.
    #[error("RefreshToken/function.json: schedule '{expression}' is not an NCRONTAB expression with seconds: {problem}")]
    Expression {
        /// The expression as written.
        expression: String,
        /// What the parser said.
        problem: String,
    },
}

/// A parsed timer schedule that answers "when is the next run after t".
#[derive(Clone, Debug)]
pub struct RefreshSchedule {
    expression: String,
    cron: Cron,
}

/// The parts of function.json that are read here.
#[derive(serde::Deserialize)]
struct FunctionJson {
    bindings: Vec<Binding>,
}

#[derive(serde::Deserialize)]
struct Binding {
    #[serde(rename = "type")]
    kind: String,
    schedule: Option<String>,
}

impl RefreshSchedule {
    /// The schedule of the embedded `RefreshToken/function.json`.
    pub fn embedded() -> Result<Self, ScheduleError> {
        Self::from_function_json(REFRESH_TOKEN_FUNCTION_JSON)
    }

    /// The schedule of the `timerTrigger` binding in a function.json text.
    pub fn from_function_json(text: &str) -> Result<Self, ScheduleError> {
        let function: FunctionJson =
            serde_json::from_str(text).map_err(|err| ScheduleError::File(err.to_string()))?;
        let expression = function
            .bindings
            .into_iter()
            .find(|b| b.kind.eq_ignore_ascii_case("timerTrigger"))
            .and_then(|b| b.schedule)
            .ok_or_else(|| ScheduleError::File("no timerTrigger binding with a schedule".into()))?;
        Self::parse(&expression)
    }

    /// Parses an NCRONTAB expression: `second minute hour day month day-of-week`.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .build()
            .parse(expression)
            .map_err(|err| ScheduleError::Expression {
                expression: expression.to_owned(),
                problem: err.to_string(),
            })?;
        Ok(RefreshSchedule {
            expression: expression.to_owned(),
            cron,
        })
    }

    /// The expression as written in function.json.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first run strictly after `after` (UTC); `None` when the schedule never fires again.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let start: DateTime<Utc> =
            DateTime::from_timestamp(after.unix_timestamp(), after.nanosecond())?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        OffsetDateTime::from_unix_timestamp(next.timestamp()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_embedded_schedule_is_every_two_hours() {
        let schedule = RefreshSchedule::embedded().expect("the shipped schedule parses");
        assert_eq!(schedule.expression(), "0 0 */2 * * *");
    }

    #[test]
    fn the_next_run_is_the_next_even_hour() {
        let schedule = RefreshSchedule::embedded().expect("parses");
        assert_eq!(
            schedule.next_after(datetime!(2025-03-01 01:30:00 UTC)),
            Some(datetime!(2025-03-01 02:00:00 UTC))
        );
        assert_eq!(
            schedule.next_after(datetime!(2025-03-01 02:00:00 UTC)),
            Some(datetime!(2025-03-01 04:00:00 UTC)),
            "a run exactly on the hour is not run again"
        );
        assert_eq!(
            schedule.next_after(datetime!(2025-03-01 02:00:00.5 UTC)),
            Some(datetime!(2025-03-01 04:00:00 UTC))
        );
        assert_eq!(
            schedule.next_after(datetime!(2025-12-31 23:59:59 UTC)),
            Some(datetime!(2026-01-01 00:00:00 UTC))
        );
    }

    #[test]
    fn seconds_count_and_bad_files_are_reported() {
        let every_ten = RefreshSchedule::parse("*/10 * * * * *").expect("parses");
        assert_eq!(
            every_ten.next_after(datetime!(2025-03-01 01:30:01 UTC)),
            Some(datetime!(2025-03-01 01:30:10 UTC))
        );
        assert!(
            RefreshSchedule::parse("0 */2 * * *").is_err(),
            "five fields"
        );
        assert!(RefreshSchedule::from_function_json(r#"{"bindings":[]}"#).is_err());
        let err = RefreshSchedule::from_function_json(
            r#"{"bindings":[{"type":"timerTrigger","schedule":"every two hours"}]}"#,
        )
        .expect_err("not cron");
        assert!(err.to_string().contains("every two hours"), "{err}");
    }
}
