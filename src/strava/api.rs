//! The Strava API reads the widget needs, each authorized with a bearer access token and each
//! recording the answer's rate-limit headers, errors included.

use super::models::{AthleteSummary, DetailedActivity, Photo, SummaryActivity};
use super::{Answer, StravaClient, StravaError};
use crate::secret::Secret;
use reqwest::header::ACCEPT;

/// Strava's documented maximum page size.
const MAX_PER_PAGE: u32 = 200;

impl StravaClient {
    /// The athlete's newest activities (`GET /api/v3/athlete/activities`), those that started
    /// before `before` (Unix seconds) when given; `per_page` is clamped to 1..=200. Order is
    /// Strava's: sort by `start_date` before relying on it.
    pub async fn list_activities(
        &self,
        access_token: &Secret,
        per_page: u32,
        before: Option<i64>,
    ) -> Result<Vec<SummaryActivity>, StravaError> {
        let per_page = per_page.clamp(1, MAX_PER_PAGE).to_string();
        let before = before.map(|b| b.to_string());
        let mut query = vec![("per_page", per_page.as_str()), ("page", "1")];
        if let Some(before) = before.as_deref() {
            query.push(("before", before));
        }
        self.api_get(access_token, &["athlete", "activities"], &query)
            .await?
            .decode()
            .map_err(|e| e.scrub(&[access_token.expose()]))
    }

    /// One activity in detail (`GET /api/v3/activities/{id}`).
    pub async fn get_activity(
        &self,
        access_token: &Secret,
        id: i64,
    ) -> Result<DetailedActivity, StravaError> {
        let id = id.to_string();
        self.api_get(access_token, &["activities", &id], &[])
            .await?
            .decode()
            .map_err(|e| e.scrub(&[access_token.expose()]))
    }

    /// An activity's photos with URLs for `size` pixels
    /// (`GET /api/v3/activities/{id}/photos?size=N&photo_sources=true`); an empty body reads as none.
    pub async fn activity_photos(
        &self,
        access_token: &Secret,
        id: i64,
        size: u32,
    ) -> Result<Vec<Photo>, StravaError> {
        let id = id.to_string();
        let size = size.to_string();
        // photo_sources=true used to be needed for Strava-native photos; it is harmless now.
        let query = [("size", size.as_str()), ("photo_sources", "true")];
        let answer = self
            .api_get(access_token, &["activities", &id, "photos"], &query)
            .await?;
        // Historically the endpoint answered 204 with no body when there were no photos.
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        answer
            .decode()
            .map_err(|e| e.scrub(&[access_token.expose()]))
    }

    /// The token's athlete (`GET /api/v3/athlete`).
    pub async fn athlete(&self, access_token: &Secret) -> Result<AthleteSummary, StravaError> {
        self.api_get(access_token, &["athlete"], &[])
            .await?
            .decode()
            .map_err(|e| e.scrub(&[access_token.expose()]))
    }

