//! The widget as a blog's readers get it: the `Widget` function's files and headers, the SVG card,
//! and end-to-end runs in headless Chromium. The browser test starts apps on real Azurite and
//! fake Stravas (one per situation: a run with a photo, without one, a hostile name, a stale
//! answer, Strava failing, not connected, no public run, storage unreachable, long names in
//! Latin capitals, CJK, emoji, Arabic and Hebrew), serves blog pages from another origin
//! that embed the two lines of the README's embed snippet, and runs
//! `tests/browser/widget.e2e.mjs` (playwright-core driving Debian's chromium), which asserts and
//! exits non-zero on a failure.

use crate::support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::app::{TestApp, TestSettings};
use support::credentials::connected;
use support::fake_strava::{FakeStrava, Fault, Scope};
use support::json;
use tokio::sync::oneshot;
use warp::Filter;

const SAMPLE_RUN_ID: i64 = 16128930471;
/// Names that run past the card when cut by character count: capitals, CJK, emoji (with joined
/// sequences, skin tones and a flag) and right-to-left scripts.
const LONG_NAMES: [(&str, &str); 5] = [
    ("latin", "WWWWWWWWWWMMMMMMMMMMWWWWWWWWWWMM"),
    ("cjk", "東京マラソンに向けての長距離走と皇居ランニング二周目です"),
    (
        "emoji",
        "🏃\u{200D}♂\u{FE0F}🔥💯🏃\u{200D}♀\u{FE0F}🌧\u{FE0F}☔🌈🏅🎉🥳🏃🏽\u{200D}♀\u{FE0F}👨\u{200D}👩\u{200D}👧🇩🇪🏃🏃🏃🏃🏃🏃🏃🏃🏃🏃🏃",
    ),
    (
        "arabic",
        "الجري الصباحي الطويل حول البحيرة مع الأصدقاء في عطلة نهاية الأسبوع",
    ),
    ("hebrew", "ריצת בוקר ארוכה סביב האגם עם חברים בסוף השבוע הארוך"),
];
const HOSTILE_NAME: &str = r#"<img src=x onerror="window.__xss=1;alert(1)"> & </latest-run>"#;

fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/strava")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("json")
}

/// A connected app whose clock reads 1 December of the samples' year, so their runs are this
/// year's: the year-to-date total is the sum of the sample's public runs (30,733.6 m).
async fn connected_app(strava: &FakeStrava, settings: TestSettings) -> TestApp {
    const IN_THE_SAMPLES_YEAR: i64 = 1_764_590_400; // 2025-12-01T12:00:00Z
    let clock = strava_latest_run::clock::Clock::skewed(IN_THE_SAMPLES_YEAR - support::now());
    let app = TestApp::spawn_with_clock(settings, clock).await;
    app.store
        .replace_credentials(&connected(strava))
        .await
        .expect("arrange credentials");
    app
}

async fn sample_app(strava: &FakeStrava) -> TestApp {
    connected_app(strava, TestSettings::new(&strava.base_url())).await
}

/// The sample athlete with the latest run renamed (in the list and in the detail).
fn rename_latest_run(strava: &FakeStrava, name: &str) {
    let mut activities = sample("athlete-activities.json");
    for activity in activities.as_array_mut().expect("array") {
        if activity["id"] == SAMPLE_RUN_ID {
            activity["name"] = json!(name);
        }
    }
    strava.set_activities(activities.as_array().expect("array").clone());
    let mut detail = sample("activity-detail-run.json");
    detail["name"] = json!(name);
    strava.set_activity_detail(SAMPLE_RUN_ID, detail);
}

