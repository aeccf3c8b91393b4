//! # twscope-exporter
//!
//! `twscope serve`: the census as Prometheus metrics, for fleets that run on
//! Prometheus and Kubernetes.
//!
//! - [`metrics`] — the metric families (all `twscope_`-prefixed), built from a
//!   [`twscope_core::status::Status`] and its doctor findings, label
//!   cardinality bounded by folding the tail of destinations into `dst="other"`.
//! - [`snapshot`] — one kernel dump shared by concurrent scrapes, with a cache
//!   interval and a timeout.
//! - [`trace`] — `serve --trace`: the tracer's per-process counts as counters
//!   per (comm, container, netns, destination), the tail folded into
//!   `comm="other"`, monotonic, with the kernel's map kept small.
//! - [`web_config`] — TLS and basic auth in the exporter-toolkit format.
//! - [`server`] — `/metrics` (OpenMetrics or text 0.0.4 by `Accept`), `/`, `/healthz`,
//!   with every client's cost bounded ([`Limits`]: timeouts, a connection cap that
//!   evicts the longest-idle connection, a bounded bcrypt queue, capped heads).

#![deny(missing_docs)]

pub mod metrics;
pub mod server;
pub mod snapshot;
pub mod trace;
pub mod web_config;

pub use server::{serve, serve_connection, Exporter, Limits};
pub use snapshot::{Scope, SnapshotOptions, Snapshots};
pub use trace::{FlowSource, TraceOptions, Tracing};
pub use web_config::WebConfig;
