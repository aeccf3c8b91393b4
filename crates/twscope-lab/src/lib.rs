//! # twscope-lab
//!
//! The parts to reproduce TCP ephemeral-port exhaustion on one machine, safely:
//!
//! - [`netns`] — throwaway network namespaces (`ip netns add`), removed on drop,
//!   and [`enter_netns`] to move a thread into one. Their names carry the
//!   owner's pid and start time, so [`remove_leftovers`] can delete those a
//!   killed process (SIGKILL) left behind, and only those.
//! - [`server`] — a small TCP server that answers a request and lets the
//!   client close first, so the *client* side collects TIME_WAIT sockets.
//! - [`churn`](mod@churn) — a bounded client: open, (ask,) close, `count` times, at an
//!   optional rate, never longer than a deadline; and [`hold`] for long-lived
//!   connections.
//! - [`lab`] — `twscope lab`: the outage reproduced in two namespaces, with
//!   twscope's own census sampled every second and set against the model.
//! - `testing` (cargo feature `testing`, off by default) — skipping (or, in
//!   CI, failing) tests that need root or a tool. Its helpers panic by design,
//!   so only dev-dependencies enable it: the `twscope` binary links the lab
//!   without them.
//!
//! Everything stays on this machine: loopback or addresses inside namespaces
//! the caller made. Every loop is bounded in count and time.
//!
//! ```no_run
//! use std::time::Duration;
//! use twscope_lab::{churn, ChurnOptions, Netns, Server};
//!
//! let ns = Netns::new("demo")?;
//! let stats = ns.run(|| {
//!     let server = Server::start("127.0.0.1:7000".parse().unwrap(), 1).unwrap();
//!     let stats = churn(&[server.addr()], &ChurnOptions { count: 1000, ..ChurnOptions::default() });
//!     drop(server);
//!     stats
//! })?;
//! assert_eq!(stats.ok, 1000); // 1,000 client sockets now in TIME_WAIT inside `ns`
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod churn;
pub mod lab;
pub mod netns;
#[cfg(feature = "testing")]
pub mod pods;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use churn::{churn, churn_with, hold, ChurnOptions, ChurnStats, Progress};
pub use netns::{enter_netns, leftovers, remove_leftovers, Cleanup, Netns, NetnsName};
pub use server::Server;
#[cfg(feature = "testing")]
pub use testing::require_root;
