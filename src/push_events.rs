//! What Strava's push events do (DESIGN §8). An activity created, changed or deleted by the
//! connected athlete is recorded as pending in the table and applied by one refresh round (on
//! any instance; duplicates coalesce; forged ones cost at most one round per spacing). A
//! deauthorization is acted on only after Strava confirms it, because the events are unsigned:
//! only when Strava refuses the stored tokens are the credentials and the answer deleted.
//! Events of another athlete or subscription are ignored. Domain logic only; the
//! `StravaWebhook` function maps it to HTTP.

use crate::clock::Clock;
use crate::latest_run::LatestRunService;
use crate::store::Store;
use crate::strava::webhook::{ObjectType, WebhookEvent};
use crate::strava::StravaError;
use crate::tokens::{TokenError, TokenKeeper};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long reading the ids to check an event against may take before the reply.
const LOOKUP_PATIENCE: Duration = Duration::from_millis(300);
/// How long recording an event in the table may take before the reply: with the lookup, well
/// inside Strava's 2 s.
const RECORD_PATIENCE: Duration = Duration::from_millis(900);
/// At most one deauthorization check with Strava per this many seconds (forged events).
const DEAUTHORIZATION_CHECK_SPACING: i64 = 60;
/// How often the ids may be read again when an event does not match them (they may have
/// changed: a new subscription, a new setup).
const IDS_REREAD_SECONDS: i64 = 30;

/// What became of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// An activity event: recorded and being applied.
    Recorded,
    /// A deauthorization: being checked with Strava.
    CheckingDeauthorization,
    /// Not for this app: the reason.
    Ignored(&'static str),
}

/// Receives push events; cheap to clone.
#[derive(Clone)]
pub struct PushEvents(Arc<Inner>);

struct Inner {
    store: Store,
    tokens: TokenKeeper,
    latest_run: LatestRunService,
    clock: Clock,
    /// The connected athlete and the stored subscription, once read (0: not known yet).
    athlete_id: AtomicI64,
    subscription_id: AtomicI64,
    ids_read_at: AtomicI64,
    last_deauthorization_check: AtomicI64,
    deauthorization_check_waiting: std::sync::atomic::AtomicBool,
}

