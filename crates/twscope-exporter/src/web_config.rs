//! `--web.config.file`, in the Prometheus exporter-toolkit format:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: twscope.crt     # relative paths are relative to this file
//!   key_file: twscope.key
//! basic_auth_users:
//!   prometheus: $2y$10$…       # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! The file is validated strictly at start: anything that would silently give
//! less protection than it seems to ask for is an error with one line naming
//! the file, the line and the problem — never the file's content, which may be
//! a secret (or `/etc/shadow` given by mistake). Refused: options twscope does
//! not implement (client certificates, cipher lists, …), an empty
//! `tls_server_config:` or `basic_auth_users:` block, an empty file, a user
//! listed twice, a hash that is not bcrypt or whose cost would stall every
//! check (above [`MAX_BCRYPT_COST`]).
//!
//! Checking a request ([`WebConfig::check`]) never spends bcrypt on a malformed
//! or oversize header, remembers only headers that succeeded (bounded in
//! bytes), and spends on an unknown user what a wrong password costs for the
//! costliest hash, so timing does not tell which users exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_yaml::Value;
use twscope_core::files::{read_regular, CONFIG_FILE_CAP};

/// Highest bcrypt cost accepted. Each step doubles the work: cost 10 (the
/// exporter-toolkit's example) takes tens of milliseconds per check, cost 15
/// about two seconds, cost 31 about a day.
pub const MAX_BCRYPT_COST: u32 = 15;

/// Longest `Authorization` header checked; longer ones are refused without
/// any work. bcrypt reads at most 72 bytes of a password, and user names are
/// short, so a real header is far below this.
pub const MAX_AUTHORIZATION_LEN: usize = 1024;

/// Bytes of successful `Authorization` headers remembered, so Prometheus's
/// scrape (the same header every time) costs one bcrypt check, not one per
/// scrape. Failed headers are never remembered.
const VERIFIED_CACHE_BYTES: usize = 16 * 1024;

/// A web config that could not be loaded: the file, where, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("web config {path}: {reason}")]
pub struct WebConfigError {
    path: PathBuf,
    reason: String,
}

/// A loaded web config: TLS and the users allowed in.
pub struct WebConfig {
    /// The TLS server settings, when `tls_server_config` is given.
    pub tls: Option<Arc<ServerConfig>>,
    users: HashMap<String, String>,
    /// The costliest user's hash: what an unknown user is checked against.
    costliest: Option<String>,
    /// Successful `Authorization` header values, at most
    /// [`VERIFIED_CACHE_BYTES`] of them.
    verified: Mutex<Vec<String>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys())
            .finish()
    }
}

