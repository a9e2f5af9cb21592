//! A plain TCP proxy that counts the connections it is asked to open, and can make a loopback
//! service look like one across a network. In front of Azurite it shows whether a client
//! reuses connections (few connections for many requests) or opens one per request. With a
//! latency, every new connection waits that long before it reaches the target (the TCP
//! handshake's round trip) and every chunk a client sends waits that long before it is passed
//! on (a request's round trip); answers pass back at once. `scripts/bench` runs it as
//! `examples/latency_proxy.rs`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy. Dropping it stops accepting (open connections finish on their own).
pub struct CountingTcpProxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
}

impl CountingTcpProxy {
    /// Starts a proxy on a free loopback port to `127.0.0.1:target_port`, adding no latency.
    pub async fn start(target_port: u16) -> CountingTcpProxy {
        CountingTcpProxy::start_with_latency(0, target_port, Duration::ZERO, |_| {}).await
    }

    /// Starts a proxy on loopback `port` (0: a free one) to `127.0.0.1:target_port` that adds
    /// `latency` to every connection and every request; `on_open` gets the count of
    /// connections opened so far each time one opens.
    pub async fn start_with_latency(
        port: u16,
        target_port: u16,
        latency: Duration,
        on_open: impl Fn(usize) + Send + 'static,
    ) -> CountingTcpProxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                on_open(counted.fetch_add(1, Ordering::SeqCst) + 1);
                tokio::spawn(relay(client, target_port, latency));
            }
        });
        CountingTcpProxy {
            port,
            connections,
            accept_loop,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Passes bytes both ways, each chunk from the client after `latency`.
async fn relay(client: TcpStream, target_port: u16, latency: Duration) {
    // A zero sleep still waits for the timer's next tick (a millisecond): none without latency.
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target_port)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if upstream_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    let answers = async {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, answers);
}

impl Drop for CountingTcpProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}
