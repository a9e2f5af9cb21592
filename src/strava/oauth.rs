//! Strava's OAuth 2.0 steps: the consent URL, exchanging the one-time code, and refreshing tokens.

use super::models::{AthleteSummary, Lenient, WholeNumber};
use super::{StravaClient, StravaError};
use crate::secret::Secret;
use reqwest::header::ACCEPT;
use serde::Deserialize;

/// The tokens from a successful `/oauth/token` call. Persist `refresh_token` before anything
/// else: once Strava rotates it, the previous one is invalid immediately.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenGrant {
    /// Bearer token for API calls.
    pub access_token: Secret,
    /// Token for the next refresh (may or may not be the one just used).
    pub refresh_token: Secret,
    /// When `access_token` expires, Unix seconds.
    pub expires_at: i64,
    /// The athlete; sent on code exchange, not on refresh.
    pub athlete: Option<AthleteSummary>,
}

/// The wire form; its plain strings are wrapped into [`Secret`]s at once.
#[serde_with::serde_as]
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    #[serde_as(as = "WholeNumber")]
    expires_at: i64,
    #[serde_as(as = "Lenient")]
    #[serde(default)]
    athlete: Option<AthleteSummary>,
}

impl StravaClient {
    /// The page to send the athlete to for consent: `{base}/oauth/authorize` asking for
    /// `activity:read` (Everyone and Followers activities, no private-zone data), with the consent
    /// screen always shown.
    pub fn authorize_url(&self, client_id: &str, redirect_uri: &str) -> String {
        let mut url = self.endpoint(&["oauth", "authorize"]);
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("approval_prompt", "force")
            .append_pair("scope", "activity:read");
        url.into()
    }

    /// Exchanges the single-use code from the consent redirect for tokens (and the athlete).
    pub async fn exchange_code(
        &self,
        client_id: &str,
        client_secret: &Secret,
        code: &str,
    ) -> Result<TokenGrant, StravaError> {
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
        ];
        self.token_call(&form)
            .await
            .map_err(|e| e.scrub(&[client_secret.expose(), code]))
    }

    /// Trades a refresh token for a current access token (and possibly a new refresh token).
    pub async fn refresh(
        &self,
        client_id: &str,
        client_secret: &Secret,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, StravaError> {
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        self.token_call(&form)
            .await
            .map_err(|e| e.scrub(&[client_secret.expose(), refresh_token.expose()]))
    }

    /// `POST {base}/oauth/token` with a form body, as Strava's own examples send it.
    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenGrant, StravaError> {
        let request = self
            .http
            .post(self.endpoint(&["oauth", "token"]))
            .header(ACCEPT, "application/json")
            .form(form);
        // Token answers carry no rate-limit headers and do not count against the API budget.
        let answer = self.execute(request, false).await?;
        TokenGrant::from_body(answer.status, &answer.body)
    }
}

