//! # twscope-trace
//!
//! The tracer behind `twscope trace`, `status --trace` and `serve --trace`:
//! BPF programs on the `sock:inet_sock_set_state` and
//! `syscalls:sys_{enter,exit}_connect` tracepoints (`bpf/tcptrace.bpf.c`,
//! compiled and committed as `bpf/tcptrace.bpf.o`), loaded with aya.
//!
//! The kernel half aggregates per (process, network namespace, destination),
//! so a busy host sends no event per connection; only failed connects travel
//! through a ring buffer. This crate loads and reads it ([`Tracer`]), runs a
//! window of a given length while learning who each new process is
//! ([`window`]), and hands the core's [`twscope_core::trace::Sample`] over;
//! the numbers are the core's ([`twscope_core::trace::TraceReport`]).
//!
//! Needs CAP_BPF and CAP_PERFMON (or root); without them [`Tracer::attach`]
//! fails with [`TraceError::Privileges`] and nothing is left attached.

mod abi;
mod session;
mod tracer;

pub use session::{window, Identities, Window};
pub use tracer::{ensure_tracefs, loaded_programs, TraceError, Tracer, PRIVILEGES, TRACEPOINTS};
