//! The running year's view model: the `GetRunningYear` response (version 1) built from one
//! local year's public runs of the activity index: totals, every day with a run, every
//! Monday-to-Sunday week of the year up to today (zeros included), the longest run, and day and
//! week streaks. Pure: the caller gives the runs, the year and the athlete's local "today".

use crate::store::IndexedRun;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::{Date, Duration, Month, OffsetDateTime};

/// The `GetRunningYear` response body, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningYearView {
    /// Always 1.
    pub version: u32,
    /// The calendar year, in the athlete's local time.
    pub year: i32,
    /// The year's totals.
    pub totals: Totals,
    /// One entry per local day with at least one run, oldest first.
    pub days: Vec<Day>,
    /// One entry per week (Monday first) of the year up to today, zeros included.
    pub weeks: Vec<Week>,
    /// The year's longest run.
    pub longest_run: Option<LongestRun>,
    /// Consecutive days and weeks with a run.
    pub streak: Streak,
    /// When the index this was built from was last brought in line with Strava, RFC 3339 UTC.
    pub fetched_at: String,
    /// True when that is past its window and could not be refreshed.
    pub stale: bool,
}

/// A year's totals.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Number of runs.
    pub count: u32,
    /// Metres.
    pub distance: f64,
    /// Seconds.
    pub moving_time: i64,
    /// Metres.
    pub elevation_gain: f64,
}

/// A local day with at least one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Runs that day.
    pub count: u32,
    /// Metres that day.
    pub distance: f64,
}

/// A week, Monday to Sunday.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Week {
    /// Its Monday, `YYYY-MM-DD` (the first week may begin in December of the year before; only
    /// the year's own runs count).
    pub start: String,
    /// Runs that week.
    pub count: u32,
    /// Metres that week.
    pub distance: f64,
}

/// The year's longest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongestRun {
    /// Strava's activity id.
    pub id: i64,
    /// Its title.
    pub name: String,
    /// Metres.
    pub distance: f64,
    /// Its local day, `YYYY-MM-DD`.
    pub date: String,
}

/// Streaks of consecutive local days and weeks with a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Streak {
    /// Days up to today (or yesterday, while today has no run yet).
    pub current_days: u32,
    /// The longest this year.
    pub longest_days: u32,
    /// Weeks up to this week (or last week, while this week has no run yet).
    pub current_weeks: u32,
    /// The longest this year.
    pub longest_weeks: u32,
}

/// `YYYY-MM-DD`.
fn iso_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// A run's local day, from `start_date_local` (else its UTC day).
fn local_day(run: &IndexedRun) -> Option<Date> {
    let parsed = run.local_date().and_then(|text| {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(text, &format).ok()
    });
    parsed.or_else(|| {
        OffsetDateTime::from_unix_timestamp(run.start)
            .ok()
            .map(|t| t.date())
    })
}

/// The Monday of `date`'s week.
fn monday_of(date: Date) -> Date {
    date - Duration::days(i64::from(date.weekday().number_days_from_monday()))
}

/// Streaks in `sorted` (ascending, distinct dates, `step` apart when consecutive): the one
/// reaching `end`, or the step before it (today without a run yet does not break the current
/// streak), and the longest.
fn streaks(sorted: &[Date], step: Duration, end: Date) -> (u32, u32) {
    let mut longest = 0;
    let mut length = 0;
    let mut previous: Option<Date> = None;
    for &date in sorted {
        length = match previous {
            Some(p) if p + step == date => length + 1,
            _ => 1,
        };
        longest = longest.max(length);
        previous = Some(date);
    }
    // The streak that reaches `end` or the step before it.
    let mut current = 0;
    let mut expected = if sorted.binary_search(&end).is_ok() {
        end
    } else {
        end - step
    };
    for &date in sorted.iter().rev() {
        if date > expected {
            continue;
        }
        if date == expected {
            current += 1;
            expected -= step;
        } else {
            break;
        }
    }
    (current, longest)
}

