//! A TCP relay in front of Azurite that a test can cut and restore, to make storage unreachable
//! at an exact moment without losing its data (Azurite's in-memory store would be wiped by a
//! restart, and its on-disk store saves lazily).

use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay from a free loopback port to a target port.
pub struct Outage {
    port: u16,
    up: Arc<watch::Sender<bool>>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Outage {
    /// Starts relaying to `target_port` on 127.0.0.1.
    pub async fn relay_to(target_port: u16) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let (tx, _) = watch::channel(true);
        let up = Arc::new(tx);
        let up_for_task = Arc::clone(&up);
        let accept_task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut up_rx = up_for_task.subscribe();
                if !*up_rx.borrow() {
                    drop(inbound); // refused: the connection closes at once
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Cutting also breaks connections that are already open.
                        _ = up_rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Outage {
            port,
            up,
            accept_task,
        }
    }

    /// The relay's port (point the app's connection string here).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Storage becomes unreachable.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Storage is reachable again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}
