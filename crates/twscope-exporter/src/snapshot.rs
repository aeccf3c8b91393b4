//! One kernel dump shared by concurrent scrapes.
//!
//! A scrape takes the cache lock. If a snapshot finished after the scrape
//! arrived (it was being made while the scrape waited) or is younger than
//! `min_interval`, it is served as is. Otherwise this scrape makes one — on a
//! blocking thread, holding the lock until the dump is done even if the
//! scrape itself gives up at the timeout, so dumps never pile up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Mutex};
use twscope_core::doctor;
use twscope_core::node::{Node, NodeOptions};
use twscope_core::status::{Status, StatusOptions};
use twscope_core::NetnsInfo;

use crate::metrics::{self, ExporterStats, NodeLimits, ProtectionCounts};
use crate::server::ServerStats;
use crate::trace::TraceReader;

/// What one dump produced, encoded once for every scrape that shares it.
#[derive(Debug)]
pub struct Snapshot {
    /// When the dump and its encoding were done. A scrape that arrived before
    /// this is served this snapshot even past `min_interval`.
    pub finished: Instant,
    /// OpenMetrics text.
    pub openmetrics: String,
    /// Prometheus text format 0.0.4.
    pub text: String,
}

/// Snapshot settings.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Serve a cached snapshot younger than this (0 = a fresh dump per scrape
    /// that does not overlap another).
    pub min_interval: Duration,
    /// Give up a scrape after this long (the dump still completes).
    pub timeout: Duration,
    /// Destinations with their own series; the rest become `dst="other"`.
    pub max_destinations: usize,
    /// The model's knobs (close-rate window, thresholds) for every dump.
    pub status: StatusOptions,
    /// What every snapshot reads.
    pub scope: Scope,
}

/// What the exporter reads.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The namespace the process entered at start; `build_info` names it.
    One(NetnsInfo),
    /// Every namespace of the node (`--netns all`): per-namespace series
    /// labelled `netns`, at most this many namespaces with their own.
    All {
        /// Namespaces with their own series; the rest are `netns="other"`.
        max_namespaces: usize,
    },
}

/// Why a scrape got no snapshot; the scrape answers with an error and the
/// exporter's error counter goes up.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The dump took longer than the scrape timeout. It still completes
    /// and is cached for the next scrape.
    #[error("the kernel dump did not finish within {0:?}")]
    Timeout(Duration),
    /// Collecting or encoding failed; the message says where.
    #[error("the kernel dump failed: {0}")]
    Dump(String),
}

/// The shared cache.
pub struct Snapshots {
    options: SnapshotOptions,
    cache: Arc<Mutex<Option<Arc<Snapshot>>>>,
    dumps: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    server: Arc<ServerStats>,
    trace: Option<TraceReader>,
}

impl Snapshots {
    /// An empty cache: the first scrape makes the first dump.
    pub fn new(options: SnapshotOptions) -> Snapshots {
        Snapshots {
            options,
            cache: Arc::new(Mutex::new(None)),
            dumps: Arc::new(AtomicU64::new(0)),
            errors: Arc::new(AtomicU64::new(0)),
            server: Arc::new(ServerStats::default()),
            trace: None,
        }
    }

    /// Every snapshot also reads the tracer (`serve --trace`) and exports
    /// its series.
    pub fn traced(mut self, reader: TraceReader) -> Snapshots {
        self.trace = Some(reader);
        self
    }

    /// The server's protection counters, exported with every snapshot.
    pub fn server_stats(&self) -> Arc<ServerStats> {
        self.server.clone()
    }

    /// Dumps made so far.
    pub fn dumps(&self) -> u64 {
        self.dumps.load(Ordering::Relaxed)
    }

    /// A snapshot for a scrape that arrives now.
    pub async fn get(&self) -> Result<Arc<Snapshot>, SnapshotError> {
        let arrived = Instant::now();
        let mut cache = self.cache.clone().lock_owned().await;
        if let Some(snapshot) = cache.as_ref() {
            if snapshot.finished >= arrived || snapshot.finished.elapsed() < self.options.min_interval {
                return Ok(snapshot.clone());
            }
        }
        let (tx, rx) = oneshot::channel();
        let options = self.options.clone();
        let (dumps, errors) = (self.dumps.clone(), self.errors.clone());
        let protections = self.server.counts();
        let trace = self.trace.clone();
        // The lock travels with the dump: later scrapes wait for this one.
        tokio::spawn(async move {
            let started = Instant::now();
            let n = dumps.fetch_add(1, Ordering::Relaxed) + 1;
            let errors_so_far = errors.load(Ordering::Relaxed);
            let job = tokio::task::spawn_blocking(move || {
                make(&options, trace.as_ref(), n, errors_so_far, protections, started)
            });
            let result = match job.await {
                Ok(result) => result,
                Err(e) => Err(SnapshotError::Dump(format!("dump thread failed: {e}"))),
            };
            match &result {
                Ok(snapshot) => *cache = Some(snapshot.clone()),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(cache);
            let _ = tx.send(result);
        });
        match tokio::time::timeout(self.options.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SnapshotError::Dump("the dump task ended without a result".into())),
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                Err(SnapshotError::Timeout(self.options.timeout))
            }
        }
    }
}

/// Runs on a blocking thread, in the namespace the process entered at start.
fn make(
    options: &SnapshotOptions,
    trace: Option<&TraceReader>,
    dumps: u64,
    errors: u64,
    protections: ProtectionCounts,
    started: Instant,
) -> Result<Arc<Snapshot>, SnapshotError> {
    let registry = match &options.scope {
        Scope::One(netns) => {
            let status =
                Status::collect(&options.status, netns.clone()).map_err(|e| SnapshotError::Dump(e.to_string()))?;
            let report = doctor::diagnose(&status);
            let stats = ExporterStats {
                dumps,
                errors,
                duration_s: started.elapsed().as_secs_f64(),
                protections,
            };
            match trace.map(TraceReader::view) {
                Some(view) => metrics::traced_registry(&status, &report, options.max_destinations, stats, &view),
                None => metrics::registry(&status, &report, options.max_destinations, stats),
            }
        }
        Scope::All { max_namespaces } => {
            let node = Node::collect(&NodeOptions {
                status: options.status.clone(),
                ..NodeOptions::default()
            });
            let stats = ExporterStats {
                dumps,
                errors,
                duration_s: started.elapsed().as_secs_f64(),
                protections,
            };
            let limits = NodeLimits {
                max_namespaces: *max_namespaces,
                max_destinations: options.max_destinations,
            };
            match trace.map(TraceReader::view) {
                Some(view) => metrics::traced_node_registry(&node, limits, stats, &view),
                None => metrics::node_registry(&node, limits, stats),
            }
        }
    };
    let (openmetrics, text) = metrics::encode(&registry).map_err(|e| SnapshotError::Dump(format!("encoding: {e}")))?;
    Ok(Arc::new(Snapshot {
        finished: Instant::now(),
        openmetrics,
        text,
    }))
}
