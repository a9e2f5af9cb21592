//! The event budget: a token bucket, kept in the table and shared by every instance, from which
//! each Strava call caused by a push event is taken. Push events are unsigned, so anyone who
//! learns the callback URL and the two ids can send them; the bucket bounds what they can make
//! the app spend: at most [`CAPACITY`] calls at once and one more every [`REFILL_SECONDS`], so
//! events can never use more than 35 of Strava's 100 reads per 15 minutes (10 + 900 / 36; an
//! applied event makes exactly one call, its activity), leaving the rest to the reconciliation
//! rounds (one list call per window, and the latest run's photo once) and the daily pass.
//! Counted in the storage service's time, so instance clocks do not matter.

use crate::store::EventBudget;

/// Calls the bucket holds when full: a burst of genuine events (upload, rename, a second
/// upload, …) is applied at once.
pub const CAPACITY: i64 = 10;
/// One call is added back every this many seconds (25 per 15 minutes).
pub const REFILL_SECONDS: i64 = 36;

/// The bucket counts credit in seconds of refill, so that whole seconds add exactly: one call
/// costs [`REFILL_SECONDS`] of credit.
const COST: i64 = REFILL_SECONDS;

/// The bucket at storage time `now`, refilled for the time since it was last counted (a missing
/// bucket is full).
pub fn refilled(budget: Option<EventBudget>, now: i64) -> EventBudget {
    match budget {
        None => EventBudget {
            credit: CAPACITY * COST,
            at: now,
        },
        Some(budget) => {
            // A clock that went back refills nothing.
            let elapsed = now.saturating_sub(budget.at).max(0);
            EventBudget {
                credit: budget
                    .credit
                    .saturating_add(elapsed)
                    .clamp(0, CAPACITY * COST),
                at: now.max(budget.at),
            }
        }
    }
}

/// Takes one call from the bucket at storage time `now`: the bucket after, or how many seconds
/// until a call is there.
pub fn take(budget: Option<EventBudget>, now: i64) -> Result<EventBudget, i64> {
    let budget = refilled(budget, now);
    if budget.credit >= COST {
        return Ok(EventBudget {
            credit: budget.credit - COST,
            ..budget
        });
    }
    Err(COST - budget.credit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_gives_a_burst_then_one_call_per_refill() {
        let mut budget = None;
        for _ in 0..CAPACITY {
            budget = Some(take(budget, 1_000).expect("in the burst"));
        }
        assert_eq!(take(budget, 1_000), Err(REFILL_SECONDS));
        assert_eq!(take(budget, 1_000 + REFILL_SECONDS - 1), Err(1));
        let after = take(budget, 1_000 + REFILL_SECONDS).expect("refilled one");
        assert_eq!(
            take(Some(after), 1_000 + REFILL_SECONDS),
            Err(REFILL_SECONDS)
        );
    }

    #[test]
    fn fifteen_minutes_of_floods_take_at_most_thirty_five_calls() {
        let mut budget = None;
        let mut taken = 0;
        for now in 0..900 {
            // A hundred attempts a second.
            for _ in 0..100 {
                if let Ok(after) = take(budget, now) {
                    budget = Some(after);
                    taken += 1;
                }
            }
        }
        assert!(taken <= CAPACITY + 900 / REFILL_SECONDS, "{taken}");
        assert!(taken >= 30, "{taken}");
    }

    #[test]
    fn a_clock_going_back_adds_nothing() {
        let budget = EventBudget {
            credit: 0,
            at: 10_000,
        };
        assert_eq!(refilled(Some(budget), 9_000).credit, 0);
        assert_eq!(refilled(Some(budget), 9_000).at, 10_000);
    }
}