/// The year view of `runs` (the index's public runs of `year`; others are ignored) as of the
/// athlete's local `today`.
pub fn build_running_year(
    runs: &[IndexedRun],
    year: i32,
    today: Date,
    fetched_at: OffsetDateTime,
) -> RunningYearView {
    let first = Date::from_calendar_date(year, Month::January, 1).unwrap_or(Date::MIN);
    let last = Date::from_calendar_date(year, Month::December, 31).unwrap_or(Date::MAX);
    // Up to today in the current year; the whole year for a past one; nothing for a future one.
    let end = today.min(last);
    let mut totals = Totals::default();
    let mut by_day: BTreeMap<Date, (u32, f64)> = BTreeMap::new();
    let mut longest: Option<(&IndexedRun, Date)> = None;
    for run in runs.iter().filter(|r| !r.hidden) {
        let Some(day) = local_day(run).filter(|d| d.year() == year) else {
            continue;
        };
        let distance = if run.distance.is_finite() {
            run.distance
        } else {
            0.0
        };
        totals.count += 1;
        totals.distance += distance;
        totals.moving_time += run.moving_time.max(0);
        totals.elevation_gain += run.total_elevation_gain.unwrap_or(0.0).max(0.0);
        let entry = by_day.entry(day).or_default();
        entry.0 += 1;
        entry.1 += distance;
        // The longest; the earlier one (then the smaller id) wins a tie.
        let longer = longest.is_none_or(|(best, best_day)| {
            (distance, std::cmp::Reverse(day), std::cmp::Reverse(run.id))
                > (
                    best.distance,
                    std::cmp::Reverse(best_day),
                    std::cmp::Reverse(best.id),
                )
        });
        if longer {
            longest = Some((run, day));
        }
    }
    let mut weeks = Vec::new();
    let mut monday = monday_of(first);
    while monday <= end && first <= end {
        let sunday = monday + Duration::days(6);
        let (count, distance) = by_day
            .range(monday..=sunday)
            .fold((0, 0.0), |(c, d), (_, (count, distance))| {
                (c + count, d + distance)
            });
        weeks.push(Week {
            start: iso_date(monday),
            count,
            distance,
        });
        monday += Duration::weeks(1);
    }
    let run_days: Vec<Date> = by_day.keys().copied().collect();
    let (current_days, longest_days) = streaks(&run_days, Duration::days(1), end);
    let mut run_weeks: Vec<Date> = run_days.iter().map(|d| monday_of(*d)).collect();
    run_weeks.dedup();
    let (current_weeks, longest_weeks) = streaks(&run_weeks, Duration::weeks(1), monday_of(end));
    RunningYearView {
        version: 1,
        year,
        totals,
        days: by_day
            .into_iter()
            .map(|(date, (count, distance))| Day {
                date: iso_date(date),
                count,
                distance,
            })
            .collect(),
        weeks,
        longest_run: longest.map(|(run, day)| LongestRun {
            id: run.id,
            name: run.name.clone(),
            distance: run.distance,
            date: iso_date(day),
        }),
        streak: Streak {
            current_days,
            longest_days,
            current_weeks,
            longest_weeks,
        },
        fetched_at: fetched_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        stale: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::run;
    use time::macros::{date, datetime};

    fn on(id: i64, day: &str, distance: f64) -> IndexedRun {
        run(id, &format!("{day}T07:00:00Z"), distance)
    }

    fn year_of(runs: &[IndexedRun], today: Date) -> RunningYearView {
        build_running_year(runs, 2026, today, datetime!(2026-06-01 12:00 UTC))
    }

    #[test]
    fn totals_days_and_weeks_add_up_and_other_years_do_not_count() {
        let runs = [
            on(1, "2026-01-01", 5_000.0),
            on(2, "2026-01-01", 3_000.0),
            on(3, "2026-01-06", 10_000.0),
            on(4, "2025-12-31", 42_195.0),
            on(5, "2026-03-02", 8_000.0),
        ];
        let year = year_of(&runs, date!(2026 - 03 - 04));
        assert_eq!(year.totals.count, 4);
        assert_eq!(year.totals.distance, 26_000.0);
        assert_eq!(year.days.len(), 3);
        assert_eq!(year.days[0].date, "2026-01-01");
        assert_eq!(year.days[0].count, 2);
        // 1 January 2026 is a Thursday: the first week begins on Monday 29 December.
        assert_eq!(year.weeks[0].start, "2025-12-29");
        assert_eq!(
            year.weeks.last().map(|w| w.start.as_str()),
            Some("2026-03-02")
        );
        assert_eq!(year.weeks.len(), 10);
        let week_sum: f64 = year.weeks.iter().map(|w| w.distance).sum();
        let week_count: u32 = year.weeks.iter().map(|w| w.count).sum();
        assert_eq!(
            (week_count, week_sum),
            (year.totals.count, year.totals.distance)
        );
        assert!(year.weeks.iter().any(|w| w.count == 0), "zeros included");
        assert_eq!(year.longest_run.map(|r| r.id), Some(3));
    }

    #[test]
    fn streaks_ending_today_yesterday_and_broken() {
        let days = |list: &[&str]| -> Vec<IndexedRun> {
            list.iter()
                .enumerate()
                .map(|(i, d)| on(i as i64 + 1, d, 5_000.0))
                .collect()
        };
        let today = date!(2026 - 05 - 10);
        // Ending today.
        let y = year_of(
            &days(&["2026-05-07", "2026-05-08", "2026-05-09", "2026-05-10"]),
            today,
        );
        assert_eq!((y.streak.current_days, y.streak.longest_days), (4, 4));
        // Ending yesterday: today without a run yet does not break it.
        let y = year_of(&days(&["2026-05-08", "2026-05-09"]), today);
        assert_eq!((y.streak.current_days, y.streak.longest_days), (2, 2));
        // Broken two days ago.
        let y = year_of(
            &days(&["2026-05-01", "2026-05-02", "2026-05-03", "2026-05-08"]),
            today,
        );
        assert_eq!((y.streak.current_days, y.streak.longest_days), (0, 3));
        // Across a week boundary (Sunday 3 May → Monday 4 May): days and weeks both continue.
        let y = year_of(
            &days(&[
                "2026-04-26",
                "2026-05-02",
                "2026-05-03",
                "2026-05-04",
                "2026-05-10",
            ]),
            today,
        );
        assert_eq!(y.streak.longest_days, 3);
        assert_eq!((y.streak.current_weeks, y.streak.longest_weeks), (3, 3));
    }

    #[test]
    fn this_week_without_a_run_yet_keeps_the_week_streak() {
        // Monday 11 May, nothing run yet this week; the two weeks before had runs.
        let runs = [on(1, "2026-04-28", 5_000.0), on(2, "2026-05-06", 5_000.0)];
        let y = year_of(&runs, date!(2026 - 05 - 11));
        assert_eq!((y.streak.current_weeks, y.streak.longest_weeks), (2, 2));
        assert_eq!(y.streak.current_days, 0);
    }

    #[test]
    fn a_year_without_runs_is_zeros_not_an_error() {
        let y = year_of(&[], date!(2026 - 01 - 01));
        assert_eq!(y.totals, Totals::default());
        assert!(y.days.is_empty());
        assert_eq!(y.weeks.len(), 1, "the first week, up to today");
        assert_eq!(y.longest_run, None);
        assert_eq!(y.streak, Streak::default());
        let json = serde_json::to_value(&y).expect("json");
        assert_eq!(json["version"], 1);
        assert_eq!(json["totals"]["distance"], 0.0);
    }

    #[test]
    fn hidden_runs_do_not_count() {
        let mut hidden = on(1, "2026-02-02", 9_000.0);
        hidden.hidden = true;
        let y = year_of(&[hidden], date!(2026 - 03 - 01));
        assert_eq!(y.totals.count, 0);
    }
}
