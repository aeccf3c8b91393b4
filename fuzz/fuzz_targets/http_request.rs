//! The exporter's HTTP request path: the fuzz input is everything a client
//! sends on one connection (pipelined requests, partial heads, bodies,
//! garbage). The client sends it all, reads until the server has been idle for
//! a second, then closes its side and reads the answer to the end.
//! `serve_connection` is the server's own per-connection path (head size,
//! timeouts, auth bounds) over an in-memory pipe.
//!
//! Time is tokio's paused clock: it jumps ahead whenever nothing can run, but
//! never while a blocking task (bcrypt, the kernel dump) is running, so the
//! idle second costs nothing and no answer is cut short by it.
//!
//! Checked: no panic; the connection ends within 5 s after the client closes
//! its side (before the server's own 10 s header and 75 s idle timeouts could
//! end it); every answer is HTTP/1.x; and nothing past the auth gate (the
//! landing page, metrics, a 404, a 503) is ever served to a request without
//! the one valid credential — basic auth with a cost-4 bcrypt hash, so the
//! auth path runs at full depth.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use twscope_core::status::StatusOptions;
use twscope_exporter::{serve_connection, Exporter, Limits, Scope, SnapshotOptions, Snapshots, WebConfig};

/// base64("prometheus:s3cret"), the only credential that gets in.
const GOOD_CREDENTIAL: &str = "cHJvbWV0aGV1czpzM2NyZXQ=";
/// Text only answers past the auth gate contain (matched lower-case).
const PAST_THE_GATE: [&str; 8] = [
    "<h1>twscope</h1>",
    "# help twscope",
    "# type twscope",
    "not found: try /metrics",
    "kernel dump",
    "content-type: text/html",
    "openmetrics",
    "version=0.0.4",
];

fn setup() -> &'static (Runtime, Arc<Exporter>) {
    static SETUP: OnceLock<(Runtime, Arc<Exporter>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let web = WebConfig::parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"), Path::new(".")).unwrap();
        let snapshots = Snapshots::new(SnapshotOptions {
            // At most one kernel dump per fuzzing process.
            min_interval: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(4),
            max_destinations: 10,
            status: StatusOptions::default(),
            scope: Scope::One(twscope_core::netns::current("host").unwrap()),
        });
        (runtime, Arc::new(Exporter::new(snapshots, Some(web), Limits::default())))
    })
}

fuzz_target!(|request: &[u8]| {
    let (runtime, exporter) = setup();
    let response = runtime.block_on(async {
        // Room for the whole request, so writing it never waits on the server.
        let (mut client, server) = tokio::io::duplex(request.len() + 64 * 1024);
        let served = tokio::spawn(serve_connection(server, exporter.clone()));
        let _ = client.write_all(request).await;
        let mut response = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        // Everything the server answers while the connection is open.
        let open = loop {
            match tokio::time::timeout(Duration::from_secs(1), client.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => break false,
                Ok(Ok(n)) => response.extend_from_slice(&chunk[..n]),
                Err(_idle) => break true,
            }
        };
        if open {
            let closing = async {
                let _ = client.shutdown().await;
                let _ = client.read_to_end(&mut response).await;
            };
            tokio::time::timeout(Duration::from_secs(5), closing)
                .await
                .expect("the connection was still open 5 s after the client closed its side");
        }
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve_connection still running 5 s after the connection closed")
            .expect("serve_connection panicked");
        response
    });
    if std::env::var_os("TWSCOPE_FUZZ_PRINT").is_some() {
        // Debugging a seed: TWSCOPE_FUZZ_PRINT=1 cargo fuzz run -a http_request corpus/http_request/<seed>
        eprintln!("--- response ---\n{}", String::from_utf8_lossy(&response));
    }
    if response.is_empty() {
        return;
    }
    assert!(response.starts_with(b"HTTP/1."), "not an HTTP answer: {:?}", String::from_utf8_lossy(&response));
    let answer = String::from_utf8_lossy(&response).to_lowercase();
    if let Some(leak) = PAST_THE_GATE.iter().find(|marker| answer.contains(*marker)) {
        let credential = request.windows(GOOD_CREDENTIAL.len()).any(|w| w == GOOD_CREDENTIAL.as_bytes());
        assert!(credential, "served {leak:?} without the credential: {answer}");
    }
});