impl TokenGrant {
    /// Decodes a 2xx `/oauth/token` answer of `status`; a body that is not a token answer, or
    /// has an empty token, is [`StravaError::UnexpectedBody`].
    pub fn from_body(status: u16, body: &[u8]) -> Result<TokenGrant, StravaError> {
        let wire: TokenResponse =
            serde_json::from_slice(body).map_err(|e| StravaError::from_json(status, &e))?;
        if wire.access_token.is_empty() || wire.refresh_token.is_empty() {
            return Err(StravaError::UnexpectedBody {
                status,
                detail: "the token answer has an empty token".to_owned(),
            });
        }
        Ok(TokenGrant {
            access_token: Secret::new(wire.access_token),
            refresh_token: Secret::new(wire.refresh_token),
            expires_at: wire.expires_at,
            athlete: wire.athlete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strava::testing::serve;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use url::Url;
    use warp::http::{Response as HttpResponse, StatusCode};
    use warp::Filter;

    const EXCHANGE: &str = include_str!("../../tests/data/strava/token-exchange-response.json");
    const REFRESH: &str = include_str!("../../tests/data/strava/token-refresh-response.json");
    const BAD_CODE: &str =
        include_str!("../../tests/data/strava/error-400-bad-authorization-code.json");
    const BAD_REFRESH: &str =
        include_str!("../../tests/data/strava/error-400-bad-refresh-token.json");

    const CLIENT_ID: &str = "139205";
    const CLIENT_SECRET: &str = "0d7c3e9a51b24f8e6a1d0c9b7e3f5a2d4c6b8e01";
    const REFRESH_TOKEN: &str = "7aa6791e7c64e672263a58205b3a563afd3e73ae";
    const CODE: &str = "5c0a2f1be4d87a9c3e61f02b7d4a9c8e1f305b6d";

    type Forms = Arc<Mutex<Vec<(String, Option<String>, HashMap<String, String>)>>>;

    /// A fake `/oauth/token` answering `status`/`body` (with rate-limit headers, which the
    /// client must ignore) and recording path, content type and form of each call.
    async fn fake_token(status: u16, body: &'static str) -> (StravaClient, Forms) {
        let forms: Forms = Arc::default();
        let record = forms.clone();
        let routes = warp::post()
            .and(warp::path!("oauth" / "token"))
            .and(warp::path::full())
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::form::<HashMap<String, String>>())
            .map(
                move |path: warp::path::FullPath,
                      content_type: Option<String>,
                      form: HashMap<String, String>| {
                    record.lock().expect("lock").push((
                        path.as_str().to_owned(),
                        content_type,
                        form,
                    ));
                    HttpResponse::builder()
                        .status(StatusCode::from_u16(status).expect("status"))
                        .header("content-type", "application/json; charset=UTF-8")
                        .header("X-RateLimit-Limit", "200,2000")
                        .header("X-RateLimit-Usage", "1,1")
                        .body(body.into())
                        .expect("response")
                },
            )
            .boxed();
        let base = serve(routes).await;
        let client = StravaClient::new(&base, Duration::from_secs(5)).expect("client");
        (client, forms)
    }

    fn secret() -> Secret {
        Secret::new(CLIENT_SECRET)
    }

    /// The secrets a call sent must not appear in its error.
    fn assert_no_secrets(err: &StravaError, sent: &[&str]) {
        let text = format!("{err} {err:?}");
        for secret in sent {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn authorize_url_asks_for_activity_read() {
        let client =
            StravaClient::new("https://www.strava.com", Duration::from_secs(5)).expect("client");
        let url = client.authorize_url(CLIENT_ID, "http://localhost:8080/callback?x=1&y=2");
        assert!(
            url.starts_with("https://www.strava.com/oauth/authorize?"),
            "{url}"
        );
        let parsed = Url::parse(&url).expect("url");
        let query: HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(query.len(), 5);
        assert_eq!(query["client_id"], CLIENT_ID);
        assert_eq!(
            query["redirect_uri"],
            "http://localhost:8080/callback?x=1&y=2"
        );
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["approval_prompt"], "force");
        assert_eq!(query["scope"], "activity:read");
    }

    #[tokio::test]
    async fn refresh_sends_the_form_and_reads_the_grant() {
        let (client, forms) = fake_token(200, REFRESH).await;
        let grant = client
            .refresh(CLIENT_ID, &secret(), &Secret::new(REFRESH_TOKEN))
            .await
            .expect("grant");
        assert_eq!(
            grant.access_token.expose(),
            "d26e230395b6a8ffb3e828f5376cdf19a0dc222e"
        );
        assert_eq!(grant.refresh_token.expose(), REFRESH_TOKEN);
        assert_eq!(grant.expires_at, 1760322667);
        assert_eq!(grant.athlete, None);
        assert!(!format!("{grant:?}").contains("d26e2303"));

        let forms = forms.lock().expect("lock");
        let (path, content_type, form) = &forms[0];
        assert_eq!(path, "/oauth/token");
        assert_eq!(
            content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(form["grant_type"], "refresh_token");
        assert_eq!(form["client_id"], CLIENT_ID);
        assert_eq!(form["client_secret"], CLIENT_SECRET);
        assert_eq!(form["refresh_token"], REFRESH_TOKEN);
        assert_eq!(form.len(), 4);
        // Token answers never feed the rate-limit tracker.
        assert_eq!(client.rate_limits(), None);
    }

    #[tokio::test]
    async fn exchange_sends_the_code_and_reads_the_athlete() {
        let (client, forms) = fake_token(200, EXCHANGE).await;
        let grant = client
            .exchange_code(CLIENT_ID, &secret(), CODE)
            .await
            .expect("grant");
        assert_eq!(grant.refresh_token.expose(), REFRESH_TOKEN);
        assert_eq!(grant.expires_at, 1760299800);
        let athlete = grant.athlete.expect("athlete");
        assert_eq!(athlete.id, 51877240);
        assert_eq!(athlete.firstname.as_deref(), Some("Mira"));

        let forms = forms.lock().expect("lock");
        let form = &forms[0].2;
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["code"], CODE);
        assert_eq!(form["client_id"], CLIENT_ID);
        assert_eq!(form["client_secret"], CLIENT_SECRET);
        assert_eq!(client.rate_limits(), None);
    }

    #[tokio::test]
    async fn token_errors_are_classified_without_secrets() {
        let (client, _) = fake_token(400, BAD_REFRESH).await;
        let err = client
            .refresh(CLIENT_ID, &secret(), &Secret::new(REFRESH_TOKEN))
            .await
            .expect_err("400");
        assert!(matches!(err, StravaError::InvalidRefreshToken), "{err:?}");
        assert!(!err.is_transient());
        assert_no_secrets(&err, &[CLIENT_SECRET, REFRESH_TOKEN]);

        let (client, _) = fake_token(400, BAD_CODE).await;
        let err = client
            .exchange_code(CLIENT_ID, &secret(), CODE)
            .await
            .expect_err("400");
        assert!(matches!(err, StravaError::InvalidCode), "{err:?}");
        assert_no_secrets(&err, &[CLIENT_SECRET, CODE]);

        let (client, _) = fake_token(503, "<html>Service Unavailable</html>").await;
        let err = client
            .refresh(CLIENT_ID, &secret(), &Secret::new(REFRESH_TOKEN))
            .await
            .expect_err("503");
        assert!(
            matches!(err, StravaError::Server { status: 503 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn echoed_secrets_never_reach_error_texts() {
        let echo: &'static str = Box::leak(
            format!(
                r#"{{"message":"Bad {CLIENT_SECRET} {REFRESH_TOKEN} {CODE}","errors":[{{"resource":"X","field":"{CLIENT_SECRET}","code":"{REFRESH_TOKEN}"}}]}}"#
            )
            .into_boxed_str(),
        );
        let (client, _) = fake_token(400, echo).await;
        let err = client
            .refresh(CLIENT_ID, &secret(), &Secret::new(REFRESH_TOKEN))
            .await
            .expect_err("400");
        assert!(matches!(err, StravaError::BadRequest { .. }), "{err:?}");
        assert_no_secrets(&err, &[CLIENT_SECRET, REFRESH_TOKEN]);
        let err = client
            .exchange_code(CLIENT_ID, &secret(), CODE)
            .await
            .expect_err("400");
        assert_no_secrets(&err, &[CLIENT_SECRET, CODE]);

        // A 200 whose token has the wrong type must not quote it either.
        let wrong: &'static str = Box::leak(
            format!(r#"{{"access_token":1,"refresh_token":"r","expires_at":"{REFRESH_TOKEN}"}}"#)
                .into_boxed_str(),
        );
        let (client, _) = fake_token(200, wrong).await;
        let err = client
            .refresh(CLIENT_ID, &secret(), &Secret::new("other"))
            .await
            .expect_err("bad body");
        assert!(
            matches!(err, StravaError::UnexpectedBody { status: 200, .. }),
            "{err:?}"
        );
        // Here the echoed value is one the client never sent, so only shape handling hides it.
        assert_no_secrets(&err, &[CLIENT_SECRET, REFRESH_TOKEN]);
    }

    #[test]
    fn a_token_answer_needs_a_numeric_expiry_and_reads_the_athlete_leniently() {
        let grant = |expiry: &str, athlete: &str| {
            let body = format!(
                r#"{{"access_token":"a","refresh_token":"r","expires_at":{expiry},"athlete":{athlete}}}"#
            );
            TokenGrant::from_body(200, body.as_bytes())
        };
        let read = grant("1.6", r#"{"id": 5, "firstname": 7}"#).expect("decodes");
        assert_eq!(read.expires_at, 2);
        let athlete = read.athlete.expect("athlete");
        assert_eq!((athlete.id, athlete.firstname), (5, None));
        for odd in ["[]", "null", r#"{"id": "5"}"#, r#""x""#] {
            assert_eq!(grant("1", odd).expect(odd).athlete, None, "{odd}");
        }
        let err = grant(r#""1""#, "null").expect_err("a string expiry");
        assert_eq!(
            err.to_string(),
            StravaError::UnexpectedBody {
                status: 200,
                detail: "JSON of an unexpected shape at line 1 column 56".into()
            }
            .to_string()
        );
    }

    #[tokio::test]
    async fn token_answers_missing_tokens_are_unexpected() {
        let (client, _) = fake_token(200, r#"{"access_token":"a","expires_at":1}"#).await;
        let err = client
            .refresh(CLIENT_ID, &secret(), &Secret::new(REFRESH_TOKEN))
            .await
            .expect_err("missing");
        match err {
            StravaError::UnexpectedBody { status, detail } => {
                assert_eq!(status, 200);
                assert!(detail.contains("refresh_token"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let (client, _) = fake_token(
            200,
            r#"{"access_token":"","refresh_token":"r","expires_at":1}"#,
        )
        .await;
        let err = client
            .refresh(CLIENT_ID, &secret(), &Secret::new(REFRESH_TOKEN))
            .await
            .expect_err("empty");
        assert!(matches!(err, StravaError::UnexpectedBody { .. }), "{err:?}");
    }
}