/// What an `Authorization` header is, before any bcrypt work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No auth configured, or a header already verified: let it in.
    Accepted,
    /// Missing, oversize, not `Basic`, not base64, not `user:password`.
    Malformed,
    /// Well-formed: needs a bcrypt check ([`WebConfig::verify`]).
    Unverified {
        /// The header value, to remember on success.
        header: String,
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl WebConfig {
    /// Loads and checks the file: a bad file is an error at start, never a
    /// server that runs without the protection asked for. FIFOs, devices and
    /// files over 1 MiB are refused without reading them.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = read_regular(path, CONFIG_FILE_CAP).map_err(|e| WebConfigError {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, dir).map_err(|reason| WebConfigError {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses and validates a web config's text; relative certificate paths
    /// are taken from `base_dir`. The error says where and what, never quoting
    /// the text.
    pub fn parse(text: &str, base_dir: &Path) -> Result<WebConfig, String> {
        if text.trim().is_empty()
            || text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Err(
                "the file is empty, which would serve without TLS and without authentication; \
                        to do that, run without --web.config.file"
                    .to_string(),
            );
        }
        let value: Value = serde_yaml::from_str(text).map_err(|e| yaml_error(&e))?;
        let Value::Mapping(top) = value else {
            return Err(format!(
                "{}: expected a mapping with tls_server_config and/or basic_auth_users",
                at(text, None)
            ));
        };
        let mut tls = None;
        let mut users = HashMap::new();
        for (key, value) in &top {
            match key.as_str() {
                Some("tls_server_config") => tls = Some(parse_tls(text, value, base_dir)?),
                Some("basic_auth_users") => users = parse_users(text, value)?,
                Some(other) => return Err(unsupported(text, other)),
                None => return Err(format!("{}: option names must be strings", at(text, None))),
            }
        }
        let costliest = users
            .values()
            .max_by_key(|hash| bcrypt_cost(hash).unwrap_or(0))
            .cloned();
        Ok(WebConfig {
            tls,
            users,
            costliest,
            verified: Mutex::new(Vec::new()),
        })
    }

    /// Whether requests must authenticate.
    pub fn auth_required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Classifies an `Authorization` header without bcrypt: cheap enough to
    /// run on the async workers for every request.
    pub fn check(&self, header: Option<&[u8]>) -> Credentials {
        if !self.auth_required() {
            return Credentials::Accepted;
        }
        let Some(header) = header.filter(|h| h.len() <= MAX_AUTHORIZATION_LEN) else {
            return Credentials::Malformed;
        };
        let Ok(header) = std::str::from_utf8(header) else {
            return Credentials::Malformed;
        };
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|known| known == header)
        {
            return Credentials::Accepted;
        }
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        let Some((scheme, encoded)) = header.trim().split_once(' ') else {
            return Credentials::Malformed;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Credentials::Malformed;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return Credentials::Malformed;
        };
        let Ok(pair) = String::from_utf8(decoded) else {
            return Credentials::Malformed;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return Credentials::Malformed;
        };
        Credentials::Unverified {
            header: header.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// The bcrypt check of well-formed credentials: slow on purpose, run it
    /// off the async workers and under a bound on concurrent checks. An
    /// unknown user is checked against the costliest hash, so it takes as long
    /// as the slowest wrong password. A success is remembered.
    pub fn verify(&self, header: &str, user: &str, password: &str) -> bool {
        let ok = match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                if let Some(hash) = &self.costliest {
                    let _ = bcrypt::verify(password, hash);
                }
                false
            }
        };
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            let used: usize = verified.iter().map(String::len).sum();
            if used + header.len() > VERIFIED_CACHE_BYTES {
                verified.clear();
            }
            verified.push(header.to_string());
        }
        ok
    }

    /// Both steps on the calling thread; for tests and tools, not the server.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        match self.check(header.map(str::as_bytes)) {
            Credentials::Accepted => true,
            Credentials::Malformed => false,
            Credentials::Unverified { header, user, password } => self.verify(&header, &user, &password),
        }
    }
}

/// A serde_yaml error as "line L column C: what", without the text it quotes.
fn yaml_error(e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    let what = if message.contains("duplicate entry") {
        "a key appears twice (each user and each option may be given once)"
    } else {
        "this is not valid YAML"
    };
    match e.location() {
        Some(l) => format!("line {} column {}: {what}", l.line(), l.column()),
        None => what.to_string(),
    }
}

/// "line N" of the first line that starts with `key:`, for messages about a
/// key that parsed but is wrong.
fn at(text: &str, key: Option<&str>) -> String {
    let line = key.and_then(|key| {
        text.lines().position(|l| {
            let l = l.trim_start().trim_start_matches(['"', '\'']);
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start_matches(['"', '\'']).starts_with(':'))
        })
    });
    match line {
        Some(n) => format!("line {}", n + 1),
        None => "line 1".to_string(),
    }
}

/// Names an option twscope does not implement, if its name looks like one
/// (never echoes arbitrary text).
fn unsupported(text: &str, key: &str) -> String {
    let looks_like_option = key.len() <= 40
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
    let name = if looks_like_option {
        format!("option {key}")
    } else {
        "an option".to_string()
    };
    format!(
        "{}: {name} is not supported (twscope supports tls_server_config.cert_file/key_file and basic_auth_users); \
         refusing to start rather than ignore it",
        at(text, looks_like_option.then_some(key))
    )
}

