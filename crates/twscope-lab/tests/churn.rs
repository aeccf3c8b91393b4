//! `twscope-churn` as a process: what it counts is what happened. (Its
//! being an integration test also makes `cargo test` build the binary, which
//! the tracer's tests in `crates/twscope/tests` run as the applications.)

use std::process::Command;

#[test]
fn the_churn_binary_counts_its_connections() {
    // A free loopback port: bound, then released for the churn's server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_twscope-churn"))
        .args([
            "--target",
            &format!("127.0.0.1:{port}"),
            "--count",
            "50",
            "--request",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("\"attempts\": 50, \"ok\": 50, \"failed\": 0"),
        "{stdout}"
    );
}
