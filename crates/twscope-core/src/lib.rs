//! # twscope-core
//!
//! The library behind `twscope`: it finds TCP ephemeral-port exhaustion — the
//! `connect(): Cannot assign requested address` (EADDRNOTAVAIL) outage of
//! services that churn short-lived outbound connections while the closed
//! sockets sit in TIME_WAIT for 60 s each.
//!
//! Data flows one way:
//!
//! ```text
//! kernel ──netlink sock_diag──▶ sockdiag ──▶ census ──▶ capacity ──▶ status
//! /proc/sys, /proc/net ───────▶ kernel ─────────────────┘
//! ```
//!
//! - [`sockdiag`] dumps TCP sockets through `NETLINK_SOCK_DIAG`, decoding each
//!   `inet_diag_msg` in place.
//! - [`linux`] holds the kernel's fixed facts and rules (TIME_WAIT length and
//!   its real lifetime on this kernel, default ranges, when tw_reuse applies).
//! - [`kernel`] reads the namespace's sysctls and counters.
//! - [`files`] reads user-named files safely: no FIFO hangs, a size cap.
//! - [`netns`] enters a network namespace (`--netns`).
//! - [`node`] finds every namespace of the node, says whose it is (pod,
//!   container, processes) and reads each on a worker pool (`--netns all`).
//! - [`census`] aggregates a dump per destination tuple and listening port.
//! - [`owners`] finds the processes holding a destination's live sockets
//!   (`status --processes`).
//! - [`capacity`] is the port-budget model: availability, rates, forecast.
//! - [`plan`] runs the same model on a what-if workload (`twscope plan`).
//! - [`doctor`] evaluates the TIME_WAIT checklist into findings with remedies.
//! - [`tune`] turns the system findings into sysctl changes and applies them.
//! - [`trace`] is the model of an eBPF trace: who churns, who fails, and
//!   [`runtime`] tells a process's language runtime.
//! - [`history`] keeps each destination's last minutes across censuses
//!   (`twscope top`'s ESTABLISHED range and close-rate sparkline).
//! - [`status`] assembles the `twscope status` report (its JSON is the schema).
//!
//! The crate does no terminal I/O; renderers live in the `twscope` binary.
//!
//! ```no_run
//! use twscope_core::{diagnose, Selection, Status, StatusOptions};
//!
//! // One collection: every destination, every number.
//! let status = Status::collect(&StatusOptions::default(), twscope_core::netns::identify()?)?;
//! println!("{}", status.verdict.summary);
//! // A view selects; the doctor reads the same model.
//! for d in status.report(&Selection::default()).destinations {
//!     println!("{} {:.0}% {}", d.endpoint(), d.utilization * 100.0, d.outlook.short());
//! }
//! println!("{} findings", diagnose(&status).findings.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod capacity;
pub mod census;
pub mod doctor;
pub mod files;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod history;
pub mod kernel;
pub mod linux;
pub mod netns;
pub mod node;
pub mod owners;
pub mod plan;
pub mod runtime;
pub mod sockdiag;
pub mod status;
pub mod text;
pub mod trace;
pub mod tune;

// The surface a view needs, in one place: take a census (`Status::collect`),
// select (`Selection`), diagnose (`diagnose`), plan (`Workload`). The modules
// stay public for the exporter, the lab and tests that need their parts.
pub use capacity::{Outlook, Severity, Thresholds};
pub use doctor::{diagnose, Finding, FindingId, Level, RemedyKind, Report};
pub use linux::TimeWaitLifetime;
pub use netns::{NetnsInfo, NetnsSpec};
pub use node::{Identity, NamespaceStatus, Node, NodeOptions};
pub use plan::{Plan, Workload};
pub use sockdiag::TcpState;
pub use status::{DestFilter, Destination, Readings, Selection, Status, StatusOptions, StatusReport};
