//! A real Prometheus server for the tests that need one (`serve`,
//! `serve_all`): started on a free loopback port, scraping its targets and
//! evaluating its rules every second, queried over its HTTP API with `curl`,
//! killed by PID and its files removed on drop, also when an assertion fails.
//! And the shipped rules and dashboard as those tests use them.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use serde_json::Value;
use twscope_lab::testing::require_tools;

use crate::util::{deploy_text, stderr, Running};

/// True when `test` may start a Prometheus: `prometheus`, `promtool` and
/// `curl` run (otherwise it skips, or fails under `TWSCOPE_REQUIRE_ALL=1`).
pub fn available(test: &str) -> bool {
    require_tools(test, &["prometheus", "promtool", "curl"])
}

/// A running `prometheus`, killed (by PID) and reaped on drop; then its
/// configuration, rules and data are removed.
pub struct Prometheus {
    // Dropped in this order: the server, then its directory.
    _server: Running,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (one job, `twscope`) with the
    /// rule files whose texts are `rules`, both every second.
    pub fn start(targets: &[SocketAddr], rules: &[&str]) -> Prometheus {
        let dir = tempfile::Builder::new().prefix("twscope-prom-").tempdir().unwrap();
        let mut rule_files = Vec::new();
        for (i, text) in rules.iter().enumerate() {
            let name = format!("rules-{i}.yml");
            std::fs::write(dir.path().join(&name), text).unwrap();
            rule_files.push(name);
        }
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\n\
                 scrape_configs:\n  - job_name: twscope\n    static_configs:\n      - targets: [{}]\n",
                rule_files.join(", "),
                targets.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let server = Running(
            Command::new("prometheus")
                .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        Prometheus {
            _server: server,
            _dir: dir,
            port,
        }
    }

    /// `GET /api/v1/PATH` (with `query` URL-encoded, if any) → its JSON
    /// (`null` when no JSON came within 10 s).
    fn api(&self, path: &str, query: Option<&str>) -> Value {
        let mut command = Command::new("curl");
        command.args(["-s", "--max-time", "10"]);
        if let Some(q) = query {
            command.args(["-G", "--data-urlencode"]).arg(format!("query={q}"));
        }
        let out = command
            .arg(format!("http://127.0.0.1:{}/api/v1/{path}", self.port))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// An instant query's result (panics on a query error).
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let json = self.api("query", Some(promql));
        assert_ne!(json["status"], "error", "{promql}: {json}");
        json["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The active alerts (pending and firing).
    pub fn alerts(&self) -> Vec<Value> {
        self.api("alerts", None)["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Runs the query of every target of `panels`, the dashboard variables
    /// replaced by `values` (see [`fill`]): none may be left, and each must
    /// return data; `check` sees each (panel, query, result) besides.
    /// Returns how many queries ran.
    pub fn check_panel_queries(
        &self,
        panels: &[Value],
        values: &[(&str, &str)],
        mut check: impl FnMut(&Value, &str, &[Value]),
    ) -> usize {
        let mut queries = 0;
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = fill(target["expr"].as_str().unwrap(), values);
                assert!(!expr.contains('$'), "unfilled variable in {expr}");
                let result = self.query(&expr);
                assert!(
                    !result.is_empty(),
                    "panel {:?}: {expr} returned nothing",
                    panel["title"]
                );
                check(panel, &expr, &result);
                queries += 1;
            }
        }
        queries
    }
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A label of a series or an alert (`""` when it has none).
pub fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["labels"][name]
        .as_str()
        .or_else(|| series["metric"][name].as_str())
        .unwrap_or("")
}

/// The shipped rules with every `for:` cut to 0s, so alerts fire within the
/// test; nothing else changed.
pub fn rules_without_for() -> String {
    let rules = deploy_text("prometheus/twscope-rules.yml");
    let mut out: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// Every `twscope_` metric the shipped rules use, but `except`, must be in
/// the text-format `body` that `exporter` served.
pub fn assert_exports_rule_metrics(body: &str, except: &[&str], exporter: &str) {
    let rules = deploy_text("prometheus/twscope-rules.yml");
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("twscope_") && !except.contains(w))
    {
        assert!(
            body.lines().any(|l| l.starts_with(name)),
            "the rules use {name}, which {exporter} does not export"
        );
    }
}

/// The shipped Grafana dashboard.
pub fn dashboard() -> Value {
    serde_json::from_str(&deploy_text("grafana/twscope-dashboard.json")).unwrap()
}

/// The dashboard's top-level panels (rows, and the panels of rows that are
/// not collapsed).
pub fn top_panels(dashboard: &Value) -> Vec<Value> {
    dashboard["panels"].as_array().unwrap().clone()
}

/// Every panel of the dashboard, those inside collapsed rows included.
pub fn all_panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.extend(panel["panels"].as_array().into_iter().flatten().cloned());
        out.push(panel.clone());
    }
    out
}

/// `expr` with each dashboard variable (`$instance`) replaced by its value.
pub fn fill(expr: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(expr.to_string(), |e, (var, v)| e.replace(var, v))
}

/// `promtool check metrics` on a text-format body.
pub fn promtool_check_metrics(body: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}
