//! The athlete's calendar year: the index and the year's totals follow the athlete's local New
//! Year, judged by the UTC offset of their newest run (none known yet: UTC).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The UTC year of an instant (Unix seconds).
pub fn utc_year(at: i64) -> i32 {
    OffsetDateTime::from_unix_timestamp(at)
        .map(|t| t.year())
        .unwrap_or(1970)
}

/// The athlete's local year at `now` (Unix seconds), for an offset of `utc_offset` seconds.
pub fn local_year(now: i64, utc_offset: i64) -> i32 {
    utc_year(now.saturating_add(utc_offset))
}

/// The instant (Unix seconds) the athlete's local `year` begins.
pub fn year_start(year: i32, utc_offset: i64) -> i64 {
    let midnight = Date::from_calendar_date(year, Month::January, 1)
        .map(|date| {
            PrimitiveDateTime::new(date, Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp()
        })
        .unwrap_or(0);
    midnight.saturating_sub(utc_offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_year_turns_at_the_local_new_year() {
        let berlin = 3600;
        let new_year_utc = datetime!(2026-12-31 23:30 UTC).unix_timestamp();
        assert_eq!(local_year(new_year_utc, berlin), 2027);
        assert_eq!(local_year(new_year_utc, 0), 2026);
        assert_eq!(local_year(new_year_utc, -5 * 3600), 2026);
        assert_eq!(
            year_start(2027, berlin),
            datetime!(2026-12-31 23:00 UTC).unix_timestamp()
        );
        assert_eq!(local_year(year_start(2027, berlin), berlin), 2027);
        assert_eq!(local_year(year_start(2027, berlin) - 1, berlin), 2026);
    }
}
