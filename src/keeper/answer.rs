//! The ready-to-send answer: the JSON body and its ETag built once, the SVG cards rendered once
//! per theme and units, and what is known of the latest run (an answer, or that there is no
//! public run) with the conversions to and from the table's snapshot.

use crate::store::{LatestRunSnapshot, Shown};
use crate::view::svg::{Theme, Units};
use crate::view::LatestRunView;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// When an answer was made, and from what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    /// When it was derived from the index (Unix seconds): a round's, or an event's.
    pub(super) fetched_at: i64,
    /// When the index was last reconciled with Strava's list (Unix seconds): the freshness
    /// window counts from this, so events, which change the answer often, never put a round
    /// off.
    pub(super) reconciled_at: i64,
    /// The index clock's reading it was published at (the shared counter in the `latest-run`
    /// entity): answers are ordered by it on every instance, never by an instance's clock. An
    /// answer that could not be stored holds the reading it was derived from, so any answer
    /// published since replaces it.
    pub(super) tick: i64,
}

/// A ready-to-send answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The JSON body.
    pub body: Bytes,
    /// Strong entity tag of the body, quoted (`"…"`); shared bytes, so sending it copies nothing.
    pub etag: Bytes,
    /// When it was derived from the index (Unix seconds).
    pub fetched_at: i64,
    /// See [`Stamp`].
    pub(super) stamp: Stamp,
    /// The athlete's local year its year-to-date total counts, and the UTC offset (seconds)
    /// that year is judged by: when the year turns, the answer is due.
    pub(super) year: Option<(i32, i64)>,
    /// When that year ends (Unix seconds), worked out once: the warm path only compares.
    pub(super) year_ends_at: Option<i64>,
    /// The run, to re-render it marked stale.
    run: Option<LatestRunView>,
    /// The SVG cards of this answer, drawn on first request.
    cards: Cards,
}

/// The answer as an SVG card in one theme and units: its bytes and their strong ETag.
#[derive(Clone, Debug)]
pub struct Card {
    /// The SVG document.
    pub body: Bytes,
    /// Strong entity tag of the body, quoted.
    pub etag: Bytes,
}

impl Card {
    /// A drawn card with its ETag.
    pub fn new(body: String) -> Card {
        Card {
            etag: Bytes::from(etag_of(body.as_bytes())),
            body: Bytes::from(body),
        }
    }
}

/// The cards of one answer, one per theme and units, each drawn on first request (by the
/// caller: the domain draws nothing) and kept; an answer never changes, so neither do they.
#[derive(Clone, Debug, Default)]
pub struct Cards([OnceLock<Card>; Theme::ALL.len() * Units::ALL.len()]);

impl Cards {
    /// The card in `theme` and `units`, drawn by `draw` the first time.
    pub fn get(&self, theme: Theme, units: Units, draw: impl FnOnce() -> String) -> Option<&Card> {
        let slot = self
            .0
            .get(theme.index() * Units::ALL.len() + units.index())?;
        Some(slot.get_or_init(|| Card::new(draw())))
    }
}

impl Answer {
    pub(super) fn new(
        body: Bytes,
        stamp: Stamp,
        run: Option<LatestRunView>,
        year: Option<(i32, i64)>,
    ) -> Self {
        Answer {
            etag: Bytes::from(etag_of(&body)),
            body,
            fetched_at: stamp.fetched_at,
            stamp,
            year,
            year_ends_at: year
                .map(|(y, offset)| crate::index::year::year_start(y.saturating_add(1), offset)),
            run,
            cards: Default::default(),
        }
    }

    /// The run as a card in `theme` and `units`, drawn by `draw` (the caller's: the domain
    /// draws nothing) once per answer and kept (`None` for an answer without a run). An answer
    /// never changes, so neither does its card.
    pub fn card(
        &self,
        theme: Theme,
        units: Units,
        draw: impl FnOnce(&LatestRunView) -> String,
    ) -> Option<&Card> {
        let run = self.run.as_ref()?;
        self.cards.get(theme, units, || draw(run))
    }

    pub(super) fn from_run(run: LatestRunView, stamp: Stamp, year: Option<(i32, i64)>) -> Self {
        let body = Bytes::from(serde_json::to_vec(&run).unwrap_or_default());
        Answer::new(body, stamp, Some(run), year)
    }

    /// Whether the body says `stale: true`.
    pub fn is_stale(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.stale)
    }

    pub(super) fn stale(&self) -> Self {
        match &self.run {
            Some(run) if !run.stale => {
                Answer::from_run(run.clone().into_stale(), self.stamp, self.year)
            }
            _ => self.clone(),
        }
    }
}

/// What is known of the latest run: an answer, or that there is no public run.
#[derive(Clone, Debug)]
pub(super) enum Known {
    Run(Arc<Answer>),
    NoPublicRun(Stamp),
}

impl Known {
    pub(super) fn stamp(&self) -> Stamp {
        match self {
            Known::Run(answer) => answer.stamp,
            Known::NoPublicRun(stamp) => *stamp,
        }
    }

    pub(super) fn fetched_at(&self) -> i64 {
        self.stamp().fetched_at
    }

    pub(super) fn reconciled_at(&self) -> i64 {
        self.stamp().reconciled_at
    }

