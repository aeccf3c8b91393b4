//! Test support: tests that need root and iproute2 skip with a printed reason
//! on a developer's machine, and fail in CI (`TWSCOPE_REQUIRE_ALL=1`), where a
//! skipped test would hide a missing install step.
//!
//! Compiled only with the cargo feature `testing`, which test crates enable in
//! their `[dev-dependencies]`
//! (`twscope-lab = { workspace = true, features = ["testing"] }`): these
//! helpers panic by design and have no place in the product binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether every test must run (`TWSCOPE_REQUIRE_ALL=1`).
pub fn require_all() -> bool {
    std::env::var("TWSCOPE_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Whether `program` runs (`program --version`, `-V` or `version`).
pub fn have_tool(program: &str) -> bool {
    ["--version", "-V", "version"].iter().any(|flag| {
        Command::new(program)
            .arg(flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Skips (returns false, printing why) or, under `TWSCOPE_REQUIRE_ALL=1`,
/// panics when `test` cannot run: it needs `what`, which is missing.
pub fn skip(test: &str, what: &str) -> bool {
    if require_all() {
        panic!("{test} needs {what} (TWSCOPE_REQUIRE_ALL=1 forbids skipping)");
    }
    eprintln!("skipping {test}: needs {what}");
    false
}

/// True when `test` may run: root, and `ip` and `ss` from iproute2.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip(test, "root (it creates network namespaces)");
    }
    require_tools(test, &["ip", "ss"])
}

/// True when every one of `tools` runs.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    match tools.iter().find(|t| !have_tool(t)) {
        Some(missing) => skip(
            test,
            &format!("`{missing}` (.ci/run lists the Debian packages that provide it)"),
        ),
        None => true,
    }
}

/// A throwaway self-signed certificate for 127.0.0.1 (`tls.crt`, `tls.key` in
/// `dir`), made with `openssl`; panics if it cannot be.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}
