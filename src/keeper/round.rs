//! Rounds: the reconciliation of the activity index with Strava's list, one instance at a time.
//! A round takes the `latest-run` entity's lease (If-Match) and with it a reading of the index
//! clock, its word; lists the newest activities (a page of [`NEWEST_PAGE`]; a full pass,
//! paged by [`FULL_PASS_PAGE`], over the athlete's year once a day, and over last year too when
//! it is not indexed in full yet), renewing the lease between pages; brings the index in line
//! (never over a newer word); confirms with one read a newest run older than what the list
//! covered; and publishes the answer for every instance. It stops early when the read budget
//! (the newest rate-limit headers any instance saw, kept in the table) is nearly spent.

use super::answer::Known;
use super::failure::FetchFailure;
use super::IndexKeeper;
use crate::backoff;
use crate::index::{year, Covers};
use crate::store::{Change, Lease, StoreError, StoredLatestRun};
use crate::strava::models::SummaryActivity;
use crate::strava::{RateLimitSnapshot, StravaError};
use backon::Retryable;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// How many of the newest activities a window's reconciliation lists (rides and walks among
/// them): one call.
const NEWEST_PAGE: u32 = 60;
/// Page size of the full pass (Strava's largest).
const FULL_PASS_PAGE: u32 = 200;
/// At most this many pages in one full pass (4,000 activities in a year).
const FULL_PASS_MAX_PAGES: u32 = 20;
/// How often the full pass over the year runs (seconds).
const FULL_PASS_EVERY: i64 = 86_400;
/// How long an instance may hold the right to fetch the shared answer (seconds).
const LEASE_SECONDS: i64 = 30;
/// First and longest wait between looks at the table while another instance fetches.
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);
/// How long a cold round waits for another instance's fetch before giving up.
const COLD_WAIT: Duration = Duration::from_secs(20);
/// Stop refreshing when fewer read requests than this are left in the 15-minute window; a
/// window's round costs one list call and at most two more for the latest run's photo (a full
/// pass one list call per 200 activities of the year).
const SHORT_WINDOW_RESERVE: u32 = 8;
/// Likewise for the daily window.
const DAILY_WINDOW_RESERVE: u32 = 40;
/// At most this many newest runs older than the listed range are confirmed in one round (one
/// read each; a run found gone gives way to the next).
const CONFIRM_AT_MOST: usize = 3;

/// Whether to wait for another instance's fetch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Cold start: there is nothing to serve meanwhile, so wait for the holder's answer.
    ForTheHolder,
    /// Background refresh: the old answer is being served; leave it to the holder.
    No,
}

/// What a look at the shared entity found.
enum Look {
    /// A stored answer to serve.
    Answer(Known),
    /// The entity as saved with this instance's lease and the round's reading of the index
    /// clock: the round is this instance's to run.
    Leased(Box<StoredLatestRun>),
}

/// Why a look found neither.
enum Unleased {
    /// Another instance holds the lease.
    HeldByOther,
    /// Another instance wrote between the read and the lease (If-Match failed).
    Raced,
    /// Storage failed, or the read budget is spent.
    Failed(FetchFailure),
}

/// What a round's Strava part found.
struct Listed {
    token: crate::tokens::AccessToken,
    activities: Vec<SummaryActivity>,
    covers: Covers,
    this_year: i32,
    /// The pass covered this year in full (and last year too, with `last_year`).
    full_pass: bool,
    last_year: bool,
}

/// What a round did besides its answer, for the shared entity.
struct Reconciled {
    /// The local year now fully indexed by this round's full pass, and whether last year is
    /// too.
    full_pass_year: Option<(i32, bool)>,
    /// The activities the round listed, and whether the list covered every activity.
    listed: HashSet<i64>,
    covers_everything: bool,
}

