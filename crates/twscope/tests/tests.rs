//! The CLI's integration tests, one binary: the real `twscope` against the
//! real kernel of this host, one module per area, the shared helpers in
//! `util`.
//!
//! Tests that need root or a tool skip with a reason, unless
//! `TWSCOPE_REQUIRE_ALL=1` (CI) makes that a failure. All areas run side by
//! side in this one process; the timing- and load-sensitive tests take
//! `util::heavy()` so that they never overlap one another. `oracle` is `ss`
//! as the reference for counts, `prometheus` a real Prometheus server.

mod oracle;
mod prometheus;
mod util;

mod cli;
mod completions;
mod deploy;
mod doctor;
mod files;
mod hostile;
mod image;
mod lab;
mod model;
mod netns;
mod pods;
mod processes;
mod serve;
mod serve_all;
mod serve_trace;
mod top;
mod trace;