fn parse_tls(text: &str, value: &Value, base_dir: &Path) -> Result<Arc<ServerConfig>, String> {
    let Value::Mapping(map) = value else {
        return Err(format!(
            "{}: tls_server_config is empty: give cert_file and key_file, or remove the block to serve plain HTTP",
            at(text, Some("tls_server_config"))
        ));
    };
    let (mut cert, mut key) = (None, None);
    for (k, v) in map {
        let slot = match k.as_str() {
            Some("cert_file") => &mut cert,
            Some("key_file") => &mut key,
            Some(other) => return Err(unsupported(text, other)),
            None => {
                return Err(format!(
                    "{}: option names must be strings",
                    at(text, Some("tls_server_config"))
                ))
            }
        };
        match v.as_str().filter(|s| !s.is_empty()) {
            Some(s) if !s.contains(['\n', '\r']) => *slot = Some(base_dir.join(s)),
            _ => {
                return Err(format!(
                    "{}: {} must be a file path on one line",
                    at(text, k.as_str()),
                    k.as_str().unwrap_or("?")
                ))
            }
        }
    }
    match (cert, key) {
        (Some(cert), Some(key)) => tls_config(&cert, &key).map(Arc::new),
        _ => Err(format!(
            "{}: tls_server_config needs both cert_file and key_file",
            at(text, Some("tls_server_config"))
        )),
    }
}

