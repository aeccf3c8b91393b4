//! `twscope serve --netns all` end to end, with pods simulated as the kubelet
//! and containerd leave them on a node (`twscope_lab::pods`): each a process
//! in its own network, UTS (hostname = the pod name), IPC and mount
//! namespace, in a cgroup named `kubepods…pod<uid>…/cri-containerd-<id>.scope`,
//! one with a service-account namespace file mounted where Kubernetes mounts
//! it. One pod is driven into port pressure. A real Prometheus scrapes the
//! exporter with the shipped rules and must fire the per-pod alert naming that
//! pod (and its namespace), none for the other pods and no generic alert
//! beside it; every query of the shipped dashboard, its variables set to that
//! pod, must return data.
//!
//! Needs root, util-linux (`unshare`, `nsenter`), iproute2, curl and
//! Prometheus (`prometheus`, `promtool`); skips with a reason otherwise,
//! unless `TWSCOPE_REQUIRE_ALL=1`. Bounded: under a minute in the worst case
//! (every wait has its limit; about 10 s when all goes well), and the pods,
//! the exporter and Prometheus are killed by PID and their cgroups and files
//! removed on drop, also when an assertion fails.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use twscope_lab::netns::{command_in, set_sysctl_in};
use twscope_lab::pods::{Driver, LoadPlan, Pod, PodSpec, Qos, Runtime};
use twscope_lab::testing::{require_root, require_tools};

use crate::prometheus::{
    self, all_panels, assert_exports_rule_metrics, dashboard, fill, label, rules_without_for, Prometheus,
};
use crate::util::{http_get, poll, stderr, wait_for, Serve};

/// The destination every pod talks to: an address on its own loopback
/// device, outside 127/8 so that `tcp_tw_reuse=2` (loopback only) does not apply.
const SERVICE: &str = "198.18.0.10:5432";

