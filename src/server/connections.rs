//! Accepts TCP connections and serves each with hyper's HTTP/1.1 under [`ServerLimits`], so that
//! (standalone, where anyone can connect) a client that sends its request head slowly, or
//! nothing at all, or sits idle on a kept-alive connection, is disconnected instead of held
//! forever; stops accepting on shutdown and lets in-flight requests finish.
//!
//! warp's own server builds hyper without a timer, and without a timer hyper's header-read
//! timeout never fires; this loop is warp's (same accept-error handling), with the timer and the
//! limits added.

use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::http::Response;
use warp::Filter;

/// What a connection may do before its request reaches the routes. Beyond these, hyper answers
/// by itself: `431` for a head that is too large or has too many header lines, and a silent
/// close when the head does not arrive in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a connection may take to send a whole request head: from the connection's start,
    /// and again on a kept-alive connection from the end of the previous answer (so it is also
    /// the idle timeout); none, no limit. [`ServerLimits::for_mode`] picks it; a test may set a
    /// shorter one.
    pub header_read_timeout: Option<Duration>,
}

impl ServerLimits {
    /// The header-read timeout standalone, where anyone can connect: 10 s. Browsers and proxies
    /// send a head of a few hundred bytes in one packet, at once; 10 s still lets a slow mobile
    /// link lose the packet three times (TCP retries after 1, 2 and 4 s). hyper's own default is
    /// 30 s. As it is also the idle timeout, a reverse proxy in front should keep its idle
    /// upstream connections for less (docs/deploy.md, "Behind a reverse proxy").
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

    /// The largest request head (request line and header lines), in bytes: 64 KiB, above what
    /// the Functions host's Kestrel accepts by default (32 KiB of headers plus an 8 KiB request
    /// line), so whatever the host forwards fits. The widget's requests have heads under 2 KiB.
    /// A longer head, a long URI included, gets a `431`.
    pub const MAX_HEAD_BYTES: usize = 64 * 1024;

    /// hyper's read buffer per connection, in bytes: twice [`ServerLimits::MAX_HEAD_BYTES`], so
    /// that a head just over the cap is still read whole and refused with a `431` the client can
    /// read (a head that never ends is stopped by the head cap first). Bodies stream through it
    /// in pieces (they have their own cap, [`super::MAX_BODY_BYTES`]).
    pub const MAX_BUFFER_BYTES: usize = 2 * Self::MAX_HEAD_BYTES;

    /// The most header lines in one request: 100. Not configured here: it is hyper's built-in
    /// cap, kept because setting any cap makes hyper allocate its header table on the heap for
    /// every request (about 5% slower, says its documentation). `tests/api/edges.rs` checks it. The
    /// host sends about 15.
    pub const MAX_HEADERS: usize = 100;

    /// How long a shutdown waits for open connections (an answer still being written to a client
    /// that stopped reading, a head still arriving) before it leaves them: the held tokens must
    /// still be saved before the platform's own deadline (Functions and systemd allow 30 s).
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

    /// The limits for a server in `mode`. Behind a Functions host there is no header-read
    /// timeout. The host is the only peer, on loopback (nobody else reaches the handler's port,
    /// so a slow head is no threat there); it keeps idle connections in its pool for a minute or
    /// two (.NET's default) and closes them itself, and closing one first would race its reuse
    /// and fail that invocation. A timeout would also cost every request a timer set and
    /// cancelled (a twelfth of a warm answer's instructions, measured with `scripts/bench`).
    pub fn for_mode(mode: super::Mode) -> Self {
        ServerLimits {
            header_read_timeout: match mode {
                super::Mode::Host => None,
                super::Mode::Standalone => Some(Self::HEADER_READ_TIMEOUT),
            },
        }
    }
}

/// Serves `filter` on every connection `listener` accepts until `shutdown` completes, then stops
/// accepting and waits for the open connections: requests in flight finish, idle connections are
/// closed, and one still sending its head is closed by its header-read timeout, if any; after
/// [`ServerLimits::SHUTDOWN_GRACE`] the rest are left to the process's exit.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(limits.header_read_timeout)
        .max_header_size(ServerLimits::MAX_HEAD_BYTES)
        .max_buf_size(ServerLimits::MAX_BUFFER_BYTES);
    if limits.header_read_timeout.is_some() {
        // The timer only the timeout needs (hyper panics on a timeout without one).
        http.timer(TokioTimer::new());
    }
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let routes = warp::service(filter.clone());
        // The routes' future handed to hyper as it is made: tower's adapter would first build
        // it inside a `Oneshot` and move it, several KiB, a few times per request. No
        // `poll_ready` first: warp's service is always ready (hyper 1 has no readiness either).
        let service = hyper::service::service_fn(move |request| routes.clone().call(request));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Timeouts, refused heads and hang-ups are the client's doing, and routine: not errors.
            if let Err(err) = connection.await {
                tracing::debug!("connection closed: {err}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(ServerLimits::SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after shutdown began; leaving them",
            ServerLimits::SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// What warp does when `accept` fails: a connection that went away before it was accepted is
/// ignored; anything else (such as running out of file descriptors) is logged, and accepting
/// pauses for a second so that connections can close meanwhile.
async fn accept_error(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {err}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Mode;

    #[test]
    fn behind_a_host_idle_connections_are_the_hosts_to_close_and_standalone_slow_heads_are_not() {
        // .NET keeps idle pooled connections for 1 minute (2 in older versions) and closes them
        // itself: the handler must not close one the host may be about to reuse.
        assert_eq!(ServerLimits::for_mode(Mode::Host).header_read_timeout, None);
        let standalone = ServerLimits::for_mode(Mode::Standalone).header_read_timeout;
        assert!(
            standalone.is_some_and(|t| t <= Duration::from_secs(30)),
            "{standalone:?}"
        );
        assert!(ServerLimits::SHUTDOWN_GRACE < Duration::from_secs(30));
    }
}
