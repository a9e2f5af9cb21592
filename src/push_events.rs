//! What Strava's push events do. Events are unsigned, so nothing is taken on trust:
//! - **Ids fail closed**: an event is applied only once the stored athlete and subscription are
//!   known and match it; one whose ids cannot be read yet (slow storage, no subscription stored)
//!   may be recorded, but nothing calls Strava for it until they can. Every accepted `POST` gets
//!   the same reply, so the reply never tells right ids from wrong ones.
//! - **Activity events are applied by the receiver**: recorded in the `latest-run` entity (so
//!   another instance applies an event whose receiver died) and applied by the receiver. A
//!   delete, or a change to private, takes the activity out of every answer at once with no
//!   Strava call; a create or another change reads the activity (one call) with a call taken
//!   from the shared event budget ([`crate::index::budget`]); when the budget is empty the event
//!   waits for it, or for the next reconciliation round, which covers it too.
//! - **Reads of one activity are coalesced**: an activity is read at most once every
//!   [`ActivityRead::SPACING_MS`], by whichever instance; the read answers every event about it
//!   recorded before the read's word was taken, and an event recorded later (it may have arrived
//!   after the read began) waits for the next read. So a burst of edits costs one read per two
//!   seconds, the last read begins after the last event arrived, and the last edit wins. The
//!   reads are kept in the table ([`StoredLatestRun::event_reads`]); one that began long ago and
//!   answered nothing (its reader died) holds nothing back.
//! - **A deauthorization** is acted on only after Strava refuses the stored refresh token; the
//!   credentials are then marked (If-Match), never deleted, so tokens another instance holds in
//!   memory (newer in the same chain) restore them.
//!
//! Domain logic only; the `StravaWebhook` function maps it to HTTP.

use crate::backoff;
use crate::clock::Clock;
use crate::index::budget;
use crate::keeper::{EventError, IndexKeeper};
use crate::store::{add_pending, ActivityRead, Change, PendingEvent, Store, StoredLatestRun};
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
/// How long the applier waits for this instance's record of an event before it reads without
/// knowing when the event was recorded (then no other read is taken to answer it).
const RECORD_PATIENCE: Duration = Duration::from_millis(1_000);
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
    /// When to try it next (Unix milliseconds).
    try_at_ms: i64,
    /// Found in the table (another instance received it): skipped once the table no longer
    /// has it (applied elsewhere, or covered by a round).
    adopted: bool,
    /// The batch this instance recorded it in (received here).
    batch: u64,
    /// The word of a read taken for it that failed: that read answers nothing.
    failed_read: Option<i64>,
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
    /// Events waiting to be written to the table.
    to_record: Mutex<ToRecord>,
    /// The number of the last batch written (or given up on), and the index clock's reading it
    /// was written at (`None`: given up on).
    recorded: watch::Sender<(u64, Option<i64>)>,
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

