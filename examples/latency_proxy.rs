//! The storage link of `scripts/bench`: the tests' counting TCP proxy
//! (`tests/api/support/tcp_proxy.rs`) with a latency, so that a loopback Azurite looks like
//! storage across a network. It prints `connection N` on stderr for each connection it opens,
//! so a run can count them.
//!
//! Usage: `latency_proxy LISTEN_PORT TARGET_PORT DELAY_MS` (loopback on both sides).

#[path = "../tests/api/support/tcp_proxy.rs"]
mod tcp_proxy;

use std::time::Duration;

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
    let port = |n: u64| u16::try_from(n).expect(USAGE);
    let _proxy = tcp_proxy::CountingTcpProxy::start_with_latency(
        port(listen),
        port(target),
        Duration::from_millis(delay_ms),
        |n| eprintln!("connection {n}"),
    )
    .await;
    println!("LATENCY_PROXY listening");
    std::future::pending::<()>().await;
}
