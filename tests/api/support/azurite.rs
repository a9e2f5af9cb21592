//! Starts the real Azurite table emulator (the npm package pinned in package.json) on a free
//! loopback port. One shared instance per test binary, or a dedicated one a test may kill.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The well-known Azurite account key (public, documented by Microsoft).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite table service.
pub struct Azurite {
    port: u16,
    child: Option<Child>,
    /// Where a restartable instance keeps its tables, so they outlive a restart.
    location: Option<PathBuf>,
}

impl Azurite {
    /// The instance shared by every test of this binary (started on first use).
    pub fn shared() -> &'static Azurite {
        static SHARED: OnceLock<Azurite> = OnceLock::new();
        SHARED.get_or_init(Azurite::start)
    }

    /// A fresh instance of its own.
    pub fn start() -> Azurite {
        let port = free_port();
        let child = spawn_on(port, None);
        wait_until_listening(port);
        Azurite {
            port,
            child: Some(child),
            location: None,
        }
    }

    /// A fresh instance that keeps its tables on disk, so [`Azurite::restart`] brings back what
    /// was stored, as a real storage account does after an outage.
    pub fn start_restartable() -> Azurite {
        let port = free_port();
        let location = std::env::temp_dir().join(format!(
            "azurite-{}-{port}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&location).expect("a directory for Azurite's tables");
        let child = spawn_on(port, Some(&location));
        wait_until_listening(port);
        Azurite {
            port,
            child: Some(child),
            location: Some(location),
        }
    }

    /// Starts a stopped instance again on the same port (with its tables if restartable).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn_on(self.port, self.location.as_deref()));
        wait_until_listening(self.port);
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A full connection string for it.
    pub fn connection_string(&self) -> String {
        connection_string_for_port(self.port)
    }

    /// Stops it (storage outage); connections are refused afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets the watchdog shell's trap stop node too (SIGKILL would orphan it);
            // the trap stops node with SIGINT, on which Azurite saves its tables to disk.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        // The watchdog shell kills node when its own child is killed; wait until the port is free.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
        if let Some(location) = &self.location {
            let _ = std::fs::remove_dir_all(location);
        }
    }
}

/// A connection string for Azurite on `port`.
pub fn connection_string_for_port(port: u16) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn azurite_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/azurite-table");
    assert!(
        bin.exists(),
        "Azurite is not installed: run `npm ci` in the repository (scripts/test does)"
    );
    bin
}

/// Spawns Azurite under a watchdog shell that kills it when this test process exits, so no
/// emulator outlives a test binary even though a shared static is never dropped.
/// With a `location` the tables are kept there; without, in memory only.
fn spawn_on(port: u16, location: Option<&Path>) -> Child {
    let script = r#"
if [ -n "$AZURITE_LOCATION" ]; then
  set -- --location "$AZURITE_LOCATION"
else
  set -- --inMemoryPersistence
fi
"$AZURITE_BIN" --tableHost 127.0.0.1 --tablePort "$AZURITE_PORT" "$@" --disableTelemetry --silent --skipApiVersionCheck --loose &
child=$!
# Azurite saves its tables on SIGINT only (SIGTERM loses the last seconds' writes): ask it to
# close, give it five seconds, then kill it.
stop_azurite() {
  kill -INT $child 2>/dev/null
  tries=0
  while kill -0 $child 2>/dev/null && [ $tries -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
  kill -KILL $child 2>/dev/null
}
trap 'stop_azurite; exit 0' TERM INT HUP
while kill -0 "$WATCH_PID" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done
stop_azurite
"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("AZURITE_BIN", azurite_bin())
        .env("AZURITE_PORT", port.to_string())
        .env(
            "AZURITE_LOCATION",
            location.map(Path::as_os_str).unwrap_or_default(),
        )
        .env("WATCH_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn azurite")
}

fn wait_until_listening(port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("Azurite did not listen on port {port} within 30 s");
}
