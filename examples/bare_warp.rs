//! The floor for `scripts/bench`: a minimal warp server that answers every `GET` and `POST`
//! with fixed bytes and the headers `GET /api/GetLatestRun` sends.
//!
//! Usage: `bare_warp PORT BODY_FILE [ETAG [CACHE_CONTROL]]` — serves on `127.0.0.1:PORT` the
//! contents of `BODY_FILE` (e.g. a captured handler answer), with that `ETag` and
//! `Cache-Control` (e.g. the handler's).

use bytes::Bytes;
use warp::http::Response;
use warp::Filter;

const USAGE: &str = "usage: bare_warp PORT BODY_FILE [ETAG [CACHE_CONTROL]]";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .expect(USAGE)
        .parse()
        .expect("bare_warp: PORT must be a port number");
    let path = args.next().expect(USAGE);
    let body = Bytes::from(
        std::fs::read(&path).unwrap_or_else(|err| panic!("bare_warp: cannot read {path}: {err}")),
    );
    let etag = args
        .next()
        .unwrap_or_else(|| "\"bare-warp-fixed-body\"".to_owned());
    let cache_control = args
        .next()
        .unwrap_or_else(|| "public, max-age=300, stale-while-revalidate=900".to_owned());

    let routes = warp::get().or(warp::post()).unify().map(move || {
        Response::builder()
            .header("Content-Type", "application/json; charset=utf-8")
            .header("ETag", etag.as_str())
            .header("Cache-Control", cache_control.as_str())
            .header("Access-Control-Allow-Origin", "*")
            .header("Access-Control-Expose-Headers", "ETag")
            .body(body.clone())
            .expect("bare_warp: fixed headers must be valid")
    });

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|err| panic!("bare_warp: cannot bind 127.0.0.1:{port}: {err}"));
    println!("BARE_WARP listening on 127.0.0.1:{port}");
    warp::serve(routes).incoming(listener).run().await;
}
