//! What ships in `deploy/` is checked by the tools that will consume it:
//! `promtool` for the rules and their unit tests; the manifests must parse
//! and keep the properties their comments promise.
//!
//! Needs `promtool` (Debian package `prometheus`); skips with a reason
//! otherwise, unless `TWSCOPE_REQUIRE_ALL=1`.

use std::process::Command;

use twscope_lab::testing::require_tools;

use crate::util::{deploy, deploy_text};

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn rules_pass_promtool_and_their_unit_tests() {
    if !require_tools("rules_pass_promtool_and_their_unit_tests", &["promtool"]) {
        return;
    }
    assert!(promtool(&["check", "rules", "twscope-rules.yml"]).contains("SUCCESS: 17 rules found"));
    assert!(promtool(&["test", "rules", "twscope-rules.test.yml"]).contains("SUCCESS"));
    // Every alert of the rules has a unit test.
    let rules = deploy_text("prometheus/twscope-rules.yml");
    let tests = deploy_text("prometheus/twscope-rules.test.yml");
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no promtool test"
        );
    }
}

#[test]
fn manifests_parse_and_keep_their_promises() {
    let text = deploy_text("kubernetes/daemonset.yaml");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    // --netns all: uid 0 with exactly CAP_SYS_ADMIN and CAP_SYS_PTRACE added
    // (image::daemonset_has_exactly_the_capabilities_netns_all_needs).
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 0);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        "9877"
    );
    let text = deploy_text("kubernetes/servicemonitor.yaml");
    let monitor: serde_yaml::Value = serde_yaml::from_str(text.split("\n---").next().unwrap()).unwrap();
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let dashboard: serde_json::Value = serde_json::from_str(&deploy_text("grafana/twscope-dashboard.json")).unwrap();
    assert_eq!(dashboard["uid"], "twscope");
    let unit = deploy_text("systemd/twscope.service");
    for hardening in [
        "DynamicUser=yes",
        "CapabilityBoundingSet=\n",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}
