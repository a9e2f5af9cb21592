//! An HTTP proxy in front of the real Azurite that can answer chosen entity writes with a
//! failure instead of passing them on: a 412 (as if another instance had written first), a
//! 503 (storage failing), or no answer at all until the test lets go (a write stuck in flight,
//! so the writer can be killed mid-save). Reads and every other write go through to Azurite
//! unchanged, so the table always holds what Azurite holds. Used to put a fault at one exact
//! step of a protocol.

use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::Filter;

/// What happens to one entity write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFate {
    /// Passed on to Azurite.
    Pass,
    /// Answered `412 UpdateConditionNotSatisfied` without reaching Azurite.
    PreconditionFailed,
    /// Answered `503 ServerBusy` without reaching Azurite.
    Unavailable,
    /// Not answered until [`StorageProxy::release_held`] (or the proxy is dropped), then
    /// answered `503 ServerBusy`; it never reaches Azurite. The writer sees a save that hangs.
    Hold,
}

#[derive(Default)]
struct Rules {
    /// Fates of the next entity writes, in order; writes beyond the list get `later`.
    next_writes: VecDeque<WriteFate>,
    /// The fate of writes beyond `next_writes` (`None`: they pass).
    later: Option<WriteFate>,
    /// Entity writes seen so far (passed or not).
    writes: u32,
    /// Writes held so far.
    held: u32,
    /// Added before every request (reads too) is passed on: a slow storage.
    latency: std::time::Duration,
    /// Requests Azurite itself took [`SLOW_UPSTREAM`] or more to answer: when and until when.
    slow: Vec<(std::time::Instant, std::time::Instant)>,
    /// Writes of one entity (by row key) with fates of their own, ahead of `next_writes`.
    of_entity: Vec<EntityRule>,
}

/// A fate for the writes of one entity whose body `matches`.
struct EntityRule {
    row_key: String,
    matches: Box<dyn Fn(&str) -> bool + Send>,
    fate: WriteFate,
    /// Writes given `fate` so far.
    met: u32,
}

/// An answer from Azurite this late is noted (the machine is busy, or Azurite is).
const SLOW_UPSTREAM: std::time::Duration = std::time::Duration::from_millis(500);

