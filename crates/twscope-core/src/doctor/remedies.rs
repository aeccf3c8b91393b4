//! Copy-pasteable remedies: sysctl lines, a sysctl.d file, a Kubernetes pod
//! snippet, and connection reuse in the languages services are written in.

use super::{Language, Remedy, RemedyKind};

/// Where `twscope tune --persist` and the remedies put persistent settings.
pub const SYSCTL_D_FILE: &str = "/etc/sysctl.d/90-twscope.conf";

/// sysctls Kubernetes treats as safe (settable in any pod without kubelet
/// flags) among those twscope recommends. Others need the kubelet's
/// `--allowed-unsafe-sysctls`.
const K8S_SAFE: &[&str] = &[
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_fin_timeout",
];

fn remedy(kind: RemedyKind, title: &str, text: String) -> Remedy {
    Remedy {
        kind,
        title: title.to_string(),
        text,
    }
}

/// Runtime, persistent and Kubernetes forms of the same sysctl settings.
pub fn sysctls(settings: &[(&str, String)]) -> Vec<Remedy> {
    vec![
        remedy(RemedyKind::Sysctl, "now (lost at reboot)", sysctl_commands(settings)),
        remedy(
            RemedyKind::SysctlD,
            &format!("persistently, in {SYSCTL_D_FILE}"),
            sysctl_d(settings),
        ),
        remedy(
            RemedyKind::Kubernetes,
            "per pod (every pod has its own network namespace)",
            kubernetes(settings),
        ),
    ]
}

/// `sysctl -w key="value"` lines: in force at once, lost at reboot.
pub fn sysctl_commands(settings: &[(&str, String)]) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("sysctl -w {k}=\"{v}\"\n"))
        .collect()
}

/// A sysctl.d file body; load it with `sysctl --system`.
pub fn sysctl_d(settings: &[(&str, String)]) -> String {
    let mut text = String::from("# Written by twscope: TCP ephemeral-port headroom.\n# Load with: sysctl --system\n");
    for (k, v) in settings {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}

/// The pod `securityContext.sysctls` snippet.
pub fn kubernetes(settings: &[(&str, String)]) -> String {
    let mut text = String::from("spec:\n  securityContext:\n    sysctls:\n");
    for (k, v) in settings {
        text.push_str(&format!("    - name: {k}\n      value: \"{v}\"\n"));
    }
    let unsafe_ones: Vec<&str> = settings
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !K8S_SAFE.contains(k))
        .collect();
    if !unsafe_ones.is_empty() {
        text.push_str(&format!(
            "# {} is not in Kubernetes' safe set: allow it on the node with\n\
             # kubelet --allowed-unsafe-sysctls={}\n",
            unsafe_ones.join(", "),
            unsafe_ones.join(",")
        ));
    }
    text
}

/// How to stop opening a connection per request, in every language.
pub fn connection_reuse() -> Vec<Remedy> {
    Language::ALL.into_iter().map(snippet).collect()
}

