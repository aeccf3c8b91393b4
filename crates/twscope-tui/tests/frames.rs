//! Whole frames of `twscope top`, drawn headless: the real [`App`] fed real
//! models (the core's `Status::build` over hand-built censuses) and real
//! keys, drawn into ratatui's `TestBackend`, compared with the reviewed
//! snapshots in `tests/snapshots/` (insta; `cargo insta review` after an
//! intended change). Colour is not in a snapshot: `NO_COLOR` is tested on
//! the buffer's styles.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use twscope_core::fixtures::{settings, Host};
use twscope_core::node::{Container, Identity, NamespaceStatus, Pod, Process};
use twscope_core::status::Status;
use twscope_core::trace::{Failure, Flow, PoolBypass, Sample, TraceFilter, TraceReport, LIFETIME_BUCKETS};
use twscope_tui::{draw, App, Cost, Namespace, Snapshot, Theme, TraceState, Update};

const HOST_INODE: u64 = 4026531840;

fn one(status: Status, at_s: f64, cost_ms: f64) -> Update {
    let sockets = status.dump.sockets;
    Update {
        at_s,
        snapshot: Ok(Snapshot {
            namespaces: vec![Namespace::new(NamespaceStatus {
                identity: Identity {
                    inode: status.netns.inode,
                    host: true,
                    ..Identity::default()
                },
                status: Some(status),
                error: None,
            })],
            all: false,
            found: 1,
            idle: 0,
            missing: None,
            cost: Cost {
                wall_ms: cost_ms,
                cpu_ms: cost_ms * 0.9,
                between_ms: 0.0,
                sockets,
            },
        }),
        trace: TraceState::Off,
    }
}

/// A healthy host: a pool to PostgreSQL steady at 20, a little HTTP churn.
fn healthy(established: u64) -> Status {
    healthy_with(established, 900)
}

/// The same, with `https` TIME_WAIT to the HTTP API in the last minute.
fn healthy_with(established: u64, https: u32) -> Status {
    Host::default()
        .outbound("10.0.0.5", "10.0.1.20", 5432, 40, 60, established)
        .outbound("10.0.0.5", "10.0.2.7", 443, https, 60, 3)
        .outbound("10.0.0.5", "10.0.2.8", 6379, 0, 60, 8)
        .listener("0.0.0.0", 8080)
        .inbound_time_wait(8080, 1_204)
        .status_in(settings(), "host", HOST_INODE)
}

/// One service opening a connection per request to one API: TIME_WAIT
/// grows by `tw` over the last 10 s.
fn churning(tw: u32, established: u64) -> Status {
    Host::default()
        .outbound("10.0.0.5", "10.0.9.9", 8443, tw, 10, established)
        .outbound("10.0.0.5", "10.0.1.20", 5432, 40, 60, 20)
        .status_in(settings(), "host", HOST_INODE)
}

fn frame(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, app, Theme::new(true))).unwrap();
    terminal
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::from(code));
}

#[test]
fn a_healthy_host() {
    let mut app = App::new(2.0, false);
    // Two minutes of refreshes: the pool holds 18–20 open.
    for i in 0..60u32 {
        let https = 600 + (i % 12) * 50;
        app.on_update(one(healthy_with(18 + u64::from(i % 3), https), f64::from(i) * 2.0, 6.0));
    }
    insta::assert_snapshot!(frame(&app, 132, 24).backend());
}

#[test]
fn a_destination_going_critical() {
    let mut app = App::new(2.0, false);
    // Three minutes steady at 1,000, then a deploy that bypasses the pool.
    let steps = (0..90)
        .map(|_| 1_000u32)
        .chain([2_000, 6_000, 11_000, 16_000, 21_000, 24_500]);
    for (i, tw) in steps.enumerate() {
        app.on_update(one(churning(tw, 3 + (i as u64 * 7) % 40), i as f64 * 2.0, 41.0));
    }
    let terminal = frame(&app, 132, 24);
    insta::assert_snapshot!(terminal.backend());
    // The critical row is red and bold, and NO_COLOR drops the colour but
    // keeps the bold.
    let row = (0..24)
        .find(|&y| line(&terminal, y).starts_with("10.0.9.9:8443"))
        .unwrap();
    let cell = &terminal.backend().buffer()[(0, row)];
    assert_eq!(cell.fg, ratatui::style::Color::Red);
    let mut plain = Terminal::new(TestBackend::new(132, 24)).unwrap();
    plain.draw(|f| draw(f, &app, Theme::new(false))).unwrap();
    let cell = &plain.backend().buffer()[(0, row)];
    assert_eq!(cell.fg, ratatui::style::Color::Reset);
    assert!(cell.modifier.contains(ratatui::style::Modifier::BOLD));
}

fn line(terminal: &Terminal<TestBackend>, y: u16) -> String {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect()
}

