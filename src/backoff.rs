//! Delays for [`backon`]'s retries that double exactly. backon's own `ExponentialBuilder`
//! doubles in `f32`, so from 200 ms it sleeps 400.000006 ms; it is used only where its steps
//! are exact (whole seconds), and these everywhere else.

use std::time::Duration;

/// `first`, then twice the previous delay, capped at `cap`; endless (`take` bounds it).
pub fn doubling(first: Duration, cap: Duration) -> impl backon::Backoff + Clone {
    std::iter::successors(Some(first), move |delay| {
        Some(delay.saturating_mul(2).min(cap))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_exactly_up_to_the_cap() {
        let delays: Vec<Duration> = doubling(Duration::from_millis(200), Duration::from_secs(2))
            .take(6)
            .collect();
        let nanos: Vec<u128> = delays.iter().map(Duration::as_nanos).collect();
        assert_eq!(
            nanos,
            [200, 400, 800, 1_600, 2_000, 2_000].map(|ms| ms * 1_000_000)
        );
    }
}
