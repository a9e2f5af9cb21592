//! Reads Strava's rate-limit headers and keeps the latest snapshot, so callers can tell how much
//! budget is left and when a blocked window reopens.

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use time::{Duration, OffsetDateTime, Time, UtcOffset};

/// One bucket's limits and usage for the 15-minute window and the UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Requests allowed per 15-minute window.
    pub short_limit: u32,
    /// Requests made in the current 15-minute window (may exceed the limit).
    pub short_usage: u32,
    /// Requests allowed per UTC day.
    pub daily_limit: u32,
    /// Requests made today (may exceed the limit).
    pub daily_usage: u32,
}

impl Budget {
    fn short_exhausted(&self) -> bool {
        // A zero limit comes from a meaningless header, not from Strava allowing nothing.
        self.short_limit > 0 && self.short_usage >= self.short_limit
    }

    fn daily_exhausted(&self) -> bool {
        self.daily_limit > 0 && self.daily_usage >= self.daily_limit
    }
}

/// The rate-limit headers of one API answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimitSnapshot {
    /// The overall bucket (`X-RateLimit-*`).
    pub overall: Option<Budget>,
    /// The read ("non-upload") bucket (`X-ReadRateLimit-*`), the one GETs exhaust first.
    pub read: Option<Budget>,
    /// When the answer carrying these headers arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
}

impl RateLimitSnapshot {
    /// Parses the four headers; `None` when neither bucket is present and well formed.
    pub fn from_headers(headers: &HeaderMap, observed_at: OffsetDateTime) -> Option<Self> {
        let overall = budget(headers, "x-ratelimit-limit", "x-ratelimit-usage");
        let read = budget(headers, "x-readratelimit-limit", "x-readratelimit-usage");
        (overall.is_some() || read.is_some()).then_some(RateLimitSnapshot {
            overall,
            read,
            observed_at,
        })
    }

    fn budgets(&self) -> impl Iterator<Item = &Budget> {
        self.read.iter().chain(self.overall.iter())
    }

    /// When requests may resume if this snapshot showed a bucket exhausted, `None` if none was.
    /// Windows are counted from `observed_at`, so an old snapshot stops blocking once its window
    /// has reset.
    pub fn blocked_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let until = if self.budgets().any(Budget::daily_exhausted) {
            next_utc_midnight(self.observed_at)
        } else if self.budgets().any(Budget::short_exhausted) {
            next_quarter_hour(self.observed_at)
        } else {
            return None;
        };
        (until > now).then_some(until)
    }

    /// Requests left in the 15-minute window (the smaller of read and overall).
    pub fn remaining_short(&self) -> Option<u32> {
        self.budgets()
            .map(|b| b.short_limit.saturating_sub(b.short_usage))
            .min()
    }

    /// Requests left today (the smaller of read and overall).
    pub fn remaining_daily(&self) -> Option<u32> {
        self.budgets()
            .map(|b| b.daily_limit.saturating_sub(b.daily_usage))
            .min()
    }
}

/// Parses `"<15-min>,<daily>"`; anything else is ignored.
fn pair(headers: &HeaderMap, name: &str) -> Option<(u32, u32)> {
    let text = headers.get(name)?.to_str().ok()?;
    let (short, daily) = text.split_once(',')?;
    Some((short.trim().parse().ok()?, daily.trim().parse().ok()?))
}

fn budget(headers: &HeaderMap, limit: &str, usage: &str) -> Option<Budget> {
    let (short_limit, daily_limit) = pair(headers, limit)?;
    let (short_usage, daily_usage) = pair(headers, usage)?;
    Some(Budget {
        short_limit,
        short_usage,
        daily_limit,
        daily_usage,
    })
}

/// The latest snapshot seen on any API answer; shared by clones of the client.
#[derive(Debug, Default)]
pub struct RateLimitTracker {
    latest: Mutex<Option<RateLimitSnapshot>>,
}