    pub(super) fn into_result(self) -> Result<Arc<Answer>, super::LatestRunError> {
        match self {
            Known::Run(answer) => Ok(answer),
            Known::NoPublicRun(_) => Err(super::LatestRunError::NoPublicRun),
        }
    }

    /// When the local year the answer's total counts ends, when it has one.
    pub(super) fn year_ends_at(&self) -> Option<i64> {
        match self {
            Known::Run(answer) => answer.year_ends_at,
            Known::NoPublicRun(_) => None,
        }
    }

    /// The local year (and UTC offset) the answer's total counts, when it has one.
    pub(super) fn year(&self) -> Option<(i32, i64)> {
        match self {
            Known::Run(answer) => answer.year,
            Known::NoPublicRun(_) => None,
        }
    }

    /// Whether the answer was made under this instance's `WIDGET_ROUTE_SHAPE`: a stored answer
    /// made under the other value is treated as absent, so switching the sketch off takes it
    /// away at once instead of after the next window.
    pub(super) fn fits(&self, route_shape: bool) -> bool {
        match self {
            Known::Run(answer) => answer
                .run
                .as_ref()
                .is_none_or(|run| run.route_shape.is_some() == route_shape),
            Known::NoPublicRun(_) => true,
        }
    }

    /// `None` when the stored body is not an answer of this app (a hand edit): it is then
    /// treated as absent and overwritten, never served.
    pub(super) fn from_snapshot(snapshot: &LatestRunSnapshot) -> Option<Self> {
        let stamp = Stamp {
            fetched_at: snapshot.fetched_at,
            reconciled_at: snapshot.reconciled_at.unwrap_or(snapshot.fetched_at),
            tick: snapshot.tick,
        };
        match &snapshot.shown {
            Shown::Run { body, .. } => {
                let Ok(run) = serde_json::from_str::<LatestRunView>(body) else {
                    tracing::warn!("ignoring the stored answer: its Body is not a latest-run answer; it will be overwritten");
                    return None;
                };
                let year = snapshot.year.map(|y| (y, snapshot.utc_offset.unwrap_or(0)));
                Some(Known::Run(Arc::new(Answer::new(
                    Bytes::from(body.clone()),
                    stamp,
                    Some(run),
                    year,
                ))))
            }
            Shown::NoPublicRun => Some(Known::NoPublicRun(stamp)),
        }
    }

    pub(super) fn to_snapshot(&self) -> Option<LatestRunSnapshot> {
        let shown = match self {
            Known::Run(answer) => Shown::Run {
                body: String::from_utf8_lossy(&answer.body).into_owned(),
                activity_id: answer.run.as_ref()?.id,
            },
            Known::NoPublicRun(_) => Shown::NoPublicRun,
        };
        let year = self.year();
        Some(LatestRunSnapshot {
            fetched_at: self.fetched_at(),
            reconciled_at: Some(self.reconciled_at()),
            shown,
            year: year.map(|(y, _)| y),
            utc_offset: year.map(|(_, o)| o),
            tick: self.stamp().tick,
        })
    }
}

/// A strong entity tag from the body's SHA-256 (URL-safe base64: always a valid header value).
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_is_rendered_once_per_answer_theme_and_units() {
        let run = crate::view::svg::tests::run();
        let stamp = Stamp {
            fetched_at: 0,
            reconciled_at: 0,
            tick: 0,
        };
        let answer = Answer::from_run(run.clone(), stamp, None);
        // Any drawing does: the caller's (the functions draw the SVG).
        let draw = |theme: Theme, units: Units| {
            move |run: &LatestRunView| format!("<svg>{} {theme:?} {units:?}</svg>", run.id)
        };
        let first = answer
            .card(
                Theme::Dark,
                Units::Imperial,
                draw(Theme::Dark, Units::Imperial),
            )
            .expect("a card");
        let again = answer
            .card(Theme::Dark, Units::Imperial, |_| unreachable!("drawn once"))
            .expect("a card");
        assert_eq!(
            first.body.as_ptr(),
            again.body.as_ptr(),
            "the same bytes, kept"
        );
        assert_eq!(first.body, draw(Theme::Dark, Units::Imperial)(&run));
        assert_eq!(first.etag, etag_of(&first.body));
        let other = answer
            .card(
                Theme::Light,
                Units::Metric,
                draw(Theme::Light, Units::Metric),
            )
            .expect("a card");
        assert_eq!(other.body, draw(Theme::Light, Units::Metric)(&run));
        assert_ne!(other.etag, first.etag);
        let none = Answer::new(Bytes::from_static(b"{}"), stamp, None, None);
        assert!(none
            .card(Theme::Auto, Units::Metric, draw(Theme::Auto, Units::Metric))
            .is_none());
    }

    #[test]
    fn the_year_survives_the_table() {
        let run = crate::view::svg::tests::run();
        let stamp = Stamp {
            fetched_at: 5,
            reconciled_at: 3,
            tick: 7,
        };
        let known = Known::Run(Arc::new(Answer::from_run(run, stamp, Some((2026, 3600)))));
        let snapshot = known.to_snapshot().expect("a snapshot");
        assert_eq!(snapshot.year, Some(2026));
        let back = Known::from_snapshot(&snapshot).expect("readable");
        assert_eq!(back.year(), Some((2026, 3600)));
        assert_eq!(back.fetched_at(), 5);
        assert_eq!(back.reconciled_at(), 3);
        assert_eq!(back.stamp().tick, 7);
    }
}
