//! What Strava's push events do. Events are unsigned, so nothing is taken on trust:
//! - **Ids fail closed**: an event is applied only once the stored athlete and subscription are
//!   known and match it; one whose ids cannot be read yet (slow storage, no subscription stored)
//!   may be recorded, but nothing calls Strava for it until they can. Every accepted `POST` gets
//!   the same reply, so the reply never tells right ids from wrong ones.
//! - **Activity events apply one by one**: recorded in the `latest-run` entity (so another
//!   instance applies an event whose receiver died) and applied at once by the receiver. A
//!   delete, or a change to private, takes the activity out of every answer with no Strava call;
//!   a create or another change reads the activity (one call) with a call taken from the shared
//!   event budget ([`crate::index::budget`]); when the budget is empty the event waits for it,
//!   or for the next reconciliation round, which covers it too.
//! - **A deauthorization** is acted on only after Strava refuses the stored refresh token; the
//!   credentials are then marked (If-Match), never deleted, so tokens another instance holds in
//!   memory (newer in the same chain) restore them.
//!
//! Domain logic only; the `StravaWebhook` function maps it to HTTP.

use crate::backoff;
use crate::clock::Clock;
use crate::index::budget;
use crate::keeper::{EventError, IndexKeeper};
use crate::store::{add_pending, Change, PendingEvent, Store, StoredLatestRun};
use crate::strava::webhook::{Aspect, ObjectType, WebhookEvent};
use crate::strava::StravaError;
use crate::tokens::{TokenError, TokenKeeper};
use backon::Retryable;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long reading the ids to check an event against may take before the reply.
const LOOKUP_PATIENCE: Duration = Duration::from_millis(300);
/// When every accepted event is answered, counted from its arrival, whatever became of it:
/// recorded, ignored or checked. The same time for all, so how long a reply takes never tells
/// right ids from wrong ones (recording takes longer than ignoring); well inside Strava's 2 s.
pub const REPLY_AFTER: Duration = Duration::from_millis(1_200);
/// How long the recorder keeps trying to write events while storage is down.
const RECORD_GIVE_UP: Duration = Duration::from_secs(60);
/// The first pause between those writes and the longest (doubled after each).
const RECORD_PAUSE: Duration = Duration::from_millis(200);
const RECORD_PAUSE_MAX: Duration = Duration::from_secs(5);
/// At most this many events wait here to be applied (as many as in the table).
const MAX_PENDING: usize = StoredLatestRun::MAX_PENDING;
/// An event recorded this long ago (seconds) and still pending is applied by any instance that
/// sees it (its receiver may have died).
const ORPHAN_AFTER_SECONDS: i64 = 8;
/// At most one deauthorization check with Strava per this many seconds (forged events).
const DEAUTHORIZATION_CHECK_SPACING: i64 = 60;
/// How often the ids may be read again when an event does not match them (they may have
/// changed: a new subscription, a new setup).
const IDS_REREAD_SECONDS: i64 = 30;
/// The longest an event waits in this instance for Strava or the budget before it is left to
/// the table (and the next round).
const APPLY_PATIENCE_SECONDS: i64 = 900;

/// What became of an event (for logs: the reply is the same for all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// An activity event: recorded and being applied.
    Recorded,
    /// A deauthorization: being checked with Strava.
    CheckingDeauthorization,
    /// Not for this app: the reason.
    Ignored(&'static str),
}

/// An event waiting in this instance.
#[derive(Clone, Debug)]
struct Queued {
    event: PendingEvent,
    /// When to try it next (Unix seconds).
    try_at: i64,
    /// Found in the table (another instance received it): skipped once the table no longer
    /// has it (applied elsewhere, or covered by a round).
    adopted: bool,
}

/// Receives push events; cheap to clone.
#[derive(Clone)]
pub struct PushEvents(Arc<Inner>);

struct Inner {
    store: Store,
    tokens: TokenKeeper,
    keeper: IndexKeeper,
    clock: Clock,
    /// The connected athlete and the stored subscription, once read (0: not known yet).
    athlete_id: AtomicI64,
    subscription_id: AtomicI64,
    ids_read_at: AtomicI64,
    last_deauthorization_check: AtomicI64,
    deauthorization_check_waiting: AtomicBool,
    /// Events waiting to be applied here, oldest first.
    queue: Mutex<VecDeque<Queued>>,
    applier_running: AtomicBool,
    /// Events waiting to be written to the table, and the number of the batch they go in.
    to_record: Mutex<(Vec<PendingEvent>, u64)>,
    /// The number of the last batch written (or given up on).
    recorded: watch::Sender<u64>,
    recorder_running: AtomicBool,
    /// Whether a lookup of the ids is under way (one at a time).
    ids_lookup_running: AtomicBool,
}