#[test]
fn the_trace_panel_names_the_churner_and_the_failing_process() {
    let mut app = App::new(2.0, false);
    app.on_update(one(churning(24_500, 4), 0.0, 41.0));
    key(&mut app, KeyCode::Char('t'));
    let flow = |pid: u32, comm: &str, connects: u64, failed: u64| {
        let mut lifetime = [0; LIFETIME_BUCKETS];
        lifetime[12] = connects - failed;
        let mut failures = [0; 8];
        failures[0] = failed;
        Flow {
            pid,
            netns: HOST_INODE,
            addr: "10.0.9.9".parse().unwrap(),
            port: 8443,
            comm: comm.into(),
            cgroup_id: 0,
            connects,
            established: connects - failed,
            time_wait_left: connects - failed,
            resets: 0,
            closes: connects - failed,
            concurrent: 0,
            max_concurrent: 3,
            failures,
            lifetime_log2_us: lifetime,
        }
    };
    let sample = Sample {
        flows: vec![flow(4242, "checkout", 2_400, 0), flow(4300, "billing", 40, 38)],
        duration_s: 2.0,
        ..Sample::default()
    };
    let report = TraceReport::build(
        &sample,
        &Default::default(),
        &TraceFilter::default(),
        &PoolBypass::default(),
    );
    let failure = Failure {
        timestamp_ns: 0,
        pid: 4300,
        tid: 4301,
        comm: "billing".into(),
        netns: HOST_INODE,
        addr: "10.0.9.9".parse().unwrap(),
        port: 8443,
        errno: 99,
    };
    let mut update = one(churning(24_600, 5), 2.0, 43.0);
    update.trace = TraceState::Window {
        report: Box::new(report),
        last_addr_not_available: Some((failure, 1.0)),
    };
    app.on_update(update);
    insta::assert_snapshot!(frame(&app, 132, 30).backend());
}

fn pod_namespace(label: &str, inode: u64, status: Option<Status>, comm: &str) -> Namespace {
    Namespace::new(NamespaceStatus {
        identity: Identity {
            inode,
            pod: Some(Pod {
                uid: format!("uid-{inode}"),
                name: Some(label.into()),
                namespace: Some("shop".into()),
                qos: "burstable".into(),
            }),
            container: Some(Container {
                id: format!("{inode:064x}"),
                runtime: Some("containerd".into()),
            }),
            pids: vec![inode as u32 % 100_000],
            processes: vec![Process {
                pid: inode as u32 % 100_000,
                comm: comm.into(),
            }],
            ..Identity::default()
        },
        status,
        error: None,
    })
}

fn node() -> Update {
    let checkout = Host::default()
        .outbound("10.244.1.7", "10.96.0.10", 8443, 24_000, 10, 6)
        .status_in(settings(), "checkout", 4026532501);
    let billing = Host::default()
        .outbound("10.244.1.8", "10.96.0.11", 5432, 300, 60, 20)
        .status_in(settings(), "billing", 4026532502);
    let cache = Host::default()
        .outbound("10.244.1.9", "10.96.0.12", 6379, 15_000, 60, 2)
        .status_in(settings(), "cache", 4026532503);
    let host = healthy(20);
    Update {
        at_s: 0.0,
        snapshot: Ok(Snapshot {
            namespaces: vec![
                pod_namespace("checkout-7d9f", 4026532501, Some(checkout), "java"),
                pod_namespace("cache-warmer-x2", 4026532503, Some(cache), "python3"),
                pod_namespace("billing-5c4b", 4026532502, Some(billing), "node"),
                Namespace::new(NamespaceStatus {
                    identity: Identity {
                        inode: HOST_INODE,
                        host: true,
                        ..Identity::default()
                    },
                    status: Some(host),
                    error: None,
                }),
            ],
            all: true,
            found: 9,
            idle: 5,
            missing: None,
            cost: Cost {
                wall_ms: 88.0,
                cpu_ms: 61.0,
                between_ms: 0.0,
                sockets: 41_712,
            },
        }),
        trace: TraceState::Off,
    }
}

#[test]
fn a_namespace_list_and_drilling_in() {
    let mut app = App::new(2.0, true);
    app.on_update(node());
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!("namespace_list", frame(&app, 132, 20).backend());
    // Enter opens the selected pod (the second, cache-warmer).
    key(&mut app, KeyCode::Enter);
    let drilled = frame(&app, 132, 20);
    let header = line(&drilled, 0);
    assert!(header.contains("namespace shop/cache-warmer-x2"), "{header}");
    assert!(
        line(&drilled, 6).starts_with("10.96.0.12:6379"),
        "{}",
        line(&drilled, 6)
    );
    // n goes on to the next one; Esc returns to the list.
    key(&mut app, KeyCode::Char('n'));
    assert!(line(&frame(&app, 132, 20), 0).contains("shop/billing-5c4b"));
    key(&mut app, KeyCode::Esc);
    assert!(line(&frame(&app, 132, 20), 4).contains("Namespaces (4)"));
}