/// The proxy. Dropping it stops it.
pub struct StorageProxy {
    port: u16,
    rules: Arc<Mutex<Rules>>,
    /// Set once: every held write, and every later one, is answered.
    release: Arc<watch::Sender<bool>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl StorageProxy {
    /// Starts a proxy to Azurite's table endpoint on `azurite_port`.
    pub async fn start(azurite_port: u16) -> StorageProxy {
        let rules = Arc::new(Mutex::new(Rules::default()));
        let (release, _) = watch::channel(false);
        let release = Arc::new(release);
        let release_for_routes = Arc::clone(&release);
        let client = reqwest::Client::new();
        let target = format!("http://127.0.0.1:{azurite_port}");
        let rules_for_routes = Arc::clone(&rules);
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: HeaderMap,
                      body: Bytes| {
                    let rules = Arc::clone(&rules_for_routes);
                    let mut released = release_for_routes.subscribe();
                    let client = client.clone();
                    let target = target.clone();
                    async move {
                        let latency = rules.lock().map(|r| r.latency).unwrap_or_default();
                        tokio::time::sleep(latency).await;
                        let fate = fate_of(&rules, &method, path.as_str(), &body);
                        match fate {
                            WriteFate::Pass => {}
                            WriteFate::Hold => {
                                let _ = released.wait_for(|released| *released).await;
                                return error_reply(StatusCode::SERVICE_UNAVAILABLE, "ServerBusy");
                            }
                            WriteFate::PreconditionFailed => {
                                return error_reply(
                                    StatusCode::PRECONDITION_FAILED,
                                    "UpdateConditionNotSatisfied",
                                )
                            }
                            WriteFate::Unavailable => {
                                return error_reply(StatusCode::SERVICE_UNAVAILABLE, "ServerBusy")
                            }
                        }
                        let mut url = format!("{target}{}", path.as_str());
                        if !query.is_empty() {
                            url.push('?');
                            url.push_str(&query);
                        }
                        let mut request = client.request(method, url).body(body);
                        for (name, value) in headers.iter() {
                            if name != warp::http::header::HOST {
                                request = request.header(name, value);
                            }
                        }
                        let sent = std::time::Instant::now();
                        let answer = request.send().await;
                        if sent.elapsed() >= SLOW_UPSTREAM {
                            if let Ok(mut rules) = rules.lock() {
                                rules.slow.push((sent, std::time::Instant::now()));
                            }
                        }
                        match answer {
                            Ok(upstream) => {
                                let status = upstream.status();
                                let headers = upstream.headers().clone();
                                let body = upstream.bytes().await.unwrap_or_default();
                                let mut response = Response::new(body);
                                *response.status_mut() = status;
                                for (name, value) in headers.iter() {
                                    if name != warp::http::header::TRANSFER_ENCODING
                                        && name != warp::http::header::CONTENT_LENGTH
                                    {
                                        response.headers_mut().append(name, value.clone());
                                    }
                                }
                                response
                            }
                            Err(_) => error_reply(StatusCode::BAD_GATEWAY, "ProxyError"),
                        }
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async {
                    let _ = rx.await;
                })
                .run(),
        );
        StorageProxy {
            port,
            rules,
            release,
            shutdown: Some(tx),
        }
    }

    /// Every request (read or write) waits `latency` before it is passed on.
    pub fn set_latency(&self, latency: std::time::Duration) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.latency = latency;
        }
    }

    /// The requests Azurite itself (not the latency set here) took half a second or more to
    /// answer: when each was passed on, and when its answer came.
    pub fn slow_requests(&self) -> Vec<(std::time::Instant, std::time::Instant)> {
        self.rules
            .lock()
            .map(|r| r.slow.clone())
            .unwrap_or_default()
    }

    /// The proxy's port (point a connection string's TableEndpoint here).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Decides the fates of the next entity writes, in order (later ones pass).
    pub fn next_writes(&self, fates: &[WriteFate]) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.next_writes = fates.iter().copied().collect();
        }
    }

    /// The fate of every entity write after those given to [`StorageProxy::next_writes`].
    pub fn later_writes(&self, fate: WriteFate) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.later = Some(fate);
        }
    }

    /// Gives `fate` to every write of the entity with row key `row_key` (in any partition)
    /// whose body `matches` (one rule per entity; it replaces an earlier one). Such writes are
    /// counted by [`StorageProxy::writes`] but take nothing from [`StorageProxy::next_writes`].
    pub fn writes_of(
        &self,
        row_key: &str,
        matches: impl Fn(&str) -> bool + Send + 'static,
        fate: WriteFate,
    ) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.of_entity.retain(|rule| rule.row_key != row_key);
            rules.of_entity.push(EntityRule {
                row_key: row_key.to_owned(),
                matches: Box::new(matches),
                fate,
                met: 0,
            });
        }
    }

    /// The writes given the fate of `row_key`'s rule so far.
    pub fn met_writes_of(&self, row_key: &str) -> u32 {
        self.rules
            .lock()
            .ok()
            .and_then(|rules| {
                rules
                    .of_entity
                    .iter()
                    .find(|rule| rule.row_key == row_key)
                    .map(|rule| rule.met)
            })
            .unwrap_or(0)
    }

    /// Every write of `row_key`'s entity passes again.
    pub fn pass_writes_of(&self, row_key: &str) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.of_entity.retain(|rule| rule.row_key != row_key);
        }
    }

    /// Entity writes seen so far.
    pub fn writes(&self) -> u32 {
        self.rules.lock().map(|r| r.writes).unwrap_or(0)
    }

    /// Entity writes held so far (answered or not).
    pub fn held(&self) -> u32 {
        self.rules.lock().map(|r| r.held).unwrap_or(0)
    }

    /// Answers every held write (and any held later) with a 503.
    pub fn release_held(&self) {
        self.release.send_replace(true);
    }
}

impl Drop for StorageProxy {
    fn drop(&mut self) {
        self.release_held();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Entity writes are PUT/MERGE/PATCH/DELETE on an entity address, and POST inserts into a
/// table; creating tables (`POST /account/Tables`) is not one.
fn fate_of(rules: &Mutex<Rules>, method: &Method, path: &str, body: &[u8]) -> WriteFate {
    let is_write = matches!(method.as_str(), "PUT" | "MERGE" | "PATCH" | "DELETE")
        || (method == Method::POST && !path.ends_with("/Tables"));
    if !is_write {
        return WriteFate::Pass;
    }
    let Ok(mut rules) = rules.lock() else {
        return WriteFate::Pass;
    };
    rules.writes += 1;
    // An entity's address ends `(PartitionKey='…',RowKey='…')`, its quotes maybe escaped.
    let address = path.replace("%27", "'");
    let body = String::from_utf8_lossy(body);
    if let Some(rule) = rules.of_entity.iter_mut().find(|rule| {
        address.contains(&format!("RowKey='{}')", rule.row_key)) && (rule.matches)(&body)
    }) {
        rule.met += 1;
        let fate = rule.fate;
        if fate == WriteFate::Hold {
            rules.held += 1;
        }
        return fate;
    }
    let fate = match rules.next_writes.pop_front() {
        Some(fate) => fate,
        None => rules.later.unwrap_or(WriteFate::Pass),
    };
    if fate == WriteFate::Hold {
        rules.held += 1;
    }
    fate
}

fn error_reply(status: StatusCode, code: &str) -> Response<Bytes> {
    let body = serde_json::json!({
        "odata.error": {"code": code, "message": {"lang": "en-US", "value": code}}
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json;odata=minimalmetadata"),
    );
    response
}