/// The connection-reuse snippet for one language: a database pool and an
/// HTTP client built once and shared, with the settings that keep idle
/// connections open rather than closing and reopening them.
pub fn snippet(language: Language) -> Remedy {
    let (title, text) = match language {
        Language::Java => (
            "Java: one HikariCP pool per database and one HttpClient, shared by every request",
            "// Build the DataSource once (a singleton / Spring bean), never per request.\n\
             HikariConfig config = new HikariConfig();\n\
             config.setJdbcUrl(url);\n\
             config.setMaximumPoolSize(20);      // leave minimumIdle unset: a fixed-size pool keeps\n\
             \x20                                   // its connections instead of closing idle ones\n\
             config.setMaxLifetime(1_800_000);   // recycle every 30 min, not every query\n\
             DataSource pool = new HikariDataSource(config);\n\
             // HTTP: one client for the whole application; it keeps connections alive.\n\
             HttpClient http = HttpClient.newHttpClient();\n",
        ),
        Language::Go => (
            "Go: one *sql.DB and one http.Client per process",
            "// sql.Open returns a pool: call it once at start-up and share the *sql.DB.\n\
             db, err := sql.Open(\"pgx\", dsn)        // or \"postgres\" with lib/pq\n\
             if err != nil {\n\
             \x20   log.Fatal(err)\n\
             }\n\
             db.SetMaxOpenConns(20)\n\
             db.SetMaxIdleConns(20)                 // the default, 2, closes every connection beyond it\n\
             db.SetConnMaxLifetime(30 * time.Minute)\n\
             // HTTP: one client for all requests, keeping the default transport's settings.\n\
             transport := http.DefaultTransport.(*http.Transport).Clone()\n\
             transport.MaxIdleConns = 100\n\
             transport.MaxIdleConnsPerHost = 100    // the default, 2, closes the rest after each burst\n\
             client := &http.Client{Transport: transport, Timeout: 10 * time.Second}\n\
             // Per response: read the body to EOF and close it, or the connection is not reused.\n\
             defer resp.Body.Close()\n\
             io.Copy(io.Discard, resp.Body)\n",
        ),
        Language::Python => (
            "Python: one psycopg_pool.ConnectionPool and one requests.Session per process",
            "# PostgreSQL with psycopg 3: one pool per process, opened at start-up, never per request.\n\
             from psycopg_pool import ConnectionPool\n\
             pool = ConnectionPool(conninfo, min_size=4, max_size=20, max_lifetime=1800, open=True)\n\
             with pool.connection() as conn:        # borrowed here, given back to the pool on exit\n\
             \x20   conn.execute(query, params)\n\
             # psycopg2: psycopg2.pool.ThreadedConnectionPool(4, 20, dsn) with getconn() / putconn(conn).\n\
             \n\
             # HTTP: requests.get() opens a new connection every call; one Session keeps them alive.\n\
             import requests\n\
             session = requests.Session()\n\
             adapter = requests.adapters.HTTPAdapter(pool_connections=10, pool_maxsize=50)\n\
             session.mount(\"http://\", adapter)\n\
             session.mount(\"https://\", adapter)\n\
             response = session.get(url)             # the same session for every request\n\
             \n\
             # Alternative, only if the app already goes through SQLAlchemy: one engine per process.\n\
             # engine = create_engine(url, pool_size=20, max_overflow=0, pool_pre_ping=True, pool_recycle=1800)\n\
             # (overflow connections are closed when returned: keep max_overflow small or 0.)\n",
        ),
        Language::Node => (
            "Node.js: one keep-alive agent and one database pool, shared",
            "// Node 19+ keeps the global agent's connections alive; older versions and custom agents need it set.\n\
             const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });   // https.Agent for TLS\n\
             http.get({ host, path, agent }, (res) => {   // pass the same agent every time\n\
             \x20 res.resume();                              // consume every response, or its socket is not reused\n\
             });\n\
             // Databases: one pool at start-up, shared by every request.\n\
             const { Pool } = require('pg');\n\
             const pool = new Pool({ max: 20 });\n\
             // In an async request handler: pool.query() borrows a connection and gives it back.\n\
             const { rows } = await pool.query(text, values);\n",
        ),
        Language::Rust => (
            "Rust: one reqwest::Client and one sqlx (or deadpool/bb8) pool, shared",
            "// reqwest::Client holds the connection pool: build it once, clone the handle.\n\
             let client = reqwest::Client::builder().pool_max_idle_per_host(50).build()?;\n\
             // Databases: one pool at start-up, shared through your app state.\n\
             let pool = sqlx::postgres::PgPoolOptions::new().max_connections(20).connect(&database_url).await?;\n\
             // deadpool_postgres::Pool or bb8::Pool work the same way: create once, clone the handle.\n",
        ),
    };
    remedy(RemedyKind::Snippet { language }, title, text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_forms_carry_the_same_values() {
        let settings = [
            ("net.ipv4.ip_local_port_range", "1024 65535".to_string()),
            ("net.ipv4.tcp_tw_reuse", "1".to_string()),
        ];
        assert_eq!(
            sysctl_commands(&settings),
            "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"\nsysctl -w net.ipv4.tcp_tw_reuse=\"1\"\n"
        );
        assert!(sysctl_d(&settings).contains("net.ipv4.ip_local_port_range = 1024 65535\n"));
        let k8s = kubernetes(&settings);
        assert!(
            k8s.contains("    - name: net.ipv4.tcp_tw_reuse\n      value: \"1\"\n"),
            "{k8s}"
        );
        assert!(k8s.contains("--allowed-unsafe-sysctls=net.ipv4.tcp_tw_reuse"), "{k8s}");
        assert!(!kubernetes(&settings[..1]).contains("unsafe"));
        let kinds: Vec<RemedyKind> = sysctls(&settings).into_iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [RemedyKind::Sysctl, RemedyKind::SysctlD, RemedyKind::Kubernetes]);
    }

    #[test]
    fn every_language_is_covered_once() {
        let kinds: Vec<String> = connection_reuse().into_iter().map(|r| r.kind.to_string()).collect();
        assert_eq!(kinds, ["java", "go", "python", "node", "rust"]);
        for r in connection_reuse() {
            let RemedyKind::Snippet { language } = r.kind else {
                panic!("{:?}", r.kind)
            };
            assert!(r.title.starts_with(&format!("{}: ", language.name())), "{}", r.title);
            assert!(r.text.ends_with('\n') && !r.text.contains("\n\n\n"), "{}", r.text);
        }
    }

    #[test]
    fn python_mounts_both_schemes_and_pools_psycopg_directly() {
        let python = snippet(Language::Python).text;
        assert!(python.contains("session.mount(\"http://\", adapter)"), "{python}");
        assert!(python.contains("session.mount(\"https://\", adapter)"), "{python}");
        assert!(python.contains("from psycopg_pool import ConnectionPool"), "{python}");
        assert!(python.contains("pool.connection() as conn"), "{python}");
        // SQLAlchemy only as a commented, labelled alternative — never the
        // suggestion for an app that uses psycopg directly.
        for line in python
            .lines()
            .filter(|l| l.contains("create_engine") || l.contains("SQLAlchemy"))
        {
            assert!(line.starts_with('#'), "{line}");
        }
        assert!(
            python.contains("Alternative, only if the app already goes through SQLAlchemy"),
            "{python}"
        );
        assert!(!snippet(Language::Python).title.contains("SQLAlchemy"));
    }

    #[test]
    fn the_other_snippets_avoid_the_usual_churn_traps() {
        let java = snippet(Language::Java).text;
        assert!(
            !java.contains("setMinimumIdle"),
            "a minimumIdle below the pool size closes idle connections: {java}"
        );
        assert!(java.contains("HttpClient.newHttpClient()"));
        let go = snippet(Language::Go).text;
        assert!(
            go.contains("SetMaxIdleConns(20)") && go.contains("MaxIdleConnsPerHost = 100"),
            "{go}"
        );
        assert!(
            go.contains("http.DefaultTransport.(*http.Transport).Clone()"),
            "keep the default transport's timeouts: {go}"
        );
        assert!(
            go.contains("io.Copy(io.Discard, resp.Body)") && go.contains("if err != nil"),
            "{go}"
        );
        let node = snippet(Language::Node).text;
        assert!(
            node.contains("keepAlive: true") && node.contains("res.resume()") && node.contains("new Pool({ max: 20 })"),
            "{node}"
        );
        let rust = snippet(Language::Rust).text;
        assert!(
            rust.contains("reqwest::Client::builder().pool_max_idle_per_host(50).build()?"),
            "{rust}"
        );
        assert!(
            rust.contains("PgPoolOptions::new().max_connections(20).connect(&database_url).await?"),
            "{rust}"
        );
    }
}