/// Clears a "task running" flag when the task ends, however it ends (a panic included), so the
/// work it stands for can start again.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl PushEvents {
    /// A receiver for the app's services; it also applies events other instances recorded.
    pub fn new(store: Store, tokens: TokenKeeper, keeper: IndexKeeper, clock: Clock) -> Self {
        let events = PushEvents(Arc::new(Inner {
            store,
            tokens,
            keeper: keeper.clone(),
            clock,
            athlete_id: AtomicI64::new(0),
            subscription_id: AtomicI64::new(0),
            ids_read_at: AtomicI64::new(0),
            last_deauthorization_check: AtomicI64::new(0),
            deauthorization_check_waiting: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            applier_running: AtomicBool::new(false),
            to_record: Mutex::new((Vec::new(), 1)),
            recorded: watch::channel(0).0,
            recorder_running: AtomicBool::new(false),
            ids_lookup_running: AtomicBool::new(false),
        }));
        events.follow_the_table(keeper.subscribe());
        events
    }

    /// Follows the push events the keeper finds in the table (on every read of the shared
    /// entity): those another instance recorded and did not apply are adopted here. The task
    /// ends with the keeper; it holds this service only weakly, so the two can be dropped.
    /// Without a runtime (an app built outside one) there is no follower.
    fn follow_the_table(&self, mut published: watch::Receiver<crate::keeper::Published>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.0);
        runtime.spawn(async move {
            let mut handled = 0;
            while published.changed().await.is_ok() {
                let (pending, read) = {
                    let state = published.borrow_and_update();
                    (state.pending.clone(), state.pending_read)
                };
                if read == handled {
                    // Another change (an answer), not a new read of the table.
                    continue;
                }
                handled = read;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                PushEvents(inner).adopt_orphans(pending.to_vec());
            }
        });
    }

    /// Handles one event, answering [`REPLY_AFTER`] after it arrived; the work it starts goes
    /// on after. No event field is a span field: an unsigned event's fields are anyone's text.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn receive(&self, event: &WebhookEvent) -> EventOutcome {
        let reply_at = tokio::time::Instant::now() + REPLY_AFTER;
        let outcome = self.take(event, reply_at).await;
        tokio::time::sleep_until(reply_at).await;
        outcome
    }

    /// Looks at one event: ignores it, starts a deauthorization check, or queues and records it
    /// (waiting for the record until `reply_at` at most).
    async fn take(&self, event: &WebhookEvent, reply_at: tokio::time::Instant) -> EventOutcome {
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
            if athlete_id.is_none() || subscription_id.is_none() {
                return EventOutcome::Ignored("the ids to check a deauthorization are not known");
            }
            self.check_deauthorization();
            return EventOutcome::CheckingDeauthorization;
        }
        if event.object_type != ObjectType::Activity {
            return EventOutcome::Ignored("not an activity event");
        }
        let hide = event.aspect == Aspect::Delete || event.update("private") == Some("true");
        let pending = PendingEvent {
            id: event.object_id,
            hide,
            at: self.0.clock.now(),
            owner_id: event.owner_id,
            subscription_id: event.subscription_id,
        };
        self.enqueue(Queued {
            event: pending.clone(),
            try_at: self.0.clock.now(),
            adopted: false,
        });
        self.record(pending, reply_at).await;
        EventOutcome::Recorded
    }

    /// The connected athlete and the stored subscription (`None`: not known). Read once and
    /// kept; with `patience`, a slow storage does not hold up the caller longer.
    async fn ids(&self, reread: bool) -> (Option<i64>, Option<i64>) {
        let now = self.0.clock.now();
        let may_reread = reread
            && now.saturating_sub(self.0.ids_read_at.load(Ordering::Relaxed)) >= IDS_REREAD_SECONDS;
        let unknown = self.known_ids().0.is_none() || self.known_ids().1.is_none();
        // One lookup at a time: a flood while the ids are unknown starts no more.
        if (may_reread || unknown) && !self.0.ids_lookup_running.swap(true, Ordering::AcqRel) {
            self.0.ids_read_at.store(now, Ordering::Relaxed);
            let events = self.clone();
            // In a task of its own: a lookup that outlasts the patience still fills the ids in.
            let lookup = tokio::spawn(async move {
                let _running = Running(&events.0.ids_lookup_running);
                events.read_ids().await
            });
            let _ = tokio::time::timeout(LOOKUP_PATIENCE, lookup).await;
        }
        self.known_ids()
    }

    fn known_ids(&self) -> (Option<i64>, Option<i64>) {
        let known = |cell: &AtomicI64| Some(cell.load(Ordering::Relaxed)).filter(|id| *id != 0);
        (known(&self.0.athlete_id), known(&self.0.subscription_id))
    }

    /// Reads the ids from storage, however long it takes; `false` when storage failed.
    async fn read_ids(&self) -> bool {
        let athlete = match self.0.store.load_credentials().await {
            // Refused after a deauthorization: no athlete is connected, so no event applies.
            Ok(Some(c)) if c.value.refused_at.is_some() => None,
            Ok(Some(c)) => c.value.athlete_id,
            Ok(None) => None,
            Err(_) => return false,
        };
        let subscription = match self.0.store.load_subscription().await {
            Ok(Some(s)) => Some(s.id),
            Ok(None) => None,
            Err(_) => return false,
        };
        self.0
            .athlete_id
            .store(athlete.unwrap_or(0), Ordering::Relaxed);
        self.0
            .subscription_id
            .store(subscription.unwrap_or(0), Ordering::Relaxed);
        true
    }

    /// Writes `event` to the table's pending events with the next batch, waiting for that
    /// batch until `until` at most (the writing goes on after).
    #[tracing::instrument(level = "debug", skip_all)]
    async fn record(&self, event: PendingEvent, until: tokio::time::Instant) {
        let batch = {
            let Ok(mut to_record) = self.0.to_record.lock() else {
                return;
            };
            // Bounded while storage is down: one event per activity, and the same cap as the
            // table's list.
            add_pending(&mut to_record.0, event);
            to_record.1
        };
        let mut recorded = self.0.recorded.subscribe();
        self.start_recorder();
        let written = tokio::time::timeout_at(until, recorded.wait_for(|b| *b >= batch));
        if written.await.is_err() {
            tracing::warn!("storage is slow: the push event is applied here and written for other instances in the background");
        }
    }

    fn start_recorder(&self) {
        if self.0.recorder_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let events = self.clone();
        tokio::spawn(async move {
            let mut running = Some(Running(&events.0.recorder_running));
            loop {
                let (batch, number) = {
                    let Ok(mut to_record) = events.0.to_record.lock() else {
                        break;
                    };
                    let number = to_record.1;
                    to_record.1 += 1;
                    (std::mem::take(&mut to_record.0), number)
                };
                if batch.is_empty() {
                    drop(running.take());
                    // An event pushed after the take and before the flag must not wait forever.
                    let more = events.0.to_record.lock().map(|t| !t.0.is_empty());
                    if more.unwrap_or(false)
                        && !events.0.recorder_running.swap(true, Ordering::AcqRel)
                    {
                        running = Some(Running(&events.0.recorder_running));
                        continue;
                    }
                    break;
                }
                events.write_batch(&batch).await;
                events.0.recorded.send_replace(number);
            }
        });
    }

    /// Adds `batch` to the table's pending events (one write for the batch), retrying with
    /// backoff for a minute.
    async fn write_batch(&self, batch: &[PendingEvent]) {
        let give_up = tokio::time::Instant::now() + RECORD_GIVE_UP;
        let write = || {
            self.0.store.modify_latest_run(|entity, _| {
                for event in batch {
                    entity.record_event(event.clone());
                }
                Change::Save(())
            })
        };
        let written = write
            .retry(backoff::doubling(RECORD_PAUSE, RECORD_PAUSE_MAX))
            .when(|_| tokio::time::Instant::now() < give_up)
            .notify(|err, _| tracing::warn!(error = %err, "cannot record push events yet"))
            .await;
        if let Err(err) = written {
            tracing::error!(error = %err, "gave up recording push events in the table; this instance applies them");
        }
    }

    /// Events another instance recorded and has not applied for a while: applied here; those
    /// that waited longer than [`APPLY_PATIENCE_SECONDS`] are dropped from the table (the
    /// rounds cover them), so no event is tried for ever.
    fn adopt_orphans(&self, pending: Vec<PendingEvent>) {
        let now = self.0.clock.now();
        for event in pending {
            if now.saturating_sub(event.at) >= APPLY_PATIENCE_SECONDS {
                let events = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = events.0.keeper.clear_event(&event).await {
                        tracing::warn!(error = %err, "could not drop a push event that waited too long");
                    }
                });
            } else if now.saturating_sub(event.at) >= ORPHAN_AFTER_SECONDS {
                self.enqueue(Queued {
                    event,
                    try_at: now,
                    adopted: true,
                });
            }
        }
    }

    /// Queues `event` for this instance's applier (one per activity: a later event for the same
    /// activity replaces an earlier one) and starts the applier.
    fn enqueue(&self, queued: Queued) {
        if let Ok(mut queue) = self.0.queue.lock() {
            let room = queue.len() < MAX_PENDING;
            match queue.iter_mut().find(|q| q.event.id == queued.event.id) {
                // The later word counts: an event received here replaces what was queued for
                // its activity (the same second included); the table's copy only a strictly
                // older one.
                Some(known) if !queued.adopted || known.event.at < queued.event.at => {
                    *known = queued
                }
                Some(_) => {}
                None if room => queue.push_back(queued),
                None => {
                    tracing::warn!("too many push events waiting; the next round covers the rest")
                }
            }
        }
        self.start_applier();
    }

    fn start_applier(&self) {
        if self.0.applier_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let events = self.clone();
        tokio::spawn(async move {
            let mut running = Some(Running(&events.0.applier_running));
            loop {
                let next = events.0.queue.lock().ok().and_then(|mut q| {
                    // The first one due, or else the one due soonest.
                    let index = (0..q.len()).min_by_key(|i| q[*i].try_at)?;
                    q.remove(index)
                });
                let Some(queued) = next else {
                    drop(running.take());
                    let more = events.0.queue.lock().map(|q| !q.is_empty());
                    if more.unwrap_or(false)
                        && !events.0.applier_running.swap(true, Ordering::AcqRel)
                    {
                        running = Some(Running(&events.0.applier_running));
                        continue;
                    }
                    break;
                };
                let wait = queued.try_at.saturating_sub(events.0.clock.now());
                if wait > 0 {
                    // Put it back and sleep until it (or a newer event) is due.
                    if let Ok(mut queue) = events.0.queue.lock() {
                        queue.push_front(queued);
                    }
                    tokio::time::sleep(Duration::from_secs(wait.clamp(1, 5) as u64)).await;
                    continue;
                }
                if let Some(retry_at) = events.apply(&queued).await {
                    if retry_at.saturating_sub(queued.event.at) < APPLY_PATIENCE_SECONDS {
                        events.enqueue_quietly(Queued {
                            try_at: retry_at,
                            ..queued
                        });
                    } else {
                        tracing::warn!(
                            activity = queued.event.id,
                            "a push event waited too long; the next round covers it"
                        );
                    }
                }
            }
        });
    }

    /// Queues without starting the applier (the applier itself puts an event back).
    fn enqueue_quietly(&self, queued: Queued) {
        if let Ok(mut queue) = self.0.queue.lock() {
            if !queue.iter().any(|q| q.event.id == queued.event.id) {
                queue.push_back(queued);
            }
        }
    }

    /// Applies one event; `Some(when)` to try it again then.
    #[tracing::instrument(skip_all, fields(hide = queued.event.hide, adopted = queued.adopted))]
    async fn apply(&self, queued: &Queued) -> Option<i64> {
        let event = &queued.event;
        let now = self.0.clock.now();
        // Ids fail closed: read them (however slow storage is) before anything is applied.
        let matching = |(athlete, subscription): (Option<i64>, Option<i64>)| {
            athlete == Some(event.owner_id) && subscription == Some(event.subscription_id)
        };
        if !matching(self.known_ids()) {
            let may_reread = now.saturating_sub(self.0.ids_read_at.load(Ordering::Relaxed)) >= 1;
            if !may_reread {
                return Some(now + 1);
            }
            self.0.ids_read_at.store(now, Ordering::Relaxed);
            if !self.read_ids().await {
                // Storage did not say: ask again later, and apply nothing meanwhile.
                return Some(now + 2);
            }
        }
        if !matching(self.known_ids()) {
            tracing::info!(
                activity = event.id,
                "push event not applied: its ids are not the stored athlete's and subscription"
            );
            if let Err(err) = self.0.keeper.clear_event(event).await {
                tracing::warn!(error = %err, "could not clear a foreign push event");
            }
            return None;
        }
        let result = if event.hide {
            self.0.keeper.hide_activity(event).await
        } else {
            match self.take_budget(queued).await {
                Ok(Some(word)) => self
                    .0
                    .keeper
                    .apply_activity_event(event, event.owner_id, word)
                    .await
                    .map(|applied| {
                        tracing::info!(activity = event.id, ?applied, "push event applied");
                    }),
                // Applied elsewhere, or covered by a round, meanwhile.
                Ok(None) => Ok(()),
                Err(wait) => return Some(now + wait),
            }
        };
        match result {
            Ok(()) => None,
            Err(EventError::Strava { reason, retry_at }) => {
                tracing::warn!(activity = event.id, %reason, "push event not applied yet");
                Some(retry_at.max(now + 1))
            }
            Err(EventError::Storage(err)) => {
                tracing::warn!(activity = event.id, error = %err, "push event not applied yet");
                Some(now + 2)
            }
        }
    }

    /// Takes one call from the shared event budget for `event`, and with it the word of the
    /// read (a reading of the index clock, in the same write): `Ok(Some(word))` taken,
    /// `Ok(None)` the event is no longer pending (nothing taken), `Err(seconds)` until a call is
    /// there.
    async fn take_budget(&self, queued: &Queued) -> Result<Option<i64>, i64> {
        let event = &queued.event;
        let taken = self
            .0
            .store
            .modify_latest_run(|entity, read_at| {
                let pending = entity
                    .pending_events
                    .iter()
                    .any(|e| e.id == event.id && e.at >= event.at);
                if queued.adopted && !pending {
                    return Change::Keep(Ok(None));
                }
                match budget::take(entity.event_budget, read_at) {
                    Ok(after) => {
                        entity.event_budget = Some(after);
                        entity.index_clock += 1;
                        Change::Save(Ok(Some(entity.index_clock)))
                    }
                    Err(wait) => Change::Keep(Err(wait)),
                }
            })
            .await;
        match taken {
            Ok(result) => result,
            Err(err) => {
                tracing::warn!(error = %err, "cannot take from the event budget yet");
                Err(2)
            }
        }
    }

    /// Asks Strava whether the stored tokens still work, in the background, at most once a
    /// minute (a check asked for sooner waits its turn, it is not dropped). Only Strava refusing
    /// the refresh token read fresh from storage marks the credentials.
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
            match events.0.tokens.refresh_now().await {
                Err(TokenError::Rejected(StravaError::InvalidRefreshToken)) => {
                    events.forget_the_athlete().await
                }
                _ => tracing::warn!("a deauthorization event arrived but Strava did not refuse the stored tokens: ignored (it may be forged)"),
            }
        });
    }

    /// Strava confirmed the athlete revoked the app: mark the credentials (never delete them:
    /// an instance holding newer tokens of the same chain restores them) and drop the answer.
    async fn forget_the_athlete(&self) {
        match self.0.tokens.mark_refused().await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("the credentials changed since Strava refused them (a newer refresh or a new setup): kept");
                return;
            }
            Err(err) => {
                tracing::error!(error = %err, "could not mark the refused credentials");
                return;
            }
        }
        tracing::warn!("the athlete revoked the app at Strava: the credentials are marked refused, the answer and the activity index dropped; run `handler setup` to connect again");
        // The answer first: from here no round or event stores one from an older word.
        if let Err(err) = self.0.keeper.take_answer_away().await {
            tracing::error!(error = %err, "could not take the answer away after the deauthorization");
        }
        if let Err(err) = self.0.keeper.clear_index().await {
            tracing::error!(error = %err, "could not empty the activity index after the deauthorization");
        }
        self.0.athlete_id.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, at: i64, hide: bool) -> PendingEvent {
        PendingEvent {
            id,
            hide,
            at,
            owner_id: 1,
            subscription_id: 2,
        }
    }

    #[test]
    fn the_pending_list_keeps_one_event_per_activity_and_a_bound() {
        let mut pending = Vec::new();
        add_pending(&mut pending, event(7, 10, false));
        add_pending(&mut pending, event(7, 12, true));
        add_pending(&mut pending, event(7, 11, false));
        assert_eq!(pending, vec![event(7, 12, true)], "the newest word counts");
        for id in 0..(MAX_PENDING as i64 * 2) {
            add_pending(&mut pending, event(100 + id, 20, false));
        }
        assert_eq!(pending.len(), MAX_PENDING);
    }
}
