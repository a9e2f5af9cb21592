//! `Widget` (route `widget/{file}`): the embeddable `<latest-run>` module and its demo page,
//! served from the binary with a long `Cache-Control`, an ETag (`If-None-Match` → 304) and CORS
//! as `GetLatestRun` (a module script loaded from a blog is a cross-origin request). An unknown
//! file is a JSON `404`.

use super::public_http::{answer_headers, cacheable, read_only};
use crate::config::AllowedOrigins;
use crate::http::{ApiError, FunctionRequest, FunctionResponse};
use crate::keeper::etag_of;
use crate::view::assets::{self, Asset, ASSETS};
use std::sync::OnceLock;
use warp::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY};
use warp::http::HeaderValue;

/// A day fresh, then a week served while revalidating: the URL carries no version, so a new
/// release reaches readers within a day, and a revalidation is a cheap 304 thanks to the ETag.
const CACHE_CONTROL: &str = "public, max-age=86400, stale-while-revalidate=604800";

/// The demo page runs only this app's script and loads only this app's data (and https photos).
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' https:; style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Handles one request for a widget file.
pub async fn handle(
    allowed_origins: &AllowedOrigins,
    request: &FunctionRequest,
) -> FunctionResponse {
    read_only(allowed_origins, request, || async {
        match request.param("file").and_then(assets::find) {
            Some(asset) => serve(asset, allowed_origins, request),
            None => ApiError::NoSuchFile.to_response(),
        }
    })
    .await
}

fn serve(
    asset: &'static Asset,
    allowed_origins: &AllowedOrigins,
    request: &FunctionRequest,
) -> FunctionResponse {
    let mut response = cacheable(
        request,
        bytes::Bytes::from_static(asset.body),
        &etag(asset),
        answer_headers(
            HeaderValue::from_static(asset.content_type),
            HeaderValue::from_static(CACHE_CONTROL),
            allowed_origins,
        ),
    );
    // `answer_headers` says nosniff, as for every answer with a body.
    let headers = &mut response.headers;
    if asset.content_type.starts_with("text/html") {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(DEMO_CSP));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}

/// The asset's strong ETag (a hash of its bytes, as for answers), computed once per process.
fn etag(asset: &Asset) -> bytes::Bytes {
    static TAGS: OnceLock<Vec<bytes::Bytes>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| bytes::Bytes::from(etag_of(a.body)))
            .collect()
    });
    ASSETS
        .iter()
        .position(|a| a.file == asset.file)
        .and_then(|i| tags.get(i))
        .cloned()
        .unwrap_or_default()
}