impl IndexKeeper {
    /// One answer for all instances: take a fresh one from the table, or take the entity's
    /// lease (If-Match) and run the round; an instance that loses the race reads the winner's
    /// answer. `None`: another instance holds the lease and `wait` said not to wait (or the
    /// wait ran out). The caller holds `fetching`.
    pub(super) async fn coordinated_round(
        &self,
        wait: Wait,
    ) -> Result<Option<Known>, FetchFailure> {
        let deadline = Instant::now() + COLD_WAIT;
        // Looked at again, after a pause, while another instance holds the lease (only when
        // waiting for it) or wrote first; never after the deadline.
        let looked = (|| self.answer_or_lease(wait))
            .retry(backoff::doubling(POLL_FIRST, POLL_MAX))
            .when(|unleased| {
                Instant::now() <= deadline
                    && match unleased {
                        Unleased::HeldByOther => wait == Wait::ForTheHolder,
                        Unleased::Raced => true,
                        Unleased::Failed(_) => false,
                    }
            })
            .await;
        let leased = match looked {
            Ok(Look::Answer(known)) => return Ok(Some(known)),
            Ok(Look::Leased(leased)) => leased,
            Err(Unleased::HeldByOther | Unleased::Raced) => return Ok(None),
            Err(Unleased::Failed(failure)) => return Err(failure),
        };
        // The round's time is when it started: a round that began later saw Strava later.
        let started = self.now();
        let word = leased.index_clock;
        // The sketches this round cuts use the stored offset.
        self.note(&leased);
        let listed = match self.know_privacy_offset().await {
            Ok(()) => self.list_round(started, &leased).await,
            Err(err) => Err(err.into()),
        };
        // From here to the stored answer, no push event changes the index here.
        let _one_change_at_a_time = self.0.publishing.lock().await;
        let reconciled = match listed {
            Ok(listed) => self.reconcile(listed, word).await,
            Err(failure) => Err(failure),
        };
        let limits = self
            .0
            .parts
            .strava
            .rate_limits()
            .and_then(|r| serde_json::to_string(&r).ok());
        let instance = self.0.parts.instance.clone();
        let release = move |entity: &mut StoredLatestRun| {
            if entity
                .refresh_lease
                .as_ref()
                .is_some_and(|l| l.owner == instance)
            {
                entity.refresh_lease = None;
            }
            if let Some(limits) = &limits {
                entity.rate_limits = Some(limits.clone());
            }
        };
        // A long round (a full pass over a big year) renews its lease before it publishes.
        let reconciled = match reconciled {
            Ok(reconciled) if self.now().saturating_sub(started) > LEASE_SECONDS / 3 => {
                self.renew_lease().await.map(|()| reconciled)
            }
            other => other,
        };
        let reconciled = match reconciled {
            Ok(reconciled) => reconciled,
            Err(failure) => {
                // Released also after a failure, so others need not wait it out.
                let released = self
                    .0
                    .parts
                    .store
                    .modify_latest_run(|entity, _| {
                        release(entity);
                        Change::Save(())
                    })
                    .await;
                if let Err(err) = released {
                    tracing::warn!(error = %err, "could not release the round's lease");
                }
                return Err(failure);
            }
        };
        let published = self
            .publish(Some(word), Some(started), |entity| {
                release(entity);
                if let Some((year, last_year)) = reconciled.full_pass_year {
                    entity.indexed_year = Some(year);
                    entity.full_pass_at = Some(started);
                    if last_year {
                        entity.last_year_indexed = Some(year - 1);
                    } else if entity.last_year_indexed != Some(year - 1) {
                        entity.last_year_indexed = None;
                    }
                }
                // Dropped events are covered once a full pass has listed the year after them.
                if reconciled.full_pass_year.is_some()
                    && entity.reconcile_after.is_some_and(|after| after < word)
                {
                    entity.reconcile_after = None;
                }
                entity.clear_listed(started, &reconciled.listed, reconciled.covers_everything);
            })
            .await;
        match published {
            Ok(Some(known)) => Ok(Some(known)),
            // Refused meanwhile (a deauthorization), or this athlete was forgotten.
            Ok(None) => Err(FetchFailure::Tokens(
                crate::tokens::TokenError::NotConfigured,
            )),
            Err(err) => {
                // Released, so others need not wait it out.
                self.release_lease().await;
                Err(FetchFailure::Storage(err))
            }
        }
    }

    /// Gives this instance's round lease back (best effort).
    async fn release_lease(&self) {
        let instance = &self.0.parts.instance;
        let released = self
            .0
            .parts
            .store
            .modify_latest_run(|entity, _| match &entity.refresh_lease {
                Some(lease) if lease.owner == *instance => {
                    entity.refresh_lease = None;
                    Change::Save(())
                }
                _ => Change::Keep(()),
            })
            .await;
        if let Err(err) = released {
            tracing::warn!(error = %err, "could not release the round's lease");
        }
    }