impl PushEvents {
    /// A receiver for the app's services.
    pub fn new(
        store: Store,
        tokens: TokenKeeper,
        latest_run: LatestRunService,
        clock: Clock,
    ) -> Self {
        PushEvents(Arc::new(Inner {
            store,
            tokens,
            latest_run,
            clock,
            athlete_id: AtomicI64::new(0),
            subscription_id: AtomicI64::new(0),
            ids_read_at: AtomicI64::new(0),
            last_deauthorization_check: AtomicI64::new(0),
            deauthorization_check_waiting: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Handles one event within Strava's two seconds; the work it starts goes on after.
    pub async fn receive(&self, event: &WebhookEvent) -> EventOutcome {
        let mut ids = self.ids(false).await;
        let matches = |(athlete, subscription): (Option<i64>, Option<i64>)| {
            athlete.is_none_or(|id| id == event.owner_id)
                && subscription.is_none_or(|id| id == event.subscription_id)
        };
        if !matches(ids) {
            // The ids may have changed since they were read (a new subscription or setup).
            ids = self.ids(true).await;
        }
        let (athlete_id, subscription_id) = ids;
        if athlete_id.is_some_and(|id| id != event.owner_id) {
            return EventOutcome::Ignored("another athlete's event");
        }
        if subscription_id.is_some_and(|id| id != event.subscription_id) {
            return EventOutcome::Ignored("another subscription's event");
        }
        if event.is_deauthorization() {
            self.check_deauthorization();
            return EventOutcome::CheckingDeauthorization;
        }
        match event.object_type {
            ObjectType::Activity => {
                self.0.latest_run.record_event(RECORD_PATIENCE).await;
                EventOutcome::Recorded
            }
            _ => EventOutcome::Ignored("not an activity event"),
        }
    }

    /// The connected athlete and the stored subscription (`None`: not known, so not checked).
    /// Read once and kept; a slow storage does not hold up the reply.
    async fn ids(&self, reread: bool) -> (Option<i64>, Option<i64>) {
        let known = |cell: &AtomicI64| Some(cell.load(Ordering::Relaxed)).filter(|id| *id != 0);
        let now = self.0.clock.now();
        let may_reread = reread
            && now.saturating_sub(self.0.ids_read_at.load(Ordering::Relaxed)) >= IDS_REREAD_SECONDS;
        if may_reread
            || known(&self.0.athlete_id).is_none()
            || known(&self.0.subscription_id).is_none()
        {
            self.0.ids_read_at.store(now, Ordering::Relaxed);
            let store = self.0.store.clone();
            let lookup = async move {
                let athlete = match store.load_credentials().await {
                    Ok(Some(c)) => c.value.athlete_id,
                    _ => None,
                };
                let subscription = match store.load_subscription().await {
                    Ok(Some(s)) => Some(s.id),
                    _ => None,
                };
                (athlete, subscription)
            };
            if let Ok((athlete, subscription)) = tokio::time::timeout(LOOKUP_PATIENCE, lookup).await
            {
                self.0
                    .athlete_id
                    .store(athlete.unwrap_or(0), Ordering::Relaxed);
                self.0
                    .subscription_id
                    .store(subscription.unwrap_or(0), Ordering::Relaxed);
            }
        }
        (known(&self.0.athlete_id), known(&self.0.subscription_id))
    }

    /// Asks Strava whether the stored tokens still work, in the background, at most once a
    /// minute (a check asked for sooner waits its turn, it is not dropped). Only Strava refusing
    /// the refresh token read fresh from storage deletes the credentials and the answer.
    fn check_deauthorization(&self) {
        if self
            .0
            .deauthorization_check_waiting
            .swap(true, Ordering::AcqRel)
        {
            return;
        }
        let events = self.clone();
        tokio::spawn(async move {
            let last = events.0.last_deauthorization_check.load(Ordering::Relaxed);
            let wait = last
                .saturating_add(DEAUTHORIZATION_CHECK_SPACING)
                .saturating_sub(events.0.clock.now())
                .clamp(0, DEAUTHORIZATION_CHECK_SPACING);
            tokio::time::sleep(Duration::from_secs(wait as u64)).await;
            events
                .0
                .last_deauthorization_check
                .store(events.0.clock.now(), Ordering::Relaxed);
            events
                .0
                .deauthorization_check_waiting
                .store(false, Ordering::Release);
            // The keeper reads the credentials from storage first; a refusal of a token only
            // held in memory (storage down) proves nothing, so storage must answer too.
            let refused = matches!(
                events.0.tokens.refresh_now().await,
                Err(TokenError::Rejected(StravaError::InvalidRefreshToken))
            ) && matches!(events.0.store.load_credentials().await, Ok(Some(_)));
            if refused {
                events.forget_the_athlete().await;
            } else {
                tracing::warn!("a deauthorization event arrived but Strava did not refuse the stored tokens: ignored (it may be forged)");
            }
        });
    }

    /// Strava confirmed the athlete revoked the app: delete what only served them.
    async fn forget_the_athlete(&self) {
        tracing::warn!("the athlete revoked the app at Strava: deleting the stored credentials and answer; run `handler setup` to connect again");
        for (what, result) in [
            ("credentials", self.0.store.delete_credentials().await),
            ("latest-run", self.0.store.delete_latest_run().await),
        ] {
            if let Err(err) = result {
                tracing::error!(entity = what, error = %err, "could not delete after the deauthorization");
            }
        }
        self.0.tokens.forget().await;
        self.0.latest_run.forget();
        self.0.athlete_id.store(0, Ordering::Relaxed);
    }
}