    /// `GET {base}/api/v3/{path}?{query}` with the bearer token; returns the 2xx answer.
    async fn api_get(
        &self,
        access_token: &Secret,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Answer, StravaError> {
        let mut url = self.endpoint(&[&["api", "v3"][..], path].concat());
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        // bearer_auth marks the header sensitive, so reqwest and hyper never print it.
        let request = self
            .http
            .get(url)
            .bearer_auth(access_token.expose())
            .header(ACCEPT, "application/json");
        self.execute(request, true)
            .await
            .map_err(|e| e.scrub(&[access_token.expose()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strava::rate_limit::Budget;
    use crate::strava::testing::serve;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use time::OffsetDateTime;
    use warp::http::{Response as HttpResponse, StatusCode};
    use warp::reply::Response;
    use warp::Filter;

    const ACTIVITIES: &str = include_str!("../../tests/data/strava/athlete-activities.json");
    const DETAIL: &str = include_str!("../../tests/data/strava/activity-detail-run.json");
    const PHOTOS: &str = include_str!("../../tests/data/strava/activity-photos.json");
    const BAD_TOKEN: &str = include_str!("../../tests/data/strava/error-401-invalid-token.json");
    const NO_SCOPE: &str = include_str!("../../tests/data/strava/error-401-missing-scope.json");
    const NOT_FOUND: &str = include_str!("../../tests/data/strava/error-404-not-found.json");
    const LIMITED: &str = include_str!("../../tests/data/strava/error-429.json");

    const TOKEN: &str = "d26e230395b6a8ffb3e828f5376cdf19a0dc222e";

    fn token() -> Secret {
        Secret::new(TOKEN)
    }

    fn client_for(base: &str) -> StravaClient {
        StravaClient::new(base, Duration::from_secs(5)).expect("client")
    }

    fn reply(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
        let mut builder = HttpResponse::builder()
            .status(StatusCode::from_u16(status).expect("status"))
            .header("content-type", "application/json; charset=utf-8");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(body.to_owned().into()).expect("response")
    }

    const NORMAL_LIMITS: [(&str, &str); 4] = [
        ("X-Ratelimit-Limit", "200,2000"),
        ("X-Ratelimit-Usage", "37,412"),
        ("X-Readratelimit-Limit", "100,1000"),
        ("X-Readratelimit-Usage", "36,409"),
    ];

    /// What the fake saw of one request.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        path: String,
        query: HashMap<String, String>,
        authorization: Option<String>,
    }

    /// A fake that answers every GET with `status`/`body`/`headers` and remembers the request.
    async fn fake(
        status: u16,
        body: &'static str,
        headers: &'static [(&'static str, &'static str)],
    ) -> (String, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        let routes = warp::get()
            .and(warp::path::full())
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::optional::<String>("authorization"))
            .map(
                move |path: warp::path::FullPath,
                      query: HashMap<String, String>,
                      authorization: Option<String>| {
                    *record.lock().expect("lock") = Seen {
                        path: path.as_str().to_owned(),
                        query,
                        authorization,
                    };
                    reply(status, body, headers)
                },
            )
            .boxed();
        (serve(routes).await, seen)
    }

    #[tokio::test]
    async fn lists_activities_and_records_rate_limits() {
        let (base, seen) = fake(200, ACTIVITIES, &NORMAL_LIMITS).await;
        let client = client_for(&base);
        let before = OffsetDateTime::now_utc();
        let list = client
            .list_activities(&token(), 30, None)
            .await
            .expect("list");
        assert_eq!(list.len(), 6);
        assert_eq!(list[2].id, 16128930471);

        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.path, "/api/v3/athlete/activities");
        assert_eq!(seen.query.get("per_page").map(String::as_str), Some("30"));
        assert_eq!(seen.query.get("page").map(String::as_str), Some("1"));
        assert_eq!(seen.authorization, Some(format!("Bearer {TOKEN}")));

        let limits = client.rate_limits().expect("recorded");
        assert_eq!(
            limits.read,
            Some(Budget {
                short_limit: 100,
                short_usage: 36,
                daily_limit: 1000,
                daily_usage: 409
            })
        );
        assert_eq!(limits.overall.map(|b| b.daily_usage), Some(412));
        assert!(limits.observed_at >= before);
        // Clones share the tracker.
        assert_eq!(client.clone().rate_limits(), Some(limits));
    }

    #[tokio::test]
    async fn rate_limits_are_dated_by_the_clients_clock() {
        // The app's clock, not the machine's: tests move it, and the budget windows follow it.
        let (base, _) = fake(200, ACTIVITIES, &NORMAL_LIMITS).await;
        let ten_days = 10 * 86_400;
        let client = client_for(&base).with_clock(crate::clock::Clock::skewed(ten_days));
        let before = OffsetDateTime::now_utc();
        client
            .list_activities(&token(), 30, None)
            .await
            .expect("list");
        let observed = client.rate_limits().expect("recorded").observed_at;
        let skew = (observed - before).whole_seconds();
        assert!(
            (ten_days - 60..=ten_days + 60).contains(&skew),
            "observed {skew} s after the machine's now, expected about {ten_days}"
        );
    }

    #[tokio::test]
    async fn per_page_is_clamped() {
        let (base, seen) = fake(200, "[]", &[]).await;
        let list = client_for(&base)
            .list_activities(&token(), 5000, Some(1_760_000_000))
            .await
            .expect("list");
        assert!(list.is_empty());
        let query = seen.lock().expect("lock").query.clone();
        assert_eq!(query.get("per_page").map(String::as_str), Some("200"));
        assert_eq!(query.get("before").map(String::as_str), Some("1760000000"));
    }

    #[tokio::test]
    async fn gets_an_activity() {
        let (base, seen) = fake(200, DETAIL, &NORMAL_LIMITS).await;
        let detail = client_for(&base)
            .get_activity(&token(), 16128930471)
            .await
            .expect("detail");
        assert_eq!(detail.summary.name, "Tiergarten tempo + coffee");
        assert_eq!(
            seen.lock().expect("lock").path,
            "/api/v3/activities/16128930471"
        );
    }

    #[tokio::test]
    async fn gets_photos_with_size_and_sources() {
        let (base, seen) = fake(200, PHOTOS, &NORMAL_LIMITS).await;
        let photos = client_for(&base)
            .activity_photos(&token(), 16128930471, 600)
            .await
            .expect("photos");
        assert_eq!(photos.len(), 3);
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.path, "/api/v3/activities/16128930471/photos");
        assert_eq!(seen.query.get("size").map(String::as_str), Some("600"));
        assert_eq!(
            seen.query.get("photo_sources").map(String::as_str),
            Some("true")
        );
    }

    #[tokio::test]
    async fn no_content_means_no_photos() {
        let (base, _) = fake(204, "", &[]).await;
        let photos = client_for(&base)
            .activity_photos(&token(), 1, 600)
            .await
            .expect("photos");
        assert!(photos.is_empty());
    }

    #[tokio::test]
    async fn gets_the_athlete() {
        let (base, seen) = fake(
            200,
            r#"{"id":51877240,"firstname":"Mira","lastname":"K","city":"Berlin"}"#,
            &[],
        )
        .await;
        let athlete = client_for(&base).athlete(&token()).await.expect("athlete");
        assert_eq!(athlete.id, 51877240);
        assert_eq!(athlete.firstname.as_deref(), Some("Mira"));
        assert_eq!(seen.lock().expect("lock").path, "/api/v3/athlete");
    }

    #[tokio::test]
    async fn error_answers_are_classified_and_still_recorded() {
        let (base, _) = fake(401, BAD_TOKEN, &NORMAL_LIMITS).await;
        let client = client_for(&base);
        let err = client
            .list_activities(&token(), 30, None)
            .await
            .expect_err("401");
        assert!(matches!(err, StravaError::Unauthorized), "{err:?}");
        assert!(client.rate_limits().is_some());

        let (base, _) = fake(401, NO_SCOPE, &[]).await;
        let err = client_for(&base)
            .list_activities(&token(), 30, None)
            .await
            .expect_err("401");
        assert!(matches!(err, StravaError::MissingScope), "{err:?}");

        let (base, _) = fake(404, NOT_FOUND, &[]).await;
        let err = client_for(&base)
            .get_activity(&token(), 42)
            .await
            .expect_err("404");
        assert!(matches!(err, StravaError::NotFound), "{err:?}");
    }

    #[tokio::test]
    async fn html_502_is_a_server_error() {
        let (base, _) = fake(
            502,
            "<html><head><title>502 Bad Gateway</title></head><body>CloudFront</body></html>",
            &[],
        )
        .await;
        let err = client_for(&base)
            .list_activities(&token(), 30, None)
            .await
            .expect_err("502");
        assert!(
            matches!(err, StravaError::Server { status: 502 }),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn garbage_200_is_an_unexpected_body() {
        let (base, _) = fake(200, "<html>maintenance</html>", &NORMAL_LIMITS).await;
        let client = client_for(&base);
        let err = client.get_activity(&token(), 1).await.expect_err("garbage");
        match &err {
            StravaError::UnexpectedBody { status, detail } => {
                assert_eq!(*status, 200);
                assert!(!detail.contains("maintenance"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(client.rate_limits().is_some());

        let (base, _) = fake(200, r#"{"not":"a list"}"#, &[]).await;
        let err = client_for(&base)
            .list_activities(&token(), 30, None)
            .await
            .expect_err("wrong shape");
        assert!(
            matches!(err, StravaError::UnexpectedBody { status: 200, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn rate_limited_answer_says_until_when() {
        const READ_EXHAUSTED: [(&str, &str); 4] = [
            ("X-RateLimit-Limit", "200,2000"),
            ("X-RateLimit-Usage", "101,477"),
            ("X-ReadRateLimit-Limit", "100,1000"),
            ("X-ReadRateLimit-Usage", "101,474"),
        ];
        let (base, _) = fake(429, LIMITED, &READ_EXHAUSTED).await;
        let client = client_for(&base);
        let before = OffsetDateTime::now_utc();
        let err = client
            .list_activities(&token(), 30, None)
            .await
            .expect_err("429");
        let after = OffsetDateTime::now_utc();
        let StravaError::RateLimited { until: Some(until) } = err else {
            panic!("unexpected {err:?}");
        };
        // The next quarter hour after the answer: within 15 minutes, on a quarter boundary.
        assert!(until > before && until <= after + time::Duration::minutes(15));
        assert_eq!(until.minute() % 15, 0);
        assert_eq!(until.second(), 0);
        let recorded = client.rate_limits().expect("recorded");
        assert_eq!(recorded.remaining_short(), Some(0));
        assert_eq!(recorded.blocked_until(recorded.observed_at), Some(until));

        // Daily exhaustion points at the next UTC midnight.
        const DAY_EXHAUSTED: [(&str, &str); 2] = [
            ("X-ReadRateLimit-Limit", "100,1000"),
            ("X-ReadRateLimit-Usage", "3,1000"),
        ];
        let (base, _) = fake(429, LIMITED, &DAY_EXHAUSTED).await;
        let err = client_for(&base)
            .list_activities(&token(), 30, None)
            .await
            .expect_err("429");
        let StravaError::RateLimited { until: Some(until) } = err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!((until.hour(), until.minute(), until.second()), (0, 0, 0));
        assert!(until > before && until <= after + time::Duration::DAY);
    }

    #[tokio::test]
    async fn slow_answers_time_out() {
        let routes = warp::any()
            .then(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                reply(200, "[]", &[])
            })
            .boxed();
        let base = serve(routes).await;
        let client = StravaClient::new(&base, Duration::from_millis(300)).expect("client");
        let started = std::time::Instant::now();
        let err = client
            .list_activities(&token(), 30, None)
            .await
            .expect_err("timeout");
        assert!(matches!(err, StravaError::Timeout), "{err:?}");
        assert!(err.is_transient());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn unreachable_server_is_a_network_error_without_the_token() {
        // Bind and drop to get a port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let client = client_for(&format!("http://127.0.0.1:{port}"));
        let err = client
            .list_activities(&token(), 30, None)
            .await
            .expect_err("refused");
        assert!(matches!(err, StravaError::Network { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains(TOKEN));
        assert!(!format!("{err}").contains("per_page"), "{err}");
    }

    #[tokio::test]
    async fn no_error_text_contains_the_token() {
        // A hostile fake that echoes the token everywhere it can.
        let echo: &'static str = Box::leak(
            format!(
                r#"{{"message":"Bad token {TOKEN}","errors":[{{"resource":"{TOKEN}","field":"{TOKEN}","code":"{TOKEN}"}}]}}"#
            )
            .into_boxed_str(),
        );
        let garbage: &'static str = Box::leak(format!(r#"[{{"id":"{TOKEN}"}}]"#).into_boxed_str());
        for (status, body) in [
            (400, echo),
            (401, echo),
            (422, echo),
            (500, echo),
            (200, garbage),
        ] {
            let (base, _) = fake(status, body, &[]).await;
            let err = client_for(&base)
                .list_activities(&token(), 30, None)
                .await
                .expect_err("error");
            let text = format!("{err} {err:?}");
            assert!(!text.contains(TOKEN), "{status}: {text}");
        }
    }
}