fn parse_users(text: &str, value: &Value) -> Result<HashMap<String, String>, String> {
    let Value::Mapping(map) = value else {
        return Err(format!(
            "{}: basic_auth_users is empty: list user: bcrypt-hash pairs, or remove the block to serve without authentication",
            at(text, Some("basic_auth_users"))
        ));
    };
    if map.is_empty() {
        return Err(format!(
            "{}: basic_auth_users lists no user",
            at(text, Some("basic_auth_users"))
        ));
    }
    let mut users = HashMap::new();
    for (k, v) in map {
        let Some(user) = k.as_str().filter(|u| !u.is_empty() && !u.contains(':')) else {
            return Err(format!(
                "{}: a user name must be a non-empty string without ':'",
                at(text, Some("basic_auth_users"))
            ));
        };
        let Some(hash) = v.as_str() else {
            return Err(format!(
                "{}: user {user:?}: the value must be a bcrypt hash",
                at(text, Some(user))
            ));
        };
        let Some(cost) = bcrypt_cost(hash) else {
            return Err(format!(
                "{}: user {user:?}: not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')",
                at(text, Some(user))
            ));
        };
        if cost > MAX_BCRYPT_COST {
            return Err(format!(
                "{}: user {user:?}: bcrypt cost {cost} is above {MAX_BCRYPT_COST}; every check would take minutes or more \
                 (cost 10–12 is usual)",
                at(text, Some(user))
            ));
        }
        // Check the hash decodes now (cost is bounded), not at the first scrape.
        if bcrypt::verify("", hash).is_err() {
            return Err(format!(
                "{}: user {user:?}: not a valid bcrypt hash",
                at(text, Some(user))
            ));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

/// The cost of a bcrypt hash (`$2y$10$…`, 60 ASCII bytes), or `None` when it
/// is not one — read without running bcrypt, so a huge cost costs nothing.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let b = hash.as_bytes();
    if b.len() != 60 || !hash.is_ascii() || b[0] != b'$' || b[3] != b'$' || b[6] != b'$' {
        return None;
    }
    if !matches!(&hash[1..3], "2a" | "2b" | "2x" | "2y") {
        return None;
    }
    hash[4..6].parse().ok().filter(|c| (4..=31).contains(c))
}

fn tls_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let read = |what: &str, path: &Path| {
        read_regular(path, twscope_core::files::CONFIG_FILE_CAP).map_err(|e| format!("{what} {}: {e}", path.display()))
    };
    let cert_pem = read("cert_file", cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("cert_file {}: not a PEM certificate", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("cert_file {}: no certificate in it", cert.display()));
    }
    let key_pem = read("key_file", key)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| format!("key_file {}: no PEM private key in it", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_remembers_only_successes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config = WebConfig::parse(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"), Path::new(".")).unwrap();
        assert!(config.authorized(Some(&basic("prometheus", "s3cret"))));
        assert_eq!(
            config.check(Some(basic("prometheus", "s3cret").as_bytes())),
            Credentials::Accepted,
            "remembered"
        );
        assert!(!config.authorized(Some(&basic("prometheus", "wrong"))));
        assert!(!config.authorized(Some(&basic("mallory", "s3cret"))));
        assert_eq!(config.verified.lock().unwrap().len(), 1, "failures are not remembered");
        // The scheme is case-insensitive.
        let lower = basic("prometheus", "s3cret").replacen("Basic", "basic", 1);
        assert!(config.authorized(Some(&lower)));
        assert!(config.authorized(Some(&basic("prometheus", "s3cret").replacen("Basic", "BASIC", 1))));
        for malformed in ["Bearer x", "Basic", "Basic !!!", "Basic bm9jb2xvbg==", ""] {
            assert_eq!(
                config.check(Some(malformed.as_bytes())),
                Credentials::Malformed,
                "{malformed}"
            );
        }
        assert_eq!(config.check(None), Credentials::Malformed);
        let huge = basic("prometheus", &"x".repeat(MAX_AUTHORIZATION_LEN));
        assert_eq!(
            config.check(Some(huge.as_bytes())),
            Credentials::Malformed,
            "oversize costs no bcrypt"
        );
    }

    #[test]
    fn the_success_cache_is_bounded_in_bytes() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let config = WebConfig::parse(&format!("basic_auth_users:\n  u: '{hash}'\n"), Path::new(".")).unwrap();
        for i in 0..2000 {
            // Distinct headers that all succeed: padding in front of the credentials.
            let header = format!(
                "Basic {}{}",
                " ".repeat(i % 7),
                basic("u", "pw").trim_start_matches("Basic ")
            );
            assert!(config.verify(&header, "u", "pw"));
        }
        let bytes: usize = config.verified.lock().unwrap().iter().map(String::len).sum();
        assert!(bytes <= VERIFIED_CACHE_BYTES, "{bytes}");
    }

    #[test]
    fn unknown_users_are_checked_against_the_costliest_hash() {
        let cheap = bcrypt::hash("a", 4).unwrap();
        let dear = bcrypt::hash("b", 6).unwrap();
        let config = WebConfig::parse(
            &format!("basic_auth_users:\n  cheap: '{cheap}'\n  dear: '{dear}'\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(config.costliest.as_deref(), Some(dear.as_str()));
    }

    #[test]
    fn weak_or_broken_configs_are_refused_with_the_line_and_without_the_content() {
        let hash = bcrypt::hash("x", 4).unwrap();
        let cost31 = format!("$2y$31${}", &hash[7..]);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("# only a comment\n".into(), "empty"),
            ("tls_server_config:\n".into(), "tls_server_config is empty"),
            ("basic_auth_users:\n".into(), "basic_auth_users is empty"),
            ("basic_auth_users: {}\n".into(), "lists no user"),
            (
                format!("basic_auth_users:\n  a: '{hash}'\n  a: '{hash}'\n"),
                "appears twice",
            ),
            (format!("basic_auth_users:\n  a: '{cost31}'\n"), "cost 31"),
            ("basic_auth_users:\n  a: notahash\n".into(), "not a bcrypt hash"),
            (
                "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n".into(),
                "nope.crt",
            ),
            ("tls_server_config:\n  cert_file: a\n".into(), "needs both"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n".into(),
                "client_ca_file",
            ),
            ("http_server_config:\n  http2: true\n".into(), "http_server_config"),
            (
                "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n".into(),
                "line",
            ),
            ("secret-token-123\n".into(), "mapping"),
            ("{{{{\n".into(), "not valid YAML"),
            (
                "tls_server_config:\n  cert_file: |\n    first\n    second\n  key_file: k\n".into(),
                "on one line",
            ),
            ("basic_auth_users:\n  \"a\\nb\": notahash\n".into(), "\"a\\nb\""),
        ];
        for (text, mentions) in cases {
            let err = match WebConfig::parse(&text, Path::new("/nonexistent")) {
                Ok(_) => panic!("accepted: {text:?}"),
                Err(e) => e,
            };
            assert!(err.contains(mentions), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err:?}");
            for secret in ["root:x", "nologin", "secret-token", "$2y$", "notahash"] {
                assert!(!err.contains(secret), "{text:?} echoed in {err}");
            }
        }
        let err = WebConfig::parse(
            &format!("# web\n\nbasic_auth_users:\n  a: '{cost31}'\n"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.starts_with("line 4:"), "{err}");
    }

    #[test]
    fn special_files_are_refused_without_reading_them() {
        for path in ["/dev/zero", "/proc/self"] {
            let err = WebConfig::load(Path::new(path)).unwrap_err().to_string();
            assert!(err.contains(path) && err.contains("not a regular file"), "{err}");
        }
    }
}
