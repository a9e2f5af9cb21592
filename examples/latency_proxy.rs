//! A TCP proxy for `scripts/bench` that makes a loopback service look like one across a
//! network: every new connection waits `DELAY_MS` before it reaches the target (the TCP
//! handshake's round trip), and every chunk a client sends waits `DELAY_MS` before it is passed
//! on (a request's round trip). Answers pass back at once. It prints `connection N` on stderr
//! for each connection it opens, so a run can count them.
//!
//! Usage: `latency_proxy LISTEN_PORT TARGET_PORT DELAY_MS` (loopback on both sides).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: latency_proxy LISTEN_PORT TARGET_PORT DELAY_MS";

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect(USAGE))
        .collect();
    let [listen, target, delay_ms] = args[..] else {
        panic!("{USAGE}");
    };
    let target = u16::try_from(target).expect("TARGET_PORT must be a port");
    let delay = Duration::from_millis(delay_ms);
    let listener = TcpListener::bind(("127.0.0.1", u16::try_from(listen).expect(USAGE)))
        .await
        .expect("latency_proxy: cannot bind");
    println!("LATENCY_PROXY listening");
    let opened = Arc::new(AtomicU64::new(0));
    while let Ok((client, _)) = listener.accept().await {
        let n = opened.fetch_add(1, Ordering::SeqCst) + 1;
        eprintln!("connection {n}");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else {
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
                    tokio::time::sleep(delay).await;
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
        });
    }
}
