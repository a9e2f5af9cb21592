//! Push events applied: an activity created or changed is read (one Strava call, no more),
//! checked to be the connected athlete's, and written to or removed from the index; a delete or
//! a change to private takes the activity out of the index with no call at all. Either way the
//! answer it leads to is published at once, in memory and in the table, and the events it
//! answers are cleared from the table's list of pending events (a read answers every event about
//! the activity recorded before its word was taken). Which events are applied, and when, is the
//! push-event service's business.

use super::failure::FetchFailure;
use super::IndexKeeper;
use crate::store::{Change, PendingEvent, StoreError};
use crate::strava::StravaError;
use crate::tokens::AccessToken;

/// What applying an activity event came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The activity is a public run: written to the index.
    Written,
    /// The activity is gone, not public or not a run: out of the index.
    Removed,
    /// The activity is another athlete's: nothing changed.
    NotTheAthletes,
}

/// Why an event could not be applied now; it stays pending.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Strava cannot be asked (failing, refusing or rate limited) until then (Unix seconds).
    #[error("Strava cannot be asked now: {reason}")]
    Strava {
        /// What went wrong, for logs.
        reason: String,
        /// When to try again.
        retry_at: i64,
    },
    /// The index or the answer could not be written.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
}

impl IndexKeeper {
    /// Applies an activity created or changed at Strava (`event`), if it is `athlete_id`'s: one
    /// Strava call (the activity), never more, so the event budget counts calls. `word` is the
    /// index clock's reading taken before the call: what the read says is written only over
    /// older words.
    #[tracing::instrument(skip_all)]
    pub async fn apply_activity_event(
        &self,
        event: &PendingEvent,
        athlete_id: i64,
        word: i64,
    ) -> Result<Applied, EventError> {
        let now = self.now();
        let failure = |failure: FetchFailure| EventError::Strava {
            reason: failure.to_string(),
            retry_at: failure.quiet_until(now),
        };
        // The sketch this read may cut uses the stored offset.
        self.know_privacy_offset().await?;
        // Strava is being left alone (a failure, a 429, the read budget nearly spent).
        if let Some(until) = self.quiet_until().or_else(|| self.budget_spent_until(None)) {
            return Err(EventError::Strava {
                reason: "Strava is left alone for now".into(),
                retry_at: until,
            });
        }
        let mut token = self
            .0
            .parts
            .tokens
            .access_token()
            .await
            .map_err(|err| failure(FetchFailure::from(err)))?;
        let strava = &self.0.parts.strava;
        let id = event.id;
        let detail = match self
            .with_token(
                &mut token,
                |t| async move { strava.get_activity(&t, id).await },
            )
            .await
        {
            Ok(detail) => Some(detail),
            // Gone, or "Only you" (an `activity:read` token is not shown those).
            Err(FetchFailure::Strava(StravaError::NotFound)) => None,
            Err(err) => return Err(failure(err)),
        };
        let _one_change_at_a_time = self.0.publishing.lock().await;
        let (this_year, _) = self.this_year_now().await;
        let applied = match detail {
            Some(detail) if detail.summary.athlete_id != Some(athlete_id) => {
                tracing::warn!(
                    activity = id,
                    "a push event named another athlete's activity: ignored"
                );
                self.clear_event(event).await?;
                return Ok(Applied::NotTheAthletes);
            }
            Some(detail) => match self.0.parts.index.entry_of(&detail.summary, None) {
                Some(mut entry) => {
                    entry.word = word;
                    let entry = self.look_up_photo_in(None, entry, &detail).await;
                    self.0.parts.index.put(&entry, this_year).await?;
                    Applied::Written
                }
                None => {
                    self.0.parts.index.remove(id, word, this_year).await?;
                    Applied::Removed
                }
            },
            None => {
                self.0.parts.index.remove(id, word, this_year).await?;
                Applied::Removed
            }
        };
        // The read answers every event about the activity recorded before its word was taken.
        self.publish(Some(word), None, |entity| entity.clear_read(id, word))
            .await?;
        Ok(applied)
    }

    /// Takes the activity `event` names out of the index and every answer at once (a delete,
    /// or made private): no Strava call, so a forged event can only hide a run until Strava's
    /// word (the next round, or an event for it) brings it back.
    #[tracing::instrument(skip_all)]
    pub async fn hide_activity(&self, event: &PendingEvent) -> Result<(), EventError> {
        let _one_change_at_a_time = self.0.publishing.lock().await;
        let (this_year, _) = self.this_year_now().await;
        let word = self.take_word().await?;
        self.0.parts.index.hide(event.id, word, this_year).await?;
        // Published even when the run was hidden already: a hide whose publish failed before is
        // published by its retry.
        self.publish(None, None, |entity| entity.clear_applied(event))
            .await?;
        Ok(())
    }

    /// Drops `event` from the table's pending events without applying it (it was not for this
    /// app after all).
    pub async fn clear_event(&self, event: &PendingEvent) -> Result<(), StoreError> {
        self.0
            .parts
            .store
            .modify_latest_run(|entity, _| {
                let before = entity.pending_events.len();
                entity.clear_applied(event);
                if entity.pending_events.len() == before {
                    Change::Keep(())
                } else {
                    Change::Save(())
                }
            })
            .await
    }

    /// An activity's entry with its photo from its detail: the primary photo, else (when Strava
    /// counts more photos and a `token` may be spent on it: a round) the photo list's first
    /// real one; without a token such a photo is left for the next round to look up.
    pub(super) async fn look_up_photo_in(
        &self,
        token: Option<&mut AccessToken>,
        mut entry: crate::store::IndexedRun,
        detail: &crate::strava::models::DetailedActivity,
    ) -> crate::store::IndexedRun {
        let mut photo_url = crate::view::choose_photo_url(Some(detail), &[]);
        let more = detail.photos.as_ref().and_then(|p| p.count).unwrap_or(0) > 0;
        let mut checked = true;
        if photo_url.is_none() && more {
            match token {
                Some(token) => {
                    let strava = &self.0.parts.strava;
                    let id = entry.id;
                    let photos = self
                        .with_token(token, |t| async move {
                            strava.activity_photos(&t, id, 600).await
                        })
                        .await
                        .unwrap_or_default();
                    photo_url = crate::view::choose_photo_url(Some(detail), &photos);
                }
                None => checked = false,
            }
        }
        entry.photo_url = photo_url;
        entry.photo_checked = checked;
        entry
    }
}
