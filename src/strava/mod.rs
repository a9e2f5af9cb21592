//! The Strava client: one HTTP client with bounded timeouts, shared by the OAuth token calls
//! ([`oauth`]) and the API reads ([`api`]), which decode into allow-listed types ([`models`]),
//! fail with [`StravaError`] ([`error`]) and record rate-limit headers ([`rate_limit`]).

pub mod api;
pub mod error;
pub mod models;
pub mod oauth;
pub mod rate_limit;
pub mod webhook;

pub use error::StravaError;
pub use models::{
    is_placeholder_url, AthleteSummary, DetailedActivity, Photo, PhotosSummary, PrimaryPhoto,
    SummaryActivity,
};
pub use oauth::TokenGrant;
pub use rate_limit::{Budget, RateLimitSnapshot, RateLimitTracker};

use crate::clock::Clock;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Largest body read from Strava; a detailed activity is well under 1 MiB.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Client for Strava's OAuth and API endpoints; cheap to clone, clones share the rate-limit view.
#[derive(Clone)]
pub struct StravaClient {
    http: reqwest::Client,
    base: Url,
    limits: Arc<RateLimitTracker>,
    /// Dates the rate-limit windows of each answer.
    clock: Clock,
}

impl fmt::Debug for StravaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StravaClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// A 2xx answer: its status and raw body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, StravaError> {
        serde_json::from_slice(&self.body).map_err(|e| StravaError::from_json(self.status, &e))
    }
}

impl StravaClient {
    /// base_url is the Strava origin, e.g. "https://www.strava.com" (tests pass
    /// "http://127.0.0.1:PORT"). OAuth lives under {base}/oauth/..., the API under {base}/api/v3/...
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, StravaError> {
        let base = Url::parse(base_url).map_err(|_| StravaError::InvalidBaseUrl)?;
        let usable = matches!(base.scheme(), "http" | "https")
            && !base.cannot_be_a_base()
            && base.host().is_some()
            && base.query().is_none()
            && base.fragment().is_none()
            // Credentials in the URL would end up in every request and in logs of the URL.
            && base.username().is_empty()
            && base.password().is_none();
        if !usable {
            return Err(StravaError::InvalidBaseUrl);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Strava does not redirect API calls; following one could carry the bearer token
            // somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(StravaError::from_reqwest)?;
        Ok(StravaClient {
            http,
            base,
            limits: Arc::new(RateLimitTracker::new()),
            clock: Clock::system(),
        })
    }

    /// The same client dating answers by `clock` (the app's, which tests may move).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The Strava origin this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Latest rate-limit headers seen on any API answer (None before the first).
    pub fn rate_limits(&self) -> Option<RateLimitSnapshot> {
        self.limits.latest()
    }

    /// `{base}/seg/ments`, each segment percent-encoded, keeping any path prefix of the base.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Only fails for cannot-be-a-base URLs, which `new` rejects.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a request and returns a 2xx answer, or the classified error. The status is judged
    /// before any body is parsed; 5xx bodies (often CDN HTML) are not even read. With
    /// `track_rate`, the answer's rate-limit headers update the shared tracker.
    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        track_rate: bool,
    ) -> Result<Answer, StravaError> {
        let response = request.send().await.map_err(StravaError::from_reqwest)?;
        let now = self.clock.now_datetime();
        let status = response.status().as_u16();
        tracing::debug!(path = response.url().path(), status, "strava answered");
        let rate = if track_rate {
            self.limits.record(response.headers(), now)
        } else {
            RateLimitSnapshot::from_headers(response.headers(), now)
        };
        if (500..=599).contains(&status) {
            return Err(StravaError::Server { status });
        }
        let body = read_body(response, status).await?;
        if !(200..=299).contains(&status) {
            return Err(StravaError::from_status(status, &body, rate.as_ref(), now));
        }
        Ok(Answer { status, body })
    }
}

async fn read_body(mut response: reqwest::Response, status: u16) -> Result<Vec<u8>, StravaError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(StravaError::from_reqwest)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(StravaError::UnexpectedBody {
                status,
                detail: "the body is larger than 16 MiB".to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A throwaway HTTP server on 127.0.0.1:0 for the client's socket-level tests.

    use warp::filters::BoxedFilter;
    use warp::reply::Response;

    /// Serves `routes` in the background and returns its base URL.
    pub(crate) async fn serve(routes: BoxedFilter<(Response,)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unusable_base_urls() {
        let timeout = Duration::from_secs(5);
        for bad in [
            "",
            "www.strava.com",
            "ftp://www.strava.com",
            "mailto:someone@example.org",
            "https://user:pw@www.strava.com",
            "https://www.strava.com/?x=1",
        ] {
            assert!(
                matches!(
                    StravaClient::new(bad, timeout),
                    Err(StravaError::InvalidBaseUrl)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn builds_endpoints_under_the_base() {
        let timeout = Duration::from_secs(5);
        let client = StravaClient::new("https://www.strava.com", timeout).expect("client");
        assert_eq!(client.base_url().as_str(), "https://www.strava.com/");
        assert_eq!(
            client.endpoint(&["api", "v3", "athlete"]).as_str(),
            "https://www.strava.com/api/v3/athlete"
        );
        let client = StravaClient::new("http://127.0.0.1:9/fake/", timeout).expect("client");
        assert_eq!(
            client.endpoint(&["oauth", "token"]).as_str(),
            "http://127.0.0.1:9/fake/oauth/token"
        );
        assert_eq!(client.rate_limits(), None);
        assert!(!format!("{client:?}").contains("reqwest"));
    }
}
