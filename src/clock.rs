//! The app's one notion of "now": wall-clock Unix seconds. A clock may be skewed by a fixed
//! offset, which is how tests play an instance whose clock disagrees with the others'.
//! Nothing that several instances must agree on is decided with it: leases use the storage
//! service's time (see [`crate::store::Lease`]).

use time::OffsetDateTime;

/// Wall-clock time, optionally offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    offset_seconds: i64,
}

impl Clock {
    /// The machine's clock.
    pub fn system() -> Self {
        Clock { offset_seconds: 0 }
    }

    /// A clock running `offset_seconds` ahead of the machine's (behind when negative).
    pub fn skewed(offset_seconds: i64) -> Self {
        Clock { offset_seconds }
    }

    /// Now, as Unix seconds.
    pub fn now(&self) -> i64 {
        self.now_datetime().unix_timestamp()
    }

    /// Now, as a date-time in UTC.
    pub fn now_datetime(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_seconds)
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
}
