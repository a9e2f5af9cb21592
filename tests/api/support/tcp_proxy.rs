//! A plain TCP proxy that counts the connections it is asked to open: put in front of Azurite,
//! it shows whether a client reuses connections (few connections for many requests) or opens
//! one per request. Bytes pass through unchanged in both directions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy. Dropping it stops accepting (open connections finish on their own).
pub struct CountingTcpProxy {
    port: u16,
    connections: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
}

impl CountingTcpProxy {
    /// Starts a proxy on a free loopback port to `127.0.0.1:target_port`.
    pub async fn start(target_port: u16) -> CountingTcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let accept_loop = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
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

impl Drop for CountingTcpProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}