    /// One look at the shared entity: a stored answer that will do, or the lease taken.
    async fn answer_or_lease(&self, wait: Wait) -> Result<Look, Unleased> {
        let read = match self.0.parts.store.load_latest_run().await {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the shared answer");
                return Err(Unleased::Failed(FetchFailure::Storage(err)));
            }
        };
        let held = self.current();
        // The read adopts a newer stored answer: when that one is fresh, no round is needed.
        self.saw_the_table(&read.value);
        if let Some(known) = read
            .value
            .snapshot
            .as_ref()
            .and_then(Known::from_snapshot)
            .filter(|known| known.fits(self.0.parts.settings.route_shape))
        {
            let newer = held
                .as_ref()
                .is_none_or(|c| known.stamp().tick > c.stamp().tick);
            // Cold: any stored answer beats waiting. Warm: only one fresher than ours.
            if (wait == Wait::ForTheHolder && held.is_none()) || (newer && !self.is_due(&known)) {
                return Ok(Look::Answer(known));
            }
        }
        if let Some(until) = self.budget_spent_until(read.value.rate_limits.as_deref()) {
            return Err(Unleased::Failed(FetchFailure::BudgetSpent(until)));
        }
        let held_by_other = read
            .value
            .refresh_lease
            .as_ref()
            .is_some_and(|l| l.blocks(&self.0.parts.instance, read.read_at));
        if held_by_other {
            return Err(Unleased::HeldByOther);
        }
        let mut leased = read.value.clone();
        leased.refresh_lease = Some(Lease::taken(
            &self.0.parts.instance,
            read.read_at,
            LEASE_SECONDS,
        ));
        // The round's word: taken before its list is asked for.
        leased.index_clock += 1;
        match self
            .0
            .parts
            .store
            .save_latest_run(&leased, &read.etag)
            .await
        {
            Ok(_) => Ok(Look::Leased(Box::new(leased))),
            // Another instance wrote first: look again.
            Err(StoreError::Conflict) => Err(Unleased::Raced),
            Err(err) => Err(Unleased::Failed(FetchFailure::Storage(err))),
        }
    }

    /// When the read budget is nearly spent, by the newest rate-limit headers seen by this
    /// instance or (through the table) any other: until when.
    pub(super) fn budget_spent_until(&self, shared: Option<&str>) -> Option<i64> {
        let shared = shared.and_then(|text| serde_json::from_str::<RateLimitSnapshot>(text).ok());
        let own = self.0.parts.strava.rate_limits();
        let snapshot = match (own, shared) {
            (Some(own), Some(shared)) if shared.observed_at > own.observed_at => shared,
            (Some(own), _) => own,
            (None, shared) => shared?,
        };
        let at = self.0.parts.clock.now_datetime();
        if let Some(until) = snapshot.blocked_until(at) {
            return Some(until.unix_timestamp());
        }
        // Nearly spent: stop until that window resets (if the headers are from the current one).
        let nearly_spent = [
            (
                snapshot.remaining_daily(),
                DAILY_WINDOW_RESERVE,
                crate::strava::rate_limit::next_utc_midnight(snapshot.observed_at),
            ),
            (
                snapshot.remaining_short(),
                SHORT_WINDOW_RESERVE,
                crate::strava::rate_limit::next_quarter_hour(snapshot.observed_at),
            ),
        ];
        nearly_spent
            .into_iter()
            .find(|(remaining, reserve, reset)| {
                remaining.is_some_and(|r| r < *reserve) && *reset > at
            })
            .map(|(_, _, reset)| reset.unix_timestamp())
    }

    /// A round's Strava part: the token, and the list (a page of the newest, or the year).
    async fn list_round(
        &self,
        started: i64,
        shared: &StoredLatestRun,
    ) -> Result<Listed, FetchFailure> {
        let mut token = self.0.parts.tokens.access_token().await?;
        let offset = shared
            .snapshot
            .as_ref()
            .and_then(|s| s.utc_offset)
            .or_else(|| self.current().and_then(|c| c.year()).map(|(_, o)| o))
            .unwrap_or(0);
        let this_year = year::local_year(started, offset);
        // The first full pass of a year (a fresh install, an upgrade, New Year) covers last
        // year too, so that last year is indexed in full before it is served.
        let last_year = shared.indexed_year != Some(this_year)
            || shared.last_year_indexed != Some(this_year - 1);
        // Push events were dropped (too many pending): they may be about any run of the year.
        let full_pass = last_year
            || shared.reconcile_after.is_some()
            || started.saturating_sub(shared.full_pass_at.unwrap_or(0)) >= FULL_PASS_EVERY;
        let back_to = match (full_pass, last_year) {
            (false, _) => i64::MAX,
            (true, false) => year::year_start(this_year, offset),
            (true, true) => year::year_start(this_year - 1, offset),
        };
        let (mut activities, mut covers, complete) = self.list_back_to(&mut token, back_to).await?;
        // A short page is no proof of the end of the list: when the index holds runs older than
        // what the page reached, one more page (before its oldest start) tells whether they
        // are still there. Owners with fewer activities than a page pay this call only then.
        if let Covers::From(from) = covers {
            let short = !full_pass && activities.len() < NEWEST_PAGE as usize;
            if short
                && self
                    .0
                    .parts
                    .index
                    .holds_runs_before(from, this_year)
                    .await?
            {
                let strava = &self.0.parts.strava;
                let more = self
                    .with_token(&mut token, |t| async move {
                        strava.list_activities(&t, NEWEST_PAGE, Some(from)).await
                    })
                    .await?;
                let oldest = more
                    .iter()
                    .filter_map(|a| a.start_date.map(|s| s.unix_timestamp()))
                    .min();
                covers = match oldest {
                    _ if more.is_empty() => Covers::Everything,
                    Some(oldest) if more.len() >= NEWEST_PAGE as usize => {
                        Covers::From(oldest.saturating_add(1))
                    }
                    Some(oldest) => Covers::From(oldest),
                    None => covers,
                };
                activities.extend(more);
            }
        }
        if token.athlete_id.is_none() {
            // Hand-made credentials: the list says whose activities these are.
            if let Some(athlete) = activities.iter().find_map(|a| a.athlete_id) {
                self.0.parts.tokens.learn_athlete_id(athlete).await;
                token.athlete_id = Some(athlete);
            }
        }
        Ok(Listed {
            token,
            activities,
            covers,
            this_year,
            // A pass cut short by the page limit counts for this year when it got back to the
            // year's start; for last year only when it ended by itself.
            full_pass: full_pass
                && (complete
                    || matches!(covers, Covers::From(from) if from <= year::year_start(this_year, offset))),
            last_year: full_pass && complete && last_year,
        })
    }

    /// A round's index part (under `publishing`): the index brought in line with the list at
    /// the round's `word` (entries holding a newer word, from events applied meanwhile on any
    /// instance, are left as they are); the newest run older than what the list covers
    /// confirmed with one read; the latest run's photo looked up.
    async fn reconcile(&self, listed: Listed, word: i64) -> Result<Reconciled, FetchFailure> {
        let Listed {
            mut token,
            activities,
            covers,
            this_year,
            full_pass,
            last_year,
        } = listed;
        self.0
            .parts
            .index
            .reconcile(&activities, covers, word, this_year)
            .await?;
        self.confirm_older_latest(&mut token, covers, word, this_year)
            .await?;
        self.look_up_latest_photo(&mut token, this_year).await;
        Ok(Reconciled {
            full_pass_year: full_pass.then_some((this_year, last_year)),
            listed: activities.iter().map(|a| a.id).collect(),
            covers_everything: covers == Covers::Everything,
        })
    }

    /// The newest indexed run, when it starts before what the list covered (it was not on the
    /// list, so the list says nothing of it: made "Only you" behind a block of rides, say) and
    /// Strava has said nothing of it since the round's word: read it (one call) and keep or
    /// remove it; a run found gone gives way to the next, at most [`CONFIRM_AT_MOST`].
    async fn confirm_older_latest(
        &self,
        token: &mut crate::tokens::AccessToken,
        covers: Covers,
        word: i64,
        this_year: i32,
    ) -> Result<(), FetchFailure> {
        let Covers::From(from) = covers else {
            return Ok(());
        };
        for _ in 0..CONFIRM_AT_MOST {
            let view = self.0.parts.index.view(this_year).await?;
            let Some(latest) = view.latest else {
                return Ok(());
            };
            if latest.start >= from || latest.word >= word {
                return Ok(());
            }
            let strava = &self.0.parts.strava;
            let id = latest.id;
            let detail = match self
                .with_token(token, |t| async move { strava.get_activity(&t, id).await })
                .await
            {
                Ok(detail) => Some(detail),
                Err(FetchFailure::Strava(StravaError::NotFound)) => None,
                Err(err) => return Err(err),
            };
            let entry = detail.as_ref().and_then(|detail| {
                self.0
                    .parts
                    .index
                    .entry_of(&detail.summary, Some(&latest))
                    .filter(|_| {
                        token
                            .athlete_id
                            .is_none_or(|athlete| detail.summary.athlete_id == Some(athlete))
                    })
            });
            match (entry, detail) {
                (Some(mut entry), Some(detail)) => {
                    entry.word = word;
                    let entry = self.look_up_photo_in(Some(token), entry, &detail).await;
                    self.0.parts.index.put(&entry, this_year).await?;
                    return Ok(());
                }
                _ => {
                    tracing::info!(
                        activity = id,
                        "the newest run is no longer a public run: removed from the index"
                    );
                    self.0.parts.index.remove(id, word, this_year).await?;
                }
            }
        }
        Ok(())
    }

    /// The latest run's photo, looked up once (its detail read, and the photo list when the
    /// detail names none) and kept in the index under the run's own word. Best effort.
    async fn look_up_latest_photo(&self, token: &mut crate::tokens::AccessToken, this_year: i32) {
        let latest = match self.0.parts.index.view(this_year).await {
            Ok(view) => view.latest,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the index for the latest run's photo");
                return;
            }
        };
        let Some(latest) = latest.filter(|l| !l.photo_checked) else {
            return;
        };
        match self.look_up_photo(token, &latest).await {
            Ok(checked) => {
                if let Err(err) = self.0.parts.index.put(&checked, this_year).await {
                    tracing::warn!(error = %err, "could not keep the looked-up photo in the index");
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not look up the latest run's photo"),
        }
    }

    /// The newest activities, page after page (each up to the oldest start of the page before,
    /// that second included: activities sharing it may not all have fitted), until a page
    /// reaches back to `back_to` (Unix seconds) or the list ends (only an empty page says so:
    /// Strava may answer a short page before the end); with `back_to` in the future, one page
    /// of [`NEWEST_PAGE`]. The round's lease is renewed between pages. Returns the activities,
    /// what they cover, and whether the listing ended by itself (not at the page limit).
    async fn list_back_to(
        &self,
        token: &mut crate::tokens::AccessToken,
        back_to: i64,
    ) -> Result<(Vec<SummaryActivity>, Covers, bool), FetchFailure> {
        let strava = &self.0.parts.strava;
        let one_page = back_to == i64::MAX;
        let per_page = if one_page {
            NEWEST_PAGE
        } else {
            FULL_PASS_PAGE
        };
        let mut listed: Vec<SummaryActivity> = Vec::new();
        let mut seen: HashSet<i64> = HashSet::new();
        let mut before: Option<i64> = None;
        for page_number in 0..FULL_PASS_MAX_PAGES {
            if page_number > 0 {
                self.renew_lease().await?;
            }
            let page = self
                .with_token(token, |t| async move {
                    strava.list_activities(&t, per_page, before).await
                })
                .await?;
            if page.is_empty() {
                // Only an empty page ends Strava's list.
                return Ok((listed, Covers::Everything, true));
            }
            let full = page.len() >= per_page as usize;
            // Never trust the order: the oldest start on the page is where it reaches back to.
            let oldest = page
                .iter()
                .filter_map(|a| a.start_date.map(|s| s.unix_timestamp()))
                .min();
            let new = page.iter().filter(|a| seen.insert(a.id)).count();
            listed.extend(page);
            match oldest {
                // A page without a single start: it says nothing of any time range.
                None => return Ok((listed, Covers::From(i64::MAX), false)),
                Some(oldest) if one_page || oldest <= back_to => {
                    // A full page may have cut its oldest second short: it covers only what
                    // starts after it.
                    let from = if full {
                        oldest.saturating_add(1)
                    } else {
                        oldest
                    };
                    return Ok((listed, Covers::From(from), true));
                }
                // A full page that brought something new may have cut its oldest second short:
                // the next one starts within it. Otherwise the next starts before it (a page of
                // only that second again has nothing more to give).
                Some(oldest) if full && new > 0 => before = Some(oldest.saturating_add(1)),
                // A full page of one second already listed cannot move on: stop rather than
                // loop.
                Some(oldest) if full && before == Some(oldest) => {
                    return Ok((listed, Covers::From(oldest), false))
                }
                Some(oldest) => before = Some(oldest),
            }
        }
        let oldest = listed
            .iter()
            .filter_map(|a| a.start_date.map(|s| s.unix_timestamp()))
            .min()
            .unwrap_or(i64::MAX);
        Ok((listed, Covers::From(oldest), false))
    }

    /// Extends this instance's round lease from now (storage time); a lease another instance
    /// took meanwhile ends this round.
    async fn renew_lease(&self) -> Result<(), FetchFailure> {
        let instance = &self.0.parts.instance;
        let renewed = self
            .0
            .parts
            .store
            .modify_latest_run(|entity, read_at| match &entity.refresh_lease {
                Some(lease) if lease.owner == *instance => {
                    entity.refresh_lease = Some(Lease::taken(instance, read_at, LEASE_SECONDS));
                    Change::Save(true)
                }
                _ => Change::Keep(false),
            })
            .await?;
        if renewed {
            Ok(())
        } else {
            Err(FetchFailure::LeaseLost)
        }
    }
}
