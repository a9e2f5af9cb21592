//! Rounds: the reconciliation of the activity index with Strava's list, one instance at a time.
//! A round takes the `latest-run` entity's lease (If-Match), lists the newest activities (a page
//! of [`NEWEST_PAGE`]; a full pass over the athlete's year, paged by [`FULL_PASS_PAGE`], once a
//! day or when the year is not indexed yet), brings the index in line, derives the answer and
//! writes it for every instance. It stops early when the read budget (the newest rate-limit
//! headers any instance saw, kept in the table) is nearly spent.

use super::answer::Known;
use super::failure::FetchFailure;
use super::LatestRunService;
use crate::backoff;
use crate::index::{year, Covers};
use crate::store::{Lease, StoreError, StoredLatestRun};
use crate::strava::models::SummaryActivity;
use crate::strava::RateLimitSnapshot;
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
    /// The entity as saved with this instance's lease: the round is this instance's to run.
    Leased(StoredLatestRun),
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
    offset: i64,
    full_pass: bool,
}

/// What a round did besides its answer, for the shared entity.
struct Reconciled {
    /// The local year now fully indexed by this round's full pass.
    full_pass_year: Option<i32>,
    /// The activities the round listed, and whether the list covered every activity.
    listed: HashSet<i64>,
    covers_everything: bool,
}

