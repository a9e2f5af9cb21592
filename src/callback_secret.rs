//! The webhook callback's secret: Strava signs no event, and every id in one is guessable, so an
//! event is taken only when it comes to the address `handler subscribe` registered, whose last
//! path segment is a random secret kept in the `subscription` entity. This module holds a copy of
//! the stored secret and decides, for the secret a `POST` came with (none on the bare path),
//! whether its event goes on to the push-event service:
//! - with a secret stored, only that secret's path is taken (compared in constant time); the bare
//!   path and any other secret are refused;
//! - a subscription made before callbacks carried a secret (none stored), or none at all, takes
//!   events on the bare path only, as before (the push-event service still checks the ids);
//! - the copy is read again when it is older than [`REREAD_AFTER`], so a new `handler subscribe`
//!   takes effect on every instance within that; one read at a time, waited for
//!   [`LOOKUP_PATIENCE`] at most; a read that fails or is slow leaves the older copy to decide;
//! - with no copy at all (an instance that never read one while storage is down or slow), an
//!   event is held, and decided once a read succeeds (tried for [`HOLD_FOR`]).
//!
//! A refused event changes nothing and calls nothing; it is logged at most once a minute, and no
//! log line names a secret, offered or stored.

use crate::logging::LogLimit;
use crate::push_events::PushEvents;
use crate::secret::Secret;
use crate::store::Store;
use crate::strava::webhook::WebhookEvent;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// A copy of the stored secret older than this is read again before an event is decided.
pub const REREAD_AFTER: Duration = Duration::from_secs(2);
/// How long a `POST` waits for that read before the older copy decides (or the event is held).
const LOOKUP_PATIENCE: Duration = Duration::from_millis(300);
/// The longest one read of the subscription may take before it counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a held event waits for a read that succeeds before it is dropped.
const HOLD_FOR: Duration = Duration::from_secs(60);
/// The first pause between failed reads while events are held, and the longest (doubled).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);
/// At most this many events are held; more are refused (a flood while storage is down).
const MAX_HELD: usize = 64;

/// Whether a `POST`'s event goes on to the push-event service now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It came with the stored secret (or to the bare path while none is stored).
    Take,
    /// Refused, or held until the stored secret can be read: nothing more to do now.
    NotNow,
}

/// The instance's view of the callback secret; cheap to clone.
#[derive(Clone)]
pub struct CallbackSecret(Arc<Inner>);

struct Inner {
    store: Store,
    events: PushEvents,
    copy: Mutex<Copy>,
    held: Mutex<Vec<Held>>,
    lookup_running: AtomicBool,
    refusals: LogLimit,
}

/// The last successful read of the `subscription` entity.
#[derive(Default)]
struct Copy {
    /// `None`: never read; `Some(None)`: no secret stored (or no subscription).
    stored: Option<Option<Secret>>,
    read_at: Option<Instant>,
}

/// An event waiting for the stored secret to be read.
struct Held {
    offered: Option<String>,
    event: WebhookEvent,
    since: Instant,
}

