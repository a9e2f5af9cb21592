//! The app's one notion of "now": wall-clock Unix seconds. A clock may be skewed by an offset,
//! which is how tests play an instance whose clock disagrees with the others', or one whose
//! clock jumps while it runs (every copy of a clock shares its offset).
//! Nothing that several instances must agree on is decided with it: leases use the storage
//! service's time (see [`crate::store::Lease`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;

/// Wall-clock time, optionally offset. Clones share the offset, so a jump is seen by every
/// service of the app that was given a clone.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_seconds: Arc<AtomicI64>,
}

impl Clock {
    /// The machine's clock.
    pub fn system() -> Self {
        Clock::skewed(0)
    }

    /// A clock running `offset_seconds` ahead of the machine's (behind when negative).
    pub fn skewed(offset_seconds: i64) -> Self {
        Clock {
            offset_seconds: Arc::new(AtomicI64::new(offset_seconds)),
        }
    }

    /// Moves this clock and every clone of it `seconds` forward (back when negative), as a
    /// machine's clock does when it is corrected or the machine wakes from suspension.
    pub fn jump(&self, seconds: i64) {
        self.offset_seconds.fetch_add(seconds, Ordering::Relaxed);
    }

    /// Now, as Unix seconds. Read on every widget request, so it skips the calendar arithmetic
    /// of [`Clock::now_datetime`] (a clock before 1970 reads as 1970).
    pub fn now(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
            });
        since_epoch.saturating_add(self.offset_seconds.load(Ordering::Relaxed))
    }

    /// Now, as Unix milliseconds (for spacing things less than a second apart).
    pub fn now_millis(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            });
        since_epoch.saturating_add(
            self.offset_seconds
                .load(Ordering::Relaxed)
                .saturating_mul(1_000),
        )
    }

    /// Now, as a date-time in UTC.
    pub fn now_datetime(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::seconds(self.offset_seconds.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_runs_ahead_by_its_offset() {
        let difference = Clock::skewed(45).now() - Clock::system().now();
        assert!((44..=46).contains(&difference), "{difference}");
    }

    #[test]
    fn seconds_and_date_time_read_the_same_clock() {
        for offset in [0, 45, -86_400, 365 * 86_400] {
            let clock = Clock::skewed(offset);
            let seconds = clock.now();
            let date_time = clock.now_datetime().unix_timestamp();
            assert!(
                (0..=1).contains(&(date_time - seconds)),
                "{offset}: {seconds} {date_time}"
            );
        }
    }

    #[test]
    fn a_jump_moves_every_clone() {
        let clock = Clock::system();
        let clone = clock.clone();
        clock.jump(7200);
        let difference = clone.now() - Clock::system().now();
        assert!((7199..=7201).contains(&difference), "{difference}");
    }
}