impl LatestRunService {
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
        let generation = self.generation();
        let touched_before = self.touched_so_far();
        let listed = self.list_round(started, &leased).await;
        // From here to the stored answer, no push event changes the index here.
        let _one_change_at_a_time = self.0.publishing.lock().await;
        let result = match listed {
            Ok(listed) => self.reconcile(listed, started, touched_before).await,
            Err(failure) => Err(failure),
        };
        // Nothing is written back for an athlete forgotten meanwhile (a deauthorization).
        let result = match result {
            Ok(_) if self.generation() != generation => Err(FetchFailure::Tokens(
                crate::tokens::TokenError::NotConfigured,
            )),
            other => other,
        };
        self.store_round(result.as_ref().ok(), started).await;
        result.map(|(known, _)| Some(known))
    }

    /// One look at the shared entity: a stored answer that will do, or the lease taken.
    async fn answer_or_lease(&self, wait: Wait) -> Result<Look, Unleased> {
        let read = match self.0.store.load_latest_run().await {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the shared answer");
                return Err(Unleased::Failed(FetchFailure::Storage(err)));
            }
        };
        self.saw_the_table(&read.value);
        if let Some(known) = read
            .value
            .snapshot
            .as_ref()
            .and_then(|s| Known::from_snapshot(s, self.next_sequence()))
            .filter(|known| known.fits(self.0.settings.route_shape))
        {
            let current = self.current();
            let newer = current
                .as_ref()
                .is_none_or(|c| known.fetched_at() > c.fetched_at());
            // Cold: any stored answer beats waiting. Warm: only one fresher than ours.
            if (wait == Wait::ForTheHolder && current.is_none()) || (newer && !self.is_due(&known))
            {
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
            .is_some_and(|l| l.blocks(&self.0.instance, read.read_at));
        if held_by_other {
            return Err(Unleased::HeldByOther);
        }
        let mut leased = read.value.clone();
        leased.refresh_lease = Some(Lease::taken(&self.0.instance, read.read_at, LEASE_SECONDS));
        match self.0.store.save_latest_run(&leased, &read.etag).await {
            Ok(_) => Ok(Look::Leased(leased)),
            // Another instance wrote first: look again.
            Err(StoreError::Conflict) => Err(Unleased::Raced),
            Err(err) => Err(Unleased::Failed(FetchFailure::Storage(err))),
        }
    }

    /// Writes a round's result for every instance and releases the lease, also after a
    /// failure, so others need not wait it out; unless an answer at least as new is stored
    /// (an event applied meanwhile, or a later round), which the round's may not replace, so a
    /// slow round can never bring back a run found private or deleted since. Events the round
    /// covered (their activity listed, or every activity listed) are cleared.
    async fn store_round(&self, result: Option<&(Known, Reconciled)>, started: i64) {
        let instance = self.0.instance.clone();
        let limits = self
            .0
            .strava
            .rate_limits()
            .and_then(|r| serde_json::to_string(&r).ok());
        let written = self
            .0
            .store
            .modify_latest_run(|entity, _| {
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
                if let Some((known, reconciled)) = result {
                    let newer_stored = entity
                        .snapshot
                        .as_ref()
                        .is_some_and(|s| s.fetched_at > known.fetched_at());
                    if !newer_stored {
                        entity.snapshot = known.to_snapshot();
                    }
                    if let Some(year) = reconciled.full_pass_year {
                        entity.indexed_year = Some(year);
                        entity.full_pass_at = Some(started);
                    }
                    entity.pending_events.retain(|event| {
                        event.at >= started
                            || !(reconciled.covers_everything
                                || reconciled.listed.contains(&event.id))
                    });
                }
                crate::store::Change::Save(())
            })
            .await;
        if let Err(err) = written {
            tracing::warn!(error = %err, "could not store the latest run for other instances");
        }
    }

    /// When the read budget is nearly spent, by the newest rate-limit headers seen by this
    /// instance or (through the table) any other: until when.
    pub(super) fn budget_spent_until(&self, shared: Option<&str>) -> Option<i64> {
        let shared = shared.and_then(|text| serde_json::from_str::<RateLimitSnapshot>(text).ok());
        let own = self.0.strava.rate_limits();
        let snapshot = match (own, shared) {
            (Some(own), Some(shared)) if shared.observed_at > own.observed_at => shared,
            (Some(own), _) => own,
            (None, shared) => shared?,
        };
        let at = self.0.clock.now_datetime();
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
        let mut token = self.0.tokens.access_token().await?;
        let offset = shared
            .snapshot
            .as_ref()
            .and_then(|s| s.utc_offset)
            .or_else(|| self.current().and_then(|c| c.year()).map(|(_, o)| o))
            .unwrap_or(0);
        let this_year = year::local_year(started, offset);
        let full_pass = shared.indexed_year != Some(this_year)
            || started.saturating_sub(shared.full_pass_at.unwrap_or(0)) >= FULL_PASS_EVERY;
        let back_to = if full_pass {
            year::year_start(this_year, offset)
        } else {
            i64::MAX
        };
        let (activities, covers, complete) = self.list_back_to(&mut token, back_to).await?;
        if token.athlete_id.is_none() {
            // Hand-made credentials: the list says whose activities these are.
            if let Some(athlete) = activities.iter().find_map(|a| a.athlete_id) {
                self.0.tokens.learn_athlete_id(athlete).await;
                token.athlete_id = Some(athlete);
            }
        }
        Ok(Listed {
            token,
            activities,
            covers,
            this_year,
            offset,
            // A pass cut short by the page limit does not count as the year's.
            full_pass: full_pass && complete,
        })
    }

    /// A round's index part (under `publishing`): the index brought in line with the list,
    /// except for activities a push event changed since the list was asked for (the list may
    /// not know of that change yet), and the answer derived.
    async fn reconcile(
        &self,
        listed: Listed,
        started: i64,
        touched_before: u64,
    ) -> Result<(Known, Reconciled), FetchFailure> {
        let Listed {
            mut token,
            activities,
            covers,
            this_year,
            offset,
            full_pass,
        } = listed;
        let changed_by_events = self.touched_since(touched_before);
        self.0
            .index
            .reconcile(&activities, covers, this_year, &changed_by_events)
            .await?;
        let view = self.0.index.view(this_year).await?;
        let known = self.derive(view, offset, started, Some(&mut token)).await;
        let reconciled = Reconciled {
            full_pass_year: full_pass.then_some(this_year),
            listed: activities.iter().map(|a| a.id).collect(),
            covers_everything: covers == Covers::Everything,
        };
        Ok((known, reconciled))
    }

    /// The newest activities, page after page (each up to the oldest start of the page before,
    /// that second included: activities sharing it may not all have fitted), until a page
    /// reaches back to `back_to` (Unix seconds) or the list ends; with `back_to` in the future,
    /// one page of [`NEWEST_PAGE`]. Returns the activities, what they cover, and whether the
    /// listing ended by itself (not at the page limit).
    async fn list_back_to(
        &self,
        token: &mut crate::tokens::AccessToken,
        back_to: i64,
    ) -> Result<(Vec<SummaryActivity>, Covers, bool), FetchFailure> {
        let strava = &self.0.strava;
        let one_page = back_to == i64::MAX;
        let per_page = if one_page {
            NEWEST_PAGE
        } else {
            FULL_PASS_PAGE
        };
        let mut listed: Vec<SummaryActivity> = Vec::new();
        let mut before: Option<i64> = None;
        for _ in 0..FULL_PASS_MAX_PAGES {
            let page = self
                .with_token(token, |t| async move {
                    strava.list_activities(&t, per_page, before).await
                })
                .await?;
            let full = page.len() >= per_page as usize;
            // Never trust the order: the oldest start on the page is where it reaches back to.
            let oldest = page
                .iter()
                .filter_map(|a| a.start_date.map(|s| s.unix_timestamp()))
                .min();
            listed.extend(page);
            match oldest {
                // Strava's list ends with a short page.
                _ if !full => return Ok((listed, Covers::Everything, true)),
                // A full page without a single start: it says nothing of any time range.
                None => return Ok((listed, Covers::From(i64::MAX), true)),
                Some(oldest) if one_page || oldest <= back_to => {
                    return Ok((listed, Covers::From(oldest), true))
                }
                // A page of one second only cannot move on: stop rather than loop.
                Some(oldest) if before == Some(oldest.saturating_add(1)) => {
                    return Ok((listed, Covers::From(oldest), false))
                }
                Some(oldest) => before = Some(oldest.saturating_add(1)),
            }
        }
        let oldest = listed
            .iter()
            .filter_map(|a| a.start_date.map(|s| s.unix_timestamp()))
            .min()
            .unwrap_or(i64::MAX);
        Ok((listed, Covers::From(oldest), false))
    }
}