/// Clears the lookup flag when the lookup ends, however it ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl CallbackSecret {
    /// The gate in front of `events`, reading the secret from `store`.
    pub fn new(store: Store, events: PushEvents) -> Self {
        CallbackSecret(Arc::new(Inner {
            store,
            events,
            copy: Mutex::new(Copy::default()),
            held: Mutex::new(Vec::new()),
            lookup_running: AtomicBool::new(false),
            refusals: LogLimit::default(),
        }))
    }

    /// Decides the event of a `POST` that came with `offered` as its callback secret (`None` or
    /// empty: the bare path). Waits for a read of the stored secret only when the copy is older
    /// than [`REREAD_AFTER`], and then [`LOOKUP_PATIENCE`] at most.
    pub async fn admit(&self, offered: Option<&str>, event: &WebhookEvent) -> Admission {
        let offered = offered.filter(|secret| !secret.is_empty());
        if self.is_stale() {
            self.start_lookup();
            let until = Instant::now() + LOOKUP_PATIENCE;
            while self.is_stale() && self.0.lookup_running.load(Ordering::Acquire) {
                if Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let stored = lock(&self.0.copy).stored.clone();
        match stored {
            Some(stored) if accepts(stored.as_ref(), offered) => Admission::Take,
            Some(_) => {
                self.refused();
                Admission::NotNow
            }
            None => {
                self.hold(offered, event);
                Admission::NotNow
            }
        }
    }

    fn is_stale(&self) -> bool {
        lock(&self.0.copy)
            .read_at
            .is_none_or(|at| at.elapsed() >= REREAD_AFTER)
    }

    fn refused(&self) {
        if let Some(held_back) = self.0.refusals.admit() {
            tracing::warn!(
                held_back,
                "a push event without the callback secret was refused (one such line a minute at most)"
            );
        }
    }

    fn hold(&self, offered: Option<&str>, event: &WebhookEvent) {
        {
            let mut held = lock(&self.0.held);
            if held.len() >= MAX_HELD {
                drop(held);
                self.refused();
                return;
            }
            held.push(Held {
                offered: offered.map(str::to_owned),
                event: event.clone(),
                since: Instant::now(),
            });
        }
        self.start_lookup();
    }

    /// Starts a read of the stored secret unless one is under way; it goes on retrying while
    /// events are held, and decides them once it succeeds.
    fn start_lookup(&self) {
        if self.0.lookup_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.0.lookup_running.store(false, Ordering::Release);
            return;
        };
        let gate = self.clone();
        runtime.spawn(async move {
            loop {
                {
                    let _running = Running(&gate.0.lookup_running);
                    gate.look_up().await;
                }
                // An event held after the lookup gave up, and before its flag was cleared, would
                // wait for nobody: take the flag back for it.
                let waiting = !lock(&gate.0.held).is_empty();
                if !waiting || gate.0.lookup_running.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }

    /// Reads the stored secret until a read succeeds, or at once if no event is held.
    async fn look_up(&self) {
        let mut pause = RETRY_PAUSE;
        loop {
            let read = tokio::time::timeout(READ_TIMEOUT, self.0.store.load_subscription()).await;
            if let Ok(Ok(subscription)) = read {
                {
                    let mut copy = lock(&self.0.copy);
                    copy.stored = Some(subscription.and_then(|s| s.callback_secret));
                    copy.read_at = Some(Instant::now());
                }
                self.decide_held();
                return;
            }
            {
                let mut held = lock(&self.0.held);
                held.retain(|h| h.since.elapsed() < HOLD_FOR);
                if held.is_empty() {
                    return;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    /// Decides the held events with the copy just read: those with the stored secret go on.
    fn decide_held(&self) {
        let held = std::mem::take(&mut *lock(&self.0.held));
        let stored = lock(&self.0.copy).stored.clone().flatten();
        for Held { offered, event, .. } in held {
            if accepts(stored.as_ref(), offered.as_deref()) {
                let events = self.0.events.clone();
                tokio::spawn(async move {
                    events.receive(&event).await;
                });
            } else {
                self.refused();
            }
        }
    }
}

/// Whether an event that came with `offered` is taken while `stored` is the stored secret.
fn accepts(stored: Option<&Secret>, offered: Option<&str>) -> bool {
    match (stored, offered) {
        (Some(stored), Some(offered)) => {
            bool::from(offered.as_bytes().ct_eq(stored.expose().as_bytes()))
        }
        (Some(_), None) | (None, Some(_)) => false,
        (None, None) => true,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stored_secret_or_the_bare_path_without_one_is_taken() {
        let stored = Secret::new("k3W9-fQ_2xYbN7mLpR4sTuVw");
        assert!(accepts(Some(&stored), Some("k3W9-fQ_2xYbN7mLpR4sTuVw")));
        assert!(!accepts(Some(&stored), None));
        assert!(!accepts(Some(&stored), Some("k3W9-fQ_2xYbN7mLpR4sTuVx")));
        assert!(!accepts(Some(&stored), Some("k3W9")));
        assert!(accepts(None, None));
        assert!(!accepts(None, Some("k3W9-fQ_2xYbN7mLpR4sTuVw")));
    }
}