#[test]
fn the_help_screen() {
    let mut app = App::new(2.0, false);
    app.on_update(one(healthy(20), 0.0, 6.0));
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(frame(&app, 110, 28).backend());
    // Any key closes it, and does nothing else.
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.help);
}

#[test]
fn a_terminal_too_small() {
    let mut app = App::new(2.0, false);
    app.on_update(one(healthy(20), 0.0, 6.0));
    insta::assert_snapshot!(frame(&app, 60, 10).backend());
}

#[test]
fn sort_filter_and_pause_change_what_is_shown() {
    let mut app = App::new(2.0, false);
    app.on_update(one(healthy(20), 0.0, 6.0));
    let first_row = |app: &App| line(&frame(app, 132, 24), 6);
    // Risk first: all are ok, so the utilization orders them.
    assert!(first_row(&app).starts_with("10.0.2.7:443"), "{}", first_row(&app));
    // s: TIME_WAIT, in use, close rate, destination.
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort.name(), "TIME_WAIT");
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('s'));
    }
    assert_eq!(app.sort.name(), "destination");
    assert!(first_row(&app).starts_with("10.0.1.20:5432"), "{}", first_row(&app));
    // /6379 Enter: only that one.
    key(&mut app, KeyCode::Char('/'));
    for c in "6379".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.destinations().len(), 1);
    assert!(first_row(&app).starts_with("10.0.2.8:6379"));
    // p pauses: the collector is told, and the header says so.
    assert_eq!(
        app.on_key(KeyEvent::from(KeyCode::Char('p'))),
        twscope_tui::Effect::Send(twscope_tui::Request::Pause(true))
    );
    assert!(line(&frame(&app, 132, 24), 0).contains("PAUSED"));
    assert_eq!(
        app.on_key(KeyEvent::from(KeyCode::Char('q'))),
        twscope_tui::Effect::Quit
    );
}

#[test]
fn a_failed_refresh_keeps_the_last_census_and_says_why() {
    let mut app = App::new(2.0, false);
    app.on_update(one(healthy(20), 0.0, 6.0));
    app.on_update(Update {
        at_s: 2.0,
        snapshot: Err("dumping sockets: netlink: Operation not permitted".into()),
        trace: TraceState::Off,
    });
    let terminal = frame(&app, 132, 24);
    assert!(line(&terminal, 6).starts_with("10.0.2.7:443"));
    assert!(
        line(&terminal, 22).contains("refresh failed: dumping sockets"),
        "{}",
        line(&terminal, 22)
    );
}

#[test]
fn a_census_too_costly_for_the_interval_stretches_it_and_says_so() {
    let mut app = App::new(2.0, false);
    // A million TIME_WAIT sockets: the census took 0.65 s of CPU.
    app.on_update(one(churning(24_000, 4), 0.0, 720.0));
    let cost = app.snapshot.as_ref().unwrap().cost;
    assert!(cost.stretched(2.0));
    assert!((cost.next_after(2.0) - 0.648 / 0.25).abs() < 1e-9);
    assert!((cost.core_share(2.0) - 0.25).abs() < 1e-9);
    let terminal = frame(&app, 132, 24);
    let (header, cost_line) = (line(&terminal, 0), line(&terminal, 2));
    assert!(header.contains("every 2.6 s, not 2"), "{header}");
    assert!(
        cost_line.contains("census 24,064 sockets: 720 ms, 648 ms CPU, 25% of a core, capped"),
        "{cost_line}"
    );
    // Drawing and keys between refreshes count against the same budget.
    let cycle = Cost {
        wall_ms: 700.0,
        cpu_ms: 500.0,
        between_ms: 100.0,
        sockets: 1_000_000,
    };
    assert!((cycle.next_after(2.0) - 2.4).abs() < 1e-9);
    assert!((cycle.core_share(2.0) - 0.25).abs() < 1e-9);
    // A cheap census keeps the interval asked for.
    app.on_update(one(churning(24_000, 4), 2.6, 40.0));
    assert!(line(&frame(&app, 132, 24), 0).contains("every 2 s"));
}

#[test]
fn without_privileges_the_trace_panel_names_them() {
    let mut app = App::new(2.0, false);
    app.on_update(one(healthy(20), 0.0, 6.0));
    key(&mut app, KeyCode::Char('t'));
    // Before the next refresh: the panel says it is attaching.
    assert!((0..24).any(|y| line(&frame(&app, 132, 24), y).contains("attaching the tracer")));
    let mut update = one(healthy(20), 2.0, 6.0);
    update.trace = TraceState::Unavailable(
        "tracing needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): loading: Operation not permitted".into(),
    );
    app.on_update(update);
    let terminal = frame(&app, 132, 24);
    let text: Vec<String> = (0..24).map(|y| line(&terminal, y)).collect();
    assert!(
        text.iter()
            .any(|l| l.contains("trace unavailable: tracing needs CAP_BPF and CAP_PERFMON")),
        "{text:#?}"
    );
}