/// A simulated containerd pod (systemd cgroup driver) named `name`, with a
/// service account of `namespace` if any, and `SERVICE`'s address on its
/// loopback device.
fn pod(name: &str, namespace: Option<&str>, qos: Qos) -> Pod {
    let spec = PodSpec::kubernetes(name, Runtime::Containerd, Driver::Systemd, qos);
    let spec = match namespace {
        Some(ns) => spec.service_account(ns),
        None => spec,
    };
    let pod = Pod::new(spec).unwrap_or_else(|e| panic!("pod {name}: {e}"));
    let (ip, _) = SERVICE.split_once(':').unwrap();
    let out = command_in(&pod.netns_path(), "ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    pod
}

/// The `netns` label the exporter gives a pod: its namespace's inode.
fn netns(pod: &Pod) -> String {
    pod.inode().to_string()
}

/// `count` connections to `SERVICE` opened and closed by the client, so
/// `count` TIME_WAIT sockets hold source ports of the pod's range.
fn churn(pod: &Pod, count: u64) {
    pod.load(&[LoadPlan::new(SERVICE, count, 0)])
        .unwrap_or_else(|e| panic!("{}: {e}", pod.hostname()));
}

#[test]
fn pods_alert_by_name_and_feed_the_drill_down() {
    let test = "pods_alert_by_name_and_feed_the_drill_down";
    if !require_root(test) || !prometheus::available(test) || !require_tools(test, &["unshare", "nsenter"]) {
        return;
    }
    let started = Instant::now();
    if twscope_lab::pods::cgroup_hierarchies().is_empty() {
        twscope_lab::testing::skip(test, "a cgroup hierarchy under /sys/fs/cgroup");
        return;
    }

    // Three pods: checkout (namespace shop, from its service account) under
    // pressure, cart and search lightly loaded (no service account).
    let checkout = pod("checkout-7d9f8c6b5-x2k4q", Some("shop"), Qos::Burstable);
    let cart = pod("cart-5c4b7d8f9-q8w7e", None, Qos::BestEffort);
    let search = pod("search-6f5e4d3c2-zyxwv", None, Qos::Guaranteed);
    set_sysctl_in(&checkout.netns_path(), "net.ipv4.ip_local_port_range", "40000 40099").unwrap();
    // 90 of checkout's 100 ports in TIME_WAIT (critical from 80%); the others
    // use 20 of 28,232.
    std::thread::scope(|s| {
        s.spawn(|| churn(&checkout, 90));
        s.spawn(|| churn(&cart, 20));
        s.spawn(|| churn(&search, 20));
    });
    let pods = [&checkout, &cart, &search];

    // One snapshot serves the whole test (the pods' TIME_WAIT lasts 60 s):
    // Prometheus' 1 s scrapes never wait on a dump of the node, which takes
    // longer while other tests fill it with namespaces. Those may also be
    // more pressed than cart and search: no cut, so every pod is listed.
    let serve = Serve::start(&[
        "--netns",
        "all",
        "--min-interval",
        "60",
        "--timeout",
        "15",
        "--max-namespaces",
        "5000",
    ]);
    let addr = serve.addr;
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = poll(Duration::from_secs(20), Duration::from_millis(250), || {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        last = http_get(addr, "/metrics", None, left).1;
        pods.iter()
            .all(|p| last.contains(&format!("twscope_netns_info{{netns=\"{}\"", netns(p))))
            .then(|| last.clone())
    })
    .unwrap_or_else(|| {
        let namespaces = Command::new("lsns")
            .args(["-n", "-t", "net"])
            .output()
            .map(|o| o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count());
        panic!(
            "the exporter did not list the pods within 20 s ({namespaces:?} network namespaces on the node); \
             it answered: {:?}",
            last.chars().take(300).collect::<String>()
        )
    });
    // Every twscope metric the shipped rules use is exported by --netns all.
    assert_exports_rule_metrics(&body, &[], "serve --netns all");

    let prometheus = Prometheus::start(&[addr], &[&rules_without_for()]);

    // Each pod's identity as Prometheus stores it: pod name from its
    // hostname, UID and container from its cgroup, namespace from the
    // service account where one is mounted.
    let info = wait_for("twscope_netns_info of the pods", Duration::from_secs(10), || {
        let r = prometheus.query("twscope_netns_info");
        let by_netns: BTreeMap<String, Value> = r.into_iter().map(|s| (label(&s, "netns").to_string(), s)).collect();
        pods.iter()
            .all(|p| by_netns.contains_key(&netns(p)))
            .then_some(by_netns)
    });
    for pod in pods {
        let s = &info[&netns(pod)];
        let namespace = pod.spec().kube.as_ref().and_then(|k| k.namespace.as_deref());
        assert_eq!(label(s, "pod"), pod.hostname(), "{s}");
        assert_eq!(label(s, "namespace"), namespace.unwrap_or(""), "{s}");
        assert_eq!(Some(label(s, "pod_uid")), pod.uid(), "{s}");
        assert_eq!(label(s, "container_id"), pod.container_id(), "{s}");
        assert_eq!(label(s, "runtime"), "containerd", "{s}");
    }

    // The per-pod alert fires for checkout's destination, naming the pod.
    let is_pod_alert = |a: &Value| label(a, "alertname").starts_with("TwscopePod");
    let checkout_netns = netns(&checkout);
    let firing = poll(Duration::from_secs(10), Duration::from_millis(250), || {
        let all = prometheus.alerts();
        all.iter()
            .any(|a| {
                label(a, "alertname") == "TwscopePodEphemeralPortsLow"
                    && label(a, "netns") == checkout_netns
                    && a["state"] == "firing"
            })
            .then_some(all)
    })
    .unwrap_or_else(|| {
        let utilization = prometheus.query(&format!(
            "twscope_destination_utilization_ratio{{netns=\"{checkout_netns}\"}}"
        ));
        let about_checkout: Vec<Value> = prometheus
            .alerts()
            .into_iter()
            .filter(|a| label(a, "netns") == checkout_netns)
            .collect();
        panic!(
            "TwscopePodEphemeralPortsLow did not fire for checkout (netns {checkout_netns}) within 10 s; \
             its utilization: {utilization:?}; its alerts: {about_checkout:#?}"
        )
    });
    let ours: Vec<&Value> = firing
        .iter()
        .filter(|a| pods.iter().any(|p| label(a, "netns") == netns(p)))
        .collect();
    let ports_low: Vec<&&Value> = ours
        .iter()
        .filter(|a| label(a, "alertname") == "TwscopePodEphemeralPortsLow")
        .collect();
    assert_eq!(ports_low.len(), 1, "{ports_low:#?}");
    let alert = ports_low[0];
    assert_eq!(alert["state"], "firing");
    assert_eq!(label(alert, "netns"), checkout_netns);
    assert_eq!(label(alert, "pod"), checkout.hostname());
    assert_eq!(label(alert, "namespace"), "shop");
    assert_eq!(Some(label(alert, "pod_uid")), checkout.uid());
    assert_eq!(label(alert, "container_id"), checkout.container_id());
    assert_eq!(label(alert, "severity"), "critical");
    let (dst, dst_port) = SERVICE.split_once(':').unwrap();
    assert_eq!((label(alert, "dst"), label(alert, "dst_port")), (dst, dst_port));
    // 90 of 100 ports: a dump of a namespace walks the kernel's hash of
    // every namespace's sockets, and may miss one that other tests' churn
    // moves in the same bucket meanwhile.
    let value: f64 = alert["value"].as_str().unwrap().parse().unwrap();
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        (0.8..=0.9).contains(&value)
            && summary
                == format!(
                    "pod shop/{} on {addr}: {}% of its source ports to {SERVICE} are taken",
                    checkout.hostname(),
                    (value * 100.0).round()
                ),
        "{value}: {summary}; checkout's destination series: {:#?}",
        prometheus.query(&format!(
            "{{__name__=~\"twscope_destination_.*\",netns=\"{checkout_netns}\"}}"
        ))
    );
    // Every alert about our pods is a pod alert (no generic one beside it)
    // and about checkout: none for the lightly loaded pods.
    for a in &ours {
        assert!(is_pod_alert(a), "a generic alert fired for a pod: {a:#}");
        assert_eq!(label(a, "pod"), checkout.hostname(), "{a:#}");
    }
    // netns="other" (if any) never names a pod.
    assert!(firing
        .iter()
        .filter(|a| label(a, "netns") == "other")
        .all(|a| !is_pod_alert(a) && label(a, "pod").is_empty()));

    // Every query of the dashboard returns data, its variables set to checkout.
    std::thread::sleep(Duration::from_secs(2)); // samples for rate()
    let dashboard = dashboard();
    let instance = addr.to_string();
    let values = [
        ("$instance", instance.as_str()),
        ("$namespace", "shop"),
        ("$pod", checkout.hostname()),
        ("$netns", checkout_netns.as_str()),
        ("$__rate_interval", "10s"),
    ];
    // The variables: label_values(SELECTOR, LABEL) offers the pod's values.
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(definition) = var["definition"].as_str() else {
            continue;
        };
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap();
        let (selector, wanted) = inner.rsplit_once(',').unwrap();
        let wanted = wanted.trim();
        let offered: Vec<String> = prometheus
            .query(&fill(selector, &values))
            .iter()
            .map(|s| label(s, wanted).to_string())
            .collect();
        let expected = values
            .iter()
            .find(|(v, _)| v.trim_start_matches('$') == wanted)
            .map(|(_, v)| v.to_string())
            .unwrap();
        assert!(
            offered.contains(&expected),
            "variable {wanted}: {definition} offers {offered:?}, not {expected}"
        );
    }
    let queries = prometheus.check_panel_queries(&all_panels(&dashboard), &values, |panel, expr, result| {
        // The pod panels name the pod.
        if expr.contains("twscope_netns_info") && expr.contains("group_left") {
            assert!(
                result.iter().all(|s| label(s, "pod") == checkout.hostname()),
                "panel {:?}: {result:?}",
                panel["title"]
            );
        }
    });
    assert!(queries >= 20, "{queries} queries");
    eprintln!("{test}: {queries} dashboard queries, {:?}", started.elapsed());
}