impl RateLimitTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the headers of one answer; answers without rate-limit headers leave the last
    /// snapshot in place. Returns this answer's snapshot.
    pub fn record(&self, headers: &HeaderMap, now: OffsetDateTime) -> Option<RateLimitSnapshot> {
        let snapshot = RateLimitSnapshot::from_headers(headers, now)?;
        // A panic elsewhere while holding the lock cannot leave an Option half-written.
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        // Answers can complete out of order; keep the most recently observed one.
        if latest.is_none_or(|old| old.observed_at <= snapshot.observed_at) {
            *latest = Some(snapshot);
        }
        Some(snapshot)
    }

    /// The latest snapshot, `None` before the first API answer.
    pub fn latest(&self) -> Option<RateLimitSnapshot> {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The next :00/:15/:30/:45 UTC strictly after `now`, when the 15-minute window resets.
pub fn next_quarter_hour(now: OffsetDateTime) -> OffsetDateTime {
    let utc = now.to_offset(UtcOffset::UTC);
    let minutes = i64::from(utc.hour()) * 60 + i64::from(utc.minute());
    let next = (minutes / 15 + 1) * 15;
    utc.replace_time(Time::MIDNIGHT)
        .saturating_add(Duration::minutes(next))
}

/// The next 00:00 UTC strictly after `now`, when the daily window resets.
pub fn next_utc_midnight(now: OffsetDateTime) -> OffsetDateTime {
    now.to_offset(UtcOffset::UTC)
        .replace_time(Time::MIDNIGHT)
        .saturating_add(Duration::DAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};
    use time::macros::datetime;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    const NOW: OffsetDateTime = datetime!(2025-10-12 18:04:09 UTC);

    fn budget(short_limit: u32, short_usage: u32, daily_limit: u32, daily_usage: u32) -> Budget {
        Budget {
            short_limit,
            short_usage,
            daily_limit,
            daily_usage,
        }
    }

    #[test]
    fn parses_the_sample_block_in_any_case() {
        let map = headers(&[
            ("X-Ratelimit-Limit", "200,2000"),
            ("x-ratelimit-usage", "37,412"),
            ("X-READRATELIMIT-LIMIT", "100,1000"),
            ("X-ReadRateLimit-Usage", " 36 , 409 "),
        ]);
        let snap = RateLimitSnapshot::from_headers(&map, NOW).expect("snapshot");
        assert_eq!(snap.overall, Some(budget(200, 37, 2000, 412)));
        assert_eq!(snap.read, Some(budget(100, 36, 1000, 409)));
        assert_eq!(snap.observed_at, NOW);
        assert_eq!(snap.remaining_short(), Some(64));
        assert_eq!(snap.remaining_daily(), Some(591));
        assert_eq!(snap.blocked_until(NOW), None);
    }

    #[test]
    fn legacy_block_has_only_the_overall_bucket() {
        let map = headers(&[
            ("X-RateLimit-Limit", "600,30000"),
            ("X-RateLimit-Usage", "314,27536"),
        ]);
        let snap = RateLimitSnapshot::from_headers(&map, NOW).expect("snapshot");
        assert_eq!(snap.read, None);
        assert_eq!(snap.remaining_short(), Some(286));
        assert_eq!(snap.remaining_daily(), Some(2464));
    }

    #[test]
    fn garbage_is_ignored() {
        for bad in [
            "",
            "abc",
            "100",
            "100,",
            ",100",
            "1,2,3",
            "-1,5",
            "1.5,2",
            "99999999999,1",
        ] {
            let map = headers(&[("X-RateLimit-Limit", bad), ("X-RateLimit-Usage", "1,1")]);
            assert_eq!(RateLimitSnapshot::from_headers(&map, NOW), None, "{bad:?}");
        }
        // One good bucket survives a garbage one.
        let map = headers(&[
            ("X-RateLimit-Limit", "200,2000"),
            ("X-RateLimit-Usage", "nope"),
            ("X-ReadRateLimit-Limit", "100,1000"),
            ("X-ReadRateLimit-Usage", "5,6"),
        ]);
        let snap = RateLimitSnapshot::from_headers(&map, NOW).expect("snapshot");
        assert_eq!(snap.overall, None);
        assert_eq!(snap.read, Some(budget(100, 5, 1000, 6)));
        assert_eq!(
            RateLimitSnapshot::from_headers(&HeaderMap::new(), NOW),
            None
        );
    }

    #[test]
    fn non_ascii_header_values_are_ignored() {
        let mut map = HeaderMap::new();
        map.insert(
            "x-ratelimit-limit",
            HeaderValue::from_bytes(b"2\xff0,2000").expect("value"),
        );
        map.insert("x-ratelimit-usage", HeaderValue::from_static("1,1"));
        assert_eq!(RateLimitSnapshot::from_headers(&map, NOW), None);
    }

    #[test]
    fn quarter_hours_and_midnight() {
        assert_eq!(
            next_quarter_hour(datetime!(2025-10-12 18:04:09 UTC)),
            datetime!(2025-10-12 18:15 UTC)
        );
        assert_eq!(
            next_quarter_hour(datetime!(2025-10-12 18:15:00 UTC)),
            datetime!(2025-10-12 18:30 UTC)
        );
        assert_eq!(
            next_quarter_hour(datetime!(2025-10-12 23:59:59.9 UTC)),
            datetime!(2025-10-13 00:00 UTC)
        );
        // Offsets are converted to UTC first.
        assert_eq!(
            next_quarter_hour(datetime!(2025-10-12 20:50 +02:00)),
            datetime!(2025-10-12 19:00 UTC)
        );
        assert_eq!(
            next_utc_midnight(datetime!(2025-10-12 18:04:09 UTC)),
            datetime!(2025-10-13 00:00 UTC)
        );
        assert_eq!(
            next_utc_midnight(datetime!(2025-10-13 01:00 +02:00)),
            datetime!(2025-10-13 00:00 UTC)
        );
        assert_eq!(
            next_utc_midnight(datetime!(2025-12-31 00:00 UTC)),
            datetime!(2026-01-01 00:00 UTC)
        );
    }

    fn snapshot(read: Budget, overall: Budget, at: OffsetDateTime) -> RateLimitSnapshot {
        RateLimitSnapshot {
            overall: Some(overall),
            read: Some(read),
            observed_at: at,
        }
    }

    #[test]
    fn blocked_until_windows() {
        let at = datetime!(2025-10-12 18:11:52 UTC);
        let fine = budget(200, 101, 2000, 477);
        // The sample's read bucket is over its 15-minute limit.
        let snap = snapshot(budget(100, 101, 1000, 474), fine, at);
        assert_eq!(
            snap.blocked_until(at),
            Some(datetime!(2025-10-12 18:15 UTC))
        );
        assert_eq!(snap.remaining_short(), Some(0));
        // The window resets: an old snapshot no longer blocks.
        assert_eq!(snap.blocked_until(datetime!(2025-10-12 18:15 UTC)), None);

        // Daily exhaustion wins over the short window, in either bucket.
        let snap = snapshot(budget(100, 101, 1000, 1000), fine, at);
        assert_eq!(
            snap.blocked_until(at),
            Some(datetime!(2025-10-13 00:00 UTC))
        );
        let snap = snapshot(budget(100, 3, 1000, 3), budget(200, 3, 2000, 2001), at);
        assert_eq!(
            snap.blocked_until(at),
            Some(datetime!(2025-10-13 00:00 UTC))
        );
        assert_eq!(snap.remaining_daily(), Some(0));

        // Overall short limit alone.
        let snap = snapshot(budget(100, 3, 1000, 3), budget(200, 200, 2000, 300), at);
        assert_eq!(
            snap.blocked_until(at),
            Some(datetime!(2025-10-12 18:15 UTC))
        );

        // Under every limit, or limits of zero (garbage), does not block.
        let snap = snapshot(budget(100, 99, 1000, 999), fine, at);
        assert_eq!(snap.blocked_until(at), None);
        let snap = snapshot(budget(0, 0, 0, 0), fine, at);
        assert_eq!(snap.blocked_until(at), None);
    }

    #[test]
    fn tracker_keeps_the_latest_snapshot() {
        let tracker = RateLimitTracker::new();
        assert_eq!(tracker.latest(), None);
        let first = headers(&[
            ("X-RateLimit-Limit", "200,2000"),
            ("X-RateLimit-Usage", "1,1"),
        ]);
        let second = headers(&[
            ("X-RateLimit-Limit", "200,2000"),
            ("X-RateLimit-Usage", "2,2"),
        ]);
        assert!(tracker.record(&first, NOW).is_some());
        assert!(tracker.record(&second, NOW + Duration::SECOND).is_some());
        // A late-arriving older answer and an answer without headers change nothing.
        assert!(tracker.record(&first, NOW - Duration::SECOND).is_some());
        assert_eq!(
            tracker.record(&HeaderMap::new(), NOW + Duration::HOUR),
            None
        );
        let latest = tracker.latest().expect("latest");
        assert_eq!(latest.overall.map(|b| b.short_usage), Some(2));
        assert_eq!(latest.observed_at, NOW + Duration::SECOND);
    }

    #[test]
    fn snapshot_serializes_with_rfc3339_time() {
        let snap = snapshot(budget(100, 1, 1000, 2), budget(200, 1, 2000, 2), NOW);
        let json = serde_json::to_value(snap).expect("encodes");
        assert_eq!(json["observed_at"], "2025-10-12T18:04:09Z");
        let back: RateLimitSnapshot = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, snap);
    }
}