/// A response's header as text.
fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_widget_files_are_served_with_types_cache_etag_and_cors_in_both_forms() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    let script = include_str!("../../web/latest-run.js");

    let response = app.get("/api/widget/latest-run.js").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let cache = header(&response, "cache-control");
    assert!(
        cache.contains("public") && cache.contains("max-age=86400"),
        "{cache}"
    );
    let etag = header(&response, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert_eq!(response.text().await.expect("body"), script);

    // The route ignores case as the host's does; the same bytes and tag.
    let shouted = app.get("/API/Widget/latest-run.js").await;
    assert_eq!(shouted.status(), 200);
    assert_eq!(header(&shouted, "etag"), etag);

    let revalidated = app
        .client
        .get(format!("{}/api/widget/latest-run.js", app.address))
        .header("If-None-Match", format!("W/{etag}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(revalidated.status(), 304);
    assert!(revalidated.bytes().await.expect("body").is_empty());

    // The running year's module: the same headers, its own bytes and tag.
    let year_script = app.get("/api/widget/running-year.js").await;
    assert_eq!(year_script.status(), 200);
    for name in [
        "content-type",
        "access-control-allow-origin",
        "x-content-type-options",
        "cache-control",
    ] {
        assert_eq!(header(&year_script, name), header(&shouted, name), "{name}");
    }
    assert_ne!(header(&year_script, "etag"), etag);
    assert_eq!(
        year_script.text().await.expect("body"),
        include_str!("../../web/running-year.js")
    );

    let demo = app.get("/api/widget/demo.html").await;
    assert_eq!(demo.status(), 200);
    assert_eq!(header(&demo, "content-type"), "text/html; charset=utf-8");
    assert!(header(&demo, "content-security-policy").contains("script-src 'self'"));
    assert_ne!(header(&demo, "etag"), etag);
    let page = demo.text().await.expect("body");
    assert!(page.contains(r#"<script type="module" src="latest-run.js"></script>"#));
    assert!(page.contains(r#"<script type="module" src="running-year.js"></script>"#));

    for missing in [
        "/api/widget/nope.js",
        "/api/widget/..%2FCargo.toml",
        "/api/widget",
        "/api/widget/latest-run.js/x",
    ] {
        let response = app.get(missing).await;
        assert_eq!(response.status(), 404, "{missing}");
        let body = json(&response.bytes().await.expect("body"));
        assert_eq!(body["error"], "not_found", "{missing}");
    }
    let post = app
        .client
        .post(format!("{}/api/widget/latest-run.js", app.address))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 405);
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/widget/latest-run.js", app.address),
        )
        .header("Origin", "https://blog.example.org")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(preflight.status(), 204);

    // The invocation form: the host POSTs to /Widget with the route's {file} in Params.
    let invocation = json!({
        "Data": {"req": {
            "Url": "https://app.example/api/widget/latest-run.js",
            "Method": "GET",
            "Query": {},
            "Headers": {"Origin": ["https://blog.example.org"]},
            "Params": {"file": "latest-run.js"},
        }},
        "Metadata": {},
    });
    let invoked = app.invoke("Widget", invocation.to_string()).await;
    assert_eq!(invoked.status(), 200);
    let envelope = json(&invoked.bytes().await.expect("body"));
    let res = &envelope["Outputs"]["res"];
    assert_eq!(res["statusCode"], 200);
    assert_eq!(res["body"].as_str(), Some(script));
    assert_eq!(
        res["headers"]["Content-Type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(res["headers"]["ETag"], etag.as_str());
    let mut unknown = invocation.clone();
    unknown["Data"]["req"]["Params"]["file"] = json!("secret.txt");
    let invoked = app.invoke("Widget", unknown.to_string()).await;
    let envelope = json(&invoked.bytes().await.expect("body"));
    assert_eq!(envelope["Outputs"]["res"]["statusCode"], 404);
}

#[tokio::test]
async fn the_widget_scripts_stay_within_their_size_budgets_and_set_no_html() {
    for (name, script, budget) in [
        ("latest-run.js", include_str!("../../web/latest-run.js"), 6),
        (
            "running-year.js",
            include_str!("../../web/running-year.js"),
            8,
        ),
    ] {
        let gzipped = gzip_size(script.as_bytes());
        assert!(
            gzipped <= budget * 1024,
            "{name} is {gzipped} bytes gzipped, over {budget} KB"
        );
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute(\"style\"",
            "import(",
        ] {
            assert!(!script.contains(forbidden), "{forbidden} in {name}");
        }
    }
}

/// The gzipped size of `bytes`, as `gzip -9` counts it.
fn gzip_size(bytes: &[u8]) -> usize {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    child.wait_with_output().expect("gzip output").stdout.len()
}

#[tokio::test]
async fn the_svg_card_is_xml_escaped_has_no_coordinates_and_follows_the_json_cache() {
    let strava = FakeStrava::start().await;
    rename_latest_run(&strava, HOSTILE_NAME);
    let app = sample_app(&strava).await;

    let response = app
        .get("/api/GetLatestRun?format=svg&theme=dark&units=imperial")
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "image/svg+xml");
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert!(header(&response, "content-security-policy").starts_with("default-src 'none'"));
    let json_answer = app.get("/api/GetLatestRun").await;
    assert_eq!(
        header(&response, "cache-control"),
        header(&json_answer, "cache-control")
    );
    let etag = header(&response, "etag");
    assert_ne!(etag, header(&json_answer, "etag"));
    let svg = response.text().await.expect("body");

    let texts = xml_texts(&svg);
    // The title carries the whole name; the visible line is cut to fit.
    assert!(
        texts.iter().any(|t| t.contains(HOSTILE_NAME)),
        "the name is text: {texts:?}"
    );
    assert!(svg.contains("&lt;img src=x onerror="), "{svg}");
    assert!(!svg.contains("<img"), "{svg}");
    assert!(svg.contains("5.23 mi") && svg.contains("/mi"), "{svg}");
    assert!(svg.contains("#17191e") && !svg.contains("prefers-color-scheme"));

    // Nothing of the activity's place: no coordinate of the sample, no map, no photo.
    let activity = &sample("athlete-activities.json")[2];
    assert_eq!(activity["id"], SAMPLE_RUN_ID);
    for key in ["start_latlng", "end_latlng"] {
        for coordinate in activity[key].as_array().expect("latlng") {
            let coordinate = coordinate.as_f64().expect("number").to_string();
            assert!(!svg.contains(&coordinate), "{coordinate} in the card");
        }
    }
    for forbidden in [
        "latlng",
        "polyline",
        "cloudfront",
        "<image",
        "href",
        "<script",
    ] {
        assert!(!svg.contains(forbidden), "{forbidden} in {svg}");
    }

    let not_modified = app
        .client
        .get(format!(
            "{}/api/GetLatestRun?format=svg&theme=dark&units=imperial",
            app.address
        ))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(not_modified.status(), 304);

    let auto = app.get("/api/GetLatestRun?format=svg").await;
    let auto = auto.text().await.expect("body");
    assert!(auto.contains("@media (prefers-color-scheme:dark)"));
    assert!(auto.contains(" km"));
    xml_texts(&auto);

    for bad in [
        "format=png",
        "format=svg&theme=pink",
        "format=svg&units=furlongs",
    ] {
        let response = app.get(&format!("/api/GetLatestRun?{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            json(&response.bytes().await.expect("body"))["error"],
            "bad_request"
        );
    }
}

/// An app on the fake Strava whose only runs are private: `404 no_public_run`.
async fn no_public_run_app() -> (FakeStrava, TestApp) {
    let strava = FakeStrava::start().await;
    let mut private = sample("athlete-activities.json");
    for activity in private.as_array_mut().expect("array") {
        activity["visibility"] = json!("only_me");
        activity["private"] = json!(true);
    }
    strava.set_activities(private.as_array().expect("array").clone());
    let app = sample_app(&strava).await;
    (strava, app)
}

/// An app whose table is where nothing listens: `503 storage_unavailable`.
async fn storage_down_app(strava: &FakeStrava) -> TestApp {
    let nowhere = support::azurite::connection_string_for_port(support::azurite::free_port());
    TestApp::spawn(TestSettings::new(&strava.base_url()).with("STRAVA_TABLE_CONNECTION", nowhere))
        .await
}

#[tokio::test]
async fn every_svg_error_is_an_image_card_that_says_what_is_wrong_and_json_keeps_its_status() {
    let strava = FakeStrava::start().await;
    let unconfigured = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    let failing_strava = FakeStrava::start().await;
    failing_strava.set_fault(Scope::Api, Some(Fault::Status(500)));
    let failing = sample_app(&failing_strava).await;
    let (_private_strava, no_public) = no_public_run_app().await;
    let storage_down = storage_down_app(&strava).await;

    for (app, status, code, words) in [
        (
            &unconfigured,
            503,
            "not_configured",
            "Strava is not connected yet.",
        ),
        (
            &failing,
            502,
            "strava_unavailable",
            "Strava cannot be reached right now.",
        ),
        (
            &no_public,
            404,
            "no_public_run",
            "No public run to show yet.",
        ),
        (
            &storage_down,
            503,
            "storage_unavailable",
            "cannot be loaded right now",
        ),
    ] {
        // The JSON answer keeps its status and body.
        let body = poll_until(app, "/api/GetLatestRun", |s, _| s == status).await;
        assert_eq!(body["error"], code);
        for query in [
            "",
            "&theme=light",
            "&theme=dark",
            "&theme=auto&units=imperial",
        ] {
            let path = format!("/api/GetLatestRun?format=svg{query}");
            let response = app.get(&path).await;
            assert_eq!(response.status(), 200, "{path}: {code}");
            assert_eq!(header(&response, "content-type"), "image/svg+xml");
            assert_eq!(header(&response, "x-widget-error"), code, "{path}");
            assert_eq!(header(&response, "cache-control"), "public, max-age=60");
            assert!(header(&response, "content-security-policy").starts_with("default-src 'none'"));
            assert_eq!(header(&response, "access-control-allow-origin"), "*");
            let svg = response.text().await.expect("body");
            assert!(
                svg.starts_with(
                    r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="200""#
                ),
                "{svg}"
            );
            let texts = xml_texts(&svg);
            assert!(texts.iter().any(|t| t.contains(words)), "{code}: {texts:?}");
            match query {
                "&theme=dark" => {
                    assert!(svg.contains(".bg{fill:#17191e") && !svg.contains("#fff;"))
                }
                "&theme=light" => {
                    assert!(svg.contains(".bg{fill:#fff") && !svg.contains("#17191e"))
                }
                _ => assert!(svg.contains("prefers-color-scheme:dark")),
            }
        }
    }
    // A bad parameter is still a JSON 400, for the card as for the JSON.
    let bad = unconfigured
        .get("/api/GetLatestRun?format=svg&theme=pink")
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_route_sketch_comes_only_with_the_setting_trimmed_and_without_coordinates() {
    let strava = FakeStrava::start().await;
    let off = sample_app(&strava).await;
    let on = connected_app(
        &strava,
        TestSettings::new(&strava.base_url()).with("WIDGET_ROUTE_SHAPE", "true"),
    )
    .await;

    let plain = json(
        &off.get("/api/GetLatestRun")
            .await
            .bytes()
            .await
            .expect("body"),
    );
    assert_eq!(plain["id"], SAMPLE_RUN_ID);
    assert!(
        plain.get("route_shape").is_none(),
        "off by default: {plain}"
    );

    let response = on.get("/api/GetLatestRun").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    let run: Value = serde_json::from_str(&body).expect("json");
    let path = run["route_shape"].as_str().expect("a sketch");
    assert!(path.starts_with('M'), "{path}");
    let numbers: Vec<f64> = path
        .split([' ', 'M', 'L'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    assert!(numbers.len() >= 4, "{path}");
    assert!(numbers.iter().all(|n| (0.0..=100.0).contains(n)), "{path}");
    // Nothing of the place: not the polyline, not a coordinate of the sample.
    let activity = &sample("athlete-activities.json")[2];
    let polyline = activity["map"]["summary_polyline"]
        .as_str()
        .expect("polyline");
    assert!(!body.contains(&polyline[..12]), "the polyline leaked");
    for key in ["start_latlng", "end_latlng"] {
        for coordinate in activity[key].as_array().expect("latlng") {
            let text = format!("{:.2}", coordinate.as_f64().expect("number"));
            assert!(!body.contains(&text), "{text} in {body}");
        }
    }
    for forbidden in ["latlng", "polyline", "\"map\""] {
        assert!(!body.contains(forbidden), "{forbidden} in {body}");
    }
    let card = on.get("/api/GetLatestRun?format=svg").await;
    let card = card.text().await.expect("body");
    assert!(card.contains(&format!(r#"d="{path}""#)), "{card}");
    xml_texts(&card);

    // Switching the setting takes effect at once: a new instance on the same table does not
    // adopt an answer made under the other value (the sketch is neither kept nor withheld).
    let off_again = TestApp::spawn(off.settings.clone()).await;
    let switched_off =
        TestApp::spawn(on.settings.clone().with("WIDGET_ROUTE_SHAPE", "false")).await;
    let switched_on = TestApp::spawn(off.settings.clone().with("WIDGET_ROUTE_SHAPE", "true")).await;
    let adopted = json(
        &off_again
            .get("/api/GetLatestRun")
            .await
            .bytes()
            .await
            .expect("body"),
    );
    assert!(adopted.get("route_shape").is_none());
    let off_body = json(
        &switched_off
            .get("/api/GetLatestRun")
            .await
            .bytes()
            .await
            .expect("body"),
    );
    assert_eq!(off_body["id"], SAMPLE_RUN_ID);
    assert!(off_body.get("route_shape").is_none(), "{off_body}");
    let on_body = json(
        &switched_on
            .get("/api/GetLatestRun")
            .await
            .bytes()
            .await
            .expect("body"),
    );
    assert!(on_body["route_shape"].is_string(), "{on_body}");

    // A run without a polyline (hidden map, treadmill): null, and no path in the card.
    let treadmill = FakeStrava::start().await;
    let mut activities = sample("athlete-activities.json");
    activities[2]["map"] = json!({"id": "a16128930471", "summary_polyline": ""});
    treadmill.set_activities(activities.as_array().expect("array").clone());
    let app = connected_app(
        &treadmill,
        TestSettings::new(&treadmill.base_url()).with("WIDGET_ROUTE_SHAPE", "true"),
    )
    .await;
    let run = json(
        &app.get("/api/GetLatestRun")
            .await
            .bytes()
            .await
            .expect("body"),
    );
    assert_eq!(run["id"], SAMPLE_RUN_ID);
    assert_eq!(run.get("route_shape"), Some(&Value::Null));
    let card = app.get("/api/GetLatestRun?format=svg").await;
    assert!(!card.text().await.expect("body").contains("<path"));
}

/// Parses `svg` as XML (panicking on malformed XML) and returns its text nodes, unescaped.
fn xml_texts(svg: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(svg);
    let mut texts = Vec::new();
    let mut depth = 0_i32;
    let mut roots = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => {
                if depth == 0 {
                    roots += 1;
                    assert_eq!(start.name().as_ref(), b"svg");
                }
                for attribute in start.attributes() {
                    let attribute = attribute.expect("well-formed attribute");
                    attribute.unescape_value().expect("attribute escapes");
                }
                depth += 1;
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Empty(element)) => {
                for attribute in element.attributes() {
                    attribute.expect("well-formed attribute");
                }
            }
            Ok(Event::Text(text)) => texts.push(text.unescape().expect("escapes").into_owned()),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(err) => panic!("not XML at {}: {err}\n{svg}", reader.buffer_position()),
        }
    }
    assert_eq!((depth, roots), (0, 1), "one closed root element");
    texts
}

// --- the browser ---------------------------------------------------------------------------

/// A blog on another origin: serves the given pages as HTML.
struct Blog {
    address: String,
    _shutdown: oneshot::Sender<()>,
}

impl Blog {
    async fn serve(pages: HashMap<String, String>) -> Blog {
        let pages = Arc::new(pages);
        let route = warp::path::param::<String>().map(move |name: String| {
            match pages.get(&name) {
                Some(page) => warp::http::Response::builder()
                    .header("Content-Type", "text/html; charset=utf-8")
                    .body(page.clone()),
                None => warp::http::Response::builder()
                    .status(404)
                    .body(String::new()),
            }
            .unwrap_or_default()
        });
        Blog::serve_filter(route.map(warp::Reply::into_response).boxed()).await
    }

    /// Serves `route` on a loopback port of its own (its own origin).
    async fn serve_filter(route: warp::filters::BoxedFilter<(warp::reply::Response,)>) -> Blog {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the blog");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(route)
                .incoming(listener)
                .graceful(async {
                    let _ = rx.await;
                })
                .run(),
        );
        Blog {
            address,
            _shutdown: tx,
        }
    }
}

/// The page style README suggests to blogs that want no shift even before the script arrives.
const RESERVE_SPACE: &str = "latest-run:not(:defined) { display: block; height: 15rem; }";

/// A blog post embedding the widget with exactly the two lines of the README snippet (plus
/// attributes), with text before and after it (so a layout shift would move something), and `style` added to
/// the page's own style.
fn blog_post_styled(script: &str, widgets: &[(String, &str)], style: &str) -> String {
    let mut embeds = format!("<script type=\"module\" src=\"{script}\"></script>\n");
    if widgets.len() > 1 {
        embeds.push_str("<div class=\"pair\">\n");
    }
    for (src, attributes) in widgets {
        embeds.push_str(&format!(
            "<latest-run src=\"{src}\"{attributes}></latest-run>\n"
        ));
    }
    if widgets.len() > 1 {
        embeds.push_str("</div>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>A runner's blog</title>
<style>
body {{ margin: 0; font: 16px/1.5 system-ui, sans-serif; background: #fff; color: #1b1c20; }}
main {{ max-width: 30rem; padding: 24px; }}
main.wide {{ max-width: none; }}
.pair {{ display: flex; gap: 24px; }} .pair latest-run {{ flex: 1; }}
@media (prefers-color-scheme: dark) {{ body {{ background: #0d0e11; color: #eceef2; }} }}
{style}
</style></head>
<body><main class="{class}"><h1>Last weekend</h1><p>Here is what I ran lately.</p>
{embeds}<p>Thanks for reading.</p></main></body>
</html>
"#,
        class = if widgets.len() > 1 { "wide" } else { "" },
    )
}

/// Waits until `path` answers a JSON body for which `done` holds.
async fn poll_until(app: &TestApp, path: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.get(path).await;
        let status = response.status().as_u16();
        let body = json(&response.bytes().await.expect("body"));
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn chromium_path() -> PathBuf {
    let path = std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "no Chromium at {}: scripts/test installs Debian's chromium (or set CHROMIUM_PATH)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_in_headless_chromium_on_a_page_of_another_origin() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/browser/widget.e2e.mjs");
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` (scripts/test does)"
    );
    let chromium = chromium_path();

    // One app per situation, each on its own fake Strava and table.
    let photo_strava = FakeStrava::start().await;
    let photo = sample_app(&photo_strava).await;

    let plain_strava = FakeStrava::start().await;
    let mut detail = sample("activity-detail-run.json");
    detail["photos"] = json!({"primary": null, "count": 0});
    detail["total_photo_count"] = json!(0);
    plain_strava.set_activity_detail(SAMPLE_RUN_ID, detail);
    plain_strava.set_photos(SAMPLE_RUN_ID, Vec::new());
    // This one draws the route sketch too.
    let plain = connected_app(
        &plain_strava,
        TestSettings::new(&plain_strava.base_url()).with("WIDGET_ROUTE_SHAPE", "true"),
    )
    .await;

    let hostile_strava = FakeStrava::start().await;
    rename_latest_run(&hostile_strava, HOSTILE_NAME);
    let hostile = sample_app(&hostile_strava).await;

    let stale_strava = FakeStrava::start().await;
    let stale = connected_app(
        &stale_strava,
        TestSettings::new(&stale_strava.base_url()).with("WIDGET_CACHE_SECONDS", "1"),
    )
    .await;
    poll_until(&stale, "/api/GetLatestRun", |s, b| {
        s == 200 && b["stale"] == false
    })
    .await;
    stale_strava.set_fault(Scope::Api, Some(Fault::Status(500)));
    poll_until(&stale, "/api/GetLatestRun", |s, b| {
        s == 200 && b["stale"] == true
    })
    .await;

    let failing_strava = FakeStrava::start().await;
    failing_strava.set_fault(Scope::Api, Some(Fault::Status(500)));
    let failing = sample_app(&failing_strava).await;
    let unconfigured_strava = FakeStrava::start().await;
    let unconfigured = TestApp::spawn(TestSettings::new(&unconfigured_strava.base_url())).await;
    let (_private_strava, no_public) = no_public_run_app().await;
    let storage_down = storage_down_app(&unconfigured_strava).await;
    // Long names in four scripts, beside the route sketch.
    let mut name_apps = Vec::new();
    for (script, name) in LONG_NAMES {
        let strava = FakeStrava::start().await;
        rename_latest_run(&strava, name);
        let app = connected_app(
            &strava,
            TestSettings::new(&strava.base_url()).with("WIDGET_ROUTE_SHAPE", "true"),
        )
        .await;
        poll_until(&app, "/api/GetLatestRun", |s, b| {
            s == 200 && b["name"] == name
        })
        .await;
        name_apps.push((script, strava, app));
    }
    // Where nothing listens: the network error.
    let nowhere = format!(
        "http://127.0.0.1:{}/api/GetLatestRun",
        support::azurite::free_port()
    );

    // The apps answer as the browser will see them (so a failure here is not blamed on it).
    poll_until(&failing, "/api/GetLatestRun", |s, _| s == 502).await;
    poll_until(&unconfigured, "/api/GetLatestRun", |s, _| s == 503).await;
    poll_until(&no_public, "/api/GetLatestRun", |s, _| s == 404).await;
    poll_until(&storage_down, "/api/GetLatestRun", |s, _| s == 503).await;

    let api = |app: &TestApp| format!("{}/api/GetLatestRun", app.address);
    let script = format!("{}/api/widget/latest-run.js", photo.address);
    let mut pages = HashMap::new();
    let mut styled = |name: &str, widgets: &[(String, &str)], style: &str| {
        pages.insert(
            format!("{name}.html"),
            blog_post_styled(&script, widgets, style),
        );
    };
    styled("photo", &[(api(&photo), "")], "");
    styled("photo-light", &[(api(&photo), r#" theme="light""#)], "");
    styled("plain", &[(api(&plain), "")], "");
    styled("reserved", &[(api(&photo), "")], RESERVE_SPACE);
    styled(
        "reserved-plain",
        &[(api(&plain), r#" goal="50""#)],
        RESERVE_SPACE,
    );
    styled("hostile", &[(api(&hostile), "")], "");
    styled("stale", &[(api(&stale), "")], "");
    styled("e502", &[(api(&failing), "")], "");
    styled("e503", &[(api(&unconfigured), "")], "");
    styled("empty", &[(api(&no_public), "")], "");
    styled("network", &[(nowhere, "")], "");
    styled(
        "showcase",
        &[
            (api(&photo), r#" theme="light""#),
            (api(&plain), r#" theme="dark" goal="50""#),
        ],
        "",
    );
    pages.insert(
        "svg.html".into(),
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>SVG card</title></head><body><main><h1>Card</h1><img id="card" crossorigin="anonymous" alt="Latest run" src="{}/api/GetLatestRun?format=svg"></main></body></html>"#,
            photo.address
        ),
    );
    let blog = Blog::serve(pages).await;

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("widget-screenshots");
    std::fs::create_dir_all(&screenshots).expect("screenshot dir");
    let config = json!({
        "blog": blog.address,
        "apps": {
            "photo": photo.address,
            "hostile": hostile.address,
        },
        "names": name_apps
            .iter()
            .map(|(script, _, app)| (script.to_string(), json!(app.address)))
            .collect::<serde_json::Map<_, _>>(),
        "nameTexts": LONG_NAMES
            .iter()
            .map(|(script, name)| (script.to_string(), json!(name)))
            .collect::<serde_json::Map<_, _>>(),
        "errors": {
            "not_configured": unconfigured.address,
            "strava_unavailable": failing.address,
            "no_public_run": no_public.address,
            "storage_unavailable": storage_down.address,
        },
        "errorWords": {
            "not_configured": "Strava is not connected yet.",
            "strava_unavailable": "Strava cannot be reached right now.",
            "no_public_run": "No public run to show yet.",
            "storage_unavailable": "The latest run cannot be loaded right now.",
        },
        "hostileName": HOSTILE_NAME,
        "chromium": chromium,
        "axe": root.join("node_modules/axe-core/axe.min.js"),
        "screenshots": screenshots,
    });

    run_browser_test(root, &e2e, &config, "widget e2e: all").await;
    for shot in [
        "light",
        "dark",
        "no-photo",
        "error",
        "svg-light",
        "svg-dark",
        "svg-error",
        "failed-photo",
    ] {
        let file = screenshots.join(format!("{shot}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 1000,
            "screenshot {} missing or empty",
            file.display()
        );
    }
}

// --- the running year --------------------------------------------------------------------------

/// The athlete's "today" in the running-year test (a Saturday), also the browser's date there.
const YEAR_TODAY: &str = "2026-06-06";
/// The app's clock in that test: 10:00 UTC that day.
const YEAR_NOW: i64 = 1_780_740_000; // 2026-06-06T10:00:00Z

const HOSTILE_YEAR_NAME: &str = r#"Long run <img src=x onerror="window.__xss=1"> & hills"#;

/// The fixture year's runs: id, local day, metres, name. 2026 up to Saturday 6 June: a
/// three-day streak on New Year, a gap, a 32 km long run with a hostile name in March, a gap,
/// and a six-day streak up to today with two runs on 3 June: 11 runs, 100 km.
const YEAR_RUNS: [(i64, &str, f64, &str); 11] = [
    (1, "2026-01-01", 5_000.0, "New year"),
    (2, "2026-01-02", 6_000.0, "Easy"),
    (3, "2026-01-03", 7_000.0, "Easy"),
    (4, "2026-03-15", 32_000.0, HOSTILE_YEAR_NAME),
    (5, "2026-06-01", 8_000.0, "Streak"),
    (6, "2026-06-02", 8_000.0, "Streak"),
    (7, "2026-06-03", 5_000.0, "Morning"),
    (8, "2026-06-03", 3_000.0, "Evening"),
    (9, "2026-06-04", 8_000.0, "Streak"),
    (10, "2026-06-05", 8_000.0, "Streak"),
    (11, "2026-06-06", 10_000.0, "Today"),
];

/// 07:30 on the athlete's local `day`, as Unix seconds.
fn morning_of(day: &str) -> i64 {
    let local = format!("{day}T07:30:00Z");
    time::OffsetDateTime::parse(&local, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp() - support::activities::UTC_OFFSET)
        .expect("a fixture date")
}

/// The year the fixture's runs make, by the view model itself: what the app must answer.
fn expected_running_year() -> strava_latest_run::view::year::RunningYearView {
    let runs: Vec<_> = YEAR_RUNS
        .iter()
        .map(
            |&(id, day, distance, name)| strava_latest_run::store::IndexedRun {
                id: 30_000_000_000 + id,
                name: name.into(),
                sport_type: "Run".into(),
                start: morning_of(day),
                start_date_local: Some(format!("{day}T07:30:00Z")),
                timezone: None,
                distance,
                moving_time: 0,
                elapsed_time: 0,
                total_elevation_gain: None,
                average_speed: None,
                kudos_count: None,
                photo_count: 0,
                photo_url: None,
                photo_checked: true,
                route_shape: None,
                hidden: false,
                word: 0,
            },
        )
        .collect();
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let today = time::Date::parse(YEAR_TODAY, &format).expect("today");
    strava_latest_run::view::year::build_running_year(
        &runs,
        2026,
        today,
        time::OffsetDateTime::UNIX_EPOCH,
    )
}

/// A blog post embedding `<running-year>` with the two lines (plus attributes), text before and
/// after it, and the year's SVG card as an image.
fn year_post(script: &str, src: &str, attributes: &str, card: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>My running year</title><link rel="icon" href="data:,">
<style>
body {{ margin: 0; font: 16px/1.5 system-ui, sans-serif; background: #fff; color: #1b1c20; }}
main {{ max-width: 38rem; padding: 24px; }}
@media (prefers-color-scheme: dark) {{ body {{ background: #0d0e11; color: #eceef2; }} }}
</style></head>
<body><main><h1>My year so far</h1><p>Every run of the year.</p>
<script type="module" src="{script}"></script>
<running-year src="{src}"{attributes}></running-year>
<p>Thanks for reading.</p>
<img id="card" alt="The running year as an image" width="480" height="200" src="{card}">
</main></body>
</html>
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_year_in_headless_chromium_on_a_page_of_another_origin() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` (scripts/test does)"
    );
    let chromium = chromium_path();
    // The app on 6 June 2026, its fake Strava holding the fixture's runs and one made private.
    let strava = FakeStrava::start().await;
    let mut list: Vec<Value> = YEAR_RUNS
        .iter()
        .map(|&(id, day, distance, name)| {
            support::activities::run(30_000_000_000 + id, name, morning_of(day), distance)
        })
        .collect();
    list.push(support::activities::only_me(support::activities::run(
        30_000_000_099,
        "Made private",
        morning_of("2026-05-20"),
        50_000.0,
    )));
    list.reverse(); // Strava lists the newest first.
    strava.set_activities(list);
    let clock = strava_latest_run::clock::Clock::skewed(YEAR_NOW - support::now());
    let app = TestApp::spawn_with_clock(TestSettings::new(&strava.base_url()), clock).await;
    app.store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange credentials");
    let answer = poll_until(&app, "/api/GetRunningYear", |s, b| {
        s == 200 && b["totals"]["count"] == 11
    })
    .await;
    // The app's answer is the view model's year of the same runs.
    let year: strava_latest_run::view::year::RunningYearView =
        serde_json::from_value(answer).expect("a RunningYearView");
    let expected = expected_running_year();
    assert_eq!(
        (
            year.year,
            year.totals.count,
            year.totals.distance,
            &year.days,
            &year.weeks,
            &year.streak,
            year.longest_run.as_ref().map(|r| (r.id, r.name.as_str())),
        ),
        (
            2026,
            11,
            100_000.0,
            &expected.days,
            &expected.weeks,
            &expected.streak,
            Some((30_000_000_004, HOSTILE_YEAR_NAME)),
        )
    );
    assert_eq!(year.streak.current_days, 6);
    // An app that is not connected: the JSON error the widget turns into a sentence.
    let unconfigured = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    poll_until(&unconfigured, "/api/GetRunningYear", |s, _| s == 503).await;

    let script = format!("{}/api/widget/running-year.js", app.address);
    let src = format!("{}/api/GetRunningYear", app.address);
    let card = format!("{src}?format=svg&theme=auto");
    let mut pages = HashMap::new();
    pages.insert("year.html".to_owned(), year_post(&script, &src, "", &card));
    pages.insert(
        "year-goal.html".to_owned(),
        year_post(
            &script,
            &src,
            r#" goal="500""#,
            &format!("{}/api/GetRunningYear?format=svg", app.address),
        ),
    );
    pages.insert(
        "year-down.html".to_owned(),
        year_post(
            &script,
            &format!("{}/api/GetRunningYear", unconfigured.address),
            "",
            &card,
        ),
    );
    let blog = Blog::serve(pages).await;

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("widget-screenshots");
    std::fs::create_dir_all(&screenshots).expect("screenshot dir");
    let config = json!({
        "blog": blog.address,
        "app": app.address,
        "card": app.address,
        "script": script,
        "today": YEAR_TODAY,
        "hostileName": HOSTILE_YEAR_NAME,
        "gzipLimit": 8 * 1024,
        "chromium": chromium,
        "axe": root.join("node_modules/axe-core/axe.min.js"),
        "screenshots": screenshots,
    });
    run_browser_test(
        root,
        &root.join("tests/browser/running-year.e2e.mjs"),
        &config,
        "running-year e2e: all",
    )
    .await;
    for shot in [
        "running-year.png",
        "running-year-dark.png",
        "running-year-card.png",
    ] {
        let size = std::fs::metadata(screenshots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 1000, "screenshot {shot} missing or empty");
    }
}

/// Runs one browser script with Node (`script CONFIG_JSON`) and fails the test, showing its
/// output, unless it exits 0 with its closing line (`done`) and no `FAIL` line.
async fn run_browser_test(root: &Path, script: &Path, config: &Value, done: &str) {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("node")
            .arg(script)
            .arg(config.to_string())
            .current_dir(root)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finishes within 5 minutes")
    .expect("node runs (Node.js is required)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(output.status.success(), "the browser test failed:\n{text}");
    assert!(text.contains(done) && !text.contains("FAIL"), "{text}");
}