/// Events received here and not yet written to the table's pending events.
struct ToRecord {
    events: Vec<PendingEvent>,
    /// The number of the batch they go in.
    batch: u64,
    /// Whether an event did not fit (the table is asked for a full pass with the batch).
    overflowed: bool,
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
            to_record: Mutex::new(ToRecord {
                events: Vec::new(),
                batch: 1,
                overflowed: false,
            }),
            recorded: watch::channel((0, None)).0,
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
            recorded: 0,
        };
        let Some(batch) = self.add_to_record(pending.clone()) else {
            return EventOutcome::Ignored("the push-event service failed");
        };
        self.enqueue(Queued {
            event: pending,
            try_at_ms: self.0.clock.now_millis(),
            adopted: false,
            batch,
            failed_read: None,
        });
        self.recorded_by(batch, reply_at).await;
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

    /// Adds `event` to the next batch written to the table's pending events; the batch's
    /// number.
    fn add_to_record(&self, event: PendingEvent) -> Option<u64> {
        let batch = {
            let mut to_record = self.0.to_record.lock().ok()?;
            // Bounded while storage is down: one event per activity, and the same cap as the
            // table's list. What does not fit is covered by a full pass, which the batch asks
            // for when it is written.
            if !add_pending(&mut to_record.events, event) {
                to_record.overflowed = true;
            }
            to_record.batch
        };
        self.start_recorder();
        Some(batch)
    }

    /// Waits until `batch` is written, until `until` at most (the writing goes on after).
    #[tracing::instrument(level = "debug", skip_all)]
    async fn recorded_by(&self, batch: u64, until: tokio::time::Instant) {
        let mut recorded = self.0.recorded.subscribe();
        let written = tokio::time::timeout_at(until, recorded.wait_for(|(b, _)| *b >= batch));
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
                let (batch, number, overflowed) = {
                    let Ok(mut to_record) = events.0.to_record.lock() else {
                        break;
                    };
                    let number = to_record.batch;
                    to_record.batch += 1;
                    (
                        std::mem::take(&mut to_record.events),
                        number,
                        std::mem::take(&mut to_record.overflowed),
                    )
                };
                if batch.is_empty() {
                    drop(running.take());
                    // An event pushed after the take and before the flag must not wait forever.
                    let more = events.0.to_record.lock().map(|t| !t.events.is_empty());
                    if more.unwrap_or(false)
                        && !events.0.recorder_running.swap(true, Ordering::AcqRel)
                    {
                        running = Some(Running(&events.0.recorder_running));
                        continue;
                    }
                    break;
                }
                let stamp = events.write_batch(&batch, overflowed).await;
                if stamp.is_none() && overflowed {
                    // Not written: the next batch asks for the full pass.
                    if let Ok(mut to_record) = events.0.to_record.lock() {
                        to_record.overflowed = true;
                    }
                }
                events.0.recorded.send_replace((number, stamp));
            }
        });
    }

    /// Adds `batch` to the table's pending events (one write for the batch), retrying with
    /// backoff for a minute: the index clock's reading it was recorded at (`None`: given up).
    /// `overflowed`: events were dropped before the batch was written (more than the list
    /// keeps arrived while storage was down); the write asks for a full pass, as the table's
    /// own list does when it overflows.
    async fn write_batch(&self, batch: &[PendingEvent], overflowed: bool) -> Option<i64> {
        let give_up = tokio::time::Instant::now() + RECORD_GIVE_UP;
        let write = || {
            self.0.store.modify_latest_run(|entity, _| {
                for event in batch {
                    entity.record_event(event.clone());
                }
                if overflowed {
                    entity.ask_for_reconciliation();
                }
                Change::Save(entity.index_clock)
            })
        };
        let written = write
            .retry(backoff::doubling(RECORD_PAUSE, RECORD_PAUSE_MAX))
            .when(|_| tokio::time::Instant::now() < give_up)
            .notify(|err, _| tracing::warn!(error = %err, "cannot record push events yet"))
            .await;
        match written {
            Ok(stamp) => Some(stamp),
            Err(err) => {
                tracing::error!(error = %err, "gave up recording push events in the table; this instance applies them");
                None
            }
        }
    }

    /// The index clock's reading this instance recorded `queued` at, waiting
    /// [`RECORD_PATIENCE`] at most (`None`: not known; an adopted event's is in the table).
    async fn recorded_at(&self, queued: &Queued) -> Option<i64> {
        if queued.adopted {
            return None;
        }
        let mut recorded = self.0.recorded.subscribe();
        let written = recorded.wait_for(|(b, _)| *b >= queued.batch);
        // A later batch's reading is no earlier than this one's: it only asks for more reads.
        let stamp = match tokio::time::timeout(RECORD_PATIENCE, written).await {
            Ok(Ok(written)) => written.1,
            _ => None,
        };
        stamp
    }

    /// Events another instance recorded and has not applied for a while: applied here; those
    /// that waited longer than [`APPLY_PATIENCE_SECONDS`] are dropped from the table (the
    /// rounds cover them), so no event is tried for ever.
    fn adopt_orphans(&self, pending: Vec<PendingEvent>) {
        let now = self.0.clock.now();
        let now_ms = self.0.clock.now_millis();
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
                    try_at_ms: now_ms,
                    adopted: true,
                    batch: 0,
                    failed_read: None,
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
                    // A read that failed for the earlier event answers nothing for this one.
                    let failed_read = queued.failed_read.or(known.failed_read);
                    *known = Queued {
                        failed_read,
                        ..queued
                    }
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
                    let index = (0..q.len()).min_by_key(|i| q[*i].try_at_ms)?;
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
                let wait = queued.try_at_ms.saturating_sub(events.0.clock.now_millis());
                if wait > 0 {
                    // Put it back and sleep until it (or a newer event) is due.
                    if let Ok(mut queue) = events.0.queue.lock() {
                        queue.push_front(queued);
                    }
                    tokio::time::sleep(Duration::from_millis(wait.clamp(10, 5_000) as u64)).await;
                    continue;
                }
                let mut queued = queued;
                if let Some(retry_at_ms) = events.apply(&mut queued).await {
                    let waited = (retry_at_ms / 1_000).saturating_sub(queued.event.at);
                    if waited < APPLY_PATIENCE_SECONDS {
                        events.enqueue_quietly(Queued {
                            try_at_ms: retry_at_ms,
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

    /// Queues without starting the applier (the applier itself puts an event back); a newer
    /// event queued for the activity meanwhile stays, knowing the read that failed.
    fn enqueue_quietly(&self, queued: Queued) {
        if let Ok(mut queue) = self.0.queue.lock() {
            match queue.iter_mut().find(|q| q.event.id == queued.event.id) {
                Some(newer) => newer.failed_read = newer.failed_read.or(queued.failed_read),
                None => queue.push_back(queued),
            }
        }
    }

    /// Applies one event; `Some(when)` (Unix milliseconds) to try it again then.
    #[tracing::instrument(skip_all, fields(hide = queued.event.hide, adopted = queued.adopted))]
    async fn apply(&self, queued: &mut Queued) -> Option<i64> {
        let event = &queued.event.clone();
        let now = self.0.clock.now();
        let now_ms = self.0.clock.now_millis();
        // Ids fail closed: read them (however slow storage is) before anything is applied.
        let matching = |(athlete, subscription): (Option<i64>, Option<i64>)| {
            athlete == Some(event.owner_id) && subscription == Some(event.subscription_id)
        };
        if !matching(self.known_ids()) {
            let may_reread = now.saturating_sub(self.0.ids_read_at.load(Ordering::Relaxed)) >= 1;
            if !may_reread {
                return Some(now_ms + 1_000);
            }
            self.0.ids_read_at.store(now, Ordering::Relaxed);
            if !self.read_ids().await {
                // Storage did not say: ask again later, and apply nothing meanwhile.
                return Some(now_ms + 2_000);
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
            let recorded = self.recorded_at(queued).await;
            match self.take_read(queued, recorded).await {
                Ok(Some(word)) => {
                    let applied = self
                        .0
                        .keeper
                        .apply_activity_event(event, event.owner_id, word)
                        .await;
                    if applied.is_err() {
                        queued.failed_read = Some(word);
                    }
                    applied.map(|applied| {
                        tracing::info!(activity = event.id, ?applied, "push event applied");
                    })
                }
                // Answered by a read under way, applied elsewhere, or covered by a round.
                Ok(None) => Ok(()),
                Err(wait_ms) => return Some(self.0.clock.now_millis() + wait_ms),
            }
        };
        let now_ms = self.0.clock.now_millis();
        match result {
            Ok(()) => None,
            Err(EventError::Strava { reason, retry_at }) => {
                tracing::warn!(activity = event.id, %reason, "push event not applied yet");
                Some(retry_at.saturating_mul(1_000).max(now_ms + 1_000))
            }
            Err(EventError::Storage(err)) => {
                tracing::warn!(activity = event.id, error = %err, "push event not applied yet");
                Some(now_ms + 2_000)
            }
        }
    }

    /// Takes a read of `queued`'s activity, recorded at index clock reading `recorded` (`None`:
    /// not known), in one write: one call from the shared event budget, the word of the read (a
    /// reading of the index clock) and the read itself, remembered for every instance.
    /// `Ok(Some(word))` taken; `Ok(None)` nothing to read: a read that began after the event
    /// was recorded answers it, or the event is no longer pending; `Err(milliseconds)` until a
    /// read may be taken (the activity's last read began less than
    /// [`ActivityRead::SPACING_MS`] ago, or the budget is empty).
    async fn take_read(&self, queued: &Queued, recorded: Option<i64>) -> Result<Option<i64>, i64> {
        let event = &queued.event;
        let clock = &self.0.clock;
        let taken = self
            .0
            .store
            .modify_latest_run(|entity, read_at| {
                let now_ms = clock.now_millis();
                let entry = entity
                    .pending_events
                    .iter()
                    .find(|e| e.id == event.id)
                    .cloned();
                let pending = entry.as_ref().is_some_and(|e| e.at >= event.at);
                if queued.adopted && !pending {
                    return Change::Keep(Ok(None));
                }
                let recorded = match &entry {
                    Some(entry) if queued.adopted => Some(entry.recorded),
                    _ => recorded,
                };
                let last = entity
                    .last_read(event.id)
                    .filter(|read| Some(read.word) != queued.failed_read);
                if let Some(last) = last {
                    // Still pending what it answers, long after it began: its reader died.
                    let lost = entry
                        .as_ref()
                        .is_some_and(|e| !e.hide && e.recorded < last.word)
                        && read_at.saturating_sub(last.storage_at) >= ORPHAN_AFTER_SECONDS;
                    if !lost {
                        if recorded.is_some_and(|recorded| last.word > recorded) {
                            return Change::Keep(Ok(None));
                        }
                        // Another clock may be ahead: never wait longer than the spacing.
                        let wait = last
                            .at_ms
                            .saturating_add(ActivityRead::SPACING_MS)
                            .saturating_sub(now_ms)
                            .min(ActivityRead::SPACING_MS);
                        if wait > 0 {
                            return Change::Keep(Err(wait));
                        }
                    }
                }
                match budget::take(entity.event_budget, read_at) {
                    Ok(after) => {
                        entity.event_budget = Some(after);
                        entity.index_clock += 1;
                        let word = entity.index_clock;
                        entity.remember_read(ActivityRead {
                            id: event.id,
                            word,
                            at_ms: now_ms,
                            storage_at: read_at,
                        });
                        Change::Save(Ok(Some(word)))
                    }
                    Err(wait) => Change::Keep(Err(wait.saturating_mul(1_000))),
                }
            })
            .await;
        match taken {
            Ok(result) => result,
            Err(err) => {
                tracing::warn!(error = %err, "cannot take from the event budget yet");
                Err(2_000)
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
            recorded: 0,
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
