//! Copy-pasteable remedies: sysctl lines, a sysctl.d file, a Kubernetes pod
//! snippet, and connection reuse in the languages services are written in.

use super::Remedy;

/// Where `twscope tune --persist` and the remedies put persistent settings.
pub const SYSCTL_D_FILE: &str = "/etc/sysctl.d/90-twscope.conf";

/// sysctls Kubernetes treats as safe (settable in any pod without kubelet
/// flags) among those twscope recommends. Others need the kubelet's
/// `--allowed-unsafe-sysctls`.
const K8S_SAFE: &[&str] = &["net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_fin_timeout"];

fn remedy(kind: &str, title: &str, text: String) -> Remedy {
    Remedy { kind: kind.to_string(), title: title.to_string(), text }
}

/// Runtime, persistent and Kubernetes forms of the same sysctl settings.
pub fn sysctls(settings: &[(&str, String)]) -> Vec<Remedy> {
    vec![
        remedy("sysctl", "now (lost at reboot)", sysctl_commands(settings)),
        remedy("sysctl.d", &format!("persistently, in {SYSCTL_D_FILE}"), sysctl_d(settings)),
        remedy("kubernetes", "per pod (every pod has its own network namespace)", kubernetes(settings)),
    ]
}

pub fn sysctl_commands(settings: &[(&str, String)]) -> String {
    settings.iter().map(|(k, v)| format!("sysctl -w {k}=\"{v}\"\n")).collect()
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
    let unsafe_ones: Vec<&str> = settings.iter().map(|(k, _)| *k).filter(|k| !K8S_SAFE.contains(k)).collect();
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

/// How to stop opening a connection per request, per language.
pub fn connection_reuse() -> Vec<Remedy> {
    vec![
        remedy(
            "java",
            "Java: one HikariCP pool per database, shared by every request",
            "// Build the DataSource once (a singleton / Spring bean), never per request.\n\
             HikariConfig config = new HikariConfig();\n\
             config.setJdbcUrl(url);\n\
             config.setMaximumPoolSize(20);      // connections kept open\n\
             config.setMinimumIdle(10);\n\
             config.setMaxLifetime(1_800_000);   // recycle every 30 min, not every query\n\
             DataSource pool = new HikariDataSource(config);\n\
             // For HTTP: one java.net.http.HttpClient for the whole application.\n"
                .to_string(),
        ),
        remedy(
            "go",
            "Go: one *sql.DB and one http.Client (with its Transport) per process",
            "// sql.Open returns a pool: call it once at start-up and share the *sql.DB.\n\
             db, err := sql.Open(\"postgres\", dsn)\n\
             db.SetMaxOpenConns(20)\n\
             db.SetMaxIdleConns(20)                 // idle slots >= what you reuse, or conns get closed\n\
             db.SetConnMaxLifetime(30 * time.Minute)\n\
             // One client for all requests; read the body to EOF and Close it so the conn is reused.\n\
             var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100, IdleConnTimeout: 90 * time.Second}}\n"
                .to_string(),
        ),
        remedy(
            "python",
            "Python: one SQLAlchemy engine and one requests.Session per process",
            "# create_engine() owns a pool: create it once at import time, not per request.\n\
             engine = create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True, pool_recycle=1800)\n\
             # requests.get() opens a new connection every call; a Session keeps them alive.\n\
             session = requests.Session()\n\
             session.mount(\"https://\", requests.adapters.HTTPAdapter(pool_maxsize=50))\n"
                .to_string(),
        ),
        remedy(
            "node",
            "Node.js: a keep-alive agent, shared",
            "// Node 19+ keeps connections alive by default; older versions and custom agents need it set.\n\
             const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });\n\
             http.get({ host, path, agent }, onResponse);   // pass the same agent every time\n\
             // Database drivers: create one pool (new pg.Pool({ max: 20 })) at start-up.\n"
                .to_string(),
        ),
        remedy(
            "rust",
            "Rust: one reqwest::Client, one deadpool/bb8 pool",
            "// reqwest::Client holds the connection pool: build it once, clone the handle.\n\
             let client = reqwest::Client::builder().pool_max_idle_per_host(50).build()?;\n\
             // Databases: one deadpool_postgres::Pool (or bb8::Pool) shared through your app state.\n\
             let pool = config.create_pool(Some(Runtime::Tokio1), NoTls)?;\n"
                .to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_forms_carry_the_same_values() {
        let settings = [("net.ipv4.ip_local_port_range", "1024 65535".to_string()), ("net.ipv4.tcp_tw_reuse", "1".to_string())];
        assert_eq!(
            sysctl_commands(&settings),
            "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"\nsysctl -w net.ipv4.tcp_tw_reuse=\"1\"\n"
        );
        assert!(sysctl_d(&settings).contains("net.ipv4.ip_local_port_range = 1024 65535\n"));
        let k8s = kubernetes(&settings);
        assert!(k8s.contains("    - name: net.ipv4.tcp_tw_reuse\n      value: \"1\"\n"), "{k8s}");
        assert!(k8s.contains("--allowed-unsafe-sysctls=net.ipv4.tcp_tw_reuse"), "{k8s}");
        assert!(!kubernetes(&settings[..1]).contains("unsafe"));
    }

    #[test]
    fn every_language_is_covered() {
        let kinds: Vec<String> = connection_reuse().into_iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["java", "go", "python", "node", "rust"]);
    }
}
